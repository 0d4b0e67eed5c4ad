"""A signed webhook relay: every journal event of convosd, POSTed in order to one URL.

At-least-once, in order, across relay and daemon restarts: the relay follows the journal
with :class:`convosd.client.EventStream` from a cursor it keeps in a state file, and moves
that cursor (written atomically: temp file, fsync, rename) only after the receiver
acknowledged the event with a 2xx, or after the event went to the dead-letter file. An event
in flight when the relay dies is delivered again after the restart, with the same
``webhook-id``.

Each request follows Standard Webhooks (https://www.standardwebhooks.com/)::

    POST <url>
    Content-Type: application/json
    webhook-id: <journalId>:<seq>
    webhook-timestamp: <unix seconds>
    webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")> [v1,<...> ...]

    <the event, as JSON, with "journalId" added>

One ``v1,`` signature per secret (several during a rotation), space-separated. A secret is
``whsec_<base64>``; its key is the decoded bytes. With ``legacy_signature`` (deprecated, for
one release) the request also carries the old headers: ``Idempotency-Key`` (the same value
as ``webhook-id``), ``X-Convosd-Event-Type``, ``X-Convosd-Timestamp`` and
``X-Convosd-Signature: sha256=<hex HMAC-SHA256(key, "<timestamp>.<body>")>``, keyed with the
first secret.

The timestamp and signatures are fresh on every attempt. One attempt (connect, send, read the
answer) has one deadline, ``timeout_s``, and at most ``MAX_ANSWER_BYTES`` of its answer are
read. Network errors, an attempt past its deadline, an answer past that size, 408, 429
and 5xx are retried with exponential backoff and jitter (a ``Retry-After`` is honoured); any
other answer, or retrying for longer than ``give_up_after_s``, sends the event to the
dead-letter file (JSON lines) and the relay goes on with the next one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import email.utils
import hashlib
import hmac
import json
import logging
import os
import random
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convosd import errors
from convosd.client import ConvosdClient, EventStream

log = logging.getLogger("contrib.webhook")

Json = dict[str, Any]
USER_AGENT = "convosd-webhook/0.1"


class ConfigProblem(Exception):
    """A bad URL, secret or option: the relay does not start (exit 2)."""


def check_url(url: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigProblem(f"bad webhook URL {url!r}: expected http(s)://host[:port]/path")
    if parts.username or parts.password:
        raise ConfigProblem("bad webhook URL: credentials in the URL are not supported")
    try:
        parts.port  # noqa: B018 - raises on a port out of range or not a number
    except ValueError as exc:
        raise ConfigProblem(f"bad webhook URL {url!r}: {exc}") from exc
    return parts


SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES = 24
"""A ``whsec_`` secret's key is at least this long (Standard Webhooks: 24 to 64 bytes)."""
MIN_LEGACY_SECRET_CHARS = 16
SECRET_ENV = "CONVOSD_WEBHOOK_SECRET"
NEW_SECRET_HINT = (
    "make one with: python3 -c 'import base64, os; "
    'print("whsec_" + base64.b64encode(os.urandom(32)).decode())\''
)


def secret_key(text: str, where: str, *, legacy: bool) -> bytes:
    """The HMAC key of one secret. Error texts name where it came from, never its content."""
    if text.startswith(SECRET_PREFIX):
        encoded = text[len(SECRET_PREFIX) :]
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigProblem(
                f"the {where} is not valid base64 after {SECRET_PREFIX!r}: {NEW_SECRET_HINT}"
            ) from None
        if len(key) < MIN_KEY_BYTES:
            raise ConfigProblem(
                f"the {where} is too short: its key is {len(key)} bytes, use at least "
                f"{MIN_KEY_BYTES}; {NEW_SECRET_HINT}"
            )
        return key
    if not legacy:
        raise ConfigProblem(
            f"the {where} is not in the Standard Webhooks form whsec_<base64>: {NEW_SECRET_HINT} "
            "(or keep a plain old secret for this release with --legacy-signature, deprecated)"
        )
    if len(text) < MIN_LEGACY_SECRET_CHARS:
        raise ConfigProblem(
            f"the {where} is too short: use at least {MIN_LEGACY_SECRET_CHARS} characters"
        )
    return text.encode()


