"""The webhook relay's throughput by signing scheme: Standard Webhooks beside the old signing.

    .venv/bin/python -m bench.webhook_signing [--events 2000] [--rounds 3]

One daemon (``python -m convosd`` on the CLI double) with a journal of ``--events``
messages. In each round every scheme runs (the order turns from round to round): the
relay (``contrib.webhook``'s ``Relay``, in this process, default options) delivers the whole
journal, from its first event, to a receiver on 127.0.0.1 (a separate process) that answers
200 at once and then verifies the request it answered: the ``webhook-*`` headers with the
``standardwebhooks`` library, the old ones with ``hmac``. Printed: deliveries/s of every run
and the median per scheme; the receiver's counts (unique ids, duplicates, bad signatures) and
its verifying time per request; the relay's CPU time per delivery (this process's, which runs
nothing else meanwhile: less swayed by a busy machine than the wall clock); the cost of
building one request's headers alone, in this process; the load average before and after.

The relay saves its cursor with fsync after every delivery, and on a disk that fsync is most
of a delivery's time. So every round runs each scheme twice: with the relay's state file on
the disk (in the temporary directory, as in use) and on tmpfs (``/dev/shm``, where fsync
costs nothing), where the relay's own CPU time, signing included, is what is left.

Schemes:

- ``old``: the request as the relay sent it before Standard Webhooks (``Idempotency-Key``,
  ``X-Convosd-Event-Type``, ``X-Convosd-Timestamp``, ``X-Convosd-Signature: sha256=`` hex HMAC
  of ``timestamp.body``; no ``journalId`` in the body), rebuilt through ``Relay.headers`` and
  ``Relay.payload``.
- ``standard``: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` with one secret
  (the default).
- ``standard-2``: two secrets, as during a rotation (two signatures; the receiver knows only
  the second).
- ``legacy-flag``: ``--legacy-signature``: the ``webhook-*`` headers and the old ones.

Loopback only; bounded (``--rounds`` x 8 runs of ``--events`` deliveries).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.mcp_relay import fill_journal
from bench.startup import daemon_env, start_daemon
from contrib.webhook.relay import (
    USER_AGENT,
    Json,
    Relay,
    RelayConfig,
    request_headers,
    sign_legacy,
)
from convosd.client import ConvosdClient
from convosd.errors import NotReady
from tests.fakeconvos.network import FakeNetwork

KEY = b"bench-key-of-thirty-two-bytes..."
KEY_2 = b"bench-second-key-32-bytes-long.."
SECRET_2 = "whsec_" + base64.b64encode(KEY_2).decode()
SCHEMES = ("old", "standard", "standard-2", "legacy-flag")
TMPFS = Path("/dev/shm")

RECEIVER = r"""
import asyncio, hashlib, hmac, json, signal, sys, time
from standardwebhooks import Webhook, WebhookVerificationError
check, secret = sys.argv[1], sys.argv[2]
webhook = Webhook(secret)
old_key = secret.encode()
stats = {"requests": 0, "badSignatures": 0, "verifyS": 0.0}
ids = {}
def verified(headers, body):
    if check == "old":
        ts = headers["x-convosd-timestamp"]
        mac = hmac.new(old_key, ts.encode() + b"." + body, hashlib.sha256)
        if abs(time.time() - int(ts)) > 300:
            return False
        return hmac.compare_digest("sha256=" + mac.hexdigest(), headers["x-convosd-signature"])
    try:
        webhook.verify(body, headers, json_parse=False)
    except WebhookVerificationError:
        return False
    return True
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = {}
            for line in head.decode().split("\r\n")[1:]:
                if line:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers["content-length"]))
            # answer first: the relay's clock runs on, the receiver's checking is not in it
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            stats["requests"] += 1
            t0 = time.perf_counter()
            good = verified(headers, body)
            stats["verifyS"] += time.perf_counter() - t0
            stats["badSignatures"] += not good
            key = headers["idempotency-key" if check == "old" else "webhook-id"]
            ids[key] = ids.get(key, 0) + 1
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    stats["unique"] = len(ids)
    stats["duplicates"] = sum(n - 1 for n in ids.values())
    print(json.dumps(stats), flush=True)
