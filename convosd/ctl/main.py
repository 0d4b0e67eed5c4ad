"""``convosctl``: the operator's command line (README, Operations), on :mod:`convosd.client`.

    convosctl [--socket PATH] [--json] COMMAND ...

Human output on a terminal (tables, colour, a spinner while a join waits), JSON with
``--json`` or when stdout is not a terminal. Exit codes: 0 success; 1 the daemon answered
with an error; 2 usage; 3 the daemon is unreachable. ``health`` exits 0 ok, 1 degraded,
2 down, 3 unreachable, so it can serve as a health check as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from convosd import errors
from convosd.client import ConvosdClient, EventStream, RpcError
from convosd.config import default_socket_path
from convosd.ctl import download as ctl_download
from convosd.ctl import files as ctl_files
from convosd.ctl import live as ctl_live
from convosd.ctl import search as ctl_search
from convosd.ctl.output import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    HEALTH_EXIT,
    Output,
    awaiting_human,
    event_human,
    info_human,
    pairs,
    spinning,
    status_human,
)
from convosd.ctl.parser import EVENTS_PAGE, build_parser
from convosd.discovery import Discovery, discover, unreachable_hint
from convosd.rpc import schemas as s


def _unreachable(
    args: argparse.Namespace, out: Output, found: Discovery, reason: str | None
) -> int:
    """Say where we looked (or why a socket was refused) and how to name one; exit 3."""
    if found.refused is not None:
        reason = found.refused
        text = f"daemon unreachable: {found.refused}"
    elif found.path is not None and not found.tried:
        text = (
            f"daemon unreachable at {found.path} (from {found.source}): {reason}; check the "
            "path, or leave out --socket/CONVOSD_SOCKET to look in the default places"
        )
    elif found.path is not None:
        text = f"daemon unreachable at {found.path}: {reason}; {unreachable_hint(found.tried)}"
    else:
        text = f"daemon unreachable: no socket found; {unreachable_hint(found.tried)}"
    if args.command == "health" and out.as_json:
        out.emit(
            {
                "status": "unreachable",
                "socket": str(found.path) if found.path is not None else None,
                "tried": [str(p) for p in found.tried],
                "reason": reason,
            }
        )
    else:
        print(f"convosctl: {text}", file=sys.stderr)
    return EXIT_UNREACHABLE


async def run(args: argparse.Namespace, out: Output) -> int:
    found = discover(args.socket, os.environ, os.getuid())
    if args.command == "events" and args.follow:
        return await _follow(found, args, out)
    if found.path is None:
        return _unreachable(args, out, found, "no socket found")
    try:
        client = await ConvosdClient.connect(found.path)
    except OSError as exc:
        return _unreachable(args, out, found, exc.strerror)
    try:
        return await _dispatch(client, args, out)
    except ConnectionError as exc:
        print(f"convosctl: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        await client.close()


async def _dispatch(client: ConvosdClient, args: argparse.Namespace, out: Output) -> int:
    command = args.command
    try:
        if command == "status":
            out.emit(s.dump(await client.status()), status_human(out))
        elif command == "health":
            health = await client.health()
            out.emit(s.dump(health), lambda h: f"{h['status']}\n" + pairs(h["checks"], "  "))
            return HEALTH_EXIT.get(health.status, 2)
        elif command in ("setup", "join"):
            joining = client.join(
                args.invite,
                profileName=args.profile_name or None,
                timeoutS=args.timeout,
                asOwner=True if command == "setup" else None,
            )
            joined = await spinning(out, "waiting for the creator to accept...", joining)
            result = _join_shown(joined)
            if command == "setup" and joined.status == "pending_acceptance":
                result = await spinning(
                    out, "join request sent; waiting for acceptance...", _wait_bound(client)
                )
            out.emit(result)
            if command == "setup" and not out.as_json:
                print(
                    "Next: `convosctl events --follow` to read what the owner writes, "
                    "`convosctl send TEXT` to answer."
                )
        elif command == "create":
            out.emit(s.dump(await client.create(name=args.name, profileName=args.profile_name)))
        elif command == "await-add":
            awaiting = await client.await_add(
                **{"from": args.from_, "timeoutS": args.timeout, "profileName": args.profile_name}
            )
            out.emit(s.dump(awaiting), awaiting_human)
            if args.wait:
                bound = await spinning(out, "waiting to be added...", _wait_bound(client, "added"))
                out.emit(bound)
        elif command == "cancel-join":
            out.emit(s.dump(await client.cancel_join()))
        elif command == "info":
            out.emit(s.dump(await client.info()), info_human)
        elif command == "invite":
            invite = await client.invite(
                expiresInS=args.expires_in, singleUse=args.single_use or None
            )
            out.emit(s.dump(invite))
        elif command == "rename":
            out.emit(s.dump(await client.rename(args.name)))
        elif command == "send":
            sent = await client.send(
                args.text, replyTo=args.reply_to, idempotencyKey=args.idempotency_key
            )
            out.emit(s.dump(sent))
        elif command == "send-file":
            out.emit(s.dump(await ctl_files.send_file(client, args)))
        elif command == "react":
            out.emit(s.dump(await client.react(args.message_id, args.emoji, remove=args.remove)))
        elif command in ("lock", "unlock"):
            out.emit(s.dump(await client.lock(unlock=command == "unlock")))
        elif command in ctl_live.COMMANDS:
            out.emit(await ctl_live.run(client, args))
        elif command == "reset":
            out.emit(s.dump(await client.reset()))
        elif command == "events":
            await _read_events(client, args, out)
        elif command == "pairing":
            if args.action == "list":
                if args.code:
                    print("convosctl: pairing list takes no CODE", file=sys.stderr)
                    return EXIT_USAGE
                out.emit(s.dump(await client.pairing_list()))
            elif not args.code:
                print("convosctl: pairing approve|deny needs a CODE", file=sys.stderr)
                return EXIT_USAGE
            elif args.action == "approve":
                out.emit(s.dump(await client.pairing_approve(args.code)))
            else:
                out.emit(s.dump(await client.pairing_deny(args.code)))
        elif command == "download":
            out.emit(await ctl_download.run(client, args))
        elif command in ctl_search.COMMANDS:
            out.emit(await ctl_search.run(client, args), ctl_search.human)
        elif command == "call":
            # any method, params and result as they are: the one raw call, by design
            try:
                raw_params = json.loads(args.params) if args.params else None
            except json.JSONDecodeError as exc:
                print(f"convosctl: params are not JSON: {exc.msg}", file=sys.stderr)
                return EXIT_USAGE
            out.emit(await client.call(args.method, raw_params))
    except (errors.ConvosdError, RpcError) as exc:
        out.error(exc)
        return EXIT_ERROR
    return EXIT_OK


async def _read_events(client: ConvosdClient, args: argparse.Namespace, out: Output) -> None:
    """The events after ``--after``: every one up to the journal's end as it was at the
    first read, page by page; with ``--limit N`` the first N, and a line on stderr that
    says how to read on when the journal holds more."""
    after = args.after or 0
    wanted: int | None = args.limit
    shown = 0
    end: int | None = None
    while True:
        page = EVENTS_PAGE if wanted is None else min(EVENTS_PAGE, wanted - shown)
        read = await client.read_events(after=after, limit=page)
        end = read.last_seq if end is None else end
        for event in read.events:
            if out.as_json:
                out.emit(event)
            else:
                print(event_human(event))
            after = int(event["seq"])
        shown += len(read.events)
        if not read.events or after >= end:
            return
        if wanted is not None and shown >= wanted:
            print(
                f"convosctl: more events after #{after} (the journal ends at "
                f"#{read.last_seq}): convosctl events --after {after}",
                file=sys.stderr,
            )
            return


def _join_shown(result: s.JoinResult) -> dict[str, Any]:
    """A join result as the daemon sends it: the fields of the other shape left out."""
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


async def _wait_bound(client: ConvosdClient, how: str = "joined") -> dict[str, Any]:
    while True:
        status = await client.status()
        if status.conversation_id is not None:
            return {"status": how, "conversationId": status.conversation_id}
        if not status.pending:
            what = "the wait to be added" if how == "added" else "the join"
            raise errors.NotFound(f"{what} is no longer pending (cancelled or failed)")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(client.closed.wait(), 1.0)
        if client.closed.is_set():
            raise ConnectionError("the daemon closed the connection")


async def _follow(found: Discovery, args: argparse.Namespace, out: Output) -> int:
    """Follow the journal across daemon restarts; with no daemon yet, wait only when a person
    watches (stderr is a terminal) and say so; a script gets exit 3 at once."""
    if found.refused is not None:
        return _unreachable(args, out, found, None)
    path = found.path or default_socket_path(os.environ, os.getuid())
    try:
        probe = await ConvosdClient.connect(path)
    except OSError as exc:
        if not sys.stderr.isatty():
            return _unreachable(args, out, found, exc.strerror)
        print(
            f"convosctl: waiting for the daemon at {path} ({exc.strerror}); "
            "Ctrl-C to stop. Elsewhere: --socket PATH or CONVOSD_SOCKET",
            file=sys.stderr,
            flush=True,
        )
    else:
        await probe.close()
    stream = EventStream(path, after=args.after)
    try:
        async for event in stream:
            if out.as_json:
                out.emit(event)
            else:
                print(event_human(event), flush=True)
    except errors.EventsExpired as exc:
        out.error(exc)
        return EXIT_ERROR
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Output(args.json)
    try:
        return asyncio.run(run(args, out))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
