"""Retention trims in chunks and lets the event loop run between them: a large trim must
not stop the daemon (``bench.hotpath`` measures the stall for a million events)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from convosd.events import event
from convosd.storage.journal import TRIM_CHUNK, Journal
from convosd.storage.store import Store
from tests.helpers import Ticker


def filled(tmp_path: Path, count: int, now: list[float]) -> Journal:
    store = Store.open(tmp_path)
    journal = Journal(store, max_events=count, max_age_s=100, clock=lambda: now[0])
    for start in range(0, count, 10_000):
        journal.append(
            event(
                "message",
                "c" * 32,
                messageId=f"{i:064x}",
                senderInboxId="a" * 64,
                senderName=None,
                contentType="text",
                content=f"message {i}",
                sentAt="2026-11-23T12:00:00.000Z",
                replyTo=None,
                reaction=None,
                attachment=None,
            )
            for i in range(start, min(count, start + 10_000))
        )
    return journal


async def test_a_large_trim_yields_to_the_loop_between_chunks(tmp_path: Path) -> None:
    count = 40 * TRIM_CHUNK
    now = [1000.0]
    journal = filled(tmp_path, count, now)
    now[0] = 1050.0
    keep = journal.append([event("conversation_locked", "c" * 32, locked=True)])
    now[0] = 1101.0  # every event but the last one is older than 100 s
    ticker = Ticker()
    started = time.perf_counter()
    removed = await journal.trim_in_steps()
    took = time.perf_counter() - started
    ticker.running = False
    assert removed == count
    assert journal.first_seq == journal.last_seq == keep[0].seq
    assert [e.seq for e in journal.read(0, 10)] == [keep[0].seq]
    # The loop ran between chunks: at least once per chunk, never held for most of the trim.
    assert ticker.ticks >= 40, ticker.ticks
    assert ticker.max_gap < took / 3, (ticker.max_gap, took)
    journal.store.close()


async def test_a_reset_during_a_trim_ends_it(tmp_path: Path) -> None:
    now = [1000.0]
    journal = filled(tmp_path, 3 * TRIM_CHUNK, now)
    now[0] = 2000.0
    steps = asyncio.ensure_future(journal.trim_in_steps())
    await asyncio.sleep(0)  # one turn: the task removes its first chunk and yields
    assert journal.first_seq == TRIM_CHUNK + 1
    journal.reset()
    fresh = journal.append([event("conversation_locked", "c" * 32, locked=True)])
    assert await steps < 3 * TRIM_CHUNK
    assert [e.seq for e in journal.read(0, 10)] == [fresh[0].seq] == [1]
    journal.store.close()
