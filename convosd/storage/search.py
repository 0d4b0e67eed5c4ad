"""The ``search`` table: an FTS5 index of the journal's message text (events.search).

Its rows are written in the journal's transactions (:meth:`add` from ``Journal.append``,
:meth:`remove` from retention's trim, :meth:`clear` from a reset), so the index never holds
an event the journal no longer has, nor misses one it has. What is text is the view
``search_source`` (convosd.storage.schema). The query comes from
:func:`convosd.search.parse`, which quotes every term of the user's query.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from convosd.search import Query, average, score, tokens

#: marks around a matched term in a snippet
MARK_OPEN, MARK_CLOSE = "«", "»"
#: tokens in a snippet
SNIPPET_TOKENS = 16
#: the newest matches a search ranks (its time is bounded by this, not by how many
#: messages hold a word)
CANDIDATES = 500


class SearchQueryError(ValueError):
    """FTS5 refused the MATCH expression (cannot happen for a quoted one; kept as a guard)."""


@dataclass(frozen=True, slots=True)
class Hit:
    seq: int
    type: str
    body: str
    snippet: str
    #: BM25 (:func:`convosd.search.score`): higher is a better match
    score: float


class SearchIndex:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def add(self, first_seq: int, last_seq: int) -> None:
        """Index the text of the events ``first_seq..last_seq`` (just inserted)."""
        self._db.execute(
            "INSERT INTO search (rowid, text, sender, kind) SELECT seq, text, sender, kind "
            "FROM search_source WHERE seq BETWEEN ? AND ? AND text IS NOT NULL",
            (first_seq, last_seq),
        )

    def remove(self, seqs: Sequence[int]) -> None:
        """Drop the rows of ``seqs`` (events being trimmed); a seq not indexed is ignored."""
        self._db.executemany("DELETE FROM search WHERE rowid = ?", ((seq,) for seq in seqs))

    def clear(self) -> None:
        self._db.execute("DELETE FROM search")

    def rebuild(self) -> None:
        """Index the whole journal again, as the migration that made the index did (call in
        a transaction; bench.search times it as the upgrade's cost)."""
        self.clear()
        self._db.execute(
            "INSERT INTO search (rowid, text, sender, kind) SELECT seq, text, sender, kind "
            "FROM search_source WHERE text IS NOT NULL"
        )

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM search").fetchone()[0])

    def query(
        self,
        query: Query,
        *,
        after: int,
        before: int | None,
        types: frozenset[str] | None,
        sender: str | None,
        limit: int,
    ) -> list[Hit]:
        """The best ``limit`` matches of ``query`` with ``after < seq < before``, best first:
        BM25 (:func:`convosd.search.score`) over the newest :data:`CANDIDATES` matches,
        newest first on a tie. Neither FTS5's bm25() (its first call reads the whole list of
        every term: 100 ms for a word in most of a million messages) nor a rank over every
        match: the time is bounded by CANDIDATES, not by how common a word is. Snippets are
        made for the ``limit`` kept only.

        Raises SearchQueryError when FTS5 refuses the query."""
        where = f"{{text}} : ({query.match})"
        if sender is not None:
            where += ' AND {sender} : "' + sender.replace('"', '""') + '"'
        if types is not None and len(types & {"message", "message_sent"}) == 1:
            where += " AND {kind} : " + ("inbound" if "message" in types else "outbound")
        sql = "SELECT rowid, text FROM search WHERE search MATCH ? AND rowid > ?"
        args: list[object] = [where, after]
        if before is not None:
            sql += " AND rowid < ?"
            args.append(before)
        sql += " ORDER BY rowid DESC LIMIT ?"
        args.append(CANDIDATES)
        try:
            candidates = self._db.execute(sql, args).fetchall()
            words = [tokens(str(text)) for _, text in candidates]
            mean = average([len(w) for w in words])
            scored = sorted(
                (
                    (score(query.terms, w, mean), int(seq))
                    for (seq, _), w in zip(candidates, words, strict=True)
                ),
                reverse=True,
            )[:limit]
            hits = []
            for value, seq in scored:
                snippet = self._db.execute(
                    "SELECT snippet(search, 0, ?, ?, '…', ?) FROM search "
                    "WHERE search MATCH ? AND rowid >= ? AND rowid <= ?",  # a seek: not "="
                    (MARK_OPEN, MARK_CLOSE, SNIPPET_TOKENS, where, seq, seq),
                ).fetchone()
                row = self._db.execute(
                    "SELECT type, body FROM events WHERE seq = ?", (seq,)
                ).fetchone()
                if row is not None:
                    text = "" if snippet is None or snippet[0] is None else str(snippet[0])
                    hits.append(Hit(seq, str(row[0]), str(row[1]), text, value))
        except sqlite3.OperationalError as exc:
            if "fts5" in str(exc) or "syntax" in str(exc):
                raise SearchQueryError(str(exc)) from None
            raise
        return hits
