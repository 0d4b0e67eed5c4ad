"""The inbound pipeline, one direction (docs/PROTOCOL.md, Events):

    child line ─▶ parse ─▶ seen/own filter ─▶ policy hook ─▶ journal ─▶ subscribers

Sources are the live ``conversation stream`` lines and the backfill (``conversation messages
--sync --direction ascending --sent-after <cursor>``, paged, each page merged as it is read).
Live lines read while a backfill runs are held and journaled after its last page. Every
inbound id goes into the seen-id table whatever its fate, in the same transaction as its
event, so an id is evaluated once.

A stream that (re)starts is not listening yet: the CLI subscribes after it has built its
client, and prints nothing when it has. What is sent before then comes on no line, so from
:meth:`Ingest.stream_started` live lines are held until a backfill page asked *after the
stream's first line* comes back complete; only then is the stream known to be listening
(a start-up backfill that ends before the first line leaves that to a short catch-up read
when the first line comes). Without it, what was sent in between was journaled only by the
next periodic backfill: late, and after messages sent later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from convosd.cli.models import CliMessage
from convosd.cli.streams import BadLine, parse_stream_line
from convosd.conversation.hook import Decision, Fate, PolicyHook, journal_everything
from convosd.conversation.paging import FetchPage, Pager
from convosd.events import NewEvent, message_event
from convosd.storage.journal import Journal
from convosd.storage.store import StoreError
from convosd.storage.work import Write

#: content types journaled as ``message`` events (the CLI's displayable xmtp.org types).
MESSAGE_TYPES = frozenset(
    {
        "text",
        "markdown",
        "reply",
        "reaction",
        "attachment",
        "remoteStaticAttachment",
        "multiRemoteAttachment",
        "multiRemoteStaticAttachment",
        "group_updated",
    }
)
#: types the sender policy applies to; the others (group_updated) are always journaled.
POLICY_TYPES = MESSAGE_TYPES - {"group_updated"}
#: backfills failing in a row before health says so (one failure may be a passing hiccup)
FAILURES_REPORTED = 3
#: the backfill cursor starts this far before the newest journaled message.
CURSOR_MARGIN_S = 2.0
#: live lines held during a backfill are journaled this many per loop turn after it
LIVE_CHUNK = 1_000
#: failed journal writes are retried with the next batch; past this many, the oldest are
#: left to the next backfill (they were never marked seen).
RETRY_LIMIT = 10_000


@dataclass
class IngestStats:
    lines: int = 0
    bad_lines: int = 0
    journaled: int = 0
    duplicates: int = 0
    by_fate: dict[str, int] = field(default_factory=dict)
    backfills: int = 0
    backfill_failures: int = 0
    #: catch-up reads run because a stream's first line came after its start-up backfill
    catch_ups: int = 0
    write_failures: int = 0


class Ingest:
    def __init__(
        self,
        *,
        journal: Journal,
        conversation_id: str,
        own_inbox_id: str,
        bound_at: float,
        policy: PolicyHook = journal_everything,
        sender_name: Callable[[str], str | None] = lambda _inbox: None,
        on_group_updated: Callable[[CliMessage], None] = lambda _m: None,
        on_special: Callable[[CliMessage], None] = lambda _m: None,
        on_write_failed: Callable[[], None] = lambda: None,
        on_catch_up: Callable[[], None] = lambda: None,
        backfill_window_s: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.journal = journal
        self.store = journal.store
        self.conversation_id = conversation_id
        self.own_inbox_id = own_inbox_id
        self.bound_at = bound_at
        self.policy = policy
        self.sender_name = sender_name
        self.on_group_updated = on_group_updated
        self.on_special = on_special
        self.on_write_failed = on_write_failed
        #: the stream's first line came after its start-up backfill: run a catch-up
        #: (``backfill(catch_up=True)``); live lines are held until it ends
        self.on_catch_up = on_catch_up
        self.backfill_window_s = backfill_window_s
        self.clock = clock
        self.stats = IngestStats()
        #: a backfill runs
        self.backfilling = False
        #: live lines are held (while a backfill runs, and from a stream's start until one
        #: has read past the stream's first line)
        self.holding = False
        #: whether the stream is known to be listening (see the module's docstring); only
        #: :meth:`stream_started` makes it False
        self.stream_listening = True
        self._first_line_at: float | None = None
        #: where the last complete backfill's last page started: a catch-up reads from there
        self._tail_ns: int | None = None
        self.healthy = True
        self.last_error: str | None = None
        #: why the last backfill could not read its whole window (health: degraded)
        self.backfill_problem: str | None = None
        self._failures_in_a_row = 0
        self._during_backfill: list[CliMessage] = []
        #: where a backfill that failed part-way stopped: the next one goes on from there
        self._resume_ns: int | None = None
        self._retry: list[CliMessage] = []
        self._last_bad_log = 0.0
        self.log = structlog.get_logger("convosd.ingest")

    # --- live lines ---------------------------------------------------------------------

    def stream_started(self) -> None:
        """The stream (re)started: hold its lines until a backfill has read past its first
        one (the backfill the caller starts now, or a catch-up when the first line comes)."""
        self.stream_listening = False
        self._first_line_at = None
        self.holding = True

    def on_stream_lines(self, lines: Sequence[bytes]) -> None:
        messages: list[CliMessage] = []
        for line in lines:
            self.stats.lines += 1
            message = self._parse(line)
            if message is not None:
                messages.append(message)
        if not messages:
            return
        if self._first_line_at is None and not self.stream_listening:
            self._first_line_at = time.monotonic()
            if not self.holding:
                # The start-up backfill ended before the stream's first line: what was
                # sent before the stream listened may be missing. Read it first.
                self.holding = True
                self.stats.catch_ups += 1
                self.on_catch_up()
        if self.holding:
            self._during_backfill.extend(messages)
        else:
            self.process(messages)

    def _parse(self, line: bytes) -> CliMessage | None:
        try:
            return parse_stream_line(line)
        except BadLine:
            self._bad_line(len(line))
            return None

    def _bad_line(self, size: int) -> None:
        self.stats.bad_lines += 1
        now = time.monotonic()
        if now - self._last_bad_log >= 1.0:
            self._last_bad_log = now
            self.log.warning("stream_bad_line", bad_lines=self.stats.bad_lines, size=size)

    # --- the merge ----------------------------------------------------------------------

    def process(self, messages: Sequence[CliMessage]) -> int:
        """Evaluate unseen messages in ascending ``sentAt`` and journal them in one batch.

        Returns the number of events journaled. A failed write keeps the batch for a retry.
        """
        batch = [*self._retry, *messages]
        self._retry = []
        unique: dict[str, CliMessage] = {}
        for message in batch:
            if message.id in unique:
                self.stats.duplicates += 1
            else:
                unique[message.id] = message
        unseen_ids = self.store.seen_ids.unseen(list(unique))
        self.stats.duplicates += len(unique) - len(unseen_ids)
        fresh = sorted((m for m in unique.values() if m.id in unseen_ids), key=lambda m: m.sent_at)
        if not fresh:
            return 0
        events: list[NewEvent] = []
        seen: list[tuple[str, str]] = []
        writes: list[Write] = []
        after: list[Callable[[], None]] = []
        group_updates: list[CliMessage] = []
        specials: list[CliMessage] = []
        for message in fresh:
            decision = self._evaluate(message)
            fate = decision.fate
            seen.append((message.id, str(fate)))
            self.stats.by_fate[str(fate)] = self.stats.by_fate.get(str(fate), 0) + 1
            events.extend(decision.events)
            writes.extend(decision.writes)
            after.extend(decision.after)
            if message.content_type.type_id == "group_updated" and fate in (
                Fate.JOURNALED,
                Fate.OWN,
            ):
                # The members changed, whoever changed them: our own join-request
                # watcher's add is a group_updated of our own inbox, and it is what
                # makes the newcomer a member_joined.
                group_updates.append(message)
            if fate is Fate.JOURNALED:
                name = self.sender_name(message.sender_inbox_id)
                events.append(message_event(message, self.conversation_id, name))
            elif fate is Fate.IGNORED:
                specials.append(message)
        try:
            written = self.journal.append(events, seen=seen, writes=writes)
        except StoreError as exc:
            self.stats.write_failures += 1
            self.healthy = False
            self.last_error = str(exc)
            self._retry = list(fresh)[-RETRY_LIMIT:]
            self.log.error("journal_write_failed", error=str(exc), kept=len(self._retry))
            self.on_write_failed()
            return 0
        for callback in after:
            callback()
        self.healthy = True
        self.stats.journaled += len(written)
        for message in group_updates:
            self.on_group_updated(message)
        for message in specials:
            self.on_special(message)
        return len(written)

    def _evaluate(self, message: CliMessage) -> Decision:
        if message.sender_inbox_id == self.own_inbox_id:
            return Decision(Fate.OWN)
        if message.sent_at.timestamp() < self.bound_at - CURSOR_MARGIN_S:
            return Decision(Fate.BEFORE_BINDING)
        type_id = message.content_type.type_id
        authority = message.content_type.authority_id
        if type_id not in MESSAGE_TYPES or authority not in (None, "xmtp.org"):
            return Decision(Fate.IGNORED)
        if type_id not in POLICY_TYPES:
            return Decision(Fate.JOURNALED)
        return self.policy(message)

    # --- backfill -----------------------------------------------------------------------

    async def _release_live(self) -> tuple[int, int]:
        """Journal the live lines held during a backfill, :data:`LIVE_CHUNK` at a time with
        the loop running in between (11,000 held lines merged at once took 1.1-1.4 s of the
        loop on a loaded 2-core machine; 1,000: 64-129 ms). Lines that come meanwhile join
        the end of the queue: still journaled after the held ones.
        Returns (lines released, events journaled)."""
        held = journaled = 0
        try:
            while self._during_backfill:
                chunk = self._during_backfill[:LIVE_CHUNK]
                del self._during_backfill[:LIVE_CHUNK]
                held += len(chunk)
                journaled += self.process(chunk)
                if self._during_backfill:
                    await asyncio.sleep(0)
        finally:
            rest, self._during_backfill = self._during_backfill, []
            # in the same step as the last check: nothing is left
            self.backfilling = self.holding = False
            held += len(rest)
            journaled += self.process(rest)
        return held, journaled

    def _read_past_first_line(self, asked: float) -> bool:
        """Whether a complete page asked for at ``asked`` ends this backfill: the stream is
        known to be listening, or has printed nothing yet (its first line brings a
        catch-up), or printed its first line before the page was asked for (then it is
        known to be listening from now on)."""
        if self.stream_listening or self._first_line_at is None:
            return True
        if asked >= self._first_line_at:
            self.stream_listening = True
            return True
        return False

    def cursor_ns(self) -> int:
        """The earlier of (newest journaled sentAt - 2 s) and (now - window), never before
        the binding."""
        now = self.clock()
        candidates = [now - self.backfill_window_s]
        if self.journal.max_sent_at is not None:
            newest = datetime.strptime(self.journal.max_sent_at, "%Y-%m-%dT%H:%M:%S.%fZ")
            candidates.append(newest.replace(tzinfo=UTC).timestamp() - CURSOR_MARGIN_S)
        cursor = max(min(candidates), self.bound_at - CURSOR_MARGIN_S)
        return int(cursor * 1_000_000) * 1000

    async def backfill(self, fetch_page: FetchPage, *, catch_up: bool = False) -> int:
        """Re-read the recent window (:class:`~convosd.conversation.paging.Pager`) and merge
        it with live lines (``catch_up``: only from where the last complete backfill's last
        page started, less the cursor margin: what a stream that started listening late
        may have missed). A window that cannot be read whole is reported in
        :attr:`backfill_problem`.

        Each page is merged as it is read (memory: one page, not the window; the journal
        gets the window in pieces, not in one write); the live lines read meanwhile are
        held and journaled after the last page. A backfill that fails part-way (a page's
        call timed out under load, say) keeps what it merged, and the next one goes on
        from where it stopped instead of starting the window over and failing at the same
        point again.

        While a restarted stream is not known to be listening, the last page must have been
        asked for after its first line: a backfill that read its last page before that line
        came reads once more from there (the one running when a stream restarts does so too).
        """
        if self.backfilling:
            return 0
        self.backfilling = self.holding = True
        start_cursor = self.cursor_ns()
        resume = self._resume_ns
        if catch_up and resume is None and self._tail_ns is not None:
            resume = self._tail_ns - int(CURSOR_MARGIN_S * 1e9)
        started = time.monotonic()
        pager = Pager(fetch_page, merge=self.process, complete=self._read_past_first_line)
        journaled = 0
        try:
            await pager.run(max(start_cursor, resume or 0))
            self._resume_ns = None
            self._tail_ns = pager.tail_ns
            self.stats.backfills += 1
            self.backfill_problem = pager.problem
            self._failures_in_a_row = 0
        except Exception as exc:
            if pager.resume_ns is not None:
                self._resume_ns = pager.resume_ns
            self.stats.backfill_failures += 1
            self._failures_in_a_row += 1
            self.last_error = f"backfill failed: {getattr(exc, 'message', type(exc).__name__)}"
            self.log.warning(
                "backfill_failed",
                error=self.last_error,
                duration_s=round(time.monotonic() - started, 3),
                pages=pager.pages,
                slowest_page_s=round(pager.slowest_s, 3),
                resume_at_ns=self._resume_ns,
            )
            if self._failures_in_a_row >= FAILURES_REPORTED:
                self.backfill_problem = (
                    f"{self._failures_in_a_row} backfills in a row failed; the last: "
                    f"{self.last_error}"
                )
            raise
        finally:
            held, released = await self._release_live()
            journaled = pager.journaled + released
            self.log.info(
                "backfill_done",
                catch_up=catch_up,
                stream_listening=self.stream_listening,
                duration_s=round(time.monotonic() - started, 3),
                pages=pager.pages,
                slowest_page_s=round(pager.slowest_s, 3),
                read=pager.read,
                held_live=held,
                journaled=journaled,
            )
        # Seen ids older than any cursor can reach will never be read again.
        self.store.seen_ids.trim(older_than=start_cursor / 1e9 - 3600)
        return journaled
