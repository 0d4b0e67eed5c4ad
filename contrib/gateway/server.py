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

Each request opens its own connection to the daemon (:class:`~contrib.gateway.routes.Upstream`
says why).

The HTTP side is small on purpose: HTTP/1.0 and 1.1, keep-alive and pipelining (answered
in order), ``Content-Length`` or chunked bodies up to ``max_body_bytes`` (413 past it),
``Expect: 100-continue``, a deadline for reading each request (408), an idle timeout between
requests, a cap on open connections (503). No TLS: listen on loopback and set a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from contrib.gateway.http import (
    MAX_LINE_BYTES,
    HttpError,
    Json,
    Request,
    encode_response,
    parse_json,
    read_chunked,
    read_head,
)
from contrib.gateway.routes import RETRY_SOON, ROUTES, Route, Upstream
from contrib.loopback import is_loopback

log = logging.getLogger("contrib.gateway")


MAX_BODY_BYTES: Final = 1024 * 1024
LINGER_S: Final = 1.0


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
