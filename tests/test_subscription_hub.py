"""The subscription hub owns every subscription, by id and by connection: a connection
finds only its own, ending one (for any reason) removes it from both, and ``end_of`` ends a
connection's subscriptions without a notice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from convosd import errors
from convosd.events import NewEvent, event
from convosd.rpc.subscriptions import Subscription, SubscriptionHub
from convosd.storage.journal import Journal
from convosd.storage.store import Store
from tests.helpers import eventually


class Conn:
    """An outbox that records what the hub hands it."""

    def __init__(self) -> None:
        self.events: list[bytes] = []
        self.notices: list[bytes] = []
        self.ended = asyncio.Event()

    def send_event(self, subscription: Subscription, line: bytes) -> None:
        self.events.append(line)

    def send_events(self, subscription: Subscription, data: bytes, lines: int) -> None:
        self.events += data.splitlines(keepends=True)
        assert len(self.events) >= lines

    def send_notice(self, line: bytes) -> None:
        self.notices.append(line)
        self.ended.set()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[SubscriptionHub]:
    store = Store.open(tmp_path)
    yield SubscriptionHub(Journal(store), queue_limit=10)
    store.close()


async def test_a_connection_finds_only_its_own_subscriptions(hub: SubscriptionHub) -> None:
    a, b = Conn(), Conn()
    first = hub.open(a, 0, None)
    second = hub.open(a, 0, None)
    other = hub.open(b, 0, None)
    assert len(hub) == 3
    assert (hub.count(a), hub.count(b)) == (2, 1)
    assert hub.find(a, first.id) is first and hub.find(a, second.id) is second
    assert hub.find(b, first.id) is None and hub.find(a, other.id) is None
    hub.end(first, None)
    assert hub.find(a, first.id) is None and hub.count(a) == 1 and len(hub) == 2
    assert a.notices == []  # ended silently


async def test_end_of_ends_one_connection_silently(hub: SubscriptionHub) -> None:
    a, b = Conn(), Conn()
    mine = [hub.open(a, 0, None), hub.open(a, 0, None)]
    other = hub.open(b, 0, None)
    hub.end_of(a)
    assert all(sub.ended for sub in mine) and not other.ended
    assert hub.count(a) == 0 and hub.count(b) == 1 and len(hub) == 1
    assert a.notices == []
    hub.end_all("reset")
    assert other.ended and hub.count(b) == 0 and len(hub) == 0
    assert len(b.notices) == 1 and b"subscription.ended" in b.notices[0]


def locked(value: bool) -> NewEvent:
    return event("conversation_locked", "c" * 32, locked=value)


async def live(hub: SubscriptionHub, conn: Conn) -> Subscription:
    sub = hub.open(conn, hub.journal.last_seq, None)
    hub.start(sub)
    assert sub.task is not None
    await sub.task  # an empty replay: live
    assert sub.live
    return sub


async def next_turn() -> None:
    turn = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(turn.set_result, None)
    await turn


async def test_fan_out_is_not_done_by_the_journals_append(hub: SubscriptionHub) -> None:
    conns = [Conn() for _ in range(3)]
    subs = [await live(hub, c) for c in conns]
    written = hub.journal.append([locked(True), locked(False)])
    assert all(c.events == [] for c in conns)  # append returned before any hand-over
    await next_turn()
    for conn, sub in zip(conns, subs, strict=True):
        assert len(conn.events) == 2 and sub.next_seq == written[-1].seq + 1
        assert conn.events[0] == (
            b'{"jsonrpc":"2.0","method":"event","params":{"subscription":%d,"event":%s}}\n'
            % (sub.id, written[0].body.encode())
        )


async def test_ending_all_hands_over_what_was_committed_first(hub: SubscriptionHub) -> None:
    conn = Conn()
    await live(hub, conn)
    hub.journal.append([locked(True)])
    hub.end_all("shutdown")  # in the same step as the commit
    assert len(conn.events) == 1 and len(conn.notices) == 1


class Reader(Conn):
    """A connection whose peer keeps up: what it is handed is written in the next turns of
    the loop (``wrote``, as the connection's writer does after each write)."""

    def send_events(self, subscription: Subscription, data: bytes, lines: int) -> None:
        super().send_events(subscription, data, lines)
        asyncio.get_running_loop().call_soon(subscription.wrote, lines)

    def send_event(self, subscription: Subscription, line: bytes) -> None:
        super().send_event(subscription, line)
        asyncio.get_running_loop().call_soon(subscription.wrote, 1)


def seqs(conn: Conn) -> list[int]:
    return [json.loads(line)["params"]["event"]["seq"] for line in conn.events]


async def test_a_burst_larger_than_the_queue_reaches_a_reader_that_keeps_up(
    hub: SubscriptionHub,
) -> None:
    """The daemon's own burst (a backfill journals thousands in one merge) is no reason to
    drop a subscriber that reads: what does not fit is read from the journal at its pace."""
    conn = Reader()
    sub = await live(hub, conn)
    written = hub.journal.append([locked(i % 2 == 0) for i in range(95)])  # queue: 10
    more = hub.journal.append([locked(True)])  # live again once caught up
    assert await eventually(lambda: len(conn.events) == 96)
    assert seqs(conn) == [e.seq for e in [*written, *more]]
    assert conn.notices == [] and not sub.ended
    assert await eventually(lambda: sub.live)
    last = hub.journal.append([locked(False)])
    assert await eventually(lambda: len(conn.events) == 97)
    assert seqs(conn)[-1] == last[0].seq and sub.pending <= sub.queue_limit


async def test_a_reader_that_stops_reading_overflows_once_stalled(tmp_path: Path) -> None:
    """Past its queue, a reader that writes nothing for ``stall_timeout_s`` is ended with
    ``overflow`` and the last seq it was handed."""
    store = Store.open(tmp_path)
    try:
        hub = SubscriptionHub(Journal(store), queue_limit=10, stall_timeout_s=0.2)
        conn = Conn()
        sub = await live(hub, conn)  # it never writes: the queue of 10 fills
        written = hub.journal.append([locked(i % 2 == 0) for i in range(15)])
        await asyncio.wait_for(conn.ended.wait(), 10)
        assert len(conn.events) == 10 and sub.ended
        assert conn.events[-1].endswith(written[9].body.encode() + b"}}\n")
        assert b'"reason":"overflow","lastSeq":%d' % written[9].seq in conn.notices[0]
    finally:
        store.close()


async def test_a_reader_that_is_slow_but_reads_is_never_dropped(tmp_path: Path) -> None:
    """Writing a little at a time, slower than events come, is reading: no overflow."""
    store = Store.open(tmp_path)
    try:
        hub = SubscriptionHub(Journal(store), queue_limit=10, stall_timeout_s=0.5)
        conn = Conn()  # writes only when the test says
        sub = await live(hub, conn)
        for _ in range(6):
            hub.journal.append([locked(i % 2 == 0) for i in range(10)])
            await next_turn()
        for _ in range(1000):
            if len(conn.events) == 60:
                break
            # Three lines every 50 ms: 1 s in all, twice the stall timeout, never silent
            # for long (timers fire in deadline order, so a busy loop delays both alike).
            await asyncio.sleep(0.05)
            sub.wrote(min(sub.pending, 3))
        assert seqs(conn) == list(range(1, 61))
        assert conn.notices == [] and not sub.ended
    finally:
        store.close()


async def test_a_reader_overtaken_by_retention_overflows(tmp_path: Path) -> None:
    """Events it has not had were trimmed: it ends with overflow (its next subscribe with
    ``after: lastSeq`` says EVENTS_EXPIRED), never with a silent gap."""
    store = Store.open(tmp_path)
    try:
        journal = Journal(store, max_events=20)
        hub = SubscriptionHub(journal, queue_limit=10, stall_timeout_s=60)
        conn = Conn()
        sub = await live(hub, conn)
        journal.append([locked(i % 2 == 0) for i in range(50)])
        await next_turn()
        assert len(conn.events) == 10  # the rest waits in the journal
        journal.trim()
        assert journal.first_seq == 31
        sub.wrote(10)
        assert await eventually(lambda: sub.ended)
        assert seqs(conn) == list(range(1, 11))
        assert b'"reason":"overflow","lastSeq":10' in conn.notices[0]
    finally:
        store.close()


def capped(hub: SubscriptionHub, per_connection: int, total: int) -> SubscriptionHub:
    return SubscriptionHub(
        hub.journal,
        queue_limit=10,
        max_per_connection=per_connection,
        max_total=total,
    )


async def test_a_connection_past_its_cap_gets_busy_naming_the_cap(hub: SubscriptionHub) -> None:
    """100,000 subscriptions from one connection cost the daemon 167 MB: each connection
    may hold maxSubscriptionsPerConnection, admins included."""
    hub = capped(hub, per_connection=3, total=100)
    a, b = Conn(), Conn()
    mine = [hub.open(a, 0, None) for _ in range(3)]
    for admin in (False, True):
        with pytest.raises(errors.Busy) as refused:
            hub.open(a, 0, None, admin=admin)
        assert refused.value.rpc_data() == {
            "kind": "BUSY",
            "limit": "maxSubscriptionsPerConnection",
            "max": 3,
        }
        assert "events.unsubscribe" in refused.value.message
    assert hub.count(a) == 3 and len(hub) == 3
    hub.open(b, 0, None)  # another connection has its own
    hub.end(mine[0], None)
    hub.open(a, 0, None)  # room again once one ended
    assert hub.count(a) == 3 and len(hub) == 4


async def test_past_the_cap_in_all_only_admins_get_more(hub: SubscriptionHub) -> None:
    hub = capped(hub, per_connection=2, total=5)
    conns = [Conn() for _ in range(4)]
    for conn in conns[:2]:
        hub.open(conn, 0, None)
        hub.open(conn, 0, None)
    last = hub.open(conns[2], 0, None)
    with pytest.raises(errors.Busy) as refused:
        hub.open(conns[2], 0, None)
    assert refused.value.rpc_data() == {
        "kind": "BUSY",
        "retryAfterS": 1.0,
        "limit": "maxSubscriptions",
        "max": 5,
    }
    assert len(hub) == 5
    hub.open(conns[3], 0, None, admin=True)  # an admin peer goes past it...
    hub.open(conns[3], 0, None, admin=True)
    with pytest.raises(errors.Busy, match="maxSubscriptionsPerConnection"):
        hub.open(conns[3], 0, None, admin=True)  # ...within its own connection's cap
    hub.end(last, None)
    with pytest.raises(errors.Busy, match="maxSubscriptions "):
        hub.open(conns[2], 0, None)  # the admin's two still count
    hub.end_of(conns[3])
    hub.open(conns[2], 0, None)
    assert len(hub) == 5
