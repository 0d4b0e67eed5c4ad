"""``python -m contrib.mcp [--socket PATH] [--allow-admin] [--allow-path DIR]...
[--start latest|beginning] [--tools read-only|TOOL,...] [--http [HOST:]PORT --token-file FILE
[--allow-host NAME]... [--allow-origin ORIGIN]... [--allow-non-loopback]]``.

Serves MCP on stdin/stdout (the stdio transport), or with ``--http`` over Streamable HTTP
(:mod:`contrib.mcp.http`); logs go to stderr. Exit 2: bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from contrib.mcp.http import TOKEN_ENV, HttpConfigError, HttpSettings, http_settings, serve_http
from contrib.mcp.server import ConvosdMcp, serve_stdio
from contrib.mcp.spec import ALL, READ_ONLY
from contrib.mcp.stateful import MAX_WAIT_S, TOOLS
from contrib.socket_path import UntrustedSocket, socket_path

#: more folders for --allow-path, separated by ':'
ALLOW_PATHS_ENV = "CONVOSD_MCP_ALLOW_PATHS"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m contrib.mcp",
        description="An MCP server (stdio, or Streamable HTTP with --http) with tools for "
        "convosd's conversation.",
    )
    parser.add_argument(
        "--socket", help="convosd's socket (default: $CONVOSD_SOCKET, else convosd's default path)"
    )
    parser.add_argument(
        "--allow-admin",
        action="store_true",
        help="also offer the admin tools (create, join, lock, explode, pairing, reset); the "
        "daemon still checks that this process's user is an admin peer",
    )
    parser.add_argument(
        "--allow-path",
        action="append",
        default=[],
        metavar="DIR",
        help="let send_attachment name a file (path) inside DIR (repeatable; also "
        f"${ALLOW_PATHS_ENV}, folders separated by ':'); without it, the tool takes the "
        "file's bytes only and has no path parameter. A client's MCP roots narrow it further",
    )
    parser.add_argument(
        "--tools",
        default=ALL,
        metavar="LIST",
        help=f"the tools to offer, comma-separated: tool names and the groups {READ_ONLY} "
        f"(the tools that change nothing) and {ALL} (the default), e.g. --tools {READ_ONLY} "
        "or --tools send_message,read_events; the others are neither listed nor callable. "
        "An unknown name stops the server at start. Tools: " + ", ".join(t.name for t in TOOLS),
    )
    parser.add_argument(
        "--start",
        choices=("latest", "beginning"),
        default="latest",
        help="where a reader without a cursor starts: new events only (default) or the whole "
        "journal (stdio: once per session; HTTP: on every call without a cursor)",
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        default=MAX_WAIT_S,
        metavar="S",
        help=f"the longest wait_for_message may block (default {MAX_WAIT_S:g})",
    )
    parser.add_argument("--log-level", default="WARNING")
    http = parser.add_argument_group("Streamable HTTP (instead of stdio)")
    http.add_argument(
        "--http",
        metavar="[HOST:]PORT",
        help="serve MCP over Streamable HTTP at http://HOST:PORT/mcp (stateless: clients pass "
        "read_events' nextCursor back); HOST defaults to 127.0.0.1, PORT 0 picks a free port",
    )
    http.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"the bearer token clients must send (default: ${TOKEN_ENV}); required with --http",
    )
    http.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME:PORT",
        help="also accept this Host header (repeatable; default: the bound loopback names)",
    )
    http.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also accept this Origin header (repeatable; default: http:// and each Host)",
    )
    http.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="let --http bind an address other machines reach (it binds loopback only "
        "without this flag)",
    )
    return parser


def allowed_folders(flags: Sequence[str], environ_value: str) -> list[Path]:
    """The operator's folders: each an absolute path to an existing directory, not ``/``."""
    named = [*flags, *(part for part in environ_value.split(":") if part)]
    folders = []
    for name in named:
        folder = Path(name)
        if not folder.is_absolute():
            raise ValueError(f"--allow-path {name}: give an absolute path")
        if not folder.is_dir():
            raise ValueError(f"--allow-path {name}: not an existing directory")
        if os.path.realpath(folder) == "/":
            raise ValueError(f"--allow-path {name}: name the folders to send from, not /")
        folders.append(folder)
    return folders


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,  # stdout carries the protocol
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    http: HttpSettings | None = None
    try:
        socket = socket_path(args.socket)
        folders = allowed_folders(args.allow_path, os.environ.get(ALLOW_PATHS_ENV, ""))
        if args.http is not None:
            http = http_settings(
                args.http,
                token_file=args.token_file,
                environ=os.environ,
                allow_hosts=args.allow_host,
                allow_origins=args.allow_origin,
                allow_non_loopback=args.allow_non_loopback,
            )
        elif args.token_file or args.allow_host or args.allow_origin or args.allow_non_loopback:
            raise HttpConfigError(
                "--token-file, --allow-host, --allow-origin and --allow-non-loopback go with --http"
            )
        app = ConvosdMcp(
            socket,
            allow_admin=args.allow_admin,
            allow_paths=folders,
            start=args.start,
            max_wait_s=args.max_wait,
            tools=args.tools,
            # HTTP: requests stand alone and clients share the server, so no cursor is kept
            # for them; each passes its own
            session_cursor=http is None,
        )
    except (UntrustedSocket, ValueError) as exc:
        sys.stderr.write(f"convosd-mcp: {exc}\n")
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        if http is not None:
            try:
                asyncio.run(serve_http(app, http, log_level=args.log_level))
            except OSError as exc:  # the address is taken, or not ours
                sys.stderr.write(f"convosd-mcp: --http {args.http}: {exc.strerror or exc}\n")
                return 1
        else:
            asyncio.run(serve_stdio(app))
    return 0


if __name__ == "__main__":
    sys.exit(main())
