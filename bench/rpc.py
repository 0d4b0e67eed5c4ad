"""JSON-RPC throughput, latency and memory, each beside a baseline measured in the same run.

    .venv/bin/python -m bench.rpc [--seconds 3] [--rounds N] [--status-only]
        [--baseline-tree DIR] [--profile FILE]

- ``status`` calls per second, p50/p99 latency and the server's CPU time per request (from
  /proc: the figure the machine's load moves least) over 1 and 16 connections, with 32
  requests in flight per connection (throughput) and with 1 (latency), beside a minimal
  asyncio NDJSON echo server under the same load (and, with ``--baseline-tree``, beside a
  daemon run from another source tree, e.g. ``git archive main | tar -x -C /tmp/base``);
  with ``--rounds`` the rows are measured that many times, the daemons and the echo server
  taking turns, and the medians printed (the machine's load moves between rounds; each
  ratio is of one round's figures). The load average is printed before and after;
- ``message.send`` through the daemon beside running the CLI double's ``send-text`` directly
  (the difference is what the daemon adds);
- the daemon's RSS idle and with 100 subscribers, and the RSS of its whole process tree
  (both skipped with ``--status-only``).

``--profile FILE`` runs the daemon under cProfile (``python -m cProfile -o FILE``; the stats
are written when it exits): where the time of the ``status`` rows goes.

The daemon runs as a real ``python -m convosd`` process on the CLI double, logging JSON to a
file as it would under systemd.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from convosd.client import Client
from tests.fakeconvos.network import FakeNetwork

ECHO_SERVER = """
import asyncio, sys, uvloop
async def handle(reader, writer):
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
async def main():
    server = await asyncio.start_unix_server(handle, path=sys.argv[1], limit=1 << 20)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()
