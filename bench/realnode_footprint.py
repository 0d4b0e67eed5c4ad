"""Memory of the process tree with live XMTP clients: convosd on the real CLI against the
local node (tests/xmtpnode), a real peer admitted, then N sends.

``.venv/bin/python -m bench.realnode_footprint --sends 1000 [--cli-host both]`` (needs a
private network namespace: root or user namespaces). Prints RSS and PSS
(``/proc/<pid>/smaps_rollup``) of the daemon, the warm worker, the stream child and the
join-request watcher, idle and after the sends; with ``cliHost = "single"`` the stream and the
watcher are roles of the worker (one process, counted once). ``--cli-host both`` runs
``separate`` then ``single`` in the same invocation. Not in ``python -m bench``: it takes
minutes on the real CLI.

``--sample-every N`` also prints a row every N sends, and four more 5, 15, 30 and 60 s after
the last send (idle): the worker's RSS, PSS, anonymous and file-backed memory
(``smaps_rollup``), its threads and CPU seconds so far, its anonymous memory by kind of
mapping (``v8``: V8's heap pages, ``mi``: the XMTP binding's mimalloc arenas, ``glibc``: the
rest; see :func:`proc_figures`), Node's own figures (``process.memoryUsage()``: V8 heap
used and total, V8's physical heap, external, array buffers, V8's malloced memory; read through
``bench/node_memprobe.cjs``, a preload that answers SIGUSR2), the size of the daemon's XMTP
database (with its WAL), and the load average; every tenth row also V8's spaces.
``--gc-at-sample`` forces a full V8 collection at each sample and prints the heap after it
too (measurement only: a forced collection every N sends changes what is measured).
``--worker-env NAME=VALUE`` (repeatable) gives the CLI processes a variable (for example
``MALLOC_ARENA_MAX=2``, ``NODE_OPTIONS=--max-semi-space-size=2``), passed through to them;
``--daemon-env NAME=VALUE`` (repeatable) gives the daemon one (for example
``CONVOSD_CLI_WORKER_NODE_FLAGS=[]``: the worker without the default Node options).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from convosd import errors
from convosd.client import Client
from tests.helpers import eventually_async
from tests.xmtpnode.harness import CLI_BIN, LocalNode, Peer, kill_group, pinned_node
from tests.xmtpnode.netns import open_namespace


def rollup(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            parts = line.split()
            if parts and parts[0] in ("Rss:", "Pss:"):
                values[parts[0]] = int(parts[1])
    return values["Rss:"], values["Pss:"]


async def pids(client: Client, daemon_pid: int) -> dict[str, int]:
    """Name → pid, one entry per process (roles of the worker share its entry)."""
    status = await client.call("status")
    named: dict[int, list[str]] = {daemon_pid: ["daemon"]}
    worker = (status.get("cli") or {}).get("worker") or {}
    if worker.get("pid"):
        named.setdefault(worker["pid"], []).append("worker")
    for name, child in status["children"].items():
        if child["pid"]:
            named.setdefault(child["pid"], []).append(name)
    return {"+".join(names): pid for pid, names in named.items()}


def table(title: str, found: dict[str, int]) -> None:
    print(f"{title}:")
    total_rss = total_pss = 0
    for name, pid in found.items():
        rss, pss = rollup(pid)
        total_rss += rss
        total_pss += pss
        print(f"  {name:<28} pid {pid:<7} RSS {rss / 1024:7.1f} MiB  PSS {pss / 1024:7.1f} MiB")
    print(
        f"  {'total':<28} {'':<11} RSS {total_rss / 1024:7.1f} MiB  PSS {total_pss / 1024:7.1f} MiB"
    )


PROBE = Path(__file__).with_name("node_memprobe.cjs")


def proc_figures(pid: int) -> dict[str, int]:
    """RSS, PSS, anonymous (KiB) and threads of ``pid``, and its anonymous memory by kind of
    mapping, told apart by size (a heuristic, for this process only): ``v8`` the 256 KiB
    mappings (V8's heap pages), ``mi`` those of 1 GiB or more (the arenas of mimalloc, the
    allocator of the XMTP binding's Rust code), ``glibc`` the rest (malloc's heap and arenas:
    Node's and SQLite's allocations, thread stacks)."""
    figures = {}
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            parts = line.split()
            if parts and parts[0] in ("Rss:", "Pss:", "Anonymous:"):
                figures[parts[0][:-1]] = int(parts[1])
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("Threads:"):
                figures["Threads"] = int(line.split()[1])
    kinds = {"v8": 0, "mi": 0, "glibc": 0}
    kind = None
    with open(f"/proc/{pid}/smaps") as handle:
        for line in handle:
            first = line.split(maxsplit=6)
            if "-" in first[0] and len(first) >= 5 and ":" not in first[0]:
                start, end = (int(x, 16) for x in first[0].split("-"))
                named = len(first) > 5 and first[5].strip() not in ("", "[heap]")
                size = (end - start) // 1024
                kind = "v8" if size == 256 else "mi" if size >= 2**20 else "glibc"
                kind = None if named else kind
            elif kind is not None and first[0] == "Anonymous:":
                kinds[kind] += int(first[1])
    figures.update(kinds)
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    figures["cpu_ticks"] = int(fields[11]) + int(fields[12])  # utime + stime
    return figures


def read_probe(path: Path, *, remove: bool = False) -> dict[str, object] | None:
    """The probe's file, or None while it is not there (removed first with ``remove``)."""
    if remove:
        path.unlink(missing_ok=True)
        return None
    try:
        found: dict[str, object] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return found


