"""A burst of messages stamped in one millisecond, recovered by the backfill alone.

    .venv/bin/python -m bench.backfill_burst [--copies 250] [--seconds 60]

A daemon (dmPolicy open) on the CLI double whose stream drops everything; a member sends
``--copies`` messages stamped in consecutive nanoseconds of one millisecond (the double's
``same_ms_burst`` switch), then one more. For ``--seconds`` it counts the daemon's
``conversation messages`` calls (through a logging wrapper around the double), the text
messages journaled, the growth of this process's RSS (the daemon runs in it) and health.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import structlog

from convosd.client import ConvosdClient
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import admitted, eventually
from tests.rpc_harness import member_cli, running_daemon


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def texts(client: ConvosdClient) -> int:
    count, after = 0, 0
    while True:
        page = await client.read_events(after=after, limit=1000)
        if not page.events:
            return count
        count += sum(1 for e in page.events if e["type"] == "message")
        after = page.events[-1]["seq"]


async def run(copies: int, seconds: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        net = FakeNetwork(root / "net")
        state = root / "me"
        calls = root / "calls.log"
        wrapper = root / "convos-logged"
        wrapper.write_text(
            f'#!/bin/sh\necho "$*" >> {calls}\nexec {sys.executable} {net.executable} "$@"\n'
        )
        wrapper.chmod(0o755)
        net.add_fault(
            "stream_skip", command="conversation:stream", home=state / "convos", next=10**9
        )
        async with (
            running_daemon(
                net,
                state,
                cli=(str(wrapper),),
                convos={"dm_policy": "open"},
                backfill_interval_s=5.0,
            ) as daemon,
            await ConvosdClient.connect(daemon.socket) as client,
        ):
            created = await client.create(name="Busy")
            guest = member_cli(net, root / "guest")
            await guest.join(created.invite_slug, no_wait=True)
            if not await eventually(lambda: bool(admitted(daemon.instance)), 30):
                raise TimeoutError("the member was not admitted")
            net.add_fault(
                "same_ms_burst",
                command="conversation:send-text",
                home=root / "guest" / "convos",
                count=1,
                copies=copies,
            )
            before_calls = _messages_calls(calls)
            rss0 = rss_mb()
            start = time.monotonic()
            await guest.send_text(created.conversation_id, "burst")
            await guest.send_text(created.conversation_id, "after")
            all_in_at = None
            while time.monotonic() - start < seconds:
                if all_in_at is None and await texts(client) >= copies + 1:
                    all_in_at = time.monotonic() - start
                await asyncio.sleep(0.5)
            elapsed = time.monotonic() - start
            health = await client.health()
            return {
                "messages_calls": _messages_calls(calls) - before_calls,
                "calls_per_min": round((_messages_calls(calls) - before_calls) / elapsed * 60),
                "journaled": await texts(client),
                "expected": copies + 1,
                "all_journaled_after_s": None if all_in_at is None else round(all_in_at, 1),
                "rss_growth_mb": round(rss_mb() - rss0, 1),
                "health": health.status,
                "backfill_check": health.checks.get("backfill", "(no such check)"),
                "seconds": round(elapsed, 1),
            }


def _messages_calls(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(
        1 for line in path.read_text().splitlines() if line.startswith("conversation messages")
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=250)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(40)  # errors only
    )
    result = asyncio.run(run(args.copies, args.seconds))
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    return 0 if result["journaled"] == result["expected"] else 1


if __name__ == "__main__":
    sys.exit(main())
