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
from convosd.errors import ConfigError
from convosd.preflight import run_preflight

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
    log = convosd_logging.get_logger("convosd")
    runner = asyncio.run
    if not args.no_uvloop:
        import uvloop

        runner = uvloop.run
    try:
        report = runner(run_preflight(settings, paths))
    except ConfigError as exc:
        log.error("config_invalid", error=str(exc))
        return EXIT_CONFIG
    fields = {
        "state_dir": str(report.state_dir),
        "socket": str(report.socket),
        "convos_home": str(report.convos_home),
        "env": report.env,
        "cli": " ".join(report.cli),
        "cli_version": report.cli_version,
        "identity_id": report.identity_id,
        "inbox_id": report.inbox_id,
        "dm_policy": settings.convos.dm_policy,
    }
    if not report.ok:
        log.error("preflight_failed", problems=report.problems, **fields)
        return EXIT_NOT_WORKING
    log.info("preflight_ok", **fields)
    log.warning(
        "not_serving",
        reason="the JSON-RPC server is not implemented in this version; exiting after checks",
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
