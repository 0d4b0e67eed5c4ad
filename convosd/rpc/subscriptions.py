"""Event subscriptions: replay from the journal, then live, with no gap and no duplicate.

Each subscription tracks ``next_seq``, the first seq it has not delivered. It starts in
replay: a task reads committed pages from the journal and hands them to the connection,
pacing itself on the subscriber's queue. When a page comes back empty it switches to live
in the same step (no await between the check and the switch), so every later event reaches
it through the journal's listener, which runs synchronously after each commit on the same
thread. Live events that arrive during the replay are left to the replay, which reads them
from the journal. Filtered types are skipped but still advance ``next_seq``.

The listener only notes the committed batch; the hub hands it to the live subscriptions in
the next turn of the loop (``journal.append`` does not pay for 1,000 subscribers), in
commit order, before anything that was started after the commit. A subscription that went
live in between gets what it did not read itself (``next_seq`` says which). Ending every
subscription (shutdown, reset) first hands over what is pending, so the ``ended`` notice
still comes after the events committed before it.

A subscriber is never waited for, and never handed more than ``subscriberQueue``
notifications it has not yet been written. A committed batch that does not fit (the
daemon's own bursts: a backfill can journal thousands of events in one merge) is handed over
as far as it fits, and the subscription goes back to replay: it reads the rest from the
journal at its reader's pace, then goes live again. It ends with ``subscription.ended
{reason: overflow, lastSeq}`` (the client resumes with ``events.subscribe {after: lastSeq}``)
only when its reader is really behind: its queue is full and none of it has been written
for ``stall_timeout_s`` (``outputStallTimeoutS``), or retention removed events it has not
had yet. A reader slower than the events come is not dropped: it reads the journal at its
own pace, which is what it would get by subscribing again.

Subscriptions are bounded (each costs memory and a turn of every fan-out):
``maxSubscriptionsPerConnection`` per connection, ``maxSubscriptions`` in all (admin peers
may go past the latter, within their own per-connection cap). Past either, ``open`` raises
``BUSY`` whose ``data.limit`` names the setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import structlog

from convosd import errors
from convosd.jsonutil import dumps
from convosd.rpc import protocol
from convosd.storage.journal import Journal, JournalEvent

EndReason = Literal["overflow", "reset", "shutdown"]
REPLAY_PAGE = 500
log = structlog.get_logger("convosd.subscriptions")


class Outbox(Protocol):
    """What a subscription needs of its connection."""

    def send_event(self, subscription: Subscription, line: bytes) -> None: ...

    def send_events(self, subscription: Subscription, data: bytes, lines: int) -> None:
        """``lines`` event lines of ``subscription`` in one piece."""

    def send_notice(self, line: bytes) -> None: ...


class Subscription:
    def __init__(
        self,
        sid: int,
        outbox: Outbox,
        after: int,
        types: frozenset[str] | None,
        queue_limit: int,
    ) -> None:
        self.id = sid
        self.head = protocol.event_head(sid)
        self.outbox = outbox
        self.next_seq = after + 1
        self.types = types
        self.queue_limit = queue_limit
        self.pending = 0  # notifications handed to the connection and not yet written
        self.written = 0  # notifications written so far (progress, for the stall check)
        self.live = False
        self.ended = False
        self.drained = asyncio.Event()
        self.drained.set()
        self.task: asyncio.Task[None] | None = None

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    def wrote(self, lines: int = 1) -> None:
        """The connection wrote ``lines`` of this subscription's notifications."""
        self.pending -= lines
        self.written += lines
        if self.pending <= self.queue_limit // 2:
            self.drained.set()

    def deliver(self, event: JournalEvent) -> bool:
        """Hand one event over; False if the queue is full (the caller ends it)."""
        if self.types is None or event.type in self.types:
            if self.pending >= self.queue_limit:
                return False
            self.pending += 1
            if self.pending > self.queue_limit // 2:
                self.drained.clear()
            self.outbox.send_event(self, self.head + protocol.event_tail(event.body))
        self.next_seq = event.seq + 1
        return True

    def deliver_batch(self, batch: Sequence[JournalEvent], tails: Sequence[bytes]) -> bool:
        """:meth:`deliver` of each event of a committed batch it has not had, handed over
        in one piece (its lines joined on its own head). False if its queue filled: what
        fitted was handed over; the caller has it read the rest from the journal."""
        picked: list[bytes] = []
        room = self.queue_limit - self.pending
        full = False
        for event, tail in zip(batch, tails, strict=True):
            if event.seq < self.next_seq:
                continue
            if self.types is None or event.type in self.types:
                if len(picked) >= room:
                    full = True
                    break
                picked.append(tail)
            self.next_seq = event.seq + 1
        if picked:
            self.pending += len(picked)
            if self.pending > self.queue_limit // 2:
                self.drained.clear()
            self.outbox.send_events(self, self.head + self.head.join(picked), len(picked))
        return not full


