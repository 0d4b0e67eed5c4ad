"""MCP over Streamable HTTP: ``python -m contrib.mcp --http [HOST:]PORT --token-file FILE``.

The same server as on stdio (:class:`contrib.mcp.server.ConvosdMcp`), served by the ``mcp``
SDK's Streamable HTTP transport in its stateless mode: every POST to ``/mcp`` stands alone
(no session; a client that still sends ``Mcp-Session-Id`` is served, the header ignored).
``read_events`` and ``wait_for_message`` take and return an explicit ``cursor``, so
several clients each keep their own position; the server keeps none for them.

In front of the SDK, one guard checks every request, in this order:

1. ``Host`` must be one of the allowed names (default: the names of the bound loopback
   address, e.g. ``127.0.0.1:8765`` and ``localhost:8765``), and ``Origin``, when a
   browser sends one, one of the allowed origins (default: ``http://`` and each allowed
   Host): a page on another site that rebinds its DNS name to 127.0.0.1 is refused (403).
2. ``Authorization: Bearer TOKEN`` must carry the operator's token (from ``--token-file``
   or ``$CONVOSD_MCP_TOKEN``), compared in constant time: 401 otherwise.
3. Only ``POST /mcp``: other paths 404, other methods 405 (a stateless server has no
   stream to offer on GET and no session to DELETE).

It binds a loopback address unless the operator passes ``--allow-non-loopback``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import socket
import stat
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contrib.loopback import is_loopback
from contrib.mcp.server import ConvosdMcp

log = logging.getLogger("contrib.mcp.http")

#: the token, when no --token-file names one
TOKEN_ENV = "CONVOSD_MCP_TOKEN"
#: a shorter token is refused at start (``python -c 'import secrets;
#: print(secrets.token_urlsafe(32))'`` makes a good one)
MIN_TOKEN_CHARS = 16
#: the endpoint
MCP_PATH = "/mcp"
#: how long a stop waits for requests in flight (a wait_for_message may block 300 s)
GRACEFUL_STOP_S = 5


class HttpConfigError(ValueError):
    """A flag or the token that cannot serve HTTP safely: the server does not start."""


# --- the operator's flags ---------------------------------------------------------------


def parse_bind(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[IPV6]:PORT`` (``PORT`` alone: 127.0.0.1)."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise HttpConfigError(
            f"--http {text}: give PORT, HOST:PORT or [IPV6]:PORT (e.g. 127.0.0.1:8765)"
        )
    return host, int(port_text)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def host_names(host: str, port: int) -> list[str]:
    """The ``Host`` values a client sends for the bound address (none for a wildcard)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and address.is_unspecified:
        return []  # 0.0.0.0 / ::: the names clients use are the operator's to give
    names = [_hostport(host, port)]
    if host in ("127.0.0.1", "::1", "localhost"):
        names.append(_hostport("localhost", port))
        if host == "localhost":
            names.append(_hostport("127.0.0.1", port))
    if port == 80:  # a client leaves out the default port
        names += [name.rsplit(":", 1)[0] for name in names]
    return list(dict.fromkeys(names))


def allowlists(
    host: str, port: int, extra_hosts: Iterable[str], extra_origins: Iterable[str]
) -> tuple[frozenset[str], frozenset[str]]:
    """The ``Host`` values and the ``Origin`` values let in (lower case): the bound
    address's names and the operator's; the origins ``http://`` and each Host, and the
    operator's."""
    hosts = [*host_names(host, port), *extra_hosts]
    if not hosts:
        raise HttpConfigError(
            f"--http {_hostport(host, port)} listens on every address: name the Host "
            "header clients will send with --allow-host NAME:PORT"
        )
    origins = [f"http://{name}" for name in hosts] + list(extra_origins)
    return frozenset(h.lower() for h in hosts), frozenset(o.lower().rstrip("/") for o in origins)


def read_token(token_file: str | None, environ: Mapping[str, str]) -> str:
    """The bearer token: the file's content (stripped), else ``$CONVOSD_MCP_TOKEN``."""
    if token_file is not None:
        path = Path(token_file)
        try:
            token = path.read_text(encoding="utf-8").strip()
            mode = path.stat().st_mode
        except (OSError, UnicodeDecodeError) as exc:
            raise HttpConfigError(f"--token-file {token_file}: cannot read it ({exc})") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("--token-file %s is readable by other users: chmod 600 it", token_file)
        where = f"--token-file {token_file}"
    else:
        token = environ.get(TOKEN_ENV, "").strip()
        where = f"${TOKEN_ENV}"
        if not token:
            raise HttpConfigError(
                f"--http needs a bearer token: --token-file FILE or ${TOKEN_ENV} (make one "
                "with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise HttpConfigError(
            f"{where}: the token must be at least {MIN_TOKEN_CHARS} characters with no "
            "spaces (make one with: python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')"
        )
    return token


@dataclass(frozen=True)
class HttpSettings:
    host: str
    port: int
    token: str
    allow_hosts: tuple[str, ...] = ()
    allow_origins: tuple[str, ...] = ()


def http_settings(
    bind: str,
    *,
    token_file: str | None,
    environ: Mapping[str, str],
    allow_hosts: Sequence[str] = (),
    allow_origins: Sequence[str] = (),
    allow_non_loopback: bool = False,
) -> HttpSettings:
    """The flags checked: loopback unless allowed otherwise, a token, well-formed names."""
    host, port = parse_bind(bind)
    if not is_loopback(host) and not allow_non_loopback:
        raise HttpConfigError(
            f"--http {bind}: {host} is not a loopback address; anyone who can reach it "
            "could try the token. Pass --allow-non-loopback to mean it"
        )
    allowlists(host, port, allow_hosts, ())  # a wildcard bind needs --allow-host
    for name in allow_hosts:
        if not name or "/" in name or any(c.isspace() for c in name):
            raise HttpConfigError(f"--allow-host {name!r}: give HOST:PORT as clients send it")
    for origin in allow_origins:
        if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
            raise HttpConfigError(
                f"--allow-origin {origin!r}: give scheme://host[:port], e.g. https://app.example"
            )
    return HttpSettings(
        host=host,
        port=port,
        token=read_token(token_file, environ),
        allow_hosts=tuple(allow_hosts),
        allow_origins=tuple(allow_origins),
    )


