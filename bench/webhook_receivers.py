"""The webhook relay against receivers that do not answer properly: memory and time bounded.

    .venv/bin/python -m bench.webhook_receivers [--seconds 20] [--timeout 10] [--events 3]

For each misbehaving receiver (a separate process on 127.0.0.1), the relay (``python -m
contrib.webhook``, a separate process, default options except ``--timeout``) runs against a
journal of ``--events`` events for ``--seconds`` seconds; then the receiver starts answering
200 and the run waits (at most 120 s) until every event is delivered. Printed per receiver:
the relay's RSS before and its peak during the bad period (sampled every 0.2 s from
/proc), the attempts the receiver saw and how long each lasted until the relay closed it,
the bytes of answer the receiver got written, the time from "good" to all delivered
(``--deliver-within``, 120 s at most), and whether the relay stopped on SIGTERM. A relay
past ``--rss-limit`` MiB (2048) is killed (the machine is shared), and that is printed.

- ``endless``: ``200 OK`` with no length and a body that never ends (64 KiB writes).
- ``trickle``: one byte a second of an answer whose header line never ends.

Before the fix (relay reading the whole answer, a per-read socket timeout only) the endless
receiver took the relay to 3.7 GB in 20 s and the trickling one held one attempt forever.
Loopback only; bounded in time (``--seconds`` + ``--deliver-within`` + 20 s per receiver).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.mcp_relay import fill_journal
from bench.startup import daemon_env, start_daemon
from convosd.client import SyncClient
from tests.fakeconvos.network import FakeNetwork

REPO = Path(__file__).resolve().parent.parent
SECRET = "whsec_" + base64.b64encode(b"bench-secret-of-enough-length").decode()

RECEIVER = r"""
import asyncio, sys, time
from bench.receiver import read_request, serve
mode, bad_s = sys.argv[1], float(sys.argv[2])
started = time.monotonic()
stats = {"attempts": [], "accepted": set()}
stopping = asyncio.Event()
async def handle(reader, writer):
    try:
        while True:
            headers, _ = await read_request(reader)
            at = time.monotonic()
            if at - started >= bad_s:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                stats["accepted"].add(headers["webhook-id"])
                continue
            attempt = {"mode": mode, "bytes": 0}
            stats["attempts"].append(attempt)
            try:
                if mode == "endless":
                    writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
                    chunk = b"x" * 65536
                    while not stopping.is_set():
                        writer.write(chunk)
                        attempt["bytes"] += len(chunk)
                        await writer.drain()
                else:
                    for byte in b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 10_000_000:
                        if stopping.is_set():
                            break
                        writer.write(bytes([byte]))
                        attempt["bytes"] += 1
                        try:
                            if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                                break
                        except TimeoutError:
                            pass
            except ConnectionError:
                pass
            finally:
                attempt["seconds"] = round(time.monotonic() - at, 2)
            break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
def report():
    stats["accepted"] = sorted(stats["accepted"])
    return stats
