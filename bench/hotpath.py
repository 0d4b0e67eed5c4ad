"""What must not block the loop at scale, in process, each with its baseline in the same run.

    .venv/bin/python -m bench.hotpath [--trim-events N] [--subscribers N] [--seconds S]

- retention: the longest loop stall while the journal trims N events (250,000 by default;
  ``BENCH_TRIM_EVENTS=1000000`` or ``--trim-events`` for the long run), measured by a
  ticker that reschedules itself every loop turn; beside the same trim done in one go;
- the sender policy: the cost per message with 100,000 approved senders beside 10;
- ``events.read``: events per second read and encoded for the wire (1,000 per call) beside
  ``json.loads`` + ``json.dumps`` of the same bodies;
- fan-out: events per second journaled (batches of 50) with 1,000 live subscribers, the
  time inside ``journal.append`` and the time until every subscriber has every event,
  beside the same journal with no subscriber.

The same module runs against an older tree (``PYTHONPATH=<tree> python -m bench.hotpath``)
for a before/after pair: it uses what the tree has (``trim_in_steps`` or only ``trim``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from pydantic import BaseModel

from convosd.api.events import EventsApi
from convosd.cli.models import CliMessage
from convosd.conversation.pairing import SenderPolicy
from convosd.events import event
from convosd.jsonutil import dumps
from convosd.rpc import protocol
from convosd.rpc import schemas as s
from convosd.rpc.dispatch import CallContext
from convosd.rpc.subscriptions import Subscription, SubscriptionHub
from convosd.storage.journal import Journal
from convosd.storage.store import Store
from tests.helpers import Ticker


def message_fields(i: int) -> dict[str, Any]:
    return {
        "messageId": f"{i:064x}",
        "senderInboxId": "a" * 64,
        "senderName": "Zoë",
        "contentType": "text",
        "content": f"message number {i}: a sentence of ordinary length, with a re-run of it",
        "sentAt": "2026-11-23T12:00:00.000Z",
        "replyTo": None,
        "reaction": None,
        "attachment": None,
    }


def fill(store: Store, count: int, at: float) -> None:
    """``count`` message events, written straight into the journal's table (fast)."""
    step = 20_000
    for start in range(0, count, step):
        rows = []
        for seq in range(start + 1, min(count, start + step) + 1):
            body = dumps(
                {
                    "seq": seq,
                    "type": "message",
                    "at": "2026-11-23T12:00:00.000Z",
                    "conversationId": "c" * 32,
                    **message_fields(seq),
                }
            )
            rows.append((seq, "message", at, body))
        with store.transaction():
            store.events.insert(rows)
            store.meta.set("last_seq", str(rows[-1][0]))


async def trim(root: Path, count: int, in_steps: bool) -> tuple[float, float, int]:
    """(max stall s, total s, removed)."""
    directory = Path(tempfile.mkdtemp(prefix="trim-", dir=root))
    store = Store.open(directory)
    try:
        fill(store, count, at=1000.0)
        journal = Journal(store, max_age_s=100, clock=lambda: 2000.0)
        ticker = Ticker()
        await asyncio.sleep(0)
        started = time.perf_counter()
        if in_steps:
            removed = await journal.trim_in_steps()
        else:
            removed = journal.trim()
        took = time.perf_counter() - started
        await asyncio.sleep(0)
        ticker.running = False
        return ticker.max_gap, took, removed
    finally:
        store.close()


def policy_cost(root: Path, approved: int, dm_policy: str) -> float:
    """Seconds per message of an approved sender."""
    directory = root / f"policy-{approved}-{dm_policy}"
    directory.mkdir()
    store = Store.open(directory)
    try:
        with store.transaction():
            for i in range(approved):
                store.pairing.approve(f"{i:064x}", "pairing", 0.0)
        policy = SenderPolicy(
            store,
            Journal(store),
            policy=dm_policy,  # type: ignore[arg-type]
            owners=frozenset,
            conversation_id=lambda: "c" * 32,
        )
        messages = [
            CliMessage.model_validate(
                {
                    "id": f"{n:064x}",
                    "senderInboxId": f"{n % approved:064x}",
                    "content": "hi",
                    "contentType": {"authorityId": "xmtp.org", "typeId": "text"},
                    "sentAt": "2026-11-23T12:00:00.000Z",
                }
            )
            for n in range(2000)
        ]
        started = time.perf_counter()
        for message in messages:
            policy(message)
        return (time.perf_counter() - started) / len(messages)
    finally:
        store.close()


