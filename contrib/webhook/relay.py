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
import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contrib.webhook.poster import MAX_ANSWER_BYTES, Poster
from contrib.webhook.signing import ConfigProblem, Json, request_headers
from convosd import errors
from convosd.client import ConvosdClient, EventStream

log = logging.getLogger("contrib.webhook")


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
