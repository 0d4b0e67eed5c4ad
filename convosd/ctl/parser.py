"""convosctl's command line: every command, its arguments and its help."""

from __future__ import annotations

import argparse

from convosd import __version__
from convosd.ctl import download as ctl_download
from convosd.ctl import files as ctl_files
from convosd.ctl import live as ctl_live
from convosd.ctl import search as ctl_search

#: events.read's largest page
EVENTS_PAGE = 1000

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