asyncio.run(main())
"""


class OldSchemeRelay(Relay):
    """The relay's request as it was before Standard Webhooks: the same headers, in the same
    order, and the event alone as the body."""

    def payload(self, journal_id: str, event: Json) -> Json:
        return event

    def headers(self, msg_id: str, timestamp: int, body: bytes, event_type: str) -> dict[str, str]:
        ts = str(timestamp)
        return {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": msg_id,
            "X-Convosd-Event-Type": event_type,
            "X-Convosd-Timestamp": ts,
            "X-Convosd-Signature": sign_legacy(self.config.secrets[0], ts, body),
        }


class Receiver:
    def __init__(self, check: str, secret: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RECEIVER, check, secret], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}/hook"

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        stats: dict[str, Any] = json.loads(out)
        return stats


def receiver_for(scheme: str) -> Receiver:
    if scheme == "old":
        return Receiver("old", KEY.decode())
    if scheme == "standard-2":
        return Receiver("standard", SECRET_2)
    return Receiver("standard", "whsec_" + base64.b64encode(KEY).decode())


async def relay_run(root: Path, socket: Path, scheme: str, name: str, last_seq: int) -> Any:
    receiver = receiver_for(scheme)
    config = RelayConfig(
        socket=socket,
        url=receiver.url,
        secrets=[KEY, KEY_2] if scheme == "standard-2" else [KEY],
        state_file=root / name / "cursor.json",
        start="beginning",
        legacy_signature=scheme == "legacy-flag",
    )
    relay = OldSchemeRelay(config) if scheme == "old" else Relay(config)
    started = time.perf_counter()
    cpu_started = time.process_time()
    task = asyncio.create_task(relay.run())
    try:
        while relay.cursor is None or relay.cursor.after < last_seq:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_started
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        stats = await asyncio.to_thread(receiver.stop)
    return elapsed, cpu_s, relay.stats, stats


def signing_cost_us(body: bytes, n: int = 20_000) -> dict[str, float]:
    """Building one attempt's headers, in this process, µs (the median of 5 runs of n)."""
    old = OldSchemeRelay.__new__(OldSchemeRelay)
    old.config = RelayConfig(
        socket=Path("x"), url="http://127.0.0.1/", secrets=[KEY], state_file=Path("x")
    )
    calls = {
        "old": lambda ts: old.headers("j:1", ts, body, "message"),
        "standard": lambda ts: request_headers([KEY], "j:1", ts, body, event_type="message"),
        "standard-2": lambda ts: request_headers(
            [KEY, KEY_2], "j:1", ts, body, event_type="message"
        ),
        "legacy-flag": lambda ts: request_headers(
            [KEY], "j:1", ts, body, event_type="message", legacy=True
        ),
    }
    costs: dict[str, float] = {}
    for scheme, call in calls.items():
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            for i in range(n):
                call(1764115200 + i)
            runs.append((time.perf_counter() - t0) / n * 1e6)
        costs[scheme] = statistics.median(runs)
    return costs


def state_dirs(stack: contextlib.ExitStack) -> dict[str, Path]:
    """Where the relay's state file goes: the temporary directory, and tmpfs if there is one."""
    stores = {"disk": Path(stack.enter_context(tempfile.TemporaryDirectory()))}
    if TMPFS.is_dir():
        shm = tempfile.TemporaryDirectory(dir=TMPFS, prefix="bench-webhook-")
        stores["tmpfs"] = Path(stack.enter_context(shm))
    return stores


async def run(events: int, rounds: int) -> None:
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        stores = state_dirs(stack)
        root = stores["disk"]
        net = FakeNetwork(root / "net")
        state = root / "state"
        fill_journal(state, events)
        sock = root / "d.sock"
        daemon = start_daemon(root, state, daemon_env(net))
        try:
            for _ in range(500):
                if sock.exists():
                    break
                await asyncio.sleep(0.02)
            async with await ConvosdClient.connect(sock) as client:
                for _ in range(300):
                    try:
                        first = (await client.read_events(after=0, limit=1)).events[0]
                        break
                    except NotReady:
                        await asyncio.sleep(0.1)
                last_seq = (await client.status()).journal.last_seq
            body = json.dumps(first, separators=(",", ":")).encode()
            keys = [(store, scheme) for store in stores for scheme in SCHEMES]
            results: dict[tuple[str, str], list[float]] = {key: [] for key in keys}
            counts: dict[tuple[str, str], list[dict[str, Any]]] = {key: [] for key in keys}
            for n in range(rounds):
                order = SCHEMES[n % len(SCHEMES) :] + SCHEMES[: n % len(SCHEMES)]
                for scheme in order:
                    for store, where in stores.items():
                        elapsed, cpu_s, relay_stats, stats = await relay_run(
                            where, sock, scheme, f"{scheme}-{n}", last_seq
                        )
                        results[store, scheme].append(last_seq / elapsed)
                        counts[store, scheme].append(
                            {**stats, "delivered": relay_stats.delivered, "cpuS": cpu_s}
                        )
        finally:
            daemon.terminate()
            daemon.wait(30)
    costs = signing_cost_us(body)
    load_after = os.getloadavg()

    print(
        f"webhook relay, {last_seq} events per run, {rounds} rounds; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(
        "building one attempt's headers, in-process: "
        + ", ".join(f"{scheme} {costs[scheme]:.1f} us" for scheme in SCHEMES)
    )
    for store in stores:
        where = "disk (fsync)" if store == "disk" else "tmpfs (no fsync cost)"
        print(f"state file on {where}:")
        base = statistics.median(results[store, "old"])
        for scheme in SCHEMES:
            values = results[store, scheme]
            median = statistics.median(values)
            c = counts[store, scheme]
            verify_us = sum(x["verifyS"] for x in c) / max(1, sum(x["requests"] for x in c)) * 1e6
            cpu_us = statistics.median(x["cpuS"] / last_seq * 1e6 for x in c)
            print(
                f"  {scheme:<12} median {median:7,.0f} deliveries/s ({median / base - 1:+6.1%} "
                f"vs old; runs: {', '.join(f'{v:,.0f}' for v in values)}); relay CPU "
                f"{cpu_us:.0f} us/delivery (median of runs) | receiver: "
                f"{sum(x['unique'] for x in c)} unique ids, "
                f"{sum(x['duplicates'] for x in c)} duplicates, "
                f"{sum(x['badSignatures'] for x in c)} bad signatures, verifying "
                f"{verify_us:.1f} us/request"
            )
    for key, runs_counts in counts.items():
        for c in runs_counts:
            assert c["delivered"] == last_seq == c["unique"], (key, c)
            assert c["badSignatures"] == 0 and c["duplicates"] == 0, (key, c)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.events, args.rounds))


if __name__ == "__main__":
    main()