serve(handle, report, stopping)
"""


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def one_receiver(
    root: Path,
    sock: Path,
    mode: str,
    seconds: float,
    timeout: float,
    events: int,
    deliver_within: float,
    rss_limit_mib: float,
) -> dict[str, Any]:
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, mode, str(seconds)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None
    port = int(receiver.stdout.readline())
    state_file = root / f"relay-{mode}" / "cursor.json"
    relay = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "contrib.webhook",
            "--url",
            f"http://127.0.0.1:{port}/hook",
            "--state-file",
            str(state_file),
            "--start",
            "beginning",
            "--timeout",
            str(timeout),
            "--socket",
            str(sock),
            "--log-level",
            "WARNING",
        ],
        cwd=REPO,
        env={**os.environ, "CONVOSD_WEBHOOK_SECRET": SECRET},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed_at = None  # (seconds, MiB) when the relay passed --rss-limit and was killed
    stopped = "on SIGTERM"
    rss_before = peak = rss_after = 0
    delivered_s = None
    out = ""
    try:
        time.sleep(1.0)  # the relay's start-up (imports, first status call)
        rss_before = peak = rss_kib(relay.pid)
        started = time.monotonic()

        def sample() -> bool:
            nonlocal peak, killed_at
            peak = max(peak, rss_kib(relay.pid))
            if peak > rss_limit_mib * 1024 and killed_at is None:
                relay.kill()
                killed_at = (time.monotonic() - started, peak / 1024)
            return killed_at is None

        while time.monotonic() - started < seconds and sample():
            time.sleep(0.2)
        good_at = time.monotonic()
        while killed_at is None and time.monotonic() - good_at < deliver_within:
            if not sample():
                break
            try:
                saved = json.loads(state_file.read_text())
            except (OSError, ValueError):
                saved = {}
            if saved.get("after") == events:
                delivered_s = time.monotonic() - good_at
                break
            time.sleep(0.05)
        rss_after = rss_kib(relay.pid) if killed_at is None else 0
    finally:
        relay.send_signal(signal.SIGTERM)
        try:
            relay.wait(10)
        except subprocess.TimeoutExpired:
            stopped = "only by SIGKILL (SIGTERM ignored for 10 s)"
            relay.kill()
            relay.wait(30)
        if killed_at is not None:
            stopped = "by SIGKILL at the RSS limit"
        receiver.send_signal(signal.SIGTERM)
        try:
            out, _ = receiver.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            receiver.kill()
            receiver.communicate(timeout=30)
    stats: dict[str, Any] = json.loads(out) if out.strip() else {"attempts": [], "accepted": []}
    return {
        "killed_at": killed_at,
        "stopped": stopped,
        "mode": mode,
        "rss_before_mib": rss_before / 1024,
        "rss_peak_mib": peak / 1024,
        "rss_after_mib": rss_after / 1024,
        "attempts": stats["attempts"],
        "accepted": len(stats["accepted"]),
        "delivered_s": delivered_s,
    }


def run(
    seconds: float,
    timeout: float,
    events: int,
    modes: list[str],
    deliver_within: float,
    rss_limit_mib: float,
) -> int:
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        net = FakeNetwork(root / "net")
        state = root / "state"
        fill_journal(state, events)
        sock = root / "d.sock"
        daemon = start_daemon(root, state, daemon_env(net))
        try:
            for _ in range(500):
                try:
                    with SyncClient(sock) as client:
                        client.call("status")
                    break
                except OSError:
                    time.sleep(0.02)
            for mode in modes:
                result = one_receiver(
                    root, sock, mode, seconds, timeout, events, deliver_within, rss_limit_mib
                )
                attempts = result["attempts"]
                longest = max((a.get("seconds", 0.0) for a in attempts), default=0.0)
                most = max((a["bytes"] for a in attempts), default=0)
                delivered = result["delivered_s"]
                print(
                    f"{mode:<8} {seconds:g} s bad, --timeout {timeout:g}: relay RSS "
                    f"{result['rss_before_mib']:.1f} MiB before, peak "
                    f"{result['rss_peak_mib']:.1f} MiB, {result['rss_after_mib']:.1f} MiB after"
                    f" | {len(attempts)} failed attempts, longest {longest:.2f} s, most answer "
                    f"bytes written {most:,}"
                    f" | then all {events} delivered in "
                    + (
                        f"{delivered:.2f} s"
                        if delivered is not None
                        else f"NOT within {deliver_within:g} s"
                    )
                    + f" ({result['accepted']} accepted); relay stopped {result['stopped']}"
                )
                if result["killed_at"] is not None:
                    after_s, mib = result["killed_at"]
                    print(f"         relay killed at {mib:,.0f} MiB RSS after {after_s:.1f} s")
                failed += delivered is None
        finally:
            daemon.terminate()
            daemon.wait(30)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0, help="how long a receiver is bad")
    parser.add_argument("--timeout", type=float, default=10.0, help="the relay's --timeout")
    parser.add_argument("--events", type=int, default=3)
    parser.add_argument("--modes", default="endless,trickle")
    parser.add_argument(
        "--deliver-within", type=float, default=120.0, help="wait this long for delivery"
    )
    parser.add_argument(
        "--rss-limit", type=float, default=2048.0, metavar="MIB", help="kill a relay past it"
    )
    args = parser.parse_args()
    return run(
        args.seconds,
        args.timeout,
        args.events,
        args.modes.split(","),
        args.deliver_within,
        args.rss_limit,
    )


if __name__ == "__main__":
    sys.exit(main())
