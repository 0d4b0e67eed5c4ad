"""The seen-id table: every inbound message id evaluated once, with its fate."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

#: ids per ``IN (...)`` query (SQLite's default limit on parameters is 999)
CHUNK = 500


class SeenIds:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def contains(self, message_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM seen WHERE message_id = ?", (message_id,)).fetchone()
        return row is not None

    def unseen(self, message_ids: Sequence[str]) -> set[str]:
        """Which of ``message_ids`` were never recorded."""
        found: set[str] = set()
        for start in range(0, len(message_ids), CHUNK):
            chunk = list(message_ids[start : start + CHUNK])
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0]
                for row in self._db.execute(
                    f"SELECT message_id FROM seen WHERE message_id IN ({marks})", chunk
                )
            )
        return set(message_ids) - found

    def mark(self, items: Sequence[tuple[str, str]], at: float) -> None:
        """Record ``(message_id, fate)`` pairs; call inside the batch's transaction."""
        self._db.executemany(
            "INSERT OR IGNORE INTO seen (message_id, fate, at) VALUES (?, ?, ?)",
            [(message_id, fate, at) for message_id, fate in items],
        )

    def trim(self, older_than: float) -> int:
        """Forget ids older than any backfill window can re-read (they cannot come back)."""
        return int(self._db.execute("DELETE FROM seen WHERE at < ?", (older_than,)).rowcount)

    def clear(self) -> None:
        self._db.execute("DELETE FROM seen")
