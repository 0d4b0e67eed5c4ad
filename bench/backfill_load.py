"""A prompt subscriber while messages arrive at 1,000/s and the periodic backfill runs.

    .venv/bin/python -m bench.backfill_load [--messages 70000] [--rate 1000]
        [--interval-s 60] [--window-s 600] [--settle-s 120]

A daemon (dmPolicy open, the default ``backfillIntervalS`` and ``backfillWindowS`` unless
given) on the CLI double, bound to a conversation with one member. A separate process sends
``--messages`` texts as that member at ``--rate`` per second, straight into the double's
network (as another client would), while one subscriber (``events.subscribe {types:
[message]}``, the Python client, which reads every line as it comes) counts what it is given.
After the last send it waits up to ``--settle-s`` for the rest. Printed: messages sent and
the rate reached, delivered to the subscriber, whether its subscription ended (``overflow``
and at which seq), messages journaled, every backfill (its duration, pages, slowest page,
messages read and journaled, from the daemon's ``backfill_done``/``backfill_failed`` log
lines), the longest the event loop was held, this process's RSS (before the sending, its
peak, after) and the daemon's health.
Exit 0 when every message was delivered and nothing overflowed.

The daemon and the subscriber share this process (uvloop); the sender and the double's
children are their own processes. Loopback only, bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog
import uvloop

from convosd.client import Client
from convosd.config import load_settings
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import admitted, eventually
from tests.rpc_harness import member_cli, running_daemon

ROOT = Path(__file__).resolve().parent.parent
SENDER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.fakeconvos.fc_store import CT_TEXT, Store
store = Store({net!r}, "dev")
n, rate = {n}, {rate}
start = time.monotonic()
for i in range(n):
    due = start + i / rate
    pause = due - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    store.send({conv!r}, {inbox!r}, CT_TEXT, {{"text": f"load {{i}}"}})
print(time.monotonic() - start, flush=True)
"""


class BackfillLog:
    """Keeps the daemon's backfill log lines (a structlog processor; drops nothing else)."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def __call__(self, _logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("event") in ("backfill_done", "backfill_failed"):
            self.lines.append({**event, "t": time.monotonic()})
        return event


def rss_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process (the daemon runs in it), MB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


class StallProbe:
    """The longest the event loop (the daemon's, in this process) was late for a timer
    due every 10 ms: how long something held the loop. Costs 100 wake-ups a second."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.longest = 0.0
        self.handle = self.loop.call_later(0.01, self._tick, self.loop.time() + 0.01)

    def _tick(self, due: float) -> None:
        self.longest = max(self.longest, self.loop.time() - due)
        self.handle = self.loop.call_later(0.01, self._tick, self.loop.time() + 0.01)

    def stop(self) -> float:
        self.handle.cancel()
        return round(self.longest, 3)


async def count_messages(client: Client) -> int:
    count, after = 0, 0
    while True:
        params = {"after": after, "limit": 1000, "types": ["message"]}
        page = await client.call("events.read", params)
        if not page["events"]:
            return count
        count += len(page["events"])
        after = page["events"][-1]["seq"]


async def run(args: argparse.Namespace, backfills: BackfillLog) -> dict[str, Any]:
    defaults = load_settings({}, environ={}).daemon
    interval = args.interval_s if args.interval_s is not None else defaults.backfill_interval_s
    window = args.window_s if args.window_s is not None else defaults.backfill_window_s
    with tempfile.TemporaryDirectory() as tmp:
        net = FakeNetwork(Path(tmp) / "net")
        state = Path(tmp) / "me"
        async with running_daemon(
            net,
            state,
            convos={"dm_policy": "open"},
            backfill_interval_s=interval,
            backfill_window_s=window,
        ) as daemon:
            client = await daemon.client()
            created = await client.call("conversation.create", {"name": "Load"})
            guest_state = Path(tmp) / "guest"
            guest = member_cli(net, guest_state)
            await guest.join(created["inviteSlug"], no_wait=True)
            if not await eventually(lambda: bool(admitted(daemon.instance)), 60):
                raise TimeoutError("the member was not admitted")
            inbox = net.inbox_id(guest_state / "convos")
            before = await count_messages(client)
            sub = await client.call("events.subscribe", {"types": ["message"]})
            delivered = 0
            ended: dict[str, Any] | None = None
            finished = asyncio.Event()  # every message delivered, or the subscription ended

            async def reader() -> None:
                nonlocal delivered, ended
                while True:
                    note = await client.notifications.get()
                    if note["method"] == "event":
                        delivered += 1
                        if delivered >= args.messages:
                            finished.set()
                    elif note["method"] == "subscription.ended":
                        ended = note["params"]
                        finished.set()
                        return

            reading = asyncio.create_task(reader())
            rss_before = rss_mb("VmRSS")
            probe = StallProbe()
            started = time.monotonic()
            backfills.lines.clear()
            script = SENDER.format(
                root=str(ROOT),
                net=str(net.path),
                conv=created["conversationId"],
                inbox=inbox,
                n=args.messages,
                rate=args.rate,
            )
            sender = await asyncio.create_subprocess_exec(
                sys.executable, "-c", script, stdout=subprocess.PIPE
            )
            out, _ = await sender.communicate()
            send_s = float(out.decode().strip() or "nan")
            sent_at = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), args.settle_s)
            longest_stall_s = probe.stop()
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
            journaled = await count_messages(client) - before
            health = await client.call("health")
            await client.close()
    return {
        "sent": args.messages,
        "send_rate_per_s": round(args.messages / send_s),
        "delivered": delivered,
        "subscription": sub["subscription"],
        "ended": ended,
        "journaled": journaled,
        "settle_s": round(time.monotonic() - sent_at, 1),
        "backfill_interval_s": interval,
        "backfill_window_s": window,
        "backfills": [
            {
                "at_s": round(line["t"] - started, 1),
                **{
                    k: line.get(k)
                    for k in (
                        "event",
                        "duration_s",
                        "pages",
                        "slowest_page_s",
                        "read",
                        "held_live",
                        "journaled",
                        "error",
                    )
                    if k in line
                },
            }
            for line in backfills.lines
        ],
        "longest_loop_stall_s": longest_stall_s,
        "rss_mb": {"before": rss_before, "peak": rss_mb("VmHWM"), "after": rss_mb("VmRSS")},
        "health": health["status"],
        "health_checks": {k: v for k, v in health["checks"].items() if v != "ok"},
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=70_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--interval-s", type=float, default=None, help="backfillIntervalS")
    parser.add_argument("--window-s", type=float, default=None, help="backfillWindowS")
    parser.add_argument("--settle-s", type=float, default=120.0)
    args = parser.parse_args()
    backfills = BackfillLog()
    structlog.configure(
        processors=[backfills, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(20),
        logger_factory=structlog.PrintLoggerFactory(open("/dev/null", "w")),  # noqa: SIM115
    )
    result = uvloop.run(run(args, backfills))
    for key, value in result.items():
        if key == "backfills":
            print(f"{key:>20}:")
            for line in value:
                print(f"{'':>22}{line}")
        else:
            print(f"{key:>20}: {value}")
    ok = result["delivered"] == result["sent"] and result["ended"] is None
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
