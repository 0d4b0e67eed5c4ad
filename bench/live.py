"""Typing and read receipts through the daemon vs the CLI double run directly; expiry latency.

    .venv/bin/python -m bench.live [--runs 20] [--expiries 3]

- ``conversation.typing`` and ``message.markRead`` over the socket vs the same argv
  (``send-typing-indicator``, ``send-read-receipt``) run directly, interleaved so machine noise
  hits both alike: per-call medians and their ratio, in this one run.
- Expiry latency: how long after a scheduled explosion's time ``conversation_exploded
  {reason: expired}`` is journaled (its ``at`` minus the scheduled time), for a schedule set
  by the instance itself and for one set by another member (read with ``explode-status``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from convosd.client import Client
from convosd.timefmt import iso, parse_rfc3339
from tests.fakeconvos.network import FakeNetwork
from tests.rpc_harness import RunningDaemon, member_cli, running_daemon


async def _signals(
    daemon: RunningDaemon, client: Client, runs: int
) -> list[tuple[str, float, float]]:
    cid = (await client.call("status"))["conversationId"]
    cli = daemon.instance.cli
    cases = {
        "typing": (cli.argv.typing(cid), "conversation.typing"),
        "markRead": (cli.argv.read_receipt(cid), "message.markRead"),
    }
    rows = []
    for name, (invocation, method) in cases.items():
        spec = cli.long_lived(invocation)  # the same argv, environment and directory
        direct: list[float] = []
        through: list[float] = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(  # noqa: ASYNC221 - the baseline: the double run directly
                spec.argv, env=dict(spec.env), cwd=spec.cwd, capture_output=True, check=True
            )
            direct.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await client.call(method)
            through.append(time.perf_counter() - t0)
        rows.append((name, statistics.median(direct), statistics.median(through)))
    return rows


async def _last_seq(client: Client) -> int:
    return int((await client.call("status"))["journal"]["lastSeq"])


async def _expired_after(client: Client, after: int, at: str, within_s: float = 30) -> float:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        events = (await client.call("events.read", {"after": after, "limit": 1000}))["events"]
        gone = [e for e in events if e["type"] == "conversation_exploded"]
        if gone and gone[-1]["reason"] == "expired":
            return float(parse_rfc3339(gone[-1]["at"]).timestamp() - parse_rfc3339(at).timestamp())
        await asyncio.sleep(0.02)
    raise RuntimeError("no conversation_exploded {reason: expired}")


async def _unbound(client: Client) -> None:
    for _ in range(1500):
        if (await client.call("status"))["conversationId"] is None:
            return
        await asyncio.sleep(0.02)
    raise RuntimeError("still bound 30 s after the expiry")


async def measure(runs: int, expiries: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        net = FakeNetwork(root / "net")
        async with running_daemon(net, root / "d") as daemon:
            client = await daemon.client()
            try:
                await client.call("conversation.create", {"name": "bench"})
                signals = await _signals(daemon, client, runs)
                own: list[float] = []
                for _ in range(expiries):
                    if (await client.call("status"))["conversationId"] is None:
                        await client.call("conversation.create", {"name": "bench"})
                    after = await _last_seq(client)
                    at = iso(time.time() + 1.0)
                    await client.call("conversation.explode", {"confirm": True, "at": at})
                    own.append(await _expired_after(client, after, at))
                    await _unbound(client)
                other: list[float] = []
                for index in range(expiries):
                    owner = member_cli(net, root / f"owner{index}")
                    created = await owner.create(name="theirs")
                    watcher = await owner.join_requests_spec(created.conversation_id).spawn()
                    try:
                        await client.call(
                            "conversation.join", {"inviteUrl": created.invite.url, "timeoutS": 30}
                        )
                    finally:
                        os.killpg(watcher.pid, signal.SIGKILL)
                        await watcher.wait()
                    after = await _last_seq(client)
                    at = iso(time.time() + 1.5)
                    await owner.explode_scheduled(created.conversation_id, at)
                    other.append(await _expired_after(client, after, at))
                    await _unbound(client)
            finally:
                await client.close()
    return {"signals": signals, "own": own, "other": other}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--expiries", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(measure(args.runs, args.expiries))
    for name, direct, through in result["signals"]:
        print(
            f"{name:9} double run directly {direct * 1000:7.1f} ms, through the daemon "
            f"{through * 1000:7.1f} ms (median of {args.runs}): ratio {through / direct:.2f}"
        )
    for label in ("own", "other"):
        values = [v * 1000 for v in result[label]]
        who = "the instance" if label == "own" else "another member"
        print(
            f"expiry after a schedule by {who}: "
            + ", ".join(f"{v:.0f}" for v in values)
            + f" ms after the time (max {max(values):.0f} ms)"
        )


if __name__ == "__main__":
    main()
