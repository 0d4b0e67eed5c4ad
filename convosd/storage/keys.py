"""Idempotency keys (state: ``in_flight`` | ``done``; the rule: convosd.sending.idempotency)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from convosd.storage.seen import CHUNK


class IdempotencyKeys:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def get(self, key: str) -> tuple[str, float, str] | None:
        """``(state, intent_at, body)`` of ``key``, or None."""
        row = self._db.execute(
            "SELECT state, intent_at, body FROM idempotency WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else (str(row[0]), float(row[1]), str(row[2]))

    def intent(self, key: str, at: float, body: str) -> bool:
        """Record ``key`` as in flight from ``at`` (before anything of its send runs).
        False, and nothing written, when ``key`` has a row already: a row in flight belongs
        to a send that may be running and is never replaced (nor is a result); the caller
        forgets an expired key first."""
        cursor = self._db.execute(
            "INSERT INTO idempotency (key, state, intent_at, body, message_id) "
            "VALUES (?, 'in_flight', ?, ?, NULL) ON CONFLICT (key) DO NOTHING",
            (key, at, body),
        )
        return cursor.rowcount == 1

    def restate(self, key: str, body: str) -> None:
        """Replace what the in-flight ``key`` sends (an attachment's, once its copy is made
        and its size known), keeping its intent time; a settled key is left alone."""
        self._db.execute(
            "UPDATE idempotency SET body = ? WHERE key = ? AND state = 'in_flight'", (body, key)
        )

    def settle(self, key: str, message_id: str, body: str) -> None:
        """Mark ``key`` done with ``message_id``. Raises sqlite3.IntegrityError when the
        message already settled another key (a message settles at most one)."""
        self._db.execute(
            "UPDATE idempotency SET state = 'done', body = ?, message_id = ? WHERE key = ?",
            (body, message_id, key),
        )

    def forget(self, key: str) -> None:
        self._db.execute("DELETE FROM idempotency WHERE key = ?", (key,))

    def in_flight(self) -> list[tuple[str, float, str]]:
        """``(key, intent_at, body)`` of every key in flight, oldest intent first."""
        return [
            (str(k), float(a), str(b))
            for k, a, b in self._db.execute(
                "SELECT key, intent_at, body FROM idempotency WHERE state = 'in_flight' "
                "ORDER BY intent_at"
            )
        ]

    def settled_by(self, message_ids: Sequence[str]) -> set[str]:
        """Which of ``message_ids`` already settled a key."""
        found: set[str] = set()
        for start in range(0, len(message_ids), CHUNK):
            chunk = list(message_ids[start : start + CHUNK])
            marks = ",".join("?" * len(chunk))
            found.update(
                str(row[0])
                for row in self._db.execute(
                    f"SELECT message_id FROM idempotency WHERE message_id IN ({marks})", chunk
                )
            )
        return found

    def expire(self, older_than: float) -> int:
        """Forget keys whose intent is older than ``older_than``."""
        return int(
            self._db.execute("DELETE FROM idempotency WHERE intent_at < ?", (older_than,)).rowcount
        )

    def clear(self) -> None:
        self._db.execute("DELETE FROM idempotency")
