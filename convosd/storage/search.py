"""The ``search`` table: an FTS5 index of the journal's message text (events.search).

The index has two parts, and a search reads both:

- the FTS5 table ``search`` holds every message event up to the **indexed seq** (kept in
  ``meta``); the journal adds the events after it in one go once there are
  :data:`TAIL` of them (:meth:`SearchIndex.index_up_to`), in the transaction of the append
  that makes them that many;
- the **tail**: the (fewer than :data:`TAIL`) events after the indexed seq. They are in
  the journal, so they are found there: the first search after they were journaled
  copies them into an FTS5 table in memory (:data:`TAIL_TABLE`: the same definition but
  for the prefix indexes; :class:`_Tail`), which the next searches reuse. It holds only
  what the store has committed, and is made again when the store's index changed under
  it (a batch indexed, a trim, a reset).

A prefix longer than the prefix indexes (``deploy*``) is searched in the FTS5 table as the
OR of the terms it starts (``("deploy" OR "deployed" OR ...)``), found in the table
``search_terms`` (:class:`_Terms`), when there are at most :data:`EXPAND_MAX` of them:
FTS5 reads and merges the whole list of every term a prefix without a prefix index starts
before it answers a first row (60-80 ms for the prefix of a word in most of a million
messages), but iterates terms and OR newest first and stops at the LIMIT. Same matches,
same order.

So an event is searchable as soon as its transaction commits, and never after retention
trims it or a reset drops it (:meth:`SearchIndex.remove` and :meth:`SearchIndex.clear`
run in those transactions). A live message is indexed with its batch of :data:`TAIL` (one
INSERT, its share of FTS5's merges), not at its own commit: FTS5 writes a new segment, its
index entry and the table's structure record at every commit, about three WAL pages more
than the journal's own (four to ten with automerge's work), which doubled the cost of
journaling a message whatever the table's options.
What is text is the view ``search_source`` (convosd.storage.schema). The query comes from
:func:`convosd.search.parse`, which quotes every term of the user's query.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from convosd.search import Query, Term, ascii_tokens, average, quoted, score, snippet, tokens
from convosd.storage.meta import Meta

#: marks around a matched term in a snippet
MARK_OPEN, MARK_CLOSE = "«", "»"
ELLIPSIS = "…"
#: tokens in a snippet
SNIPPET_TOKENS = 16
#: the newest matches a search ranks (its time is bounded by this, not by how many
#: messages hold a word)
CANDIDATES = 500
#: events the journal keeps after the indexed seq before it indexes them in FTS5
TAIL = 256

#: the in-memory table of the tail: ``search`` as the migration makes it (see
#: convosd.storage.schema) but for its prefix indexes, which a few hundred rows do not need
#: (tests/test_search.py checks that the two stay the same otherwise)
TAIL_TABLE = (
    "CREATE VIRTUAL TABLE search USING fts5 (text, sender, kind, "
    "tokenize = 'unicode61 remove_diacritics 2', columnsize = 0)"
)

#: the longest of the FTS5 table's prefix indexes (``prefix = '2 3'``, in characters)
PREFIX_INDEXED = 3
#: a longer prefix that starts at most this many terms is searched as their OR (each term
#: costs about 0.2-0.4 ms at 1M messages, whether it is in many messages or few); one
#: that starts more is searched as the prefix it is
EXPAND_MAX = 32
#: terms :class:`_Terms` remembers being in ``search_terms`` (it forgets all of them when it
#: reaches this, and after a rolled-back transaction)
KNOWN_MAX = 200_000
#: the in-memory FTS5 table that cuts text that is not ASCII into terms: the tokenizer of
#: ``search`` (tests/test_search.py checks that it is the same)
SCRATCH_TABLE = (
    "CREATE VIRTUAL TABLE scratch USING fts5 (text, "
    "tokenize = 'unicode61 remove_diacritics 2', detail = none, columnsize = 0)"
)

_SOURCE = "SELECT seq, text, sender, kind FROM search_source WHERE text IS NOT NULL AND seq > ?"


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
    def __init__(self, db: sqlite3.Connection, meta: Meta) -> None:
        self._db = db
        self._meta = meta
        self._tail = _Tail(db)
        self._terms = _Terms(db)

    def indexed_seq(self) -> int:
        """The seq up to which every event is in the FTS5 table (the events after it are
        the tail)."""
        return int(self._meta.get("search_indexed_seq") or 0)

    def index_up_to(self, indexed: int, last_seq: int) -> None:
        """Index the events ``indexed < seq <= last_seq`` (``indexed`` the current indexed
        seq) and make ``last_seq`` the indexed seq. Call in a transaction."""
        self._db.execute(
            "INSERT INTO search (rowid, text, sender, kind) " + _SOURCE + " AND seq <= ?",
            (indexed, last_seq),
        )
        # the text read back from the table (a range of its rowids) costs less than the
        # view's JSON twice or binding every row into the INSERT
        texts = self._db.execute(
            "SELECT text FROM search WHERE rowid > ? AND rowid <= ?", (indexed, last_seq)
        )
        self._terms.add(str(text) for (text,) in texts)
        self._meta.set("search_indexed_seq", str(last_seq))

    def rolled_back(self) -> None:
        """The store rolled a transaction back: what it wrote to ``search_terms`` is gone."""
        self._terms.forget()

    def remove(self, seqs: Sequence[int]) -> None:
        """Drop the rows of ``seqs`` (events being trimmed); a seq not indexed is ignored.
        Their terms stay in ``search_terms`` (:class:`_Terms`)."""
        self._db.executemany("DELETE FROM search WHERE rowid = ?", ((seq,) for seq in seqs))

    def clear(self) -> None:
        """Empty the index (a reset: the new journal's seq starts at 1)."""
        self._db.execute("DELETE FROM search")
        self._terms.clear()
        self._meta.set("search_indexed_seq", "0")

    def rebuild(self) -> None:
        """Index the whole journal again, as the migration that made the index did (call in
        a transaction; bench.search times it as the upgrade's cost)."""
        self._db.execute("DELETE FROM search")
        self._db.execute(
            "INSERT INTO search (rowid, text, sender, kind) "
            "SELECT seq, text, sender, kind FROM search_source WHERE text IS NOT NULL"
        )
        self._terms.rebuild()
        last = self._db.execute("SELECT MAX(seq) FROM events").fetchone()[0]
        self._meta.set("search_indexed_seq", str(last or 0))

    def count(self) -> int:
        """Events the index finds: the FTS5 table's rows and the tail's messages."""
        table = self._db.execute("SELECT COUNT(*) FROM search").fetchone()[0]
        tail = self._db.execute(
            "SELECT COUNT(*) FROM (" + _SOURCE + ")", (self.indexed_seq(),)
        ).fetchone()[0]
        return int(table) + int(tail)

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
        match: the time is bounded by CANDIDATES, not by how common a word is. Snippets
        (:func:`convosd.search.snippet`) are made for the ``limit`` kept only, from the
        text already read.

        A prefix longer than the prefix indexes is searched in the FTS5 table as the OR of
        the terms it starts (:meth:`expression`), in the tail as it is.

        Raises SearchQueryError when FTS5 refuses the query."""
        filters = ""
        if sender is not None:
            filters += " AND {sender} : " + quoted(sender)
        if types is not None and len(types & {"message", "message_sent"}) == 1:
            filters += " AND {kind} : " + ("inbound" if "message" in types else "outbound")
        sql = "SELECT rowid, text FROM search WHERE search MATCH ? AND rowid > ?"
        args: list[object] = [after]
        if before is not None:
            sql += " AND rowid < ?"
            args.append(before)
        sql += " ORDER BY rowid DESC LIMIT ?"
        try:
            tail = self._tail.connection(self.indexed_seq())
            # every event of the tail is newer than every event of the table
            where = f"{{text}} : ({query.match})" + filters
            candidates = tail.execute(sql, [where, *args, CANDIDATES]).fetchall()
            expanded = self.expression(query)
            if len(candidates) < CANDIDATES and expanded is not None:
                where = f"{{text}} : ({expanded})" + filters
                candidates += self._db.execute(
                    sql, [where, *args, CANDIDATES - len(candidates)]
                ).fetchall()
        except sqlite3.OperationalError as exc:
            if "fts5" in str(exc) or "syntax" in str(exc):
                raise SearchQueryError(str(exc)) from None
            raise
        texts = {int(seq): str(text) for seq, text in candidates}
        words = [tokens(text) for text in texts.values()]
        mean = average([len(w) for w in words])
        best = sorted(
            ((score(query.terms, w, mean), seq) for seq, w in zip(texts, words, strict=True)),
            reverse=True,
        )[:limit]
        if not best:
            return []
        marks = ",".join("?" * len(best))
        rows = {
            int(seq): (str(type_), str(body))
            for seq, type_, body in self._db.execute(
                f"SELECT seq, type, body FROM events WHERE seq IN ({marks})",
                [seq for _, seq in best],
            )
        }
        hits = []
        for value, seq in best:
            if seq in rows:
                type_, body = rows[seq]
                text = snippet(
                    texts[seq], query.terms, SNIPPET_TOKENS, (MARK_OPEN, MARK_CLOSE), ELLIPSIS
                )
                hits.append(Hit(seq, type_, body, text, value))
        return hits

    def expression(self, query: Query) -> str | None:
        """``query``'s MATCH expression for the FTS5 table, with each prefix longer than
        its prefix indexes that starts at most :data:`EXPAND_MAX` terms there written as
        the OR of those terms; None when such a prefix starts none (no row can match).

        Only a prefix of ASCII text, one word, is written so: :func:`convosd.search.tokens`
        cuts ASCII as FTS5 does, so it is the prefix FTS5 would look for; and only when
        every term it starts is ASCII (FTS5 cuts each again as the same term). Any other
        stays a prefix, which finds the same rows, more slowly."""
        parts = []
        for part, term in zip(query.parts, query.terms, strict=True):
            prefix = _expandable(term)
            if prefix is not None:
                words = self._terms.starting(prefix, EXPAND_MAX + 1)
                if not words:
                    return None
                if len(words) <= EXPAND_MAX and all(word.isascii() for word in words):
                    part = "(" + " OR ".join(map(quoted, words)) + ")"
            parts.append(part)
        return " AND ".join(parts)


def _expandable(term: Term) -> str | None:
    """The one token of ``term`` when it is a prefix of ASCII text longer than the prefix
    indexes (:meth:`SearchIndex.expression`)."""
    if term.prefix and term.ascii and len(term.tokens) == 1:
        (token,) = term.tokens
        if len(token) > PREFIX_INDEXED:
            return token
    return None


class _Terms:
    """The table ``search_terms``: every term longer than :data:`PREFIX_INDEXED` characters
    of the ``text`` column of the FTS5 table, as FTS5 cut it (and terms of events trimmed
    since: a term stays until a reset or a rebuild, which costs an OR one more term that
    matches nothing, and no result). Written in the transaction that indexes a batch:
    ASCII text cut by :func:`convosd.search.ascii_tokens` (which cuts it as FTS5's
    unicode61 does), other text by FTS5 itself in a scratch table in memory (:data:`SCRATCH_TABLE`).
    Only the terms not known to be there already are written: the set of known terms makes
    a batch's vocabulary cost a set difference, not a lookup a term. The set is this
    connection's: the daemon's one store connection is the only writer of the table (a
    reset by another connection would leave it wrong; a trim does not touch the table)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        #: terms (UTF-8) this connection wrote to the table or found there, and shorter ones
        #: (never written): none of them is written again
        self._known: set[bytes] = set()
        self._scratch: sqlite3.Connection | None = None

    def add(self, texts: Iterable[str]) -> None:
        """Add the terms of ``texts`` (a batch being indexed; call in its transaction)."""
        plain: list[str] = []
        other: list[str] = []
        for text in texts:
            (plain if text.isascii() else other).append(text)
        # bytes and set operations: a Python loop over a batch's 1,500 terms cost twice
        # as much. ``found - known``, not ``found -= known``: the second goes through all
        # of known (CPython's difference_update iterates its argument), 0.5 ms a batch
        found = set(ascii_tokens("\n".join(plain).encode("ascii")))
        if other:
            found.update(term.encode() for term in self._cut(other))
        found = found - self._known
        if not found:
            return
        # bytes, not characters: an ASCII term's are the same, and _cut kept only the
        # longer terms of other text
        new = [term.decode() for term in found if len(term) > PREFIX_INDEXED]
        if new:
            self._db.executemany(
                "INSERT INTO search_terms (term) VALUES (?) ON CONFLICT DO NOTHING",
                ((term,) for term in new),
            )
        if len(self._known) + len(found) > KNOWN_MAX:
            self._known.clear()
        self._known |= found

    def _cut(self, texts: list[str]) -> list[str]:
        """The terms longer than :data:`PREFIX_INDEXED` characters FTS5 makes of ``texts``
        (a line break between two is a separator)."""
        scratch = self._scratch
        if scratch is None:
            scratch = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            scratch.execute(SCRATCH_TABLE)
            scratch.execute("CREATE VIRTUAL TABLE scratch_terms USING fts5vocab(scratch, row)")
            self._scratch = scratch
        scratch.execute("BEGIN")
        try:
            scratch.execute("INSERT INTO scratch (text) VALUES (?)", ("\n".join(texts),))
            rows = scratch.execute(
                "SELECT term FROM scratch_terms WHERE length(term) > ?", (PREFIX_INDEXED,)
            )
            return [str(row[0]) for row in rows]
        finally:
            scratch.execute("ROLLBACK")

    def starting(self, prefix: str, limit: int) -> list[str]:
        """At most ``limit`` terms that start with ``prefix`` (ASCII), in order."""
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rows = self._db.execute(
            "SELECT term FROM search_terms WHERE term >= ? AND term < ? ORDER BY term LIMIT ?",
            (prefix, upper, limit),
        )
        return [str(row[0]) for row in rows]

    def forget(self) -> None:
        self._known.clear()

    def clear(self) -> None:
        self._db.execute("DELETE FROM search_terms")
        self._known.clear()

    def rebuild(self) -> None:
        """The terms of the FTS5 table as it is (FTS5's own list of them)."""
        self.clear()
        self._db.execute(
            "CREATE VIRTUAL TABLE temp.search_vocabulary USING fts5vocab(main, search, col)"
        )
        try:
            self._db.execute(
                "INSERT INTO search_terms (term) SELECT term FROM temp.search_vocabulary "
                "WHERE col = 'text' AND length(term) > ?",
                (PREFIX_INDEXED,),
            )
        finally:
            self._db.execute("DROP TABLE temp.search_vocabulary")


class _Tail:
    """The tail's events (``seq`` after the indexed seq) in an FTS5 table in memory, of
    the same definition as ``search``. Only ever what the store has committed: it is
    filled from the store when a search needs it, and made anew when the store's index
    changed (another indexed seq, another journal, a trim), never written by a
    transaction that could still roll back."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._memory: sqlite3.Connection | None = None
        #: what the copy was made from: (journal id, indexed seq, the journal's first seq)
        self._key: tuple[str | None, int, int | None] | None = None
        self._upto = 0

    def connection(self, indexed: int) -> sqlite3.Connection:
        """The in-memory table, holding every event after ``indexed`` the store has now."""
        first = self._db.execute("SELECT MIN(seq) FROM events").fetchone()[0]
        journal = self._db.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()
        key = (None if journal is None else str(journal[0]), indexed, first)
        memory = self._memory
        if memory is None or key != self._key:
            if memory is not None:
                with contextlib.suppress(sqlite3.Error):
                    memory.close()
            memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            memory.execute(TAIL_TABLE)
            self._memory, self._key, self._upto = memory, key, indexed
        last = int(self._db.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0)
        if last > self._upto:
            rows = self._db.execute(_SOURCE + " AND seq <= ?", (self._upto, last)).fetchall()
            memory.execute("BEGIN")
            memory.executemany(
                "INSERT INTO search (rowid, text, sender, kind) VALUES (?, ?, ?, ?)", rows
            )
            memory.execute("COMMIT")
            self._upto = last
        return memory
