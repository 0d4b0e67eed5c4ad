"""The inbound path's latency and CPU per message, beside a minimal relay, in one run.

    .venv/bin/python -m bench.inbound_latency [--seconds 10] [--rates 1 100 1000]
        [--profile FILE]

A feeder process prints ``conversation stream`` lines (one JSON message a line, one
``write`` each, stamped with ``CLOCK_MONOTONIC`` in their text) at each rate in turn. Two
servers read it as their stream, one after the other, and a subscriber in this process
(a blocking socket in a thread, the same code for both) stamps each notification as it
arrives:

- **relay**: the baseline: read the pipe, split lines, write each as an ``event``
  notification (``{"jsonrpc":"2.0","method":"event","params":{"subscription":1,
  "event":<line>}}``) to the subscriber's Unix socket. Nothing else.
- **daemon**: convosd itself (``Daemon`` on the CLI double, logging JSON lines at info to
  /dev/null, bound to a conversation it created, ``dmPolicy = "open"``),
  its stream child replaced by the feeder: the line goes through the supervisor's reader,
  the binding, the ingest (parse, seen ids, policy, the event), the journal (one
  transaction, the search index's share) and the subscription hub to the connection, which
  writes the notification (``events.subscribe {types: [message]}``).

Latency is from the feeder's ``write`` to the subscriber's ``recv`` (both processes and the
server share the machine: the relay's figure is what the pipe, the socket and the
scheduler cost). CPU is the server process's (all its threads, ``/proc/<pid>/task/*/
schedstat``, nanoseconds) over the phase, divided by the messages: for the daemon it
includes whatever else it does meanwhile (timers), at 1 message/s a visible share.
``--profile FILE``: the daemon's cProfile (CPU time) of its phase at the highest rate
(pstats file), printed too.

The daemon's stream is a pipe here, as with ``cliHost = "separate"``; with the default
``"single"`` the same lines come through the warm worker's channel (a length-prefixed
JSON frame with the line in base64), which costs the daemon a frame decode more per read.
Loopback only, bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.ingest_throughput import text_line

ROOT = Path(__file__).resolve().parent.parent
#: the feeder's sender (not a member: ``dmPolicy = "open"`` journals every sender)
SENDER = "b" * 64
READ_CHUNK = 64 * 1024

#: the feeder: reads ``rate count`` commands from a FIFO and prints that many stream lines
#: at that rate; ``quit`` (or the FIFO's end) ends it.
FEEDER = r"""
import json, os, sys, time
fifo, sender = sys.argv[1], sys.argv[2]
control = open(fifo, "r")
k = int(time.time() * 1000) << 20
def stamp():
    now = time.time()
    ms = int(now * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % ms
for command in control:
    parts = command.split()
    if not parts or parts[0] == "quit":
        break
    rate, count = float(parts[0]), int(parts[1])
    start = time.monotonic()
    for i in range(count):
        due = start + i / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        k += 1
        line = json.dumps({
            "id": "%064x" % k,
            "senderInboxId": sender,
            "contentType": {"authorityId": "xmtp.org", "typeId": "text",
                            "versionMajor": 1, "versionMinor": 0},
            "content": "t%d a message of ordinary length, a sentence or so of text"
            % time.monotonic_ns(),
            "sentAt": stamp(),
            "deliveryStatus": 1,
        }, separators=(",", ":")).encode() + b"\n"
        os.write(1, line)
"""


# --- the servers (each runs as ``python -m bench.inbound_latency serve-...``) --------------


def feeder_argv(fifo: str, sender: str) -> list[str]:
    return [sys.executable, "-c", FEEDER, fifo, sender]


def feeder_running(fifo: str) -> bool:
    """Whether a feeder reading ``fifo`` runs (its command line names it)."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
                if fifo.encode() in f.read().split(b"\0"):
                    return True
    return False


async def serve_relay(sock_path: str, fifo: str, sender: str) -> None:
    """The baseline: the feeder's lines, each an ``event`` notification, nothing else."""
    connected: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not connected.done():
            connected.set_result(writer)

    server = await asyncio.start_unix_server(accept, sock_path)
    print("ready", flush=True)
    writer = await connected
    feeder = await asyncio.create_subprocess_exec(
        *feeder_argv(fifo, sender), stdout=subprocess.PIPE
    )
    assert feeder.stdout is not None
    head = b'{"jsonrpc":"2.0","method":"event","params":{"subscription":1,"event":'
    partial = b""
    while chunk := await feeder.stdout.read(READ_CHUNK):
        *lines, partial = (partial + chunk).split(b"\n")
        for line in lines:
            writer.write(head + line + b"}}\n")
    server.close()


async def serve_daemon(sock_dir: str, fifo: str, profile: str | None, log_stream: Any) -> None:
    """convosd on the double, its stream child replaced by the feeder."""
    import structlog

    from convosd import logging as convosd_logging
    from convosd.cli import ConvosCli
    from convosd.cli.runner import SpawnSpec
    from tests.fakeconvos.network import FakeNetwork
    from tests.rpc_harness import running_daemon

    convosd_logging.configure(log_format="json", level="info", stream=log_stream)
    log = structlog.get_logger("bench")
    state_root = Path(sock_dir)

    def stream_spec(_self: Any, _conversation_id: str) -> SpawnSpec:
        return SpawnSpec(argv=tuple(feeder_argv(fifo, SENDER)), env={}, cwd=state_root)

    # The binding's stream is the feeder from its first spawn (the spec is read at spawn).
    ConvosCli.stream_spec = stream_spec  # type: ignore[method-assign]
    net = FakeNetwork(state_root / "net")
    async with running_daemon(
        net,
        state_root / "me",
        convos={"dm_policy": "open"},  # every sender's messages are journaled
        cli_host="single",
        backfill_interval_s=3600.0,
    ) as daemon:
        client = await daemon.client()
        await client.call("conversation.create", {"name": "Bench"})
        await client.close()
        deadline = time.monotonic() + 60
        while not feeder_running(fifo):
            if time.monotonic() > deadline:
                raise TimeoutError("the stream did not start as the feeder")
            await asyncio.sleep(0.2)
        log.info("bench_ready")
        print(f"ready {daemon.socket}", flush=True)
        profiler = None
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        if profile:
            import cProfile

            profiler = cProfile.Profile(time.thread_time)  # CPU, not wall: a shared machine
            loop.add_signal_handler(signal.SIGUSR1, profiler.enable)

            def dump() -> None:
                assert profiler is not None
                profiler.disable()
                profiler.dump_stats(profile)

            loop.add_signal_handler(signal.SIGUSR2, dump)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()


# --- the subscriber and the phases ----------------------------------------------------------


class Subscriber:
    """Reads notifications on a blocking socket in a thread; keeps each message's latency."""

    def __init__(self, path: str, subscribe: bool) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        if subscribe:
            request = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "events.subscribe",
                "params": {"types": ["message"]},
            }
            self.sock.sendall(json.dumps(request).encode() + b"\n")
        self.latencies_ns: list[int] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        partial = b""
        while True:
            try:
                chunk = self.sock.recv(READ_CHUNK)
            except OSError:
                return
            now = time.monotonic_ns()
            if not chunk:
                return
            *lines, partial = (partial + chunk).split(b"\n")
            found = []
            for line in lines:
                at = line.find(b'"content":"t')
                if at < 0:
                    continue
                end = line.find(b" ", at)
                found.append(now - int(line[at + 12 : end]))
            with self.lock:
                self.latencies_ns.extend(found)

    def take(self) -> list[int]:
        with self.lock:
            taken, self.latencies_ns = self.latencies_ns, []
        return taken

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def cpu_ns(pid: int) -> int:
    """CPU of every thread of ``pid`` so far (ns)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_phase(
    control: int, sub: Subscriber, pid: int, rate: float, count: int, timeout_s: float
) -> dict[str, Any]:
    sub.take()
    before = cpu_ns(pid)
    os.write(control, f"{rate} {count}\n".encode())
    got: list[int] = []
    deadline = time.monotonic() + count / rate + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        time.sleep(0.05)
        got += sub.take()
    cpu = cpu_ns(pid) - before
    got.sort()
    n = len(got)

    def pct(p: float) -> float:
        return got[min(n - 1, int(p * n))] / 1e6 if n else float("nan")

    return {
        "rate": rate,
        "sent": count,
        "received": n,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": got[-1] / 1e6 if n else float("nan"),
        "mean_ms": statistics.fmean(got) / 1e6 if n else float("nan"),
        "cpu_us_per_msg": cpu / 1e3 / max(n, 1),
        "load": loadavg(),
    }


def start_server(argv: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.inbound_latency", *argv],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("ready"):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, line


def measure(
    kind: str,
    tmp: Path,
    rates: list[float],
    seconds: float,
    profile: str | None,
    on_result: Callable[[str, dict[str, Any]], None],
) -> None:
    fifo = str(tmp / f"{kind}.fifo")
    os.mkfifo(fifo)
    control = os.open(fifo, os.O_RDWR)
    proc: subprocess.Popen[str] | None = None
    try:
        if kind == "relay":
            path = str(tmp / "relay.sock")
            proc, _ = start_server(["serve-relay", path, fifo, SENDER])
            sub = Subscriber(path, subscribe=False)
        else:
            workdir = tmp / "daemon"
            workdir.mkdir()
            argv = ["serve-daemon", str(workdir), fifo]
            argv += ["--profile", profile] if profile else []
            proc, line = start_server(argv)
            sub = Subscriber(line.split()[1], subscribe=True)
        # warm-up: the first message of a sender waits for its name once, the caches fill
        warm = run_phase(control, sub, proc.pid, 100, 50, 60)
        if warm["received"] < 50:
            raise RuntimeError(f"{kind}: warm-up lost messages: {warm}")
        for rate in rates:
            count = max(10, int(rate * seconds))
            if profile and kind == "daemon" and rate == max(rates):
                os.kill(proc.pid, signal.SIGUSR1)
            result = run_phase(control, sub, proc.pid, rate, count, 30)
            if profile and kind == "daemon" and rate == max(rates):
                os.kill(proc.pid, signal.SIGUSR2)
                time.sleep(1.0)
            on_result(kind, result)
        os.write(control, b"quit\n")
        sub.close()
    finally:
        os.close(control)
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stream_line(k: int) -> bytes:
    """One line as the feeder prints it."""
    content = f"t{time.monotonic_ns()} a message of ordinary length, a sentence or so"
    return text_line(k, SENDER, content, int(time.time() * 1000))


class _CountingOutbox:
    lines = 0

    def send_event(self, _subscription: Any, _line: bytes) -> None:
        self.lines += 1

    def send_events(self, _subscription: Any, _data: bytes, lines: int) -> None:
        self.lines += lines

    def send_notice(self, _line: bytes) -> None:
        pass


def batch_cost(batch: int, count: int) -> float:
    """CPU (this thread) a message through Ingest -> Journal (search index on) -> the hub's
    hand-over to one live subscription, with ``batch`` lines per read: in process, no
    socket, no pipe (what a transaction a read costs, apart from the machine's noise)."""
    import structlog

    from convosd.conversation.ingest import Ingest
    from convosd.rpc.subscriptions import SubscriptionHub
    from convosd.storage.journal import Journal
    from convosd.storage.store import Store

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    warm = 512
    lines = [stream_line(k + 1) for k in range(warm + count)]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp))
        journal = Journal(store)
        hub = SubscriptionHub(journal, queue_limit=2**30)
        outbox = _CountingOutbox()
        hub.open(outbox, 0, None).live = True
        ingest = Ingest(
            journal=journal, conversation_id="c" * 32, own_inbox_id="0" * 64, bound_at=0
        )
        for k in range(0, warm, batch):
            ingest.on_stream_lines(lines[k : k + batch])
            hub.fan_out()
        started = time.thread_time_ns()
        for k in range(warm, warm + count, batch):
            ingest.on_stream_lines(lines[k : k + batch])
            hub.fan_out()
        spent = time.thread_time_ns() - started
        assert journal.last_seq == warm + count and outbox.lines == warm + count
        store.close()
    return spent / 1e3 / count


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0, help="per rate")
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 100.0, 1000.0])
    parser.add_argument("--profile", default=None, help="pstats file of the daemon at 1,000/s")
    parser.add_argument("--only", choices=["relay", "daemon"], default=None)
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=None,
        help="instead: CPU a message in process by lines per read (one transaction each)",
    )
    parser.add_argument("--batch-messages", type=int, default=4096)
    args = parser.parse_args()
    if args.batch_sizes:
        print(f"load average at start: {loadavg()}", flush=True)
        for batch in args.batch_sizes:
            cost = batch_cost(batch, args.batch_messages)
            print(f"{batch:>4} lines a read: {cost:7.1f} us CPU a message  load {loadavg()}")
        return 0
    rows: list[tuple[str, dict[str, Any]]] = []

    def show(kind: str, r: dict[str, Any]) -> None:
        rows.append((kind, r))
        print(
            f"{kind:<7}{r['rate']:>7.0f}/s {r['received']:>6}/{r['sent']:<6} "
            f"p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  max {r['max_ms']:7.2f} ms  "
            f"CPU {r['cpu_us_per_msg']:7.1f} us/msg  load {r['load']}",
            flush=True,
        )

    print(f"load average at start: {loadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for kind in ("relay", "daemon"):
            if args.only in (None, kind):
                measure(kind, tmp, args.rates, args.seconds, args.profile, show)
    if args.profile:
        import pstats

        print()
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)
    lost = [r for _k, r in rows if r["received"] < r["sent"]]
    return 1 if lost else 0


def serve_main(argv: list[str]) -> int:
    import uvloop

    if argv[0] == "serve-relay":
        uvloop.run(serve_relay(argv[1], argv[2], argv[3]))
        return 0
    profile = argv[4] if len(argv) > 4 and argv[3] == "--profile" else None
    with open(os.devnull, "w") as log_stream:
        uvloop.run(serve_daemon(argv[1], argv[2], profile, log_stream))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("serve-"):
        sys.exit(serve_main(sys.argv[1:]))
    sys.exit(main())