async def node_memory(pid: int, probe: Path) -> dict[str, object] | None:
    """What the probe preload in ``pid`` writes on SIGUSR2 (None if it does not answer)."""
    path = Path(f"{probe}.{pid}.json")
    read_probe(path, remove=True)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while (found := read_probe(path)) is None:
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.05)
    return found


def database_mib(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*.db3*") if p.is_file()) / 2**20


#: seconds after the last send at which --sample-every samples the idle worker again
IDLE_SAMPLES_S = (5, 15, 30, 60)

#: (row key, width) of the sample columns after ``sends`` and ``load1``
COLUMNS = (
    ("daemon", 7),
    ("rss", 7),
    ("pss", 7),
    ("anon", 7),
    ("file", 6),
    ("threads", 4),
    ("cpu_s", 6),
    ("v8", 6),
    ("mi", 6),
    ("glibc", 6),
    ("heap_used", 8),
    ("heap_total", 8),
    ("physical", 7),
    ("external", 7),
    ("array_buffers", 7),
    ("malloced", 7),
    ("gc_heap", 7),
    ("db", 6),
)
SAMPLE_HEADER = (
    f"{'sends':>6} {'load1':>5} "
    + " ".join(f"{name[:width]:>{width}}" for name, width in COLUMNS)
    + "   (MiB; the worker's unless named)"
)


async def sample(
    n: int, every: int, client: Client, daemon_pid: int, probe: Path, root: Path
) -> dict[str, float | int | None]:
    found = await pids(client, daemon_pid)
    worker = next(pid for name, pid in found.items() if "worker" in name)
    figures = proc_figures(worker)
    memory = await node_memory(worker, probe)
    before = memory["before"] if memory else {}
    after = memory.get("after") if memory else None
    assert isinstance(before, dict)
    mib = 1 / 2**20
    row: dict[str, float | int | None] = {
        "sends": n,
        "load1": os.getloadavg()[0],
        "daemon": rollup(daemon_pid)[0] / 1024,
        "rss": figures["Rss"] / 1024,
        "pss": figures["Pss"] / 1024,
        "anon": figures["Anonymous"] / 1024,
        "file": (figures["Rss"] - figures["Anonymous"]) / 1024,
        "threads": figures["Threads"],
        "cpu_s": figures["cpu_ticks"] / os.sysconf("SC_CLK_TCK"),
        "v8": figures["v8"] / 1024,
        "mi": figures["mi"] / 1024,
        "glibc": figures["glibc"] / 1024,
        "heap_used": before.get("heapUsed", 0) * mib,
        "heap_total": before.get("heapTotal", 0) * mib,
        "external": before.get("external", 0) * mib,
        "array_buffers": before.get("arrayBuffers", 0) * mib,
        "malloced": int(memory.get("mallocedMemory", 0)) * mib if memory else 0,  # type: ignore[call-overload]
        "gc_heap": after["heapUsed"] * mib if isinstance(after, dict) else None,
        "physical": int(memory.get("physical", 0)) * mib if memory else 0,  # type: ignore[call-overload]
        "db": database_mib(root / "state"),
    }
    cells = [f"{n:>6}", f"{row['load1']:>5.2f}"]
    for name, width in COLUMNS:
        value = row[name]
        cells.append(f"{'' if value is None else f'{value:.1f}':>{width}}")
    print(" ".join(cells), flush=True)
    spaces = memory.get("spaces") if memory else None
    if isinstance(spaces, dict) and n % (10 * max(1, every)) == 0:
        shown = ", ".join(f"{name} {size * mib:.1f}" for name, size in spaces.items())
        print(f"        V8 spaces, physical MiB: {shown}", flush=True)
    return row


def start_daemon(root: Path, socket: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "convosd", "--state-dir", str(root / "state")]
    return subprocess.Popen(
        [*argv, "--socket", str(socket)],
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


async def run(
    sends: int,
    host: str,
    *,
    sample_every: int = 0,
    gc_at_sample: bool = False,
    worker_env: dict[str, str] | None = None,
    daemon_env: dict[str, str] | None = None,
) -> int:
    namespace = open_namespace()
    if isinstance(namespace, str):
        print(f"skipped: {namespace}")
        return 0
    root = Path(tempfile.mkdtemp(prefix="footprint-"))
    node = LocalNode(namespace, root / "node")
    node.start()
    nsenter = shutil.which(node.enter[0]) or node.enter[0]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **node.cli_env(),
        "CONVOSD_ENV": "local",
        "CONVOSD_DM_POLICY": "open",
        "CONVOSD_SEND_RATE_PER_S": "1000",
        "CONVOSD_CLI_ENV_PASSTHROUGH": "CONVOS_API_KEY,NODE_EXTRA_CA_CERTS",
        "CONVOSD_CLI": " ".join((nsenter, *node.enter[1:], str(pinned_node()), str(CLI_BIN))),
        "CONVOSD_LOG_LEVEL": "warning",
        "CONVOSD_CLI_HOST": host,
    }
    env.update(daemon_env or {})
    extra = dict(worker_env or {})
    probe = root / "memprobe"
    if sample_every:
        node_options = [f"--require={PROBE}"]
        if gc_at_sample:
            node_options.append("--expose-gc")
            extra["CONVOSD_BENCH_MEMPROBE_GC"] = "1"
        if extra.get("NODE_OPTIONS"):
            node_options.append(extra["NODE_OPTIONS"])
        extra["NODE_OPTIONS"] = " ".join(node_options)
        extra["CONVOSD_BENCH_MEMPROBE"] = str(probe)
    if extra:
        env.update(extra)
        env["CONVOSD_CLI_ENV_PASSTHROUGH"] += "," + ",".join(extra)
        print(f"CLI environment added: {extra}")
    socket = root / "d.sock"
    daemon = start_daemon(root, socket, env)
    try:
        deadline = time.monotonic() + 120
        while not socket.exists():
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise RuntimeError("the daemon did not start")
            await asyncio.sleep(0.2)
        client = await Client.connect(socket)

        async def ready() -> bool:
            try:
                await client.call("conversation.info")
            except errors.NotReady:
                return False
            except errors.ConvosdError:
                return True  # NOT_BOUND: ready
            return True

        assert await eventually_async(ready, within_s=120, pause_s=0.2)
        created = await client.call("conversation.create", {"name": "Footprint"})
        peer = Peer(node, root / "peer")
        joined = await asyncio.to_thread(
            peer.json,
            "conversations",
            "join",
            created["inviteSlug"],
            "--timeout",
            "240",
            timeout_s=300,
        )

        async def two_members() -> bool:
            return bool((await client.call("conversation.info"))["memberCount"] == 2)

        assert await eventually_async(two_members, within_s=120, pause_s=1.0)
        await asyncio.sleep(10)  # settle: the first refreshes after the admission
        found = await pids(client, daemon.pid)
        table(f"cliHost={host}: idle, bound, 1 peer ({joined['status']})", found)
        started = time.monotonic()
        if sample_every:
            print(SAMPLE_HEADER)
            await sample(0, sample_every, client, daemon.pid, probe, root)
        for n in range(sends):
            await client.call("message.send", {"message": f"footprint {n}"})
            if sample_every and (n + 1) % sample_every == 0:
                await sample(n + 1, sample_every, client, daemon.pid, probe, root)
        elapsed = time.monotonic() - started
        print(f"{sends} sends in {elapsed:.1f}s ({sends / elapsed:.1f}/s, warm transport)")
        if sample_every:
            # Idle after the load: what V8's memory reducer (it starts after 8 s of a low
            # allocation rate) and the allocators give back by themselves.
            idle_started = time.monotonic()
            for at in IDLE_SAMPLES_S:
                await asyncio.sleep(max(0.0, idle_started + at - time.monotonic()))
                print(f"  idle {at} s after the sends:")
                await sample(sends, sample_every, client, daemon.pid, probe, root)
        await asyncio.sleep(5)
        table(f"cliHost={host}: after {sends} sends", await pids(client, daemon.pid))
        await client.close()
    finally:
        kill_group(daemon, grace_s=30)
        node.stop()
        namespace.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sends", type=int, default=1000)
    parser.add_argument("--cli-host", choices=("single", "separate", "both"), default="both")
    parser.add_argument("--sample-every", type=int, default=0, metavar="N")
    parser.add_argument("--gc-at-sample", action="store_true")
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--daemon-env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    worker_env = dict(item.split("=", 1) for item in args.worker_env)
    daemon_env = dict(item.split("=", 1) for item in args.daemon_env)
    if daemon_env:
        print(f"daemon environment added: {daemon_env}")
    hosts = ("separate", "single") if args.cli_host == "both" else (args.cli_host,)
    for host in hosts:
        code = asyncio.run(
            run(
                args.sends,
                host,
                sample_every=args.sample_every,
                gc_at_sample=args.gc_at_sample,
                worker_env=worker_env,
                daemon_env=daemon_env,
            )
        )
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
