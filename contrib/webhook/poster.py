"""The relay's HTTP/1.1 client: one kept-alive connection to the receiver, a POST and its
answer read within limits, and what the answer means for the delivery (:class:`Outcome`)."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ssl
import time
import urllib.parse
from dataclasses import dataclass

from contrib.webhook.signing import check_url


@dataclass
class Outcome:
    ok: bool
    retry: bool  # worth another attempt
    error: str = ""
    retry_after_s: float | None = None
    status: int | None = None


def parse_retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - now)
    return None


MAX_ANSWER_BYTES = 64 * 1024
"""The most bytes read of one answer (status line, headers and body together). A longer
answer is a failed attempt (``AnswerTooLarge``), retried like a 5xx: a receiver answers with
a status and a few bytes, and an endless body must not fill the relay's memory."""


class AnswerTooLarge(Exception):
    """The receiver's answer went past MAX_ANSWER_BYTES."""


class BadAnswer(Exception):
    """Not an HTTP/1.x answer."""


@dataclass
class _Answer:
    status: int
    headers: dict[str, str]
    keep_alive: bool


def _header_value(value: str) -> str:
    """A header value on one line: a CR, LF or NUL would split the request."""
    return "".join(ch for ch in value if ch not in "\r\n\0")


class Poster:
    """POSTs over one kept-alive connection, each attempt under one deadline.

    ``timeout_s`` bounds the whole attempt: connect, send the request and read the answer
    (a receiver that trickles a byte a second never trips a per-read timeout, so there is
    none). At most ``max_answer_bytes`` of the answer are read. Both end the attempt as a
    failure worth retrying, and close the connection.
    """

    def __init__(
        self, url: str, timeout_s: float, max_answer_bytes: int = MAX_ANSWER_BYTES
    ) -> None:
        self.parts = check_url(url)
        self.timeout_s = timeout_s
        self.max_answer_bytes = max_answer_bytes
        self.path = urllib.parse.urlunsplit(("", "", self.parts.path or "/", self.parts.query, ""))
        host = self.parts.hostname or ""
        self.host = host
        self.port = self.parts.port or (443 if self.parts.scheme == "https" else 80)
        shown = f"[{host}]" if ":" in host else host
        self.host_header = shown if self.parts.port is None else f"{shown}:{self.parts.port}"
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._conn is None:
            context = ssl.create_default_context() if self.parts.scheme == "https" else None
            self._conn = await asyncio.open_connection(
                self.host,
                self.port,
                ssl=context,
                server_hostname=self.host if context is not None else None,
                # the StreamReader's buffer bound: a head without its blank line past it
                # raises instead of growing
                limit=self.max_answer_bytes,
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            # abort: no waiting on a peer that does not read (or a TLS close it never acks)
            self._conn[1].transport.abort()
            self._conn = None

    async def post(self, body: bytes, headers: dict[str, str]) -> Outcome:
        try:
            async with asyncio.timeout(self.timeout_s):
                answer = await self._exchange(body, headers)
        except TimeoutError:
            self.close()
            return Outcome(
                False, True, f"TimeoutError: no complete answer within {self.timeout_s:g}s"
            )
        except AnswerTooLarge as exc:
            self.close()
            return Outcome(False, True, f"AnswerTooLarge: {exc}")
        except BadAnswer as exc:
            self.close()
            return Outcome(False, True, f"BadAnswer: {exc}")
        except (OSError, EOFError, ssl.SSLError) as exc:
            self.close()
            return Outcome(False, True, f"{type(exc).__name__}: {exc}")
        except BaseException:
            self.close()  # cancelled mid-answer: the connection is in an unknown state
            raise
        if not answer.keep_alive:
            self.close()
        status = answer.status
        if 200 <= status < 300:
            return Outcome(True, False, status=status)
        retry = status in (408, 429) or status >= 500
        return Outcome(
            False,
            retry,
            f"HTTP {status}",
            parse_retry_after(answer.headers.get("retry-after"), time.time()) if retry else None,
            status,
        )

    async def _exchange(self, body: bytes, headers: dict[str, str]) -> _Answer:
        reader, writer = await self._connection()
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.host_header}",
            f"Content-Length: {len(body)}",
            "Accept-Encoding: identity",
            *(f"{name}: {_header_value(value)}" for name, value in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body)
        await writer.drain()
        budget = self.max_answer_bytes
        while True:
            answer, budget = await self._read_head(reader, budget)
            if answer.status >= 200:
                break  # a 1xx (100 Continue, 103 Early Hints) precedes the real answer
        await self._read_body(reader, answer, budget)
        return answer

    async def _read_head(self, reader: asyncio.StreamReader, budget: int) -> tuple[_Answer, int]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as exc:
            raise AnswerTooLarge(f"headers past {self.max_answer_bytes} bytes") from exc
        except asyncio.IncompleteReadError as exc:
            raise EOFError("the receiver closed the connection before answering") from exc
        budget -= len(head)
        if budget < 0:
            raise AnswerTooLarge(f"more than {self.max_answer_bytes} bytes")
        status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit() or len(code) != 3:
            raise BadAnswer(f"status line {status_line[:80]!r}")
        fields: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise BadAnswer(f"header line {line[:80]!r}")
            fields[name.strip().lower()] = value.strip()
        connection = fields.get("connection", "").lower()
        keep_alive = version == "HTTP/1.1" and "close" not in connection
        return _Answer(int(code), fields, keep_alive), budget

    async def _read_body(self, reader: asyncio.StreamReader, answer: _Answer, budget: int) -> None:
        """Read (and drop) the body, at most ``budget`` bytes of it."""
        if answer.status in (204, 304):
            return
        too_large = AnswerTooLarge(f"more than {self.max_answer_bytes} bytes")
        try:
            if "chunked" in answer.headers.get("transfer-encoding", "").lower():
                while True:
                    line = await reader.readuntil(b"\r\n")
                    budget -= len(line)
                    size_text = line.split(b";", 1)[0].strip()
                    try:
                        size = int(size_text, 16)
                    except ValueError as exc:
                        raise BadAnswer(f"chunk size {size_text[:20]!r}") from exc
                    if size == 0:
                        break
                    budget -= size + 2
                    if budget < 0:
                        raise too_large
                    await reader.readexactly(size + 2)
                while (line := await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    budget -= len(line)
                    if budget < 0:
                        raise too_large
                return
            length_text = answer.headers.get("content-length")
            if length_text is not None:
                if not length_text.isdigit():
                    raise BadAnswer(f"Content-Length {length_text[:20]!r}")
                if int(length_text) > budget:
                    raise too_large
                await reader.readexactly(int(length_text))
                return
            # no length: the body ends with the connection
            answer.keep_alive = False
            while chunk := await reader.read(budget + 1):
                budget -= len(chunk)
                if budget < 0:
                    raise too_large
        except asyncio.LimitOverrunError as exc:
            raise too_large from exc
        except asyncio.IncompleteReadError as exc:
            raise EOFError("the receiver closed the connection inside its answer") from exc
