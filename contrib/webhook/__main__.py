"""``python -m contrib.webhook --url URL --state-file PATH [--secret-file FILE] ...``.

The signing secrets (``whsec_<base64>``, one or more: each signs) come from ``--secret-file``
or ``$CONVOSD_WEBHOOK_SECRET``, never from the command line (it would show in ``ps``), and
never reach a log or an error message. ``--legacy-signature`` (deprecated, for one release)
adds the old ``Idempotency-Key`` and ``X-Convosd-*`` headers. SIGTERM/SIGINT: stop, exit 0
(an event in flight is delivered again on the next start). Exit 2: a bad URL, secret, state
file or option.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from contrib.socket_path import UntrustedSocket, socket_path
from contrib.webhook.relay import Relay, RelayConfig, load_cursor
from contrib.webhook.signing import ConfigProblem, check_url, load_secrets
from convosd.rpc.schemas import EventType

log = logging.getLogger("contrib.webhook")
EVENT_TYPES = sorted(EventType.__args__)  # type: ignore[attr-defined]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m contrib.webhook",
        description="POST every convosd event, signed (Standard Webhooks), in order, to a URL "
        "(at-least-once).",
        # no prefix matching: `--secret VALUE` must fail, not be read as --secret-file
        allow_abbrev=False,
    )
    parser.add_argument("--url", required=True, help="where to POST (http:// or https://)")
    parser.add_argument(
        "--state-file", required=True, type=Path, help="where the relay keeps its cursor"
    )
    parser.add_argument(
        "--secret-file",
        type=Path,
        metavar="FILE",
        help="the signing secrets, whsec_<base64>, one a line; each signs every request "
        "(default: $CONVOSD_WEBHOOK_SECRET, space-separated)",
    )
    parser.add_argument(
        "--legacy-signature",
        action="store_true",
        help="DEPRECATED, removed in the next release: also send the old Idempotency-Key and "
        "X-Convosd-* headers (signed with the first secret) and accept a plain old secret",
    )
    parser.add_argument(
        "--socket", help="convosd's socket (default: $CONVOSD_SOCKET, else convosd's default path)"
    )
    parser.add_argument(
        "--types",
        help=f"comma-separated event types to relay (default: all of {','.join(EVENT_TYPES)})",
    )
    parser.add_argument(
        "--dead-letter", type=Path, metavar="FILE", help="default: <state file>.dead.jsonl"
    )
    parser.add_argument(
        "--start",
        choices=("latest", "beginning"),
        default="latest",
        help="without a state file: relay only new events (default) or the whole journal",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="the deadline of one attempt: connect, send, read the answer (default 10)",
    )
    parser.add_argument("--backoff-initial", type=float, default=0.5, metavar="S")
    parser.add_argument("--backoff-max", type=float, default=60.0, metavar="S")
    parser.add_argument(
        "--give-up-after",
        type=float,
        default=3600.0,
        metavar="S",
        help="retry one event for at most this long, then dead-letter it (default 3600)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def config_from(args: argparse.Namespace, environ: Mapping[str, str]) -> RelayConfig:
    check_url(args.url)
    types = None
    if args.types:
        types = [t.strip() for t in args.types.split(",") if t.strip()]
        unknown = sorted(set(types) - set(EVENT_TYPES))
        if unknown or not types:
            raise ConfigProblem(
                f"unknown event type(s) {', '.join(unknown) or '(none given)'}: "
                f"choose from {', '.join(EVENT_TYPES)}"
            )
    for name in ("timeout", "backoff_initial", "backoff_max", "give_up_after"):
        if getattr(args, name) <= 0:
            raise ConfigProblem(f"--{name.replace('_', '-')} must be more than 0")
    load_cursor(args.state_file)  # a corrupt state file stops the start, not the first save
    return RelayConfig(
        socket=socket_path(args.socket, environ),
        url=args.url,
        secrets=load_secrets(args.secret_file, dict(environ), legacy=args.legacy_signature),
        state_file=args.state_file,
        dead_letter=args.dead_letter,
        types=types,
        start=args.start,
        timeout_s=args.timeout,
        backoff_initial_s=args.backoff_initial,
        backoff_max_s=args.backoff_max,
        give_up_after_s=args.give_up_after,
        legacy_signature=args.legacy_signature,
    )


async def run(config: RelayConfig) -> int:
    loop = asyncio.get_running_loop()
    if config.legacy_signature:
        log.warning(
            "--legacy-signature is deprecated and goes in the next release: move the receiver "
            "to the Standard Webhooks headers (webhook-id, webhook-timestamp, webhook-signature)"
        )
    relay = Relay(config)
    task = asyncio.create_task(relay.run())
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task.done():
        task.result()  # an unexpected end: raise it
        return 1
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    log.info("stopped: %s", relay.stats)
    return 0


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = config_from(args, os.environ if environ is None else environ)
    except (ConfigProblem, UntrustedSocket) as exc:
        sys.stderr.write(f"convosd-webhook: {exc}\n")
        return 2
    return asyncio.run(run(config))


if __name__ == "__main__":
    sys.exit(main())
