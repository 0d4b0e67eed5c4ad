"""The durable event journal (docs/PROTOCOL.md, Events).

``seq`` starts at 1 in a journal and is gap-free, increasing and durable: each batch is one
transaction, and an event is handed to listeners only after its commit. Retention trims the
oldest events by age and by count, a chunk per transaction (:meth:`Journal.trim_in_steps`
lets the event loop run between chunks); ``firstSeq`` says where the journal starts. A reset
starts a new journal (new ``journalId``, ``seq`` from 1).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from convosd.events import NewEvent
from convosd.jsonutil import dumps
from convosd.search import Query
from convosd.storage.search import TAIL, Hit
from convosd.storage.store import Store, StoreError, new_journal_id
from convosd.storage.work import Write, apply
from convosd.timefmt import iso

Listener = Callable[[Sequence["JournalEvent"]], None]
#: events removed per transaction by retention: a few milliseconds of work each (5 to 15 ms
#: on this project's busy 2-core machine), then the loop runs
TRIM_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class JournalEvent:
    seq: int
    type: str
    body: str  # the event as JSON text, ready to send

    def as_dict(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


@dataclass(frozen=True, slots=True)
class JournalPosition:
    journal_id: str
    first_seq: int
    last_seq: int

    def as_dict(self) -> dict[str, Any]:
        return {"journalId": self.journal_id, "firstSeq": self.first_seq, "lastSeq": self.last_seq}


class Journal:
    def __init__(
        self,
        store: Store,
        *,
        max_events: int = 1_000_000,
        max_age_s: float = 30 * 86400,
        clock: Callable[[], float] = time.time,
        search_index: bool = True,
    ) -> None:
        self.store = store
        #: index message text for events.search (False only to measure the index's cost)
        self.search_index = search_index
        self.max_events = max_events
        self.max_age_s = max_age_s
        self.clock = clock
        self.listeners: list[Listener] = []
        self._load()

    def _load(self) -> None:
        self.journal_id = self.store.meta.get("journal_id") or new_journal_id()
        stored_last = self.store.meta.get("last_seq")
        self.last_seq = max(int(stored_last or 0), self.store.events.max_seq() or 0)
        min_seq = self.store.events.min_seq()
        self.first_seq = min_seq if min_seq is not None else self.last_seq + 1
        self.max_sent_at = self.store.meta.get("max_sent_at")
        #: events up to it are in the search index's FTS5 table; the (fewer than TAIL)
        #: events after it are searched in the journal (convosd.storage.search)
        self.indexed_seq = self.store.search.indexed_seq()
        if self.search_index and self.last_seq - self.indexed_seq >= TAIL:
            # more unindexed events than an append leaves (a journal written without the
            # index): index them now, not in the first search
            with self.store.transaction():
                self.store.search.index_up_to(self.indexed_seq, self.last_seq)
            self.indexed_seq = self.last_seq

    @property
    def position(self) -> JournalPosition:
        return JournalPosition(self.journal_id, self.first_seq, self.last_seq)

    # --- writing ------------------------------------------------------------------------

    def append(
        self,
        events: Iterable[NewEvent],
        *,
        seen: Sequence[tuple[str, str]] = (),
        notify: bool = True,
        writes: Sequence[Write] = (),
    ) -> list[JournalEvent]:
        """Journal ``events``, mark ``seen`` ids and apply ``writes`` (other writes that must
        stand or fall with the batch, see :mod:`convosd.storage.work`) in one transaction;
        then notify.

        Raises StoreError when the write fails; nothing of the batch is then visible.
        """
        now = self.clock()
        at = iso(now)
        written: list[JournalEvent] = []
        rows: list[tuple[int, str, float, str]] = []
        seq = self.last_seq
        max_sent_at = self.max_sent_at
        indexed = self.indexed_seq
        for new in events:
            if new.type == "message":
                sent_at = new.fields.get("sentAt")
                if isinstance(sent_at, str) and (max_sent_at is None or sent_at > max_sent_at):
                    max_sent_at = sent_at
            seq += 1
            body = dumps(
                {
                    "seq": seq,
                    "type": new.type,
                    "at": at,
                    "conversationId": new.conversation_id,
                    **new.fields,
                }
            )
            rows.append((seq, new.type, now, body))
            written.append(JournalEvent(seq, new.type, body))
        if not rows and not seen and not writes:
            return []
        try:
            with self.store.transaction():
                if rows:
                    self.store.events.insert(rows)
                    if self.search_index and seq - indexed >= TAIL:
                        self.store.search.index_up_to(indexed, seq)
                        indexed = seq
                    if max_sent_at != self.max_sent_at and max_sent_at is not None:
                        self.store.meta.set_all(
                            [("last_seq", str(seq)), ("max_sent_at", max_sent_at)]
                        )
                    else:
                        self.store.meta.set("last_seq", str(seq))
                if seen:
                    self.store.seen_ids.mark(list(seen), now)
                for write in writes:
                    apply(self.store, write)
        except sqlite3.Error as exc:
            raise StoreError(f"journal write failed: {exc}") from exc
        if rows:
            self.max_sent_at = max_sent_at
            self.indexed_seq = indexed
            if self.first_seq > self.last_seq:
                self.first_seq = rows[0][0]
            self.last_seq = seq
        if notify and written:
            for listener in list(self.listeners):
                listener(written)
        return written

    def trim(self) -> int:
        """Apply retention (age, then count) at once. Returns how many events were removed."""
        return sum(self._trim_steps())

    async def trim_in_steps(self) -> int:
        """:meth:`trim`, letting the event loop run after each chunk of ``TRIM_CHUNK``
        events (a million events to remove must not stop everything else for seconds)."""
        removed = 0
        for count in self._trim_steps():
            removed += count
            await asyncio.sleep(0)
        return removed

    def _trim_steps(self, chunk: int = TRIM_CHUNK) -> Iterator[int]:
        """One transaction per chunk; ``firstSeq`` is right after each. Stops when the
        journal was reset in between (its cutoffs were the old journal's)."""
        cutoff_seq = self.last_seq - self.max_events
        cutoff_at = self.clock() - self.max_age_s
        journal_id = self.journal_id
        while journal_id == self.journal_id:
            try:
                with self.store.transaction():
                    seqs = self.store.events.trim_some(cutoff_seq, cutoff_at, chunk)
                    self.store.search.remove([s for s in seqs if s <= self.indexed_seq])
                    removed = len(seqs)
            except sqlite3.Error as exc:
                raise StoreError(f"journal trim failed: {exc}") from exc
            if removed:
                min_seq = self.store.events.min_seq()
                self.first_seq = min_seq if min_seq is not None else self.last_seq + 1
            yield removed
            if removed < chunk:
                return

    def reset(self) -> None:
        """A new journal: every event gone, a new ``journalId``, ``seq`` from 1."""
        with self.store.transaction():
            self.store.events.clear()
            self.store.search.clear()
            self.journal_id = new_journal_id()
            self.store.meta.set("journal_id", self.journal_id)
            self.store.meta.set("last_seq", "0")
            self.store.meta.set("max_sent_at", None)
        self.first_seq, self.last_seq = 1, 0
        self.max_sent_at = None
        self.indexed_seq = 0

    # --- reading ------------------------------------------------------------------------

    def sent_message_ids(self, since: float) -> set[str]:
        """The ``messageId`` of every ``message_sent`` journaled at or after ``since`` (epoch
        seconds): messages already reported as the result of a send."""
        return self.store.events.sent_message_ids(since)

    def message(self, message_id: str) -> dict[str, Any] | None:
        """The journaled ``message`` event of ``message_id``; None when there is none."""
        body = self.store.events.message_body(message_id)
        if body is None:
            return None
        value: dict[str, Any] = json.loads(body)
        return value

    def journaled_messages(self, message_ids: Sequence[str]) -> set[str]:
        """Those of ``message_ids`` whose ``message`` event is still in the journal."""
        found: set[str] = set()
        for start in range(0, len(message_ids), 500):  # SQLite's limit on parameters
            found |= self.store.events.journaled_messages(message_ids[start : start + 500])
        return found

    def read(
        self, after: int, limit: int, types: frozenset[str] | None = None
    ) -> list[JournalEvent]:
        """Events with ``seq > after`` in order, at most ``limit``, optionally of ``types``."""
        return [JournalEvent(*row) for row in self.store.events.read(after, limit, types)]

    def search(
        self,
        query: Query,
        *,
        after: int = 0,
        before: int | None = None,
        types: frozenset[str] | None = None,
        sender: str | None = None,
        limit: int = 20,
    ) -> list[Hit]:
        """The best ``limit`` events whose text matches ``query``
        (:func:`convosd.search.parse`) with ``after < seq < before``, best first.
        Raises SearchQueryError when FTS5 refuses it."""
        return self.store.search.query(
            query, after=after, before=before, types=types, sender=sender, limit=limit
        )

    def around(
        self, message_id: str, before: int, after: int, types: frozenset[str] | None = None
    ) -> tuple[list[JournalEvent], JournalEvent, list[JournalEvent]] | None:
        """The ``message`` or ``message_sent`` event of ``message_id`` with at most
        ``before`` events before it and ``after`` after it (optionally of ``types``); None
        when it is not in the journal."""
        events = self.store.events
        seq = events.message_seq(message_id)
        if seq is None:
            return None
        earlier = events.read_before(seq, before, types) if before else []
        at = events.read(seq - 1, 1)
        later = events.read(seq, after, types) if after else []
        return (
            [JournalEvent(*row) for row in earlier],
            JournalEvent(*at[0]),
            [JournalEvent(*row) for row in later],
        )