def load_secrets(
    secret_file: Path | None,
    environ: Mapping[str, str],
    *,
    legacy: bool = False,
) -> list[bytes]:
    """The signing keys, from the file or ``$CONVOSD_WEBHOOK_SECRET``, in the order given.

    One or more secrets separated by whitespace (one a line in a file): each signs every
    request. A secret is ``whsec_<base64>`` (the key is the decoded part); with ``legacy``
    (``--legacy-signature``) a plain secret of the old scheme, at least 16 characters, is
    accepted too (the key is its text). Nothing in an error names a secret's content.
    """
    if secret_file is not None:
        try:
            text = secret_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigProblem(
                f"cannot read the secret file {secret_file}: {exc.strerror}"
            ) from exc
        except UnicodeDecodeError:
            raise ConfigProblem(f"the secret file {secret_file} is not UTF-8 text") from None
        where = str(secret_file)
    else:
        text = environ.get(SECRET_ENV, "")
        where = f"${SECRET_ENV}"
    tokens = text.split()
    if not tokens:
        if secret_file is not None:
            raise ConfigProblem(f"no signing secret in {where}")
        raise ConfigProblem(f"no signing secret: give --secret-file FILE or set {SECRET_ENV}")
    return [
        secret_key(
            token,
            f"secret in {where}" if len(tokens) == 1 else f"secret #{n} in {where}",
            legacy=legacy,
        )
        for n, token in enumerate(tokens, 1)
    ]


