"""The gateway's HTTP/1.1: a request's head and body read within limits, JSON parsed
strictly, a response encoded; :class:`HttpError` is every error answer."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

Json = dict[str, Any]
Headers = tuple[tuple[str, str], ...]
MAX_LINE_BYTES: Final = 8 * 1024  # the request line, one header line, one chunk-size line
MAX_HEAD_BYTES: Final = 32 * 1024
MAX_HEADERS: Final = 100
_VERSION = re.compile(r"HTTP/\d(\.\d)?")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")


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
