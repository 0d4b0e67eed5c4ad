"""``python -m contrib.gateway --socket PATH --listen 127.0.0.1:18789 [--token-file F]``.

The bearer token comes from ``--token-file`` (its first line), else ``$CONVOSD_GATEWAY_TOKEN``;
without one, no authentication. SIGTERM/SIGINT: stop accepting, finish requests in flight
(up to ``--shutdown-grace``), exit 0. Exit 2: bad arguments or an unreadable token file.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from contrib.gateway.server import Gateway, GatewayConfig
from contrib.socket_path import socket_path

TOKEN_ENV = "CONVOSD_GATEWAY_TOKEN"
log = logging.getLogger("contrib.gateway")


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def load_token(token_file: Path | None, environ: Mapping[str, str]) -> str | None:
    """The file's first line (stripped; it must not be empty), else the environment's."""
    if token_file is not None:
        lines = token_file.read_text(encoding="utf-8").splitlines()
        token = lines[0].strip() if lines else ""
        if not token:
            raise ValueError(f"{token_file} holds no token")
        return token
    return environ.get(TOKEN_ENV, "").strip() or None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m contrib.gateway",
        description="Serve the Convos channel's HTTP routes on top of convosd's socket.",
    )
    parser.add_argument(
        "--socket",
        type=Path,
        help="convosd's socket (default: $CONVOSD_SOCKET, else convosd's default path)",
    )
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", 18789),
        metavar="HOST:PORT",
        help="where to listen (default 127.0.0.1:18789; port 0 picks a free one)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help=f"the bearer token, first line (default: ${TOKEN_ENV}; none: no authentication)",
    )
    parser.add_argument("--max-body-bytes", type=int, default=1024 * 1024)
    parser.add_argument("--max-connections", type=int, default=64)
    parser.add_argument("--request-timeout", type=float, default=30.0, metavar="S")
    parser.add_argument("--call-timeout", type=float, default=120.0, metavar="S")
    parser.add_argument("--shutdown-grace", type=float, default=10.0, metavar="S")
    parser.add_argument("--log-level", default="INFO")
    return parser


def config_from(args: argparse.Namespace, environ: Mapping[str, str]) -> GatewayConfig:
    socket = socket_path(args.socket, environ)
    host, port = args.listen
    return GatewayConfig(
        socket=socket,
        host=host,
        port=port,
        token=load_token(args.token_file, environ),
        max_body_bytes=args.max_body_bytes,
        max_connections=args.max_connections,
        request_timeout_s=args.request_timeout,
        call_timeout_s=args.call_timeout,
        shutdown_grace_s=args.shutdown_grace,
    )


async def serve(config: GatewayConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Gateway(config) as gateway:
        host, port = gateway.address
        log.info(
            "listening on http://%s:%d for %s (auth: %s)",
            f"[{host}]" if ":" in host else host,
            port,
            config.socket,
            "bearer token" if config.token else "none",
        )
        await stop.wait()
        log.info("stopping")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = config_from(args, os.environ)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))  # exits 2
    try:
        return asyncio.run(serve(config))
    except OSError as exc:  # cannot listen
        log.error("cannot listen on %s:%d: %s", config.host, config.port, exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