class SubscriptionHub:
    """Every subscription of the daemon, by id and by connection; listens to the journal.

    The only writer of both maps: subscriptions are opened, found and ended here.
    """

    def __init__(
        self,
        journal: Journal,
        *,
        queue_limit: int,
        stall_timeout_s: float = 30.0,
        max_per_connection: int | None = None,
        max_total: int | None = None,
    ) -> None:
        """``max_per_connection``/``max_total``: the caps (None: none, for tools)."""
        self.journal = journal
        self.queue_limit = queue_limit
        self.stall_timeout_s = stall_timeout_s
        self.max_per_connection = max_per_connection
        self.max_total = max_total
        self._subscriptions: dict[int, Subscription] = {}
        self._by_outbox: dict[Outbox, dict[int, Subscription]] = {}
        self._ids = itertools.count(1)
        #: batches committed and not yet handed to the live subscriptions
        self._committed: list[Sequence[JournalEvent]] = []
        journal.listeners.append(self._on_commit)

    def __len__(self) -> int:
        return len(self._subscriptions)

    def open(
        self, outbox: Outbox, after: int, types: frozenset[str] | None, *, admin: bool = False
    ) -> Subscription:
        """A subscription of ``outbox`` (a connection) that delivers nothing until
        :meth:`start` (after the response). BUSY past a cap; ``admin`` peers are held
        only to the cap per connection."""
        cap = self.max_per_connection
        if cap is not None and self.count(outbox) >= cap:
            raise errors.Busy(
                f"this connection has {cap} subscriptions open, the most "
                "maxSubscriptionsPerConnection allows: end one (events.unsubscribe) first",
                data={"limit": "maxSubscriptionsPerConnection", "max": cap},
            )
        cap = self.max_total
        if cap is not None and not admin and len(self._subscriptions) >= cap:
            raise errors.Busy(
                f"the daemon has {cap} subscriptions open, the most maxSubscriptions "
                "allows: retry later",
                retry_after_s=1.0,
                data={"limit": "maxSubscriptions", "max": cap},
            )
        sub = Subscription(next(self._ids), outbox, after, types, self.queue_limit)
        self._subscriptions[sub.id] = sub
        self._by_outbox.setdefault(outbox, {})[sub.id] = sub
        return sub

    def find(self, outbox: Outbox, sid: int) -> Subscription | None:
        """Subscription ``sid`` if ``outbox`` opened it (a connection sees only its own)."""
        return self._by_outbox.get(outbox, {}).get(sid)

    def count(self, outbox: Outbox) -> int:
        """How many subscriptions ``outbox`` has open."""
        return len(self._by_outbox.get(outbox, ()))

    def end_of(self, outbox: Outbox) -> None:
        """End every subscription of ``outbox`` silently (its connection went away)."""
        for sub in list(self._by_outbox.get(outbox, {}).values()):
            self.end(sub, None)

    def start(self, sub: Subscription) -> None:
        if not sub.ended:
            sub.live = False
            sub.task = asyncio.get_running_loop().create_task(
                self._replay(sub), name=f"replay-{sub.id}"
            )

    async def _replay(self, sub: Subscription) -> None:
        """Read the journal from ``next_seq`` at the reader's pace, then go live."""
        try:
            while not sub.ended:
                if not await self._room_for(sub):
                    self.end(sub, "overflow")  # it stopped reading
                    return
                if sub.ended:
                    return
                if sub.next_seq < self.journal.first_seq:
                    self.end(sub, "overflow")  # retention removed what it has not had
                    return
                room = max(1, min(REPLAY_PAGE, sub.queue_limit - sub.pending))
                page = self.journal.read(sub.last_seq, room)
                if not page:
                    sub.live = True  # caught up: the listener takes over, same step
                    return
                for event in page:
                    if not sub.deliver(event):
                        break  # full (cannot happen with room computed above): wait
                await asyncio.sleep(0)  # let the connection write between pages
        except Exception:
            log.exception("replay_failed", subscription=sub.id)
            self.end(sub, "overflow")

    async def _room_for(self, sub: Subscription) -> bool:
        """Wait until the queue is down to half; False when nothing of it was written for
        ``stall_timeout_s`` (the reader stopped reading)."""
        while not sub.drained.is_set():
            progress = sub.written
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.drained.wait(), self.stall_timeout_s)
                continue
            if sub.written == progress and not sub.ended:
                log.warning(
                    "subscriber_stalled",
                    subscription=sub.id,
                    pending=sub.pending,
                    timeout_s=self.stall_timeout_s,
                )
                return False
        return True

    def _on_commit(self, batch: Sequence[JournalEvent]) -> None:
        if not self._subscriptions:
            return
        self._committed.append(batch)
        if len(self._committed) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.fan_out)
            except RuntimeError:  # no loop runs (a tool, a test): hand it over now
                self.fan_out()

    def fan_out(self) -> None:
        """Hand the committed batches to the live subscriptions (the loop calls it after a
        commit; :meth:`end_all` before it ends them)."""
        batches, self._committed = self._committed, []
        for batch in batches:
            tails = [protocol.event_tail(event.body) for event in batch]
            for sub in list(self._subscriptions.values()):
                if sub.live and not sub.ended and not sub.deliver_batch(batch, tails):
                    # More than its queue holds at once: the rest from the journal, at the
                    # reader's pace (a burst of the daemon's is not the reader's fault).
                    self.start(sub)

    def end(self, sub: Subscription, reason: EndReason | None) -> None:
        """End a subscription; ``reason`` None ends it silently (unsubscribe, disconnect)."""
        if sub.ended:
            return
        sub.ended = True
        sub.drained.set()
        self._subscriptions.pop(sub.id, None)
        mine = self._by_outbox.get(sub.outbox)
        if mine is not None:
            mine.pop(sub.id, None)
            if not mine:
                del self._by_outbox[sub.outbox]
        if sub.task is not None and sub.task is not asyncio.current_task():
            sub.task.cancel()
        if reason is not None:
            params: dict[str, Any] = {
                "subscription": sub.id,
                "reason": reason,
                "lastSeq": sub.last_seq,
            }
            sub.outbox.send_notice(protocol.notification_line("subscription.ended", dumps(params)))
            log.info(
                "subscription_ended", subscription=sub.id, reason=reason, last_seq=sub.last_seq
            )

    def end_all(self, reason: EndReason) -> None:
        self.fan_out()
        for sub in list(self._subscriptions.values()):
            self.end(sub, reason)
