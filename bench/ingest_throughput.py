"""Inbound throughput: a child's stdout into the committed journal, beside a plain parse loop.

    .venv/bin/python -m bench.ingest_throughput [--events 50000]

The child prints N stream lines (the real ``conversation stream`` shape) as fast as it can;
the daemon's path is SupervisedChild (line framing) -> Ingest (parse, validate, seen filter,
order) -> Journal (SQLite WAL, one transaction per read batch, seen ids in the same
transaction). The baseline is a loop that only ``json.loads`` the same lines, in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import structlog
import uvloop

from convosd.cli.runner import SpawnSpec
from convosd.conversation.ingest import Ingest
from convosd.storage.journal import Journal
from convosd.storage.store import Store
from convosd.supervisor.child import SupervisedChild

SENDER = "a" * 64
OWN = "0" * 64


def text_line(i: int, sender: str, content: str, sent_ms: int) -> bytes:
    """A text message as ``conversation stream --json`` prints it, one line."""
    return json.dumps(
        {
            "id": f"{i:064x}",
            "senderInboxId": sender,
            "contentType": {
                "authorityId": "xmtp.org",
                "typeId": "text",
                "versionMajor": 1,
                "versionMinor": 0,
            },
            "content": content,
            "sentAt": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sent_ms / 1000))
            + f".{sent_ms % 1000:03d}Z",
            "deliveryStatus": 1,
        },
        separators=(",", ":"),
    ).encode()


def make_lines(n: int) -> list[bytes]:
    base = 1_795_435_200_000
    return [
        text_line(i, SENDER, f"message number {i} with a little text", base + i) for i in range(n)
    ]


async def daemon_path(lines_file: Path, n: int, state: Path) -> float:
    store = Store.open(state)
    journal = Journal(store)
    ingest = Ingest(journal=journal, conversation_id="c" * 32, own_inbox_id=OWN, bound_at=0.0)
    done = asyncio.Event()
    journal.listeners.append(lambda _batch: done.set() if journal.last_seq >= n else None)
    script = f"import sys; sys.stdout.buffer.write(open({str(lines_file)!r}, 'rb').read())"
    spec = SpawnSpec(argv=(sys.executable, "-c", script), env={}, cwd=state)
    child = SupervisedChild("bench", lambda: spec, ingest.on_stream_lines)
    started = time.perf_counter()
    child.start()
    await asyncio.wait_for(done.wait(), 300)
    elapsed = time.perf_counter() - started
    await child.stop()
    assert journal.last_seq == n, journal.last_seq
    store.close()
    return elapsed


def parse_loop(lines: list[bytes]) -> float:
    started = time.perf_counter()
    for line in lines:
        json.loads(line)
    return time.perf_counter() - started


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    n = args.events
    lines = make_lines(n)
    with tempfile.TemporaryDirectory() as tmp:
        lines_file = Path(tmp) / "lines"
        lines_file.write_bytes(b"\n".join(lines) + b"\n")
        daemon = uvloop.run(daemon_path(lines_file, n, Path(tmp)))
    baseline = parse_loop(lines)
    print(f"{'path':<34}{'events/s':>12}{'seconds':>10}")
    print(f"{'child -> committed journal':<34}{n / daemon:>12,.0f}{daemon:>10.3f}")
    print(f"{'json.loads loop (baseline)':<34}{n / baseline:>12,.0f}{baseline:>10.3f}")
    print(f"ratio journal/baseline throughput: {baseline / daemon:.3f} (1/{daemon / baseline:.0f})")


if __name__ == "__main__":
    main()
