"""Load: 64 clients x N mixed requests with subscriptions open (N = LOAD_REQUESTS, 250 in the
suite, 1,000 for the documented long run). No error but the documented BUSY answers, bounded
memory, p99 reported."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import pytest

from convosd import errors
from convosd.client import ConvosdClient
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import admitted, eventually
from tests.rpc_harness import member_cli, running_daemon

CLIENTS = 64
REQUESTS = int(os.environ.get("LOAD_REQUESTS", "250"))


def rss_kb() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_mixed_load_with_subscriptions(net: FakeNetwork, tmp_path: Path) -> None:
    async with running_daemon(net, tmp_path / "d") as daemon:
        setup = await ConvosdClient.connect(daemon.socket)
        await setup.create(name="Load")
        await setup.close()
        latencies: list[float] = []
        busy = 0
        other: list[str] = []
        rss_start = rss_kb()

        async def one(index: int) -> None:
            nonlocal busy
            rng = random.Random(index)
            client = await ConvosdClient.connect(daemon.socket)
            try:
                await client.call("events.subscribe", {})
                for i in range(REQUESTS):
                    roll = rng.random()
                    if roll < 0.5:
                        method, params = "status", None
                    elif roll < 0.75:
                        method, params = "health", None
                    elif roll < 0.95:
                        method, params = "events.read", {"limit": 50}
                    else:
                        method, params = "message.send", {"message": f"c{index}-{i}"}
                    started = time.perf_counter()
                    try:
                        await client.call(method, params)
                    except errors.Busy:
                        busy += 1
                    except errors.ConvosdError as exc:
                        other.append(f"{method}: {exc.kind} {exc.message}")
                    latencies.append(time.perf_counter() - started)
                    if rng.random() < 0.1:  # let the notifications drain now and then
                        while not client.notifications.empty():
                            client.notifications.get_nowait()
            finally:
                await client.close()

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(CLIENTS)))
        elapsed = time.perf_counter() - started
        assert other == []
        latencies.sort()
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[int(len(latencies) * 0.99)] * 1000
        grown_mb = (rss_kb() - rss_start) / 1024
        print(
            f"\nload: {CLIENTS} clients x {REQUESTS} requests in {elapsed:.1f} s "
            f"({len(latencies) / elapsed:,.0f} req/s), p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"BUSY {busy}, RSS growth {grown_mb:.1f} MB"
        )
        assert len(latencies) == CLIENTS * REQUESTS
        assert grown_mb < 100, "memory grew without bound"
        async with await ConvosdClient.connect(daemon.socket) as check:
            assert (await check.health()).status in ("ok", "degraded")
            assert (await check.status()).subscribers == 0


HISTORY = 10_000


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_a_backfill_of_a_long_history_reaches_a_prompt_subscriber_whole(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """The stream drops everything; 10,000 messages land in the conversation at once: the
    backfill pages through them (200 per ``conversation messages`` call, each as cheap as
    in a short conversation) and journals them in a few merges far larger than the
    subscriber's queue (50). A subscriber that reads as it is given gets every one, in
    order, and its subscription never ends. (The 1,000 msgs/s run: bench.backfill_load.)"""
    state = tmp_path / "d"
    net.add_fault("stream_skip", command="conversation:stream", home=state / "convos", next=10**9)
    async with running_daemon(
        net, state, convos={"dm_policy": "open"}, subscriber_queue=50, backfill_interval_s=0.5
    ) as daemon:
        client = await ConvosdClient.connect(daemon.socket)
        created = await client.create(name="History")
        guest = tmp_path / "guest"
        await member_cli(net, guest).join(created.invite_slug, no_wait=True)
        assert await eventually(lambda: bool(admitted(daemon.instance)), 60)
        subscription = await client.call("events.subscribe", {"types": ["message"]})
        stamps = net.add_history(
            created.conversation_id, net.inbox_id(guest / "convos"), HISTORY, spacing_ns=50_000
        )
        assert len(stamps) == HISTORY
        got: list[str] = []
        ended = None
        started = time.monotonic()
        while len(got) < HISTORY and ended is None:
            note = await asyncio.wait_for(client.notifications.get(), 120)
            if note["method"] == "subscription.ended":
                ended = note["params"]
            else:
                assert note["params"]["subscription"] == subscription["subscription"]
                got.append(note["params"]["event"]["content"])
        print(f"\n{len(got)} of {HISTORY} in {time.monotonic() - started:.1f} s; ended: {ended}")
        assert ended is None
        assert got == [f"old {i}" for i in range(HISTORY)]
        await client.close()
