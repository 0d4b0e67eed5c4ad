"""The warm CLI transport against one-shot commands, each beside its baseline in one run.

.venv/bin/python -m bench.warm [--runs 10] [--warm-runs 200] [--mixed 5000]

1. ``identity list`` and ``inspect-invite`` with the REAL CLI (node_modules, offline):
   one-shot (a ``node bin/run.js`` per command) vs the warm worker; wall per command and
   CPU per command (one-shot: the children's rusage; warm: the worker's utime+stime from
   /proc plus this process's own CPU for the call).
2. One RPC that costs one CLI call, end to end through a daemon on the real CLI:
   ``conversation.join`` with a malformed slug (one ``inspect-invite``), on a warm daemon and
   on a one-shot daemon, beside the one-shot ``inspect-invite`` of 1.
3. ``message.send`` through a warm daemon on the CLI double, beside the double's own
   ``send-text`` run in its worker (what the daemon adds, at p50).
4. RSS of the whole tree with the real CLI, idle: the daemon, its worker, and a
   ``conversation stream`` and a join-request watcher (offline they live ~2 s before their
   network error; their peak RSS is sampled while they run).
5. The real CLI's worker over N mixed offline commands: open fds, RSS and V8 heap at the
   start and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import startup
from convosd import errors
from convosd.cli import CliSetup
from convosd.cli.argv import ArgvBuilder, Invocation
from convosd.cli.runner import CliRunner, child_environment
from convosd.cli.warm import WarmTransport
from convosd.client import Client
from tests.fakeconvos.network import FakeNetwork
from tests.realcli.conftest import CLI_BIN, cli_installed, pinned_node

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def real_setup(root: Path) -> tuple[CliSetup, CliRunner]:
    setup = CliSetup(
        executable=(str(pinned_node()), str(CLI_BIN)),
        env="dev",
        convos_home=root / "convos",
        state_dir=root,
        passthrough=(),
    )
    setup.prepare()
    env = child_environment(
        env="dev",
        convos_home=setup.convos_home,
        process_home=setup.process_home,
        passthrough=(),
        parent={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    return setup, CliRunner(setup.executable, env, root)


def ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:8.2f} ms"


async def part1(root: Path, runs: int, warm_runs: int) -> dict[str, float]:
    setup, oneshot = real_setup(root / "p1")
    builder = ArgvBuilder(env="dev", env_file=setup.env_file)
    commands: dict[str, Invocation] = {
        "identity list": builder.identity_list(),
        "inspect-invite": builder.inspect_invite("not-an-invite"),
    }
    warm = WarmTransport(oneshot)
    figures: dict[str, float] = {}
    try:
        for invocation in commands.values():  # load the worker and each command's module
            await warm.run(invocation, timeout_s=60)
        pid = warm.describe()["pid"]
        assert isinstance(pid, int)
        print(f"{'command':16s} {'transport':9s} {'wall':>16s} {'CPU/command':>14s}")
        for name, invocation in commands.items():
            walls, cpu0 = [], children_cpu_s()
            for _ in range(runs):
                t0 = time.perf_counter()
                await oneshot.run(invocation, timeout_s=60)
                walls.append(time.perf_counter() - t0)
            one_cpu = (children_cpu_s() - cpu0) / runs
            one_wall = statistics.median(walls)
            walls = []
            worker0, own0 = proc_cpu_s(pid), time.process_time()
            for _ in range(warm_runs):
                t0 = time.perf_counter()
                await warm.run(invocation, timeout_s=60)
                walls.append(time.perf_counter() - t0)
            warm_cpu = (proc_cpu_s(pid) - worker0 + time.process_time() - own0) / warm_runs
            warm_wall = statistics.median(walls)
            print(f"{name:16s} {'one-shot':9s} {ms([one_wall])} {one_cpu * 1000:11.2f} ms")
            print(f"{name:16s} {'warm':9s} {ms(walls)} {warm_cpu * 1000:11.2f} ms")
            print(
                f"{name:16s} {'ratio':9s} wall {one_wall / warm_wall:7.0f}x  "
                f"CPU {one_cpu / warm_cpu:7.0f}x  (goal: 50x both)"
            )
            figures[f"{name} one-shot wall"] = one_wall
        return figures
    finally:
        await warm.aclose()


def start_daemon(
    root: Path, transport: str, cli: str, extra: dict[str, str]
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CONVOSD_ENV": "dev",
        "CONVOSD_CLI": cli,
        "CONVOSD_CLI_TRANSPORT": transport,
        "CONVOSD_LOG_LEVEL": "warning",
        "CONVOSD_SEND_RATE_PER_S": "1000",
        **extra,
    }
    return startup.start_daemon(root, root / "state", env)


async def connect(root: Path, daemon: subprocess.Popen[bytes]) -> Client:
    sock = root / "d.sock"
    for _ in range(3000):
        if sock.exists():
            try:
                client = await Client.connect(sock)
                while True:
                    try:
                        await client.call("conversation.info")
                    except errors.NotReady:
                        await asyncio.sleep(0.05)
                        continue
                    except errors.ConvosdError:
                        pass  # ready: the CLI answered (offline, with an error)
                    return client
            except Exception:  # not listening yet
                pass
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited with {daemon.returncode}")
        await asyncio.sleep(0.02)
    raise RuntimeError("the daemon did not start")


def stop(daemon: subprocess.Popen[bytes]) -> None:
    daemon.terminate()
    daemon.wait(30)


async def part2(root: Path, runs: int, warm_runs: int, one_shot_wall: float) -> None:
    cli = f"{pinned_node()} {CLI_BIN}"
    params = {"inviteUrl": "not-a-slug", "timeoutS": 5}
    print(f"{'conversation.join (malformed)':32s} {'wall':>16s}")
    print(f"{'  one-shot inspect-invite (1.)':32s} {ms([one_shot_wall])}")
    for transport, count in (("oneshot", runs), ("warm", warm_runs)):
        where = root / f"p2-{transport}"
        where.mkdir()
        daemon = start_daemon(where, transport, cli, {})
        try:
            client = await connect(where, daemon)
            walls = []
            for _ in range(count + 3):
                t0 = time.perf_counter()
                try:
                    await client.call("conversation.join", params)
                except Exception as exc:  # INVITE_INVALID: the answer
                    assert "nvite" in str(exc), exc
                walls.append(time.perf_counter() - t0)
            walls = walls[3:]  # the first calls load the command's module
            print(f"  daemon, {transport:22s} {ms(walls)}")
            if transport == "warm":
                print(
                    f"  ratio one-shot inspect-invite / warm RPC: "
                    f"{one_shot_wall / statistics.median(walls):.0f}x (goal: 20x)"
                )
            await client.close()
        finally:
            stop(daemon)


async def part3(root: Path, runs: int) -> None:
    where = root / "p3"
    where.mkdir()
    net = FakeNetwork(where / "net")
    daemon = start_daemon(
        where,
        "warm",
        f"{sys.executable} {net.executable}",
        {"FAKECONVOS_NETWORK": str(net.path), "CONVOSD_CLI_ENV_PASSTHROUGH": "FAKECONVOS_*"},
    )
    try:
        client = await connect(where, daemon)
        cid = (await client.call("conversation.create", {"name": "bench"}))["conversationId"]
        setup = CliSetup(
            executable=(sys.executable, net.executable),
            env="dev",
            convos_home=where / "state" / "convos",
            state_dir=where / "state",
            passthrough=("FAKECONVOS_*",),
        )
        env = child_environment(
            env="dev",
            convos_home=setup.convos_home,
            process_home=setup.process_home,
            passthrough=("FAKECONVOS_*",),
            parent={"PATH": os.environ["PATH"], "FAKECONVOS_NETWORK": str(net.path)},
        )
        direct = WarmTransport(CliRunner(setup.executable, env, setup.state_dir))
        builder = ArgvBuilder(env="dev", env_file=setup.env_file)
        rpc, own = [], []
        try:
            for i in range(runs + 5):
                t0 = time.perf_counter()
                await client.call("message.send", {"message": f"via daemon {i}"})
                rpc.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                await direct.run(builder.send_text(cid, f"direct {i}"), timeout_s=30)
                own.append(time.perf_counter() - t0)
        finally:
            await direct.aclose()
        rpc, own = rpc[5:], own[5:]
        added = statistics.median(rpc) - statistics.median(own)
        print(f"message.send RPC, warm double     {ms(rpc)}")
        print(f"the double's send-text, its worker {ms(own)}")
        print(f"added by the daemon at p50: {added * 1000:.2f} ms (goal: under 5 ms)")
        await client.close()
    finally:
        stop(daemon)


async def peak_rss(spec_argv: list[str], env: dict[str, str], cwd: Path) -> float:
    process = await asyncio.create_subprocess_exec(
        *spec_argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    peak = 0.0
    while process.returncode is None:
        try:
            peak = max(peak, rss_mib(process.pid))
        except (OSError, ValueError):
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 0.05)
    await process.wait()
    return peak


async def part4(root: Path) -> None:
    where = root / "p4"
    where.mkdir()
    daemon = start_daemon(where, "warm", f"{pinned_node()} {CLI_BIN}", {})
    try:
        client = await connect(where, daemon)
        status = await client.call("status")
        worker = status["cli"]["worker"]["pid"]
        await asyncio.sleep(2.0)  # idle
        daemon_rss, worker_rss = rss_mib(daemon.pid), rss_mib(worker)
        await client.close()
        setup, runner = real_setup(where / "children")
        builder = ArgvBuilder(env="dev", env_file=setup.env_file)
        cid = "0123456789abcdef0123456789abcdef"
        stream = await peak_rss(list(runner.spec(builder.stream(cid)).argv), runner.env, runner.cwd)
        watcher = await peak_rss(
            list(runner.spec(builder.process_join_requests_watch(cid)).argv),
            runner.env,
            runner.cwd,
        )
        total = daemon_rss + worker_rss + stream + watcher
        print(f"daemon {daemon_rss:.0f} MiB, worker {worker_rss:.0f} MiB (idle, after start-up)")
        print(f"stream {stream:.0f} MiB, watcher {watcher:.0f} MiB (peak, offline)")
        print(f"whole tree: {total:.0f} MiB")
    finally:
        stop(daemon)


async def part5(root: Path, mixed: int) -> None:
    setup, oneshot = real_setup(root / "p5")
    builder = ArgvBuilder(env="dev", env_file=setup.env_file)
    mix: list[Invocation] = [
        builder.identity_list(),
        builder.inspect_invite("not-an-invite"),
        builder.join("not-a-slug"),
        Invocation("conversation:info", ("conversation", "info", "--bogus", "--json")),
        Invocation("identity:list", ("identity", "list", "--help")),
        Invocation("bogus", ("bogus",)),
        Invocation("conversation:send-text", ("conversation", "send-text")),
    ]
    warm = WarmTransport(oneshot)
    rows: list[tuple[int, Any, float, Any]] = []
    try:
        for i in range(mixed + len(mix)):
            await warm.run(mix[i % len(mix)], timeout_s=60)
            done = i + 1 - len(mix)
            if done >= 0 and done % max(1, mixed // 5) == 0:
                pid = warm.describe()["pid"]
                assert isinstance(pid, int)
                rows.append((done, fds(pid), rss_mib(pid), warm.heap_used))
        status = warm.describe()
        for done, fd_count, rss, heap in rows:
            heap_mib = f"{heap / 2**20:.1f} MiB" if isinstance(heap, int) else "?"
            print(f"after {done:5d} commands: {fd_count} fds, RSS {rss:.0f} MiB, heap {heap_mib}")
        print(f"restarts {status['restarts']}, fallbacks {status['fallbacks']}")
    finally:
        await warm.aclose()


async def run(args: argparse.Namespace) -> None:
    if not cli_installed():
        raise SystemExit("the real CLI is not installed: run make setup")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("== 1. one command, real CLI offline")
        figures = await part1(root, args.runs, args.warm_runs)
        print("\n== 2. one RPC costing one CLI call, real CLI offline")
        await part2(root, args.runs, args.warm_runs, figures["inspect-invite one-shot wall"])
        print("\n== 3. message.send through a warm daemon on the double")
        await part3(root, args.send_runs)
        print("\n== 4. RSS of the whole tree, real CLI, idle")
        await part4(root)
        print(f"\n== 5. {args.mixed} mixed commands in the real CLI's worker")
        await part5(root, args.mixed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10, help="one-shot runs per command")
    parser.add_argument("--warm-runs", type=int, default=200, help="warm runs per command")
    parser.add_argument("--send-runs", type=int, default=100, help="message.send calls")
    parser.add_argument("--mixed", type=int, default=5000, help="mixed commands (part 5)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
