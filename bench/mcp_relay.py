"""The add-ons: MCP tool-call latency and webhook relay throughput, each beside its baseline.

    .venv/bin/python -m bench.mcp_relay [--calls 40] [--events 2000]

- MCP: ``send_message`` and ``read_events`` called through the SDK's client over stdio
  (``python -m contrib.mcp``, the way a desktop client runs it), p50/p99, beside the same
  daemon call (``message.send``, ``events.read`` of the same 10 events) made with
  ``convosd.client`` in this process. The difference is what MCP adds.
- Relay: events/s delivered to a local HTTP receiver (a separate process) by
  ``contrib.webhook``'s relay from a journal of ``--events`` events, beside a plain
  keep-alive ``http.client`` POST loop of the same bodies (no daemon, no signature, no
  cursor fsync); then the relay again under the fault script (5xx, 429 with Retry-After,
  dropped connections, timeouts) with its delivery counts.

The daemon runs as a real ``python -m convosd`` process on the CLI double.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mcp import Client as McpClient
from mcp import StdioServerParameters

from bench.receiver import Receiver
from bench.startup import daemon_env, socket_up, start_daemon
from contrib.webhook.relay import Relay, RelayConfig
from convosd.client import ConvosdClient
from convosd.errors import NotReady
from convosd.events import NewEvent
from convosd.storage.journal import Journal
from convosd.storage.store import Store
from tests.fakeconvos.network import FakeNetwork

REPO = Path(__file__).resolve().parent.parent
SECRET = "whsec_" + base64.b64encode(b"bench-secret-of-enough-length").decode()
KEY = b"bench-secret-of-enough-length"

RECEIVER = r"""
import asyncio, sys
from bench.receiver import read_request, serve
from standardwebhooks import Webhook, WebhookVerificationError
webhook, mode = Webhook(sys.argv[1]), sys.argv[2]
stats = {"requests": 0, "accepted": 0, "badSignatures": 0, "answers": {}}
keys = {}
def answer_for(n):
    if mode != "faults":
        return "200"
    if n % 97 == 50: return "429:1"
    if n % 41 == 7: return "timeout"
    if n % 23 == 5: return "drop"
    if n % 10 == 3: return "500"
    if n % 31 == 9: return "503"
    return "200"
async def handle(reader, writer):
    try:
        while True:
            headers, body = await read_request(reader)
            stats["requests"] += 1
            answer = answer_for(stats["requests"])
            try:
                webhook.verify(body, headers, json_parse=False)
            except WebhookVerificationError:
                stats["badSignatures"] += 1
                answer = "401"
            stats["answers"][answer] = stats["answers"].get(answer, 0) + 1
            if answer == "drop":
                break
            if answer == "timeout":
                await reader.read()
                break
            status, _, retry = answer.partition(":")
            extra = f"Retry-After: {retry}\r\n" if retry else ""
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n{extra}\r\n".encode())
            await writer.drain()
            if status == "200":
                stats["accepted"] += 1
                key = headers["webhook-id"]
                keys[key] = keys.get(key, 0) + 1
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
def report():
    stats["unique"] = len(keys)
    stats["duplicates"] = sum(n - 1 for n in keys.values())
    return stats
serve(handle, report)
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def fill_journal(state: Path, n: int) -> None:
    state.mkdir(mode=0o700, parents=True)
    store = Store.open(state)
    journal = Journal(store)
    for start in range(0, n, 500):
        journal.append(
            NewEvent(
                "message",
                "c" * 32,
                {
                    "messageId": f"{i:064x}",
                    "senderInboxId": "a" * 64,
                    "senderName": "Bench",
                    "contentType": "text",
                    "content": f"message number {i} with a little text",
                    "sentAt": "2026-01-01T00:00:00.000Z",
                    "replyTo": None,
                    "reaction": None,
                    "attachment": None,
                },
            )
            for i in range(start, min(n, start + 500))
        )
    store.close()


async def relay_run(
    root: Path, socket: Path, url: str, name: str, last_seq: int, **options: Any
) -> tuple[float, Relay]:
    config = RelayConfig(
        socket=socket,
        url=url,
        secrets=[KEY],
        state_file=root / name / "cursor.json",
        start="beginning",
        **options,
    )
    relay = Relay(config)
    started = time.perf_counter()
    task = asyncio.create_task(relay.run())
    while relay.cursor is None or relay.cursor.after < last_seq:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return elapsed, relay


def plain_posts(url: str, bodies: list[bytes]) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", int(url.split(":")[2].split("/")[0]))
    started = time.perf_counter()
    for body in bodies:
        conn.request(
            "POST",
            "/hook",
            body=body,
            headers={
                "Content-Type": "application/json",
                "webhook-id": "k",
                "webhook-timestamp": "0",
                "webhook-signature": "v1,AAAA",
            },
        )
        conn.getresponse().read()
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