def sign_v1(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    """One Standard Webhooks signature: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def sign_legacy(key: bytes, timestamp: str, body: bytes) -> str:
    """The deprecated ``X-Convosd-Signature``: ``sha256=`` + hex HMAC of ``timestamp.body``."""
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def request_headers(
    keys: list[bytes],
    msg_id: str,
    timestamp: int,
    body: bytes,
    *,
    event_type: str,
    legacy: bool = False,
) -> dict[str, str]:
    """The headers of one attempt: Standard Webhooks, one signature per key; the old ones too
    with ``legacy``."""
    ts = str(timestamp)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": " ".join(sign_v1(key, msg_id, ts, body) for key in keys),
    }
    if legacy:
        headers.update(
            {
                "Idempotency-Key": msg_id,
                "X-Convosd-Event-Type": event_type,
                "X-Convosd-Timestamp": ts,
                "X-Convosd-Signature": sign_legacy(keys[0], ts, body),
            }
        )
    return headers


# --- the cursor ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    journal_id: str | None
    after: int


def load_cursor(path: Path) -> Cursor | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigProblem(f"state file {path} is unreadable ({exc}): fix or remove it") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("after"), int) or raw["after"] < 0:
        raise ConfigProblem(f"state file {path} holds no valid cursor: fix or remove it")
    journal_id = raw.get("journalId")
    return Cursor(journal_id if isinstance(journal_id, str) else None, raw["after"])


def write_atomically(path: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename over, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_cursor(path: Path, cursor: Cursor) -> None:
    write_atomically(
        path, json.dumps({"journalId": cursor.journal_id, "after": cursor.after}).encode()
    )


# --- HTTP ------------------------------------------------------------------------------------


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


# --- the relay -------------------------------------------------------------------------------


@dataclass
class RelayConfig:
    socket: Path
    url: str
    # the signing keys, in order (never in a repr: configs and stats get logged)
    secrets: list[bytes] = field(repr=False)
    state_file: Path
    dead_letter: Path | None = None  # default: <state_file>.dead.jsonl
    types: list[str] | None = None
    start: str = "latest"  # without a state file: "latest" or "beginning"
    timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0
    give_up_after_s: float = 3600.0
    max_answer_bytes: int = MAX_ANSWER_BYTES
    # deprecated, for one release: the old Idempotency-Key and X-Convosd-* headers too
    legacy_signature: bool = False

    def __post_init__(self) -> None:
        if not self.secrets:
            raise ConfigProblem("no signing secret")

    @property
    def dead_letter_path(self) -> Path:
        return self.dead_letter or self.state_file.with_name(self.state_file.name + ".dead.jsonl")


@dataclass
class Stats:
    delivered: int = 0
    attempts: int = 0
    retries: int = 0
    dead_lettered: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)


class Relay:
    def __init__(
        self,
        config: RelayConfig,
        *,
        sleep: Callable[[float], Any] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.poster = Poster(config.url, config.timeout_s, config.max_answer_bytes)
        self.stats = Stats()
        self.cursor: Cursor | None = None
        self.ready = asyncio.Event()
        self._sleep = sleep
        self._clock = clock

    async def _initial_cursor(self) -> Cursor:
        saved = load_cursor(self.config.state_file)
        if saved is not None:
            return saved
        async with await ConvosdClient.connect(self.config.socket) as client:
            journal = (await client.status()).journal
        after = journal.last_seq if self.config.start == "latest" else max(0, journal.first_seq - 1)
        cursor = Cursor(journal.journal_id, after)
        # Written at once: a restart before the first delivery resumes here, not at "now".
        save_cursor(self.config.state_file, cursor)
        return cursor

    async def run(self) -> None:
        self.config.state_file.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                self.cursor = await self._initial_cursor()
                break
            except (OSError, ConnectionError, errors.NotReady) as exc:
                log.warning("daemon not reachable at %s (%s); retrying", self.config.socket, exc)
                await self._sleep(1.0)
        log.info("relaying from seq %d of journal %s", self.cursor.after, self.cursor.journal_id)
        self.ready.set()
        try:
            while True:
                stream = EventStream(
                    self.config.socket,
                    after=self.cursor.after,
                    types=self.config.types,
                    journal_id=self.cursor.journal_id,
                )
                try:
                    async for event in stream:
                        journal_id = stream.journal_id or ""
                        await self.deliver(journal_id, event)
                        self.cursor = Cursor(journal_id, int(event["seq"]))
                        save_cursor(self.config.state_file, self.cursor)
                except errors.EventsExpired as exc:
                    log.error(
                        "events after seq %d were trimmed from the journal before they were "
                        "relayed; going on from seq %d",
                        self.cursor.after,
                        exc.first_seq - 1,
                    )
                    self.cursor = Cursor(self.cursor.journal_id, exc.first_seq - 1)
                    save_cursor(self.config.state_file, self.cursor)
        finally:
            self.poster.close()

    def _backoff(self, attempt: int) -> float:
        cap = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2.0**attempt)
        return cap / 2 + random.uniform(0, cap / 2)  # "equal jitter"

    def payload(self, journal_id: str, event: Json) -> Json:
        """What is POSTed for ``event``: the event with ``journalId`` added."""
        return {**event, "journalId": journal_id}

    def headers(self, msg_id: str, timestamp: int, body: bytes, event_type: str) -> dict[str, str]:
        """The headers of one attempt (``bench.webhook_signing`` puts the old scheme here)."""
        return request_headers(
            self.config.secrets,
            msg_id,
            timestamp,
            body,
            event_type=event_type,
            legacy=self.config.legacy_signature,
        )

    async def deliver(self, journal_id: str, event: Json) -> None:
        key = f"{journal_id}:{event['seq']}"
        payload = self.payload(journal_id, event)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.give_up_after_s
        first_at = time.time()
        attempt = 0
        while True:
            headers = self.headers(key, int(self._clock()), body, str(event.get("type")))
            self.stats.attempts += 1
            outcome = await self.poster.post(body, headers)
            label = "ok" if outcome.ok else outcome.error.split(":")[0]
            self.stats.by_outcome[label] = self.stats.by_outcome.get(label, 0) + 1
            if outcome.ok:
                self.stats.delivered += 1
                return
            wait = (
                outcome.retry_after_s
                if outcome.retry_after_s is not None
                else self._backoff(attempt)
            )
            if not outcome.retry or loop.time() + wait > deadline:
                self._dead_letter(key, journal_id, payload, attempt + 1, outcome.error, first_at)
                return
            log.info("delivery of %s failed (%s); retrying in %.2fs", key, outcome.error, wait)
            self.stats.retries += 1
            attempt += 1
            await self._sleep(wait)

    def _dead_letter(
        self, key: str, journal_id: str, event: Json, attempts: int, error: str, first_at: float
    ) -> None:
        record = {
            "webhookId": key,
            "idempotencyKey": key,  # the old name of webhookId, kept for one release
            "journalId": journal_id,
            "seq": event["seq"],
            "type": event.get("type"),
            "attempts": attempts,
            "lastError": error,
            "firstAttemptAt": first_at,
            "gaveUpAt": time.time(),
            "event": event,
        }
        path = self.config.dead_letter_path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, json.dumps(record, ensure_ascii=False).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        self.stats.dead_lettered += 1
        log.error("gave up on %s after %d attempts (%s): written to %s", key, attempts, error, path)