# --- the guard ---------------------------------------------------------------------------

Scope = dict[str, Any]
Receive = Any
Send = Any


async def _refuse(
    send: Send, status: int, error: str, description: str, headers: Sequence[tuple[str, str]] = ()
) -> None:
    body = json.dumps({"error": error, "error_description": description}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *((k.encode(), v.encode()) for k, v in headers),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: Host and Origin against the allowlists (403), the bearer token
    (401), then ``POST /mcp`` only (404, 405); what passes goes to ``app``."""

    def __init__(
        self, app: Any, *, token: str, hosts: Iterable[str], origins: Iterable[str]
    ) -> None:
        self.app = app
        self._digest = hashlib.sha256(token.encode()).digest()
        self.hosts = frozenset(h.lower() for h in hosts)
        self.origins = frozenset(o.lower() for o in origins)

    def token_ok(self, authorization: str | None) -> bool:
        """``Bearer TOKEN`` with the operator's token. Both sides are hashed first, so the
        comparison takes the same time whatever was sent (its length included)."""
        scheme, _, given = (authorization or "").strip().partition(" ")
        digest = hashlib.sha256(given.strip().encode()).digest()
        return hmac.compare_digest(digest, self._digest) and scheme.lower() == "bearer"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # websockets: nothing here speaks them
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        headers: dict[str, str] = {}
        for key, value in scope["headers"]:
            name = key.decode("latin-1").lower()
            if name in headers:  # two Host (or Origin, Authorization) headers: refuse
                headers[name] = "\x00"
            else:
                headers[name] = value.decode("latin-1")
        host = headers.get("host", "").lower()
        if host not in self.hosts:
            log.warning("refused a request for Host %r (not in the allowlist)", host[:100])
            await _refuse(
                send,
                403,
                "forbidden",
                "this Host is not allowed (DNS rebinding guard): the operator may add it "
                "with --allow-host",
            )
            return
        origin = headers.get("origin")
        if origin is not None and origin.lower().rstrip("/") not in self.origins:
            log.warning("refused a request from Origin %r (not in the allowlist)", origin[:100])
            await _refuse(
                send,
                403,
                "forbidden",
                "this Origin is not allowed: the operator may add it with --allow-origin",
            )
            return
        if not self.token_ok(headers.get("authorization")):
            wrong = "authorization" in headers
            await _refuse(
                send,
                401,
                "invalid_token",
                "the bearer token is wrong" if wrong else "send Authorization: Bearer TOKEN",
                [
                    (
                        "www-authenticate",
                        'Bearer realm="convosd-mcp"' + (', error="invalid_token"' if wrong else ""),
                    )
                ],
            )
            return
        if scope["path"] != MCP_PATH:
            await _refuse(send, 404, "not_found", f"the MCP endpoint is {MCP_PATH}")
            return
        if scope["method"] != "POST":
            await _refuse(
                send,
                405,
                "method_not_allowed",
                "this server is stateless: POST each request (no GET stream, no session)",
                [("allow", "POST")],
            )
            return
        await self.app(scope, receive, send)


def build_app(mcp: ConvosdMcp, *, token: str, hosts: Iterable[str], origins: Iterable[str]) -> Any:
    """The ASGI app: the guard, then the SDK's stateless Streamable HTTP transport for
    ``mcp``'s server (its lifespan runs the SDK's request manager)."""
    from mcp.server.streamable_http_manager import (
        StreamableHTTPASGIApp,
        StreamableHTTPSessionManager,
    )
    from starlette.applications import Starlette
    from starlette.routing import Route

    manager = StreamableHTTPSessionManager(app=mcp.server, stateless=True)
    starlette = Starlette(
        routes=[Route(MCP_PATH, endpoint=StreamableHTTPASGIApp(manager))],
        lifespan=lambda _app: manager.run(),
    )
    return Guard(starlette, token=token, hosts=hosts, origins=origins)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: one the kernel picks)."""
    if host == "localhost":
        host = "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named: asyncio sets TCP_NODELAY on the connections it accepts only when the
    # listening socket says IPPROTO_TCP; with proto 0, Nagle's algorithm held each answer's
    # second write for the client's delayed ACK: 40 ms per request on a kept-alive connection
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def serve_http(mcp: ConvosdMcp, settings: HttpSettings, *, log_level: str) -> None:
    """Serve ``mcp`` on ``settings`` until SIGINT/SIGTERM; say where on stderr."""
    import uvicorn

    sock = bind_socket(settings.host, settings.port)
    try:
        port = sock.getsockname()[1]
        hosts, origins = allowlists(
            settings.host, port, settings.allow_hosts, settings.allow_origins
        )
        app = build_app(mcp, token=settings.token, hosts=hosts, origins=origins)
        config = uvicorn.Config(
            app,
            lifespan="on",
            log_level=log_level.lower(),
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_STOP_S,
        )
        sys.stderr.write(
            f"convosd-mcp: MCP over HTTP at http://{_hostport(settings.host, port)}{MCP_PATH}"
            f" (Host allowed: {', '.join(sorted(hosts))}; pid {os.getpid()})\n"
        )
        sys.stderr.flush()
        await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        sock.close()
        await mcp.aclose()