async def run(calls: int, events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        net = FakeNetwork(root / "net")
        state = root / "state"
        fill_journal(state, events)
        sock = root / "d.sock"
        daemon = start_daemon(root, state, daemon_env(net, CONVOSD_SEND_RATE_PER_S="1000"))
        try:
            await socket_up(sock)
            client = await ConvosdClient.connect(sock)
            for _ in range(300):
                try:
                    await client.create(name="bench")
                    break
                except NotReady:
                    await asyncio.sleep(0.1)
            await asyncio.sleep(1.5)  # let the children start and the first backfill settle

            # --- MCP over stdio vs the Python client -----------------------------------
            params = StdioServerParameters(
                command=sys.executable,
                args=["-m", "contrib.mcp", "--socket", str(sock)],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
            send_mcp, send_direct, read_mcp, read_direct = [], [], [], []
            async with McpClient(params) as mcp:
                await mcp.list_tools()
                for i in range(calls):
                    t0 = time.perf_counter()
                    result = await mcp.call_tool("send_message", {"message": f"mcp {i}"})
                    send_mcp.append((time.perf_counter() - t0) * 1000)
                    assert not result.is_error, result.content
                    t0 = time.perf_counter()
                    await client.send(f"direct {i}")
                    send_direct.append((time.perf_counter() - t0) * 1000)
                last = (await client.status()).journal.last_seq
                for _ in range(calls * 5):
                    t0 = time.perf_counter()
                    result = await mcp.call_tool("read_events", {"since": last - 10, "limit": 10})
                    read_mcp.append((time.perf_counter() - t0) * 1000)
                    assert result.structured_content is not None
                    assert len(result.structured_content["events"]) == 10
                    t0 = time.perf_counter()
                    got = await client.read_events(after=last - 10, limit=10)
                    read_direct.append((time.perf_counter() - t0) * 1000)
                    assert len(got.events) == 10
            last_seq = (await client.status()).journal.last_seq
            bodies = [
                json.dumps(e, separators=(",", ":")).encode()
                for e in (await client.read_events(after=0, limit=1000)).events
            ]
            await client.close()

            # --- relay throughput vs plain POSTs, then under faults ---------------------
            receiver = Receiver(RECEIVER, SECRET, "ok")
            baseline_s = await asyncio.to_thread(
                plain_posts, receiver.url, bodies * (events // len(bodies) + 1)
            )
            baseline_n = len(bodies) * (events // len(bodies) + 1)
            receiver.stop()
            receiver = Receiver(RECEIVER, SECRET, "ok")
            clean_s, clean = await relay_run(root, sock, receiver.url, "clean", last_seq)
            clean_stats = receiver.stop()
            receiver = Receiver(RECEIVER, SECRET, "faults")
            faulty_s, faulty = await relay_run(
                root,
                sock,
                receiver.url,
                "faults",
                last_seq,
                timeout_s=0.2,
                backoff_initial_s=0.01,
                backoff_max_s=0.2,
                give_up_after_s=30,
            )
            fault_stats = receiver.stop()
        finally:
            daemon.terminate()
            daemon.wait(30)

    def row(name: str, values: list[float], base: list[float]) -> str:
        return (
            f"{name:<14}MCP p50 {statistics.median(values):7.2f} ms p99 {pct(values, 0.99):7.2f} ms"
            f" | Python client p50 {statistics.median(base):7.2f} ms p99 {pct(base, 0.99):7.2f} ms"
            f" | MCP adds p50 {statistics.median(values) - statistics.median(base):6.2f} ms"
        )

    print(f"MCP tool calls over stdio ({calls} sends, {calls * 5} reads of 10 events):")
    print(row("send_message", send_mcp, send_direct))
    print(row("read_events", read_mcp, read_direct))
    print(
        f"relay, {last_seq} events: {last_seq / clean_s:,.0f} events/s delivered "
        f"({clean_s:.2f} s; receiver: {clean_stats['accepted']} accepted, "
        f"{clean_stats['duplicates']} duplicates, {clean_stats['badSignatures']} bad signatures)"
        f" | plain keep-alive POST loop: {baseline_n / baseline_s:,.0f} req/s"
    )
    print(
        f"relay under faults: {last_seq / faulty_s:,.0f} events/s ({faulty_s:.2f} s); "
        f"relay: delivered {faulty.stats.delivered}, attempts {faulty.stats.attempts}, "
        f"retries {faulty.stats.retries}, dead-lettered {faulty.stats.dead_lettered}, "
        f"outcomes {faulty.stats.by_outcome}"
    )
    print(
        f"  receiver: {fault_stats['requests']} requests, answers {fault_stats['answers']}, "
        f"{fault_stats['accepted']} accepted = {fault_stats['unique']} unique keys + "
        f"{fault_stats['duplicates']} duplicates, {fault_stats['badSignatures']} bad signatures"
    )
    assert clean.stats.delivered == last_seq and fault_stats["unique"] == last_seq


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.events))


if __name__ == "__main__":
    main()