async def read_rate(root: Path, seconds: float) -> tuple[float, float]:
    """(events/s through events.read and the wire encoding, events/s decode + encode)."""
    directory = root / "read"
    directory.mkdir()
    store = Store.open(directory)
    try:
        fill(store, 5000, at=time.time())
        journal = Journal(store)
        api = EventsApi(journal, SubscriptionHub(journal, queue_limit=1000))
        ctx = CallContext(connection=None, peer_uid=None, is_admin=True)
        params = s.ReadParams(after=0, limit=1000)
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            result: Any = await api.read(ctx, params)
            if isinstance(result, BaseModel):  # an older tree: what its dispatcher did
                result = result.model_dump(by_alias=True, mode="json")
            protocol.encode(protocol.result_object(count, result))
            count += 1000
        spliced = count / (time.perf_counter() - started)
        bodies = [e.body for e in journal.read(0, 1000)]
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            json.dumps([json.loads(b) for b in bodies])
            count += 1000
        return spliced, count / (time.perf_counter() - started)
    finally:
        store.close()


class Sink:
    """A subscriber's connection that writes at once (counts lines)."""

    def __init__(self) -> None:
        self.lines = 0

    def send_event(self, subscription: Subscription, line: bytes) -> None:
        self.lines += 1
        subscription.wrote()

    def send_events(self, subscription: Subscription, data: bytes, lines: int) -> None:
        self.lines += lines
        subscription.wrote(lines)

    def send_notice(self, line: bytes) -> None:
        pass


async def fan_out(root: Path, subscribers: int, events: int) -> tuple[float, float]:
    """(events/s inside journal.append, events/s until every subscriber has them)."""
    directory = root / f"fanout-{subscribers}"
    directory.mkdir()
    store = Store.open(directory)
    try:
        journal = Journal(store)
        hub = SubscriptionHub(journal, queue_limit=1_000_000)
        sinks = [Sink() for _ in range(subscribers)]
        for sink in sinks:
            sub = hub.open(sink, journal.last_seq, None)
            hub.start(sub)
            assert sub.task is not None
            await sub.task
        batch = 50
        in_append = 0.0
        started = time.perf_counter()
        for start in range(0, events, batch):
            new = [
                event("message", "c" * 32, **message_fields(i)) for i in range(start, start + batch)
            ]
            t0 = time.perf_counter()
            journal.append(new)
            in_append += time.perf_counter() - t0
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert all(sink.lines == events for sink in sinks), "not every event was delivered"
        total = time.perf_counter() - started
        return events / in_append, events / total
    finally:
        store.close()


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        has_steps = hasattr(Journal, "trim_in_steps")
        stall, took, removed = await trim(root, args.trim_events, in_steps=has_steps)
        once_stall, once_took = stall, took
        if has_steps:
            once_stall, once_took, _ = await trim(root, args.trim_events, in_steps=False)
        print(
            f"trim {removed:,} events: longest loop stall {stall * 1000:.1f} ms "
            f"({'in steps' if has_steps else 'one transaction'}, {took:.2f} s in all) | "
            f"all at once: stall {once_stall * 1000:.1f} ms ({once_took:.2f} s)"
        )
        costs = {
            (approved, pol): statistics.median(policy_cost(root, approved, pol) for _ in range(1))
            for approved in (10, 100_000)
            for pol in ("allowlist", "pairing")
        }
        for pol in ("allowlist", "pairing"):
            print(
                f"policy {pol:<9}: {costs[(100_000, pol)] * 1e6:8.1f} us per message at 100,000 "
                f"approved | {costs[(10, pol)] * 1e6:.1f} us at 10"
            )
        spliced, stdlib = await read_rate(root, args.seconds)
        print(
            f"events.read: {spliced:,.0f} events/s read and encoded (1,000 per call) | "
            f"json.loads + json.dumps of the same bodies {stdlib:,.0f}/s"
        )
        events = max(1000, int(args.seconds * 2000))
        append_rate, total_rate = await fan_out(root, args.subscribers, events)
        base_append, base_total = await fan_out(root, 0, events)
        print(
            f"journal with {args.subscribers:,} live subscribers: {append_rate:,.0f} events/s "
            f"inside append, {total_rate:,.0f} events/s delivered to all | no subscriber: "
            f"{base_append:,.0f} inside append, {base_total:,.0f} end to end"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--trim-events", type=int, default=int(os.environ.get("BENCH_TRIM_EVENTS", "250000"))
    )
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=2.0)
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
