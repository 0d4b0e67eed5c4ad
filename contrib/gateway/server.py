"""An asyncio HTTP/1.1 server for the Convos channel's routes, forwarding to convosd.

Routes (JSON in and out; every error is ``{"error": "<message>"}``):

    POST /convos/conversation        conversation.create
    POST /convos/join                conversation.join
    POST /convos/conversation/send   message.send
    POST /convos/rename              conversation.rename
    POST /convos/lock                conversation.lock ({"unlock": true} unlocks)
    POST /convos/explode             conversation.explode {confirm: true}
    POST /convos/reset               daemon.reset {confirm: true}
    GET  /convos/status              status → {conversationId, inboxId, pending, clean}

Each request opens its own connection to the daemon (:class:`Upstream` says why).

The HTTP side is small on purpose: HTTP/1.0 and 1.1, keep-alive and pipelining (answered
in order), ``Content-Length`` or chunked bodies up to ``max_body_bytes`` (413 past it),
``Expect: 100-continue``, a deadline for reading each request (408), an idle timeout between
requests, a cap on open connections (503). No TLS: listen on loopback and set a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final

from convosd import errors
from convosd.client import Client, RpcError

log = logging.getLogger("contrib.gateway")

Json = dict[str, Any]
Headers = tuple[tuple[str, str], ...]

MAX_BODY_BYTES: Final = 1024 * 1024
MAX_LINE_BYTES: Final = 8 * 1024  # the request line, one header line, one chunk-size line
MAX_HEAD_BYTES: Final = 32 * 1024
MAX_HEADERS: Final = 100
LINGER_S: Final = 1.0
STATUS_FIELDS: Final = ("conversationId", "inboxId", "pending", "clean")
RETRY_SOON: Final[Headers] = (("Retry-After", "1"),)
_VERSION = re.compile(r"HTTP/\d(\.\d)?")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")


@dataclass(frozen=True)
class GatewayConfig:
    socket: Path
    host: str = "127.0.0.1"
    port: int = 18789
    token: str | None = None  # when set, every request needs ``Authorization: Bearer <token>``
    max_body_bytes: int = MAX_BODY_BYTES
    max_connections: int = 64
    request_timeout_s: float = 30.0  # from the request line to the end of the body
    idle_timeout_s: float = 60.0  # a keep-alive connection waiting for its next request
    connect_timeout_s: float = 5.0
    call_timeout_s: float = 120.0  # one daemon call; a join adds its timeoutS
    shutdown_grace_s: float = 10.0


class HttpError(Exception):
    """An HTTP error answer: ``{"error": message}`` with ``status``."""

    def __init__(
        self, status: int, message: str, *, headers: Headers = (), close: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.close = close


# --- the daemon side ----------------------------------------------------------------------


class Upstream:
    """convosd's socket, one connection per call.

    The gateway carries control-plane traffic (a pool polling status every few seconds, a
    handful of admin calls), each of which runs the CLI for tens of milliseconds or more;
    a local connect costs about a tenth of a millisecond. In exchange there is no shared
    connection to watch, repair or reconnect: a daemon restart or a dropped connection
    fails only the request in flight, and the next one simply connects again. The daemon's
    ``maxInFlightPerConnection`` does not become a gateway-wide cap either; its
    ``maxConnections`` is the back-pressure (refused: 503 with Retry-After), and the
    gateway's own ``max_connections`` (64 by default, the daemon's 256) keeps it below that.
    """

    def __init__(self, socket: Path, *, connect_timeout_s: float, call_timeout_s: float) -> None:
        self.socket = socket
        self.connect_timeout_s = connect_timeout_s
        self.call_timeout_s = call_timeout_s

    async def call(
        self, method: str, params: Json | None = None, *, extra_timeout_s: float = 0.0
    ) -> Json:
        try:
            client = await asyncio.wait_for(Client.connect(self.socket), self.connect_timeout_s)
        except OSError as exc:  # missing socket, refused, permission, TimeoutError
            log.warning("convosd unreachable at %s: %s", self.socket, exc)
            raise HttpError(503, "convosd is not reachable", headers=RETRY_SOON) from None
        try:
            # A connection the daemon closes (shutdown, a peer it refuses) must not leave
            # the call waiting for an answer that cannot come: race it against ``closed``.
            call = asyncio.ensure_future(client.call(method, params))
            closed = asyncio.ensure_future(client.closed.wait())
            try:
                await asyncio.wait(
                    {call, closed},
                    timeout=self.call_timeout_s + extra_timeout_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                call.cancel()
                closed.cancel()
                await asyncio.gather(call, closed, return_exceptions=True)
            if call.cancelled() and closed.cancelled():
                raise HttpError(504, f"convosd did not answer {method} in time")
            if call.cancelled():
                raise ConnectionError("closed")
            result = call.result()
        except errors.ConvosdError as exc:
            raise from_daemon(exc) from None
        except ConnectionError as exc:
            # Shutting down, restarting, or refusing the connection (over maxConnections:
            # its BUSY answer has ``id: null``, which convosd.client drops): retry soon.
            log.warning("convosd closed the connection during %s: %r", method, exc)
            raise HttpError(503, "convosd closed the connection", headers=RETRY_SOON) from None
        except KeyError:  # a response with neither result nor error
            raise HttpError(502, f"convosd answered {method} without a result") from None
        finally:
            await client.close()
        if not isinstance(result, dict):
            raise HttpError(502, f"convosd answered {method} with a non-object")
        return result


def from_daemon(exc: errors.ConvosdError) -> HttpError:
    """The HTTP answer for an error of convosd (docs/PROTOCOL.md, Errors)."""
    if isinstance(exc, errors.AlreadyBound):
        return HttpError(409, errors.AlreadyBound.default_message)
    if isinstance(exc, errors.InvalidParams):
        problems = exc.extra.get("errors")
        if isinstance(problems, list) and problems:
            details = "; ".join(
                f"{p.get('param') or 'params'}: {p.get('problem')}"
                for p in problems
                if isinstance(p, dict)
            )
            return HttpError(400, f"{exc.message}: {details}")
        return HttpError(400, exc.message)
    if isinstance(exc, errors.NotBound | errors.InviteInvalid | errors.InviteExpired):
        return HttpError(400, exc.message)
    if isinstance(exc, errors.Busy):
        retry = exc.extra.get("retryAfterS")
        seconds = math.ceil(retry) if isinstance(retry, int | float) and retry > 0 else 1
        return HttpError(429, exc.message, headers=(("Retry-After", str(max(1, seconds))),))
    if isinstance(exc, errors.NotReady):
        return HttpError(503, exc.message, headers=RETRY_SOON)
    message = exc.message
    cli_error = exc.extra.get("error")
    if isinstance(cli_error, str) and cli_error and cli_error != message:
        message = f"{message}: {cli_error}"
    error_id = exc.extra.get("errorId")
    if isinstance(error_id, str):
        message = f"{message} (errorId {error_id})"
    if isinstance(exc, errors.CliError | RpcError):
        return HttpError(502, message)  # the daemon, its CLI or the network failed
    return HttpError(500, message)  # PERMISSION_DENIED, LOCKED, FORBIDDEN, NOT_FOUND, ...


# --- routes -------------------------------------------------------------------------------

Handler = Callable[[Upstream, Json], Awaitable[Json]]


@dataclass(frozen=True)
class Route:
    method: str
    handler: Handler


_KIND_NAMES: Final[Mapping[type, str]] = {str: "string", bool: "boolean", int: "integer"}
_ARTICLES: Final[Mapping[type, str]] = {str: "a", bool: "a", int: "an"}


def fields(body: Json, spec: Mapping[str, type], required: tuple[str, ...] = ()) -> Json:
    """The fields of ``spec`` present in ``body`` (null = absent), each of its JSON type.

    Other fields are ignored, as the original routes ignore ``env``, ``instructions``,
    ``metadata`` and the like; ranges and formats are the daemon's to check (INVALID_PARAMS).
    """
    out: Json = {}
    for key, kind in spec.items():
        value = body.get(key)
        if value is None and key not in required:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            if key in required:
                raise HttpError(400, f"{key} ({_KIND_NAMES[kind]}) is required")
            raise HttpError(400, f"{key} must be {_ARTICLES[kind]} {_KIND_NAMES[kind]}")
        out[key] = value
    return out


def status_view(status: Json) -> Json:
    missing = [key for key in STATUS_FIELDS if key not in status]
    if missing:
        raise HttpError(502, f"convosd's status lacks {', '.join(missing)}")
    return {key: status[key] for key in STATUS_FIELDS}


async def create(up: Upstream, body: Json) -> Json:
    params = fields(
        body,
        {
            "name": str,
            "profileName": str,
            "description": str,
            "imageUrl": str,
            "permissions": str,
        },
    )
    if "name" in params:
        params.setdefault("profileName", params["name"])  # as the original route does
    return await up.call("conversation.create", params)


async def join(up: Upstream, body: Json) -> Json:
    params = fields(
        body, {"inviteUrl": str, "profileName": str, "timeoutS": int}, required=("inviteUrl",)
    )
    wait_s = min(max(params.get("timeoutS", 60), 0), 600)
    return await up.call("conversation.join", params, extra_timeout_s=wait_s)


async def send(up: Upstream, body: Json) -> Json:
    params = fields(
        body, {"message": str, "replyTo": str, "idempotencyKey": str}, required=("message",)
    )
    return {"success": True, **await up.call("message.send", params)}


async def rename(up: Upstream, body: Json) -> Json:
    params = fields(body, {"name": str}, required=("name",))
    return {"ok": True, **await up.call("conversation.rename", params)}


async def lock(up: Upstream, body: Json) -> Json:
    params = fields(body, {"unlock": bool})
    return {"ok": True, **await up.call("conversation.lock", params)}


async def explode(up: Upstream, body: Json) -> Json:
    return {"ok": True, **await up.call("conversation.explode", {"confirm": True})}


async def reset(up: Upstream, body: Json) -> Json:
    answer = {"ok": True, "reset": True, **await up.call("daemon.reset", {"confirm": True})}
    with contextlib.suppress(HttpError):  # the reset happened: report it even without status
        answer["status"] = status_view(await up.call("status"))
    return answer


async def status(up: Upstream, body: Json) -> Json:
    return status_view(await up.call("status"))


ROUTES: Final[Mapping[str, Route]] = {
    "/convos/conversation": Route("POST", create),
    "/convos/join": Route("POST", join),
    "/convos/conversation/send": Route("POST", send),
    "/convos/rename": Route("POST", rename),
    "/convos/lock": Route("POST", lock),
    "/convos/explode": Route("POST", explode),
    "/convos/reset": Route("POST", reset),
    "/convos/status": Route("GET", status),
}


# --- HTTP/1.1 -----------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    version: str
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", "
    content_length: int | None
    chunked: bool
    body_consumed: bool

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


def parse_request_line(line: bytes) -> tuple[str, str, str]:
    """``(method, path, version)``; the query string is dropped."""
    try:
        method, target, version = line.decode("ascii").rstrip("\r\n").split(" ")
    except (UnicodeDecodeError, ValueError):
        raise HttpError(400, "Malformed request line", close=True) from None
    if not method.isalpha() or not method.isupper() or not _VERSION.fullmatch(version):
        raise HttpError(400, "Malformed request line", close=True)
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HttpError(505, "HTTP Version Not Supported", close=True)
    if target.startswith(("http://", "https://")):  # absolute-form
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    if not target.startswith("/"):
        raise HttpError(400, "Malformed request target", close=True)
    return method, target.partition("?")[0], version


async def read_head(line: bytes, reader: asyncio.StreamReader) -> Request:
    method, path, version = parse_request_line(line)
    headers: dict[str, str] = {}
    size = len(line)
    while True:
        try:
            raw = await reader.readline()
        except ValueError:  # one line over the reader's limit
            raise HttpError(431, "Request Header Fields Too Large", close=True) from None
        if not raw.endswith(b"\n"):
            raise asyncio.IncompleteReadError(raw, None)  # the client went away
        if raw in (b"\r\n", b"\n"):
            break
        size += len(raw)
        if size > MAX_HEAD_BYTES or len(headers) >= MAX_HEADERS:
            raise HttpError(431, "Request Header Fields Too Large", close=True)
        name, sep, value = raw.decode("latin-1").rstrip("\r\n").partition(":")
        if not sep or not name or name != name.strip() or " " in name or "\t" in name:
            raise HttpError(400, "Malformed header field", close=True)
        name, value = name.lower(), value.strip(" \t")
        if name in headers and not (name == "content-length" and headers[name] == value):
            if name == "content-length":
                raise HttpError(400, "Conflicting Content-Length", close=True)
            value = f"{headers[name]}, {value}"
        headers[name] = value
    length: int | None = None
    chunked = False
    if "transfer-encoding" in headers:
        if "content-length" in headers:
            raise HttpError(400, "Both Transfer-Encoding and Content-Length", close=True)
        if headers["transfer-encoding"].lower() != "chunked":
            raise HttpError(501, "Transfer-Encoding not supported", close=True)
        chunked = True
    elif "content-length" in headers:
        text = headers["content-length"]
        if not (text.isascii() and text.isdigit()):
            raise HttpError(400, "Malformed Content-Length", close=True)
        length = int(text)
    return Request(method, path, version, headers, length, chunked, not chunked and not length)


async def read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        try:
            line = await reader.readline()
        except ValueError:
            raise HttpError(400, "Malformed chunk", close=True) from None
        if not line.endswith(b"\n"):
            raise asyncio.IncompleteReadError(line, None)
        size_text = line.split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise HttpError(400, "Malformed chunk", close=True)
        size = int(size_text, 16)
        if size == 0:
            break
        total += size
        if total > limit:
            raise HttpError(413, "Request body too large", close=True)
        parts.append(await reader.readexactly(size))
        if await reader.readline() not in (b"\r\n", b"\n"):
            raise HttpError(400, "Malformed chunk", close=True)
    for _ in range(MAX_HEADERS):  # trailer fields, ignored
        try:
            trailer = await reader.readline()
        except ValueError:
            raise HttpError(400, "Malformed chunk trailer", close=True) from None
        if not trailer.endswith(b"\n"):
            raise asyncio.IncompleteReadError(trailer, None)
        if trailer in (b"\r\n", b"\n"):
            return b"".join(parts)
    raise HttpError(431, "Request Header Fields Too Large", close=True)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes) -> Json:
    """The body as a JSON object; an empty body is ``{}``."""
    if not raw:
        return {}
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise HttpError(400, "Body is not valid JSON") from None
    if not isinstance(value, dict):
        raise HttpError(400, "Body must be a JSON object")
    return value


def encode_response(status: int, payload: Json, headers: Headers, keep_alive: bool) -> bytes:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Gateway:
    """``async with Gateway(config) as gateway:`` serves until the block ends."""

    def __init__(self, config: GatewayConfig, *, routes: Mapping[str, Route] = ROUTES) -> None:
        self.config = config
        self.routes = routes
        self.upstream = Upstream(
            config.socket,
            connect_timeout_s=config.connect_timeout_s,
            call_timeout_s=config.call_timeout_s,
        )
        self._token = config.token.encode() if config.token else None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle: set[asyncio.Task[Any]] = set()
        self._closing = False

    @property
    def connections(self) -> int:
        """Open client connections (including ones being refused or closed)."""
        return len(self._tasks)

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the gateway is not listening")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> None:
        if self._token is None and not is_loopback(self.config.host):
            log.warning("listening on %s without a bearer token", self.config.host)
        self._server = await asyncio.start_server(
            self._connection, self.config.host, self.config.port, limit=MAX_LINE_BYTES
        )

    async def close(self) -> None:
        """Stop accepting, drop idle connections, give requests in flight the grace period."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task in self._idle:
            task.cancel()
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=self.config.shutdown_grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- one connection ----------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        overloaded = self._closing or len(self._tasks) >= self.config.max_connections
        self._tasks.add(task)
        linger = True
        try:
            if overloaded:
                error = {"error": "Too many connections"}
                writer.write(encode_response(503, error, RETRY_SOON, keep_alive=False))
            else:
                linger = await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            linger = False  # the client went away or stopped reading
        except asyncio.CancelledError:
            # Only close() cancels this task, which asyncio created and nobody awaits
            # (Python 3.11's stream callback would log a cancelled one as an error).
            linger = False
        finally:
            self._idle.discard(task)
            try:
                await self._finish(reader, writer, linger and not self._closing)
            finally:
                self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer requests until the connection should close; True: data may be left unread."""
        task = asyncio.current_task()
        assert task is not None
        first = True
        while not self._closing:
            self._idle.add(task)
            try:
                async with asyncio.timeout(
                    self.config.request_timeout_s if first else self.config.idle_timeout_s
                ):
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n"):  # RFC 9112 2.2: ignore one empty line
                        line = await reader.readline()
            except TimeoutError:
                return False
            except ValueError:
                await self._write(writer, HttpError(414, "URI Too Long"), keep_alive=False)
                return True
            finally:
                self._idle.discard(task)
            if not line.endswith(b"\n"):
                return False  # closed, maybe mid-line
            first = False
            request, keep_alive = await self._exchange(line, reader, writer)
            if not keep_alive:
                return request is None or not request.body_consumed
        return False

    async def _exchange(
        self, line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Request | None, bool]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.config.request_timeout_s
        request: Request | None = None
        answer: Json | HttpError
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    request = await read_head(line, reader)
            except TimeoutError:
                raise HttpError(408, "Request Timeout", close=True) from None
            answer = await self._respond(request, reader, writer, deadline)
        except (ConnectionError, asyncio.IncompleteReadError):
            raise
        except HttpError as exc:
            answer = exc
        except Exception:
            log.exception("gateway error on %s", request.path if request else "a request")
            answer = HttpError(500, "Internal error")
        keep_alive = (
            request is not None
            and request.keep_alive
            and request.body_consumed
            and not (isinstance(answer, HttpError) and answer.close)
            and not self._closing
        )
        head_only = request is not None and request.method == "HEAD"
        code = await self._write(writer, answer, keep_alive=keep_alive, head_only=head_only)
        log.info(
            "%s %s %d %.1fms",
            request.method if request else "-",
            request.path if request else "-",
            code,
            (loop.time() - started) * 1000,
        )
        return request, keep_alive

    async def _respond(
        self,
        request: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        deadline: float,
    ) -> Json:
        if self._token is not None and not self._authorized(request):
            raise HttpError(401, "Unauthorized", headers=(("WWW-Authenticate", "Bearer"),))
        route = self.routes.get(request.path)
        if route is None:
            raise HttpError(404, "Not Found")
        if request.method != route.method:
            raise HttpError(405, "Method Not Allowed", headers=(("Allow", route.method),))
        body: Json = {}
        if route.method == "POST":
            body = parse_json(await self._read_body(request, reader, writer, deadline))
        return await route.handler(self.upstream, body)

    def _authorized(self, request: Request) -> bool:
        assert self._token is not None
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip(" ").encode("latin-1"), self._token)

    async def _read_body(
        self,
        request: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        deadline: float,
    ) -> bytes:
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise HttpError(413, "Request body too large", close=True)
        if request.body_consumed:
            return b""
        if request.version == "HTTP/1.1" and request.headers.get("expect", "").lower() == (
            "100-continue"
        ):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            async with asyncio.timeout_at(deadline):
                if request.chunked:
                    body = await read_chunked(reader, limit)
                else:
                    assert request.content_length is not None
                    body = await reader.readexactly(request.content_length)
        except TimeoutError:
            raise HttpError(408, "Request Timeout", close=True) from None
        request.body_consumed = True
        return body

    async def _write(
        self,
        writer: asyncio.StreamWriter,
        answer: Json | HttpError,
        *,
        keep_alive: bool,
        head_only: bool = False,
    ) -> int:
        if isinstance(answer, HttpError):
            code, payload, headers = answer.status, {"error": answer.message}, answer.headers
        else:
            code, payload, headers = 200, answer, ()
        data = encode_response(code, payload, headers, keep_alive)
        if head_only:  # a HEAD answer has the headers of the full answer and no body
            data = data[: data.index(b"\r\n\r\n") + 4]
        writer.write(data)
        async with asyncio.timeout(self.config.request_timeout_s):
            await writer.drain()
        return code

    async def _finish(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, linger: bool
    ) -> None:
        """Close; with ``linger``, first half-close and drain what the client still sends,
        so that the kernel does not answer it with a reset that destroys our response."""
        with contextlib.suppress(Exception):
            if linger and writer.can_write_eof():
                writer.write_eof()
                async with asyncio.timeout(LINGER_S):
                    while await reader.read(64 * 1024):
                        pass
        writer.close()
        try:
            async with asyncio.timeout(LINGER_S):
                await writer.wait_closed()
        except TimeoutError:
            writer.transport.abort()
        except OSError:
            pass  # the peer reset the connection: nothing left to do
