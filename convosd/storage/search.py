"""The ``search`` table: an FTS5 index of the journal's message text (events.search).

Its rows are written in the journal's transactions (:meth:`add` from ``Journal.append``,
:meth:`remove` from retention's trim, :meth:`clear` from a reset), so the index never holds
an event the journal no longer has, nor misses one it has. What is text is the view
``search_source`` (convosd.storage.schema). The MATCH expression comes from
:func:`convosd.search.match_expression`, which quotes every term of the user's query.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

#: marks around a matched term in a snippet
MARK_OPEN, MARK_CLOSE = "«", "»"
#: tokens in a snippet
SNIPPET_TOKENS = 16


class SearchQueryError(ValueError):
    """FTS5 refused the MATCH expression (cannot happen for a quoted one; kept as a guard)."""


@dataclass(frozen=True, slots=True)
class Hit:
    seq: int
    type: str
    body: str
    snippet: str
    #: FTS5's bm25: lower is a better match
    bm25: float


class SearchIndex:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def add(self, first_seq: int, last_seq: int) -> None:
        """Index the text of the events ``first_seq..last_seq`` (just inserted)."""
        self._db.execute(
            "INSERT INTO search (rowid, text) SELECT seq, text FROM search_source "
            "WHERE seq BETWEEN ? AND ? AND text IS NOT NULL",
            (first_seq, last_seq),
        )

    def remove(self, seqs: Sequence[int]) -> None:
        """Drop the rows of ``seqs`` (events being trimmed); a seq not indexed is ignored."""
        self._db.executemany("DELETE FROM search WHERE rowid = ?", ((seq,) for seq in seqs))

    def clear(self) -> None:
        self._db.execute("DELETE FROM search")

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM search").fetchone()[0])

    def query(
        self,
        match: str,
        *,
        after: int,
        before: int | None,
        types: frozenset[str] | None,
        sender: str | None,
        limit: int,
    ) -> list[Hit]:
        """The best ``limit`` matches of ``match`` with ``after < seq < before``, best first.

        Raises SearchQueryError when FTS5 refuses ``match``."""
        sql = [
            "SELECT e.seq, e.type, e.body, snippet(search, 0, ?, ?, '…', ?), bm25(search) "
            "FROM search JOIN events AS e ON e.seq = search.rowid "
            "WHERE search MATCH ? AND search.rowid > ?"
        ]
        args: list[object] = [MARK_OPEN, MARK_CLOSE, SNIPPET_TOKENS, match, after]
        if before is not None:
            sql.append("AND search.rowid < ?")
            args.append(before)
        if types:
            sql.append(f"AND e.type IN ({','.join('?' * len(types))})")
            args.extend(sorted(types))
        if sender is not None:
            sql.append("AND e.type = 'message' AND json_extract(e.body, '$.senderInboxId') = ?")
            args.append(sender)
        sql.append("ORDER BY bm25(search), e.seq DESC LIMIT ?")
        args.append(limit)
        try:
            rows = self._db.execute(" ".join(sql), args).fetchall()
        except sqlite3.OperationalError as exc:
            if "fts5" in str(exc) or "syntax" in str(exc):
                raise SearchQueryError(str(exc)) from None
            raise
        return [Hit(int(r[0]), str(r[1]), str(r[2]), str(r[3] or ""), float(r[4])) for r in rows]