uvloop.run(main())
"""


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tree_rss_kb(pid: int) -> int:
    total = rss_kb(pid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                total += tree_rss_kb(int(entry.name))
    return total


def cpu_s(pid: int) -> float:
    """The process's user + system CPU time so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(
    path: Path, connections: int, seconds: float, depth: int = 32, pid: int | None = None
) -> dict[str, float]:
    """``pid``: the server's, whose CPU time per request is measured too."""
    cpu_before = cpu_s(pid) if pid is not None else 0.0
    latencies: list[float] = []
    count = 0
    deadline = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal count
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 24)
        pending: dict[int, float] = {}
        next_id = 0

        def send() -> None:
            nonlocal next_id
            next_id += 1
            pending[next_id] = time.perf_counter()
            writer.write(b'{"jsonrpc":"2.0","method":"status","id":%d}\n' % next_id)

        for _ in range(depth):
            send()
        while time.perf_counter() < deadline or pending:
            line = await reader.readline()
            if not line:
                break
            reply = json.loads(line)
            started = pending.pop(reply["id"])
            latencies.append(time.perf_counter() - started)
            count += 1
            if time.perf_counter() < deadline:
                send()
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    cpu = cpu_s(pid) - cpu_before if pid is not None else 0.0
    latencies.sort()
    return {
        "cpu_us": cpu / count * 1e6,
        "rps": count / elapsed,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def start_daemon(
    root: Path, env: dict[str, str], name: str, tree: Path | None, profile: str | None
) -> tuple[subprocess.Popen[bytes], Path, Any]:
    """A ``python -m convosd`` process on the CLI double; ``tree``: run that source tree's."""
    sock = root / f"{name}.sock"
    env = dict(env)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    prefix = ["-m", "cProfile", "-o", profile] if profile else []
    log = (root / f"{name}.log").open("w")
    daemon = subprocess.Popen(
        [
            sys.executable,
            *prefix,
            "-m",
            "convosd",
            "--socket",
            str(sock),
            "--state-dir",
            str(root / f"state-{name}"),
            "--log-format",
            "json",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(tree) if tree is not None else None,
    )
    return daemon, sock, log


def median_row(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


async def run(
    seconds: float,
    *,
    rounds: int = 1,
    status_only: bool = False,
    baseline_tree: Path | None = None,
    profile: str | None = None,
) -> None:
    print(f"load average before: {load_average()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        net = FakeNetwork(root / "net")
        echo_path = root / "echo.sock"
        echo = subprocess.Popen(  # noqa: ASYNC220 - started once, before any timing
            [sys.executable, "-c", ECHO_SERVER, str(echo_path)], stdout=subprocess.PIPE, text=True
        )
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        env = {
            **os.environ,
            "FAKECONVOS_NETWORK": str(net.path),
            "CONVOSD_ENV": "dev",
            "CONVOSD_CLI": f"{sys.executable} {net.executable}",
            "CONVOSD_CLI_ENV_PASSTHROUGH": "FAKECONVOS_*",
            "CONVOSD_SEND_RATE_PER_S": "1000",
            # its message.send row compares with the double run one-shot: so is the daemon's
            # (bench.warm measures the warm transport against its own baseline)
            "CONVOSD_CLI_TRANSPORT": "oneshot",
            "CONVOSD_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "info"),
        }
        daemons = {"daemon": start_daemon(root, env, "d", None, profile)}
        if baseline_tree is not None:
            daemons["baseline"] = start_daemon(root, env, "base", baseline_tree, None)
        daemon, sock, _ = daemons["daemon"]
        try:
            for _, path, _ in daemons.values():
                for _ in range(500):
                    if path.exists():
                        break
                    await asyncio.sleep(0.02)
            client = await Client.connect(sock)
            idle_rss = rss_kb(daemon.pid)
            shapes = ((1, 32), (16, 32), (1, 1), (16, 1))
            measured: dict[tuple[int, int], dict[str, list[dict[str, float]]]] = {
                shape: {name: [] for name in [*daemons, "echo"]} for shape in shapes
            }
            for _ in range(rounds):
                for shape in shapes:
                    conns, depth = shape
                    for name, (process, path, _) in daemons.items():
                        measured[shape][name].append(
                            await load(path, conns, seconds, depth, process.pid)
                        )
                    measured[shape]["echo"].append(
                        await load(echo_path, conns, seconds, depth, echo.pid)
                    )
            print(f"load average after the status rows: {load_average()}", flush=True)
            print_status(measured, list(daemons))
            if status_only:
                await client.close()
                return
            created = await client.call("conversation.create", {"name": "bench"})
            cid = created["conversationId"]
            await asyncio.sleep(1.5)  # let the children start and the first backfill settle
            daemon_ms, direct_ms = [], []
            argv = [
                sys.executable,
                net.executable,
                "conversation",
                "send-text",
                cid,
                "--text=direct",
                "--env=dev",
                f"--env-file={root / 'state-d' / 'cli.env'}",
                "--json",
            ]
            direct_env = {
                "PATH": os.environ["PATH"],
                "FAKECONVOS_NETWORK": str(net.path),
                "CONVOS_HOME": str(root / "state-d" / "convos"),
                "HOME": str(root / "state-d" / "home"),
            }
            for i in range(40):
                t0 = time.perf_counter()
                proc = await asyncio.create_subprocess_exec(
                    *argv, env=direct_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                await proc.wait()
                direct_ms.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                await client.call("message.send", {"message": f"via daemon {i}"})
                daemon_ms.append((time.perf_counter() - t0) * 1000)
            subs = []
            for _ in range(100):
                c = await Client.connect(sock)
                await c.call("events.subscribe", {})
                subs.append(c)
            await asyncio.sleep(0.5)
            sub_rss = rss_kb(daemon.pid)
            tree = tree_rss_kb(daemon.pid)
            for c in subs:
                await c.close()
            await client.close()
        finally:
            for process, _, handle in daemons.values():
                process.terminate()
                process.wait(30)
                handle.close()
            echo.terminate()
            echo.wait(10)

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]

    added50 = statistics.median(daemon_ms) - statistics.median(direct_ms)
    added99 = pct(daemon_ms, 0.99) - pct(direct_ms, 0.99)
    print(
        f"message.send   daemon p50 {statistics.median(daemon_ms):.1f} ms p99 "
        f"{pct(daemon_ms, 0.99):.1f} ms | double direct p50 {statistics.median(direct_ms):.1f}"
        f" ms p99 {pct(direct_ms, 0.99):.1f} ms | added p50 {added50:.1f} ms p99 {added99:.1f} ms"
    )
    print(
        f"RSS            daemon idle {idle_rss / 1024:.1f} MB, with 100 subscribers "
        f"{sub_rss / 1024:.1f} MB, process tree (daemon + children) {tree / 1024:.1f} MB"
    )


def print_status(
    measured: dict[tuple[int, int], dict[str, list[dict[str, float]]]], names: list[str]
) -> None:
    """Per row and daemon: the medians over the rounds, and the median of each round's
    ratio to the echo server."""
    print(
        f"{'status: conns x in flight':<26}{'':<9}{'req/s':>9}{'echo req/s':>12}{'ratio':>7}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'echo p50':>9}{'echo p99':>9}{'CPU us/req':>11}"
        f"{'echo CPU':>9}"
    )
    for (conns, depth), by_name in measured.items():
        echo_rounds = by_name["echo"]
        e = median_row(echo_rounds)
        for name in names:
            d = median_row(by_name[name])
            ratio = statistics.median(
                r["rps"] / er["rps"] for r, er in zip(by_name[name], echo_rounds, strict=True)
            )
            print(
                f"{f'{conns} x {depth}':<26}{name:<9}{d['rps']:>9,.0f}{e['rps']:>12,.0f}"
                f"{ratio:>7.3f}{d['p50']:>8.2f}{d['p99']:>8.2f}{e['p50']:>9.2f}{e['p99']:>9.2f}"
                f"{d['cpu_us']:>11.1f}{e['cpu_us']:>9.1f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--status-only", action="store_true")
    parser.add_argument("--baseline-tree", type=Path)
    parser.add_argument("--profile")
    args = parser.parse_args()
    result: Any = uvloop.run(
        run(
            args.seconds,
            rounds=args.rounds,
            status_only=args.status_only,
            baseline_tree=args.baseline_tree,
            profile=args.profile,
        )
    )
    del result


if __name__ == "__main__":
    main()
