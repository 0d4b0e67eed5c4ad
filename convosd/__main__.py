"""``convosd`` / ``python -m convosd``: the daemon's command line (README, Running)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from convosd import __version__
from convosd import logging as convosd_logging
from convosd.config import (
    ENV_KEYS,
    ConvosSection,
    DaemonSection,
    Settings,
    load_settings,
    resolve_paths,
    unknown_env_vars,
)
from convosd.daemon import serve
from convosd.errors import ConfigError

EXIT_OK = 0
EXIT_NOT_WORKING = 1
EXIT_CONFIG = 2


def _environment_help() -> str:
    """The epilog of ``--help``: every variable with its config key and default."""
    lines = [
        "Precedence: flags > environment > config file > defaults.",
        "",
        "environment (each sets the config key shown; lists as a,b or a JSON array):",
        "  CONVOSD_CONFIG                   the config file (same as --config)",
    ]
    defaults = Settings()
    for var, (section, field) in ENV_KEYS.items():
        model = ConvosSection if section == "convos" else DaemonSection
        info = model.model_fields[field]
        value = getattr(getattr(defaults, section), field)
        if value is None:
            shown = "see below" if field in ("socket", "state_dir", "convos_home") else "unset"
        elif isinstance(value, tuple):
            shown = ",".join(str(v) for v in value) or "empty"
        elif isinstance(value, bool):
            shown = str(value).lower()
        else:
            shown = f"{value:g}" if isinstance(value, float) else str(value)
        lines.append(f"  {var:<32} [{section}] {info.alias or field} (default: {shown})")
    lines += [
        "",
        "default paths:",
        "  socket     $RUNTIME_DIRECTORY/convosd.sock, else $XDG_RUNTIME_DIR/convosd/convosd.sock,",
        "             else /tmp/convosd-$UID/convosd.sock",
        "  state dir  $STATE_DIRECTORY, else $XDG_STATE_HOME/convosd, else",
        "             ~/.local/state/convosd; convosHome = <state dir>/convos",
        "",
        "Exit codes: 0 clean shutdown, 1 state dir in use or socket/store unusable,",
        "2 invalid configuration. The protocol: docs/PROTOCOL.md.",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convosd",
        description="Convos (XMTP) channel daemon for local agents: JSON-RPC on a Unix socket.",
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", metavar="PATH", help="TOML config, or OpenClaw-style JSON (default: none)"
    )
    parser.add_argument(
        "--socket", metavar="PATH", help="the Unix socket to listen on (default: see below)"
    )
    parser.add_argument(
        "--state-dir",
        metavar="PATH",
        help="binding, journal, pairing state (default: see below)",
    )
    parser.add_argument(
        "--log-format",
        choices=("json", "console"),
        help="default: console on a terminal, json otherwise",
    )
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
    for variable, nearest in unknown_env_vars(os.environ):
        log.warning(
            "unknown_environment_variable",
            variable=variable,
            nearest=nearest,
            fix=f"did you mean {nearest}? (see convosd --help)"
            if nearest
            else "convosd does not read it (see convosd --help)",
        )
    runner = asyncio.run
    if not args.no_uvloop:
        import uvloop

        runner = uvloop.run
    try:
        return int(runner(serve(settings, paths)))
    finally:
        convosd_logging.flush()  # the lines of the last loop turn


if __name__ == "__main__":
    sys.exit(main())
