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
import itertools
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from convosd import __version__, errors
from convosd.client import ConvosdClient, EventStream, RpcError
from convosd.config import default_socket_path
from convosd.ctl import download as ctl_download
from convosd.ctl import files as ctl_files
from convosd.ctl import live as ctl_live
from convosd.ctl import search as ctl_search
from convosd.discovery import Discovery, discover, unreachable_hint
from convosd.rpc import schemas as s

T = TypeVar("T")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
HEALTH_EXIT = {"ok": 0, "degraded": 1, "down": 2}


class Output:
    def __init__(self, as_json: bool, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.as_json = as_json or not self.tty
        #: errors are JSON only when asked for (--json): a script that pipes stdout still
        #: shows a person its errors on stderr, with the kind, the param and the next step
        self.json_errors = as_json
        self.colour = self.tty and not os.environ.get("NO_COLOR")
        self.error_colour = sys.stderr.isatty() and not os.environ.get("NO_COLOR")

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def emit(self, value: Any, human: Callable[[Any], str] | None = None) -> None:
        if self.as_json:
            print(json.dumps(value, ensure_ascii=False), file=self.stream, flush=True)
        else:
            print(human(value) if human else _pairs(value), file=self.stream, flush=True)

    def error(self, exc: errors.ConvosdError) -> None:
        data = exc.rpc_data()
        kind = str(data.get("kind"))
        if self.json_errors:
            print(json.dumps({"error": exc.message, "data": data}), file=sys.stderr)
            return

        def paint(text: str, code: str) -> str:
            return f"\x1b[{code}m{text}\x1b[0m" if self.error_colour else text

        lines = [f"{paint('error', '31')}: {exc.message} ({kind})"]
        # INVALID_PARAMS: which param, and what is wrong with it
        lines += [
            f"  {problem.get('param') or '(params)'}: {problem.get('problem')}"
            for problem in data.get("errors") or ()
            if isinstance(problem, dict)
        ]
        if data.get("error"):
            lines.append(f"  the CLI said: {data['error']}")
        # what else the error carries (retryAfterS, firstSeq, pending, ...)
        lines += [
            f"  {key}: {json.dumps(value, ensure_ascii=False)}"
            for key, value in data.items()
            if key not in ("kind", "errors", "error") and not isinstance(value, dict | list)
        ]
        hint = _next_step(kind, data)
        if hint:
            lines.append(f"{paint('next', '33')}: {hint}")
        print("\n".join(lines), file=sys.stderr)


#: What to run next, in convosctl's own terms, where that differs from the protocol's hint.
_CTL_HINTS = {
    "NOT_BOUND": (
        "bind this instance first: `convosctl create [NAME]` starts a conversation, "
        "`convosctl join INVITE` joins one, `convosctl setup INVITE` joins the owner's, "
        "`convosctl await-add` waits to be added to one"
    ),
    "ALREADY_BOUND_PENDING": (
        "a join awaits acceptance: wait (`convosctl status` shows pending), "
        "or `convosctl cancel-join`"
    ),
    "ALREADY_BOUND_AWAITING": (
        "the instance waits to be added: wait (`convosctl status` shows awaitingAdd), "
        "or `convosctl cancel-join`"
    ),
    "LOCKED": "`convosctl unlock`, then `convosctl invite`",
    "FORBIDDEN": "run convosctl as root, as the daemon's user, or as one of its adminUids",
    "EVENTS_EXPIRED": "`convosctl events --after N` with N at least firstSeq - 1",
}


def _next_step(kind: str, data: dict[str, Any]) -> str | None:
    if kind == "ALREADY_BOUND" and data.get("awaitingAdd"):
        kind = "ALREADY_BOUND_AWAITING"
    elif kind == "ALREADY_BOUND" and data.get("pending"):
        kind = "ALREADY_BOUND_PENDING"
    return _CTL_HINTS.get(kind) or errors.hint_for(kind)


def _pairs(value: Any, indent: str = "") -> str:
    if not isinstance(value, dict):
        return str(value)
    width = max((len(k) for k in value), default=0)
    lines = []
    for key, item in value.items():
        if isinstance(item, dict):
            lines.append(f"{indent}{key}:")
            lines.append(_pairs(item, indent + "  "))
        elif isinstance(item, list):
            shown = ", ".join(str(i) for i in item) if item else "-"
            lines.append(f"{indent}{key.ljust(width)}  {shown}")
        else:
            lines.append(f"{indent}{key.ljust(width)}  {'-' if item is None else item}")
    return "\n".join(lines)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


def _status_human(out: Output) -> Callable[[Any], str]:
    def render(st: dict[str, Any]) -> str:
        rows = [
            [
                name,
                child["state"],
                str(child["pid"] or "-"),
                str(child["restarts"]),
                child["lastError"] or "",
            ]
            for name, child in st["children"].items()
        ]
        head = {k: v for k, v in st.items() if k not in ("children", "journal", "policy")}
        head["journal"] = f"{st['journal']['firstSeq']}..{st['journal']['lastSeq']}"
        return _pairs(head) + "\n\n" + _table(rows, ["child", "state", "pid", "restarts", "error"])

    return render


def _awaiting_human(result: dict[str, Any]) -> str:
    adders = ", ".join(result["from"])
    return (
        f"inbox id  {result['inboxId']}\n"
        f"waiting to be added by {adders} until {result['until'] or 'cancelled'}\n"
        "hand the inbox id over; the one adding runs, for example:\n"
        f"  convos conversation add-members CONVERSATION_ID {result['inboxId']}"
    )


def _info_human(info: dict[str, Any]) -> str:
    rows = [
        [m["inboxId"][:16] + "…", m["name"] or "-", "admin" if m["isAdmin"] else ""]
        for m in info["members"]
    ]
    head = (
        f"{info['name'] or '(no name)'}  {info['conversationId']}  "
        f"{'locked' if info['locked'] else 'open'}  {info['memberCount']} members"
    )
    return head + "\n" + _table(rows, ["inbox", "name", ""])


def _event_human(event: dict[str, Any]) -> str:
    kind = event.get("type")
    if kind == "message":
        who = event.get("senderName") or str(event.get("senderInboxId", ""))[:12]
        return f"#{event['seq']} {event.get('sentAt')} {who}: {event.get('content')}"
    fields = {k: v for k, v in event.items() if k not in ("seq", "type", "at", "conversationId")}
    return f"#{event['seq']} {event.get('at')} {kind} {json.dumps(fields, ensure_ascii=False)}"


async def _spinning(out: Output, label: str, work: Awaitable[T]) -> T:
    task = asyncio.ensure_future(work)
    if out.as_json or not sys.stderr.isatty():
        return await task
    for frame in itertools.cycle("|/-\\"):
        done, _ = await asyncio.wait({task}, timeout=0.1)
        if done:
            sys.stderr.write("\r" + " " * (len(label) + 4) + "\r")
            return task.result()
        sys.stderr.write(f"\r{frame} {label}")
        sys.stderr.flush()
    raise AssertionError("unreachable")  # pragma: no cover


_EPILOG = """\
finding the daemon:
  --socket PATH, else CONVOSD_SOCKET, else the first that exists of
  $RUNTIME_DIRECTORY/convosd.sock, /run/convosd/convosd.sock,
  $XDG_RUNTIME_DIR/convosd/convosd.sock, /tmp/convosd-$UID/convosd.sock.
  A socket found this way is refused when its directory is a symlink, is writable by
  others, or is owned by someone other than root or the user expected there.

environment:
  CONVOSD_SOCKET   the daemon's socket (like --socket)
  NO_COLOR         no colour on a terminal

text that starts with "-": put it after "--", e.g.  convosctl send -- "-1 is the answer"

Output: tables on a terminal; JSON lines with --json or when stdout is not a terminal.
Exit codes: 0 ok, 1 the daemon answered with an error, 2 usage, 3 daemon unreachable
(health: 0 ok, 1 degraded, 2 down, 3 unreachable). The protocol: docs/PROTOCOL.md.
"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The epilog as written, and each option's default where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            default in (None, False, argparse.SUPPRESS)
            or "default" in text
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)".lstrip()


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convosctl",
        description="Control a convosd daemon.",
        epilog=_EPILOG,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--socket", metavar="PATH", help="the daemon's socket (default: found as below)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--version", action="version", version=f"convosctl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("status", help="the daemon's state")
    sub.add_parser("health", help="exit 0 ok, 1 degraded, 2 down, 3 unreachable")
    p = sub.add_parser("setup", help="join the owner's conversation and wait for acceptance")
    p.add_argument("invite")
    p.add_argument("--profile-name")
    p.add_argument("--timeout", type=int, default=60, help="seconds the first request waits")
    p = sub.add_parser("create", help="create a conversation and bind to it")
    p.add_argument("name", nargs="?")
    p.add_argument("--profile-name")
    p = sub.add_parser("join", help="join a conversation by invite")
    p.add_argument("invite")
    p.add_argument("--profile-name")
    p.add_argument("--timeout", type=int, default=60, help="seconds the request waits")
    p = sub.add_parser(
        "await-add",
        help="wait to be added to a conversation; prints the inbox id to hand over",
        description="Wait to be added to a conversation by an allowed inbox (--from, else "
        "the daemon's allowFrom). Prints the instance's inbox id: whoever adds it runs e.g. "
        "`convos conversation add-members CONVERSATION_ID INBOX_ID`. Adds by anyone else "
        "are refused. `convosctl cancel-join` stops waiting.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument(
        "--from",
        dest="from_",
        action="append",
        metavar="INBOX_ID",
        help="an inbox id whose add is accepted (repeatable; default: allowFrom)",
    )
    p.add_argument("--timeout", type=_positive, help="seconds to wait (default: joinRetryMaxS)")
    p.add_argument("--profile-name", help="profile name of an identity made now")
    p.add_argument("--wait", action="store_true", help="then wait until the instance is added")
    sub.add_parser("cancel-join", help="forget a pending join, or stop waiting to be added")
    sub.add_parser("info", help="the bound conversation")
    p = sub.add_parser("invite", help="a new invite")
    p.add_argument("--expires-in", type=int)
    p.add_argument("--single-use", action="store_true")
    p = sub.add_parser("rename", help="rename the conversation")
    p.add_argument("name")
    p = sub.add_parser(
        "send",
        help='send a text (one starting with "-": send -- "-text")',
        description='Send a text. A text that starts with "-" goes after "--": '
        'convosctl send -- "-1 is the answer"',
        formatter_class=_HelpFormatter,
    )
    p.add_argument("text", help='the message; after "--" when it starts with "-"')
    p.add_argument("--reply-to")
    p.add_argument("--idempotency-key")
    ctl_files.add_commands(sub.add_parser)
    p = sub.add_parser("react", help="react to a message")
    p.add_argument("message_id")
    p.add_argument("emoji")
    p.add_argument("--remove", action="store_true")
    sub.add_parser("lock", help="lock the conversation")
    sub.add_parser("unlock", help="unlock the conversation")
    p = sub.add_parser("explode", help="remove every other member and unbind")
    p.add_argument("--yes", action="store_true", required=True)
    ctl_live.add_explode_at(p)
    ctl_live.add_parsers(sub)
    p = sub.add_parser("events", help="journaled events")
    p.add_argument("--after", type=int, metavar="N", help="the events after seq N (default: 0)")
    p.add_argument("--follow", action="store_true", help="keep following, across restarts")
    p.add_argument(
        "--limit",
        type=_positive,
        metavar="N",
        help="at most N events, then say how to read on (default: every event to the end, "
        f"read {EVENTS_PAGE} at a time; without --follow)",
    )
    p = sub.add_parser("pairing", help="pairing requests")
    p.add_argument("action", choices=("list", "approve", "deny"))
    p.add_argument("code", nargs="?")
    p = sub.add_parser("reset", help="wipe identity, binding, journal and keys")
    p.add_argument("--yes", action="store_true", required=True)
    ctl_download.add_parser(sub)
    ctl_search.add_parsers(sub)
    p = sub.add_parser("call", help="call any method")
    p.add_argument("method")
    p.add_argument("params", nargs="?", help="JSON object")
    for command in sub.choices.values():
        command.formatter_class = _HelpFormatter
    return parser


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
            out.emit(s.dump(await client.status()), _status_human(out))
        elif command == "health":
            health = await client.health()
            out.emit(s.dump(health), lambda h: f"{h['status']}\n" + _pairs(h["checks"], "  "))
            return HEALTH_EXIT.get(health.status, 2)
        elif command in ("setup", "join"):
            joining = client.join(
                args.invite,
                profileName=args.profile_name or None,
                timeoutS=args.timeout,
                asOwner=True if command == "setup" else None,
            )
            joined = await _spinning(out, "waiting for the creator to accept...", joining)
            result = _join_shown(joined)
            if command == "setup" and joined.status == "pending_acceptance":
                result = await _spinning(
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
            out.emit(s.dump(awaiting), _awaiting_human)
            if args.wait:
                bound = await _spinning(out, "waiting to be added...", _wait_bound(client, "added"))
                out.emit(bound)
        elif command == "cancel-join":
            out.emit(s.dump(await client.cancel_join()))
        elif command == "info":
            out.emit(s.dump(await client.info()), _info_human)
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


#: events.read's largest page
EVENTS_PAGE = 1000


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
                print(_event_human(event))
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
                print(_event_human(event), flush=True)
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
