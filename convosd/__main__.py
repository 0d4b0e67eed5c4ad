"""``convosd`` / ``python -m convosd``: the daemon's command line (CONTRACT section 1)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from convosd import __version__
from convosd import logging as convosd_logging
from convosd.config import load_settings, resolve_paths
from convosd.daemon import serve
from convosd.errors import ConfigError

EXIT_OK = 0
EXIT_NOT_WORKING = 1
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convosd",
        description="Convos (XMTP) channel daemon for local agents: JSON-RPC on a Unix socket.",
    )
    parser.add_argument("--config", metavar="PATH", help="TOML config, or OpenClaw-style JSON")
    parser.add_argument("--socket", metavar="PATH", help="the Unix socket to listen on")
    parser.add_argument("--state-dir", metavar="PATH", help="binding, journal, pairing state")
    parser.add_argument("--log-format", choices=("json", "console"), help="default: by terminal")
    parser.add_argument("--no-uvloop", action="store_true", help="use the stdlib event loop")
    parser.add_argument("--version", action="version", version=f"convosd {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.umask(0o077)
    flags = {
        "config": args.config,
        "socket": args.socket,
        "state_dir": args.state_dir,
        "log_format": args.log_format,
    }
    try:
        settings = load_settings(flags)
        paths = resolve_paths(settings)
    except ConfigError as exc:
        print(f"convosd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    convosd_logging.configure(
        log_format=settings.daemon.log_format, level=settings.daemon.log_level
    )
    runner = asyncio.run
    if not args.no_uvloop:
        import uvloop

        runner = uvloop.run
    return int(runner(serve(settings, paths)))


if __name__ == "__main__":
    sys.exit(main())
