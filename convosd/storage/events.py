"""The ``events`` table: the journal's rows (the journal itself is :mod:`.journal`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

#: ``(seq, type, at, body)``: ``at`` in epoch seconds, ``body`` the event as JSON text
Row = tuple[int, str, float, str]


class EventRows:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def max_seq(self) -> int | None:
        value = self._db.execute("SELECT MAX(seq) FROM events").fetchone()[0]
        return None if value is None else int(value)

    def min_seq(self) -> int | None:
        value = self._db.execute("SELECT MIN(seq) FROM events").fetchone()[0]
        return None if value is None else int(value)

    def insert(self, rows: Sequence[Row]) -> None:
        self._db.executemany("INSERT INTO events (seq, type, at, body) VALUES (?, ?, ?, ?)", rows)

    def trim_some(self, up_to_seq: int, older_than: float, limit: int) -> list[int]:
        """Remove at most ``limit`` of the events with ``seq <= up_to_seq`` or journaled
        before ``older_than`` (by count first, then by age; each through its index). Returns
        the seqs removed (the search index drops the same ones in the same transaction);
        fewer than ``limit``: none is left."""
        seqs = [
            int(row[0])
            for row in self._db.execute(
                "SELECT seq FROM events WHERE seq <= ? ORDER BY seq LIMIT ?", (up_to_seq, limit)
            )
        ]
        if len(seqs) < limit:
            seqs += [
                int(row[0])
                for row in self._db.execute(
                    "SELECT seq FROM events WHERE at < ? AND seq > ? ORDER BY at LIMIT ?",
                    (older_than, up_to_seq, limit - len(seqs)),
                )
            ]
        self._db.executemany("DELETE FROM events WHERE seq = ?", ((seq,) for seq in seqs))
        return seqs

    def clear(self) -> None:
        self._db.execute("DELETE FROM events")

    def sent_message_ids(self, since: float) -> set[str]:
        """The ``messageId`` of every ``message_sent`` journaled at or after ``since``."""
        rows = self._db.execute(
            "SELECT json_extract(body, '$.messageId') FROM events "
            "WHERE type = 'message_sent' AND at >= ?",
            (since,),
        )
        return {str(row[0]) for row in rows if row[0] is not None}

    def message_body(self, message_id: str) -> str | None:
        """The body of the ``message`` event of ``message_id`` (None when not journaled, or
        trimmed), through the (type, messageId) index."""
        row = self._db.execute(
            "SELECT body FROM events WHERE type = 'message' "
            "AND json_extract(body, '$.messageId') = ? ORDER BY seq DESC LIMIT 1",
            (message_id,),
        ).fetchone()
        return None if row is None else str(row[0])

    def journaled_messages(self, message_ids: Sequence[str]) -> set[str]:
        """Those of ``message_ids`` that still have a ``message`` event."""
        if not message_ids:
            return set()
        marks = ",".join("?" * len(message_ids))
        rows = self._db.execute(
            "SELECT json_extract(body, '$.messageId') FROM events WHERE type = 'message' "
            f"AND json_extract(body, '$.messageId') IN ({marks})",
            tuple(message_ids),
        )
        return {str(row[0]) for row in rows}

    def message_seq(self, message_id: str) -> int | None:
        """The seq of the ``message`` or ``message_sent`` event of ``message_id`` (through
        the (type, messageId) index); None when not journaled, or trimmed."""
        row = self._db.execute(
            "SELECT MAX(seq) FROM events WHERE type IN ('message', 'message_sent') "
            "AND json_extract(body, '$.messageId') = ?",
            (message_id,),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def read_before(
        self, before: int, limit: int, types: frozenset[str] | None = None
    ) -> list[tuple[int, str, str]]:
        """``(seq, type, body)`` of the last ``limit`` events with ``seq < before``, in
        order, optionally of ``types``."""
        where, args = "seq < ?", list[object]([before])
        if types:
            where += f" AND type IN ({','.join('?' * len(types))})"
            args += sorted(types)
        rows: list[tuple[int, str, str]] = self._db.execute(
            f"SELECT seq, type, body FROM events WHERE {where} ORDER BY seq DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        rows.reverse()
        return rows

    def read(
        self, after: int, limit: int, types: frozenset[str] | None = None
    ) -> list[tuple[int, str, str]]:
        """``(seq, type, body)`` of events with ``seq > after`` in order, at most ``limit``,
        optionally of ``types``."""
        if types:
            marks = ",".join("?" * len(types))
            cursor = self._db.execute(
                f"SELECT seq, type, body FROM events WHERE seq > ? AND type IN ({marks}) "
                "ORDER BY seq LIMIT ?",
                (after, *sorted(types), limit),
            )
        else:
            cursor = self._db.execute(
                "SELECT seq, type, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            )
        rows: list[tuple[int, str, str]] = cursor.fetchall()  # the columns' types already
        return rows
