"""The inbound pipeline without processes: order, exactly-once, own messages, backfill merge."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from convosd.cli.models import CliMessage
from convosd.conversation.hook import Decision, Fate
from convosd.conversation.ingest import Ingest
from convosd.conversation.paging import PAGE_SIZE
from convosd.events import event
from convosd.storage.journal import Journal, JournalEvent
from convosd.storage.store import Store

CID = "c" * 32
OWN = "0" * 64
ALICE = "a" * 64
T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def raw(
    i: int,
    *,
    sender: str = ALICE,
    type_id: str = "text",
    at: datetime | None = None,
    content: str | None = None,
    authority: str = "xmtp.org",
) -> dict[str, object]:
    return {
        "id": f"{i:064x}",
        "senderInboxId": sender,
        "contentType": {
            "authorityId": authority,
            "typeId": type_id,
            "versionMajor": 1,
            "versionMinor": 0,
        },
        "content": content if content is not None else f"m{i}",
        "sentAt": (at or T0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
        "deliveryStatus": 1,
    }


def msg(i: int, **kw: object) -> CliMessage:
    return CliMessage.model_validate(raw(i, **kw))  # type: ignore[arg-type]


def line(i: int, **kw: object) -> bytes:
    return json.dumps(raw(i, **kw)).encode()  # type: ignore[arg-type]


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    store = Store.open(tmp_path)
    yield Journal(store)
    store.close()


def make(journal: Journal, **kw: object) -> Ingest:
    args: dict[str, object] = {
        "journal": journal,
        "conversation_id": CID,
        "own_inbox_id": OWN,
        "bound_at": T0.timestamp() - 60,
        "clock": lambda: T0.timestamp() + 3600,
    }
    args.update(kw)
    return Ingest(**args)  # type: ignore[arg-type]


def journaled_ids(journal: Journal) -> list[str]:
    return [e.as_dict()["messageId"] for e in journal.read(0, 10_000) if e.type == "message"]


def test_lines_are_journaled_in_sent_order_once(journal: Journal) -> None:
    ingest = make(journal)
    ingest.on_stream_lines([line(3), line(1), b"garbage", b"", line(2)])
    ingest.on_stream_lines([line(2), line(4)])
    assert journaled_ids(journal) == [f"{i:064x}" for i in (1, 2, 3, 4)]
    assert ingest.stats.bad_lines == 1
    assert ingest.stats.duplicates == 1


def test_own_messages_are_seen_never_journaled(journal: Journal) -> None:
    ingest = make(journal)
    ingest.on_stream_lines([line(1, sender=OWN), line(2)])
    assert journaled_ids(journal) == [f"{2:064x}"]
    assert journal.store.seen_ids.contains(f"{1:064x}")
    ingest.on_stream_lines([line(1, sender=OWN)])
    assert ingest.stats.by_fate == {"own": 1, "journaled": 1}


def test_a_group_update_of_our_own_makes_the_members_looked_at(journal: Journal) -> None:
    """Our join-request watcher's add is a group_updated sent by our own inbox: not
    journaled, but the members changed (the newcomer's member_joined depends on it)."""
    updates: list[str] = []
    ingest = make(journal, on_group_updated=lambda m: updates.append(m.id))
    ingest.on_stream_lines(
        [
            line(1, sender=OWN, type_id="group_updated", content="Agent added Bob"),
            line(2, sender=OWN),
            line(3, type_id="group_updated", content="Bob left"),
        ]
    )
    assert updates == [f"{1:064x}", f"{3:064x}"]
    assert journaled_ids(journal) == [f"{3:064x}"]
    ingest.on_stream_lines([line(1, sender=OWN, type_id="group_updated")])  # seen: once
    assert len(updates) == 2


def test_silent_types_are_not_message_events(journal: Journal) -> None:
    ingest = make(journal)
    ingest.on_stream_lines(
        [
            line(1, type_id="profile_update", authority="convos.org"),
            line(2, type_id="group_updated", content="Bob joined"),
        ]
    )
    events = [e.as_dict() for e in journal.read(0, 100)]
    assert [(e["type"], e["contentType"]) for e in events] == [("message", "group_updated")]


def test_policy_hook_decides(journal: Journal) -> None:
    def hold_odd(message: CliMessage) -> Decision:
        if int(message.id, 16) % 2:
            return Decision(
                Fate.HELD,
                (
                    event(
                        "pairing_requested",
                        CID,
                        code="ABCDEFGH",
                        senderInboxId=ALICE,
                        senderName=None,
                    ),
                ),
            )
        return Decision(Fate.JOURNALED)

    ingest = make(journal, policy=hold_odd)
    ingest.on_stream_lines([line(1), line(2), line(3, type_id="group_updated")])
    types = [e.type for e in journal.read(0, 100)]
    assert types == ["pairing_requested", "message", "message"]  # group_updated bypasses
    assert journal.store.seen_ids.contains(f"{1:064x}")


def test_event_shape(journal: Journal) -> None:
    make(journal).on_stream_lines([line(1)])
    (e,) = [x.as_dict() for x in journal.read(0, 1)]
    assert set(e) == {
        "seq",
        "type",
        "at",
        "conversationId",
        "messageId",
        "senderInboxId",
        "senderName",
        "contentType",
        "content",
        "sentAt",
        "replyTo",
        "reaction",
        "attachment",
    }
    assert e["sentAt"] == "2026-11-23T12:00:01.000Z"


async def test_backfill_recovers_a_silent_gap_and_merges_live_lines(journal: Journal) -> None:
    ingest = make(journal)
    ingest.on_stream_lines([line(1), line(3)])  # the stream skipped 2
    gate = asyncio.Event()
    calls: list[int] = []

    async def fetch(cursor: int, before: int | None = None, limit: int = 0) -> list[CliMessage]:
        calls.append(cursor)
        await gate.wait()
        return [msg(1), msg(2), msg(3)]

    task = asyncio.create_task(ingest.backfill(fetch))
    await asyncio.sleep(0)
    assert ingest.backfilling
    ingest.on_stream_lines([line(4)])  # live during the backfill: held back
    assert journaled_ids(journal) == [f"{i:064x}" for i in (1, 3)]
    gate.set()
    assert await task == 2
    assert journaled_ids(journal) == [f"{i:064x}" for i in (1, 3, 2, 4)]
    # cursor: 2 s before the newest journaled sentAt (m3 at T0+3 s)
    assert calls == [int((T0.timestamp() + 3 - 2) * 1e9)]


async def test_backfill_pages_until_a_short_page(journal: Journal) -> None:
    ingest = make(journal, clock=lambda: T0.timestamp())
    pages = [[msg(i) for i in range(1, PAGE_SIZE + 1)], [msg(PAGE_SIZE + 1)]]
    cursors: list[int] = []

    async def fetch(cursor: int, before: int | None = None, limit: int = 0) -> list[CliMessage]:
        cursors.append(cursor)
        return pages[len(cursors) - 1]

    assert await ingest.backfill(fetch) == PAGE_SIZE + 1
    # the next page starts at the last page's last millisecond: the rest of it may follow
    assert cursors[1] == msg(PAGE_SIZE).sent_at_ns - 1


async def test_failed_backfill_still_releases_live_lines(journal: Journal) -> None:
    ingest = make(journal)

    async def fetch(cursor: int, before: int | None = None, limit: int = 0) -> list[CliMessage]:
        ingest.on_stream_lines([line(7)])
        raise RuntimeError("network")

    with pytest.raises(RuntimeError):
        await ingest.backfill(fetch)
    assert journaled_ids(journal) == [f"{7:064x}"]
    assert not ingest.backfilling


def alter(store: Store, statement: str) -> None:
    """Change the store's schema from outside (a second connection to its file)."""
    with contextlib.closing(sqlite3.connect(store.path, isolation_level=None)) as other:
        other.execute(statement)


def test_write_failure_keeps_the_batch_for_the_next_one(journal: Journal) -> None:
    ingest = make(journal)
    alter(journal.store, "ALTER TABLE events RENAME TO events_gone")
    ingest.on_stream_lines([line(1)])
    assert not ingest.healthy and ingest.stats.write_failures == 1
    assert not journal.store.seen_ids.contains(f"{1:064x}")
    alter(journal.store, "ALTER TABLE events_gone RENAME TO events")
    ingest.on_stream_lines([line(2)])
    assert ingest.healthy
    assert journaled_ids(journal) == [f"{1:064x}", f"{2:064x}"]


def test_messages_before_the_binding_are_not_journaled(journal: Journal) -> None:
    ingest = make(journal, bound_at=T0.timestamp() + 100)
    ingest.on_stream_lines([line(1), line(200)])
    assert journaled_ids(journal) == [f"{200:064x}"]


class FakeHistory:
    """``conversation messages --direction ascending`` over messages with distinct ns
    timestamps, printed with ms precision; --sent-after/--sent-before exclusive (libxmtp)."""

    def __init__(self, stamps: list[int]) -> None:
        self.stamps = sorted(stamps)
        self.calls = 0

    async def fetch(
        self, after: int, before: int | None = None, limit: int = PAGE_SIZE
    ) -> list[CliMessage]:
        self.calls += 1
        if self.calls > 1000:
            raise AssertionError("the backfill does not progress (over 1000 CLI calls)")
        chosen = [
            (i, ns)
            for i, ns in enumerate(self.stamps)
            if ns > after and (before is None or ns < before)
        ][:limit]
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        return [msg(i + 1, at=epoch + timedelta(milliseconds=ns // 1_000_000)) for i, ns in chosen]


def burst(count: int, *, before: int = 10, after: int = 10) -> list[int]:
    """``count`` messages in one millisecond (consecutive ns from its middle), with
    ``before`` and ``after`` messages a millisecond apart around it."""
    ms = int((T0.timestamp() + 100) * 1000) * 1_000_000
    return (
        [ms - (k + 1) * 1_000_000 for k in range(before)]
        + [ms + 500_000 + k for k in range(count)]
        + [ms + (k + 1) * 1_000_000 for k in range(after)]
    )


@pytest.mark.parametrize("count", [PAGE_SIZE, 250, 3 * PAGE_SIZE + 7])
async def test_a_page_sharing_one_millisecond_cannot_stall_the_backfill(
    journal: Journal, count: int
) -> None:
    ingest = make(journal, clock=lambda: T0.timestamp() + 200)
    history = FakeHistory(burst(count))
    assert await ingest.backfill(history.fetch) == count + 20
    assert len(set(journaled_ids(journal))) == count + 20
    assert history.calls <= 4
    assert ingest.backfill_problem is None


async def test_a_millisecond_too_full_to_read_is_reported_and_passed(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    from convosd.conversation import paging

    monkeypatch.setattr(paging, "SAME_MS_LIMIT", 300)
    ingest = make(journal, clock=lambda: T0.timestamp() + 200)
    history = FakeHistory(burst(400))
    journaled = await ingest.backfill(history.fetch)
    assert journaled == 300 + 20  # the first 300 of the burst, everything around it
    assert ingest.backfill_problem is not None
    assert "more than 300 messages share sentAt" in ingest.backfill_problem
    # a later backfill that reads its whole window clears it
    history.stamps = burst(0)
    await ingest.backfill(history.fetch)
    assert ingest.backfill_problem is None


async def test_a_cli_that_answers_before_the_cursor_stops_the_backfill(journal: Journal) -> None:
    ingest = make(journal, clock=lambda: T0.timestamp() + 200)
    calls: list[int] = []

    async def fetch(after: int, before: int | None = None, limit: int = 0) -> list[CliMessage]:
        calls.append(after)  # ignores --sent-after: always the same first page
        return [msg(i) for i in range(1, PAGE_SIZE + 1)]

    assert await ingest.backfill(fetch) == PAGE_SIZE
    assert len(calls) <= 3
    assert ingest.backfill_problem is not None
    assert "cannot progress" in ingest.backfill_problem


def test_a_backfill_problem_makes_health_degraded() -> None:
    from convosd.health import HealthInputs, evaluate
    from convosd.supervisor.state import ChildState

    running = {"stream": ChildState.RUNNING, "joinRequests": ChildState.RUNNING}
    ok = evaluate(HealthInputs(cli_working=True, bound=True, children=running))
    assert ok == ("ok", {**ok[1], "backfill": "ok"})
    status, checks = evaluate(
        HealthInputs(cli_working=True, bound=True, children=running, backfill_problem="stuck")
    )
    assert (status, checks["backfill"]) == ("degraded", "stuck")


async def test_backfills_failing_in_a_row_are_reported_until_one_succeeds(
    journal: Journal,
) -> None:
    from convosd.conversation.ingest import FAILURES_REPORTED

    ingest = make(journal)
    failing = True

    async def fetch(cursor: int, before: int | None = None, limit: int = 0) -> list[CliMessage]:
        if failing:
            raise RuntimeError("network")
        return []

    for attempt in range(1, FAILURES_REPORTED + 1):
        assert ingest.backfill_problem is None, attempt
        with pytest.raises(RuntimeError):
            await ingest.backfill(fetch)
    assert ingest.backfill_problem is not None
    assert f"{FAILURES_REPORTED} backfills in a row failed" in ingest.backfill_problem
    failing = False
    await ingest.backfill(fetch)
    assert ingest.backfill_problem is None


async def test_a_backfill_merges_each_page_as_it_reads_it(journal: Journal) -> None:
    """A long window is never held whole (memory) nor written in one piece: by the time the
    next page is asked for, the last one is journaled. Live lines still wait for the end."""
    ingest = make(journal, clock=lambda: T0.timestamp())
    history = FakeHistory([int((T0.timestamp() + i) * 1e9) for i in range(1, 3 * PAGE_SIZE)])
    journaled_before_call: list[int] = []

    async def fetch(after: int, before: int | None = None, limit: int = 0) -> list[CliMessage]:
        journaled_before_call.append(len(journaled_ids(journal)))
        ingest.on_stream_lines([line(10_000 + len(journaled_before_call))])  # live: held
        return await history.fetch(after, before, limit)

    # each page starts again at the last one's last millisecond: 4 calls for 599 messages
    assert await ingest.backfill(fetch) == 3 * PAGE_SIZE - 1 + 4
    assert journaled_before_call == [0, PAGE_SIZE, 2 * PAGE_SIZE - 1, 3 * PAGE_SIZE - 2]
    ids = journaled_ids(journal)
    assert ids[-4:] == [f"{10_000 + i:064x}" for i in (1, 2, 3, 4)]  # after the backfill


async def test_a_backfill_that_fails_part_way_goes_on_from_there_next_time(
    journal: Journal,
) -> None:
    """Under load one call in three times out: starting the window over would read the
    same two pages and fail on the third every time; going on from where it stopped, the
    window is read whole after a few backfills."""
    ingest = make(journal, clock=lambda: T0.timestamp())
    stamps = [int((T0.timestamp() + i) * 1e9) for i in range(1, 6 * PAGE_SIZE)]
    history = FakeHistory(stamps)
    calls = 0
    loaded = True

    async def fetch(after: int, before: int | None = None, limit: int = 0) -> list[CliMessage]:
        nonlocal calls
        calls += 1
        if loaded and calls % 3 == 0:
            raise TimeoutError("conversation messages timed out")
        return await history.fetch(after, before, limit)

    for _ in range(5):
        calls = 0
        with contextlib.suppress(TimeoutError):
            await ingest.backfill(fetch)
        if ingest.stats.backfills:
            break
    assert ingest.stats.backfills == 1 and ingest.stats.backfill_failures == 3
    assert len(journaled_ids(journal)) == len(stamps) == len(set(journaled_ids(journal)))
    # the next one reads the whole window again (it may have missed something since)
    loaded = False
    history.calls = 0
    await ingest.backfill(fetch)
    assert history.calls == 7  # 1,199 messages, 199 new ones a page


async def test_live_lines_held_by_a_backfill_are_journaled_after_it_in_pieces(
    journal: Journal,
) -> None:
    """Thousands of lines held during a backfill are not one write that holds the loop: they
    go LIVE_CHUNK at a time, and a line that comes meanwhile still comes after them."""
    from convosd.conversation.ingest import LIVE_CHUNK

    ingest = make(journal)
    batches: list[int] = []

    def committed(batch: Sequence[JournalEvent]) -> None:
        batches.append(len(batch))
        if len(batches) == 1:
            ingest.on_stream_lines([line(9_999)])  # arrives while the held ones are written

    journal.listeners.append(committed)
    held = [line(i) for i in range(1, 2 * LIVE_CHUNK + 501)]

    async def fetch(after: int, before: int | None = None, limit: int = 0) -> list[CliMessage]:
        ingest.on_stream_lines(held)
        return []

    assert await ingest.backfill(fetch) == 2 * LIVE_CHUNK + 501
    assert batches == [LIVE_CHUNK, LIVE_CHUNK, 501]
    ids = journaled_ids(journal)
    assert ids == [f"{i:064x}" for i in range(1, 2 * LIVE_CHUNK + 501)] + [f"{9_999:064x}"]
    assert not ingest.backfilling


# --- a stream that listens late (it says nothing when it starts listening) ---------------


async def test_a_backfill_done_before_the_streams_first_line_reads_once_more(
    journal: Journal,
) -> None:
    """The start-up backfill's last page was asked for before the restarted stream printed
    its first line: what was sent before the stream listened (m2) came on no line, so the
    backfill reads again before the live line (m3) is journaled."""
    ingest = make(journal)
    ingest.stream_started()
    network = [msg(1)]
    cursors: list[int] = []

    async def fetch(cursor: int, before: int | None = None, limit: int = 0) -> list[CliMessage]:
        cursors.append(cursor)
        page = list(network)
        if len(cursors) == 1:
            # while the first page is on its way: m2 is sent, the stream starts listening,
            # m3 is sent and comes on its first line
            network.extend([msg(2), msg(3)])
            ingest.on_stream_lines([line(3)])
        return page

    await ingest.backfill(fetch)
    assert journaled_ids(journal) == [f"{i:064x}" for i in (1, 2, 3)]
    assert len(cursors) == 2
    assert ingest.stream_listening
    # from now on the stream's lines go straight to the journal
    ingest.on_stream_lines([line(4)])
    assert journaled_ids(journal)[-1] == f"{4:064x}"
    assert ingest.stats.catch_ups == 0


async def test_the_streams_first_line_after_the_start_up_backfill_brings_a_catch_up(
    journal: Journal,
) -> None:
    ingest = make(journal, clock=lambda: T0.timestamp())
    caught_up: list[bool] = []
    ingest.on_catch_up = lambda: caught_up.append(True)
    ingest.stream_started()
    last = PAGE_SIZE + 3
    network = [msg(i) for i in range(1, last + 1)]
    cursors: list[int] = []

    async def fetch(cursor: int, before: int | None = None, limit: int = 0) -> list[CliMessage]:
        cursors.append(cursor)
        return [m for m in network if m.sent_at_ns > cursor][:limit]

    await ingest.backfill(fetch)  # nothing from the stream yet: not known to listen
    assert not ingest.stream_listening and not ingest.holding
    tail = cursors[-1]
    network.append(msg(last + 1))  # sent before the stream listened: on no line
    network.append(msg(last + 2))
    ingest.on_stream_lines([line(last + 2)])  # its first line
    assert caught_up == [True] and ingest.stats.catch_ups == 1
    assert len(journaled_ids(journal)) == last  # the line waits for the catch-up
    ingest.on_stream_lines([line(last + 3)])  # held too
    network.append(msg(last + 3))
    await ingest.backfill(fetch, catch_up=True)
    assert journaled_ids(journal) == [f"{i:064x}" for i in range(1, last + 4)]
    # the catch-up read from the last complete page's start less the margin, not the window
    assert cursors[-1] == tail - 2_000_000_000
    assert ingest.stream_listening
    ingest.on_stream_lines([line(last + 4)])
    assert journaled_ids(journal)[-1] == f"{last + 4:064x}"
    assert caught_up == [True]  # once per start
