"""``convosctl``: the operator's command line (CONTRACT section 6).

This version knows the command names and the exit codes; it talks to the daemon through the
socket. Until the daemon serves JSON-RPC, every command that needs it reports the daemon as
unreachable (exit 3), which is the truth.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from convosd.config import default_socket_path

EXIT_UNREACHABLE = 3
COMMANDS = (
    "status",
    "health",
    "setup",
    "create",
    "join",
    "cancel-join",
    "info",
    "invite",
    "rename",
    "send",
    "react",
    "lock",
    "unlock",
    "explode",
    "events",
    "pairing",
    "reset",
    "call",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convosctl", description="Control a convosd daemon.")
    parser.add_argument("--socket", metavar="PATH", help="the daemon's socket")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = Path(
        args.socket
        or os.environ.get("CONVOSD_SOCKET")
        or default_socket_path(os.environ, os.getuid())
    )
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
    except OSError as exc:
        error = {"error": "daemon unreachable", "socket": str(path), "reason": exc.strerror}
        if args.json:
            print(json.dumps(error))
        else:
            print(f"convosctl: daemon unreachable at {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print("convosctl: this daemon version does not serve JSON-RPC yet", file=sys.stderr)
    return EXIT_UNREACHABLE


if __name__ == "__main__":
    sys.exit(main())
