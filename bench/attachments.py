"""Attachments through the daemon vs the CLI double called directly, same run, plus the
daemon's RSS while it works.

.venv/bin/python -m bench.attachments [--mib 5] [--runs 5]

- download half (:func:`download_half`): a member sends a remote attachment of ``--mib``
  MiB with the double's ``send-attachment``; once it is journaled, ``attachment.download``
  (first call: the daemon runs ``download-attachment`` through its queue and stores the
  file) is timed against the double's ``download-attachment`` run directly on the daemon's
  CLI home. The daemon's VmRSS is sampled every 5 ms during its call.
- send half (:func:`send_half`): ``message.sendAttachment`` of ``--mib`` MiB, as base64
  ``data`` (the client encodes before the clock starts; ``frameLimitBytes`` is raised so
  the line fits) and as ``path``, timed against the double's ``send-attachment`` run
  directly with the daemon's own argv, environment and CLI home. The daemon's VmRSS is
  taken before each send and its peak during it (sampled, and VmHWM after a reset through
  ``/proc/PID/clear_refs`` when that is writable).
- the path guard (:func:`guard_cost`): what refusing the daemon's own files costs per
  ``path`` (checks by name and on the descriptor), and for a file with a second hard link
  (the search of a 2,000-file state dir for its other names).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.startup import daemon_env, start_daemon
from convosd import errors
from convosd.attachments.guard import PathGuard, refused_locations
from convosd.client import SyncClient
from tests.fakeconvos.network import FakeNetwork

KEY = {"CONVOS_API_KEY": "bench-key"}


@dataclass
class World:
    root: Path
    net: FakeNetwork
    daemon: subprocess.Popen[bytes]
    socket: Path
    state: Path
    conversation_id: str
    member_home: Path

    @property
    def daemon_home(self) -> Path:
        return self.state / "convos"


def _wait(predicate: Any, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


def _answers(path: Path) -> bool:
    """The daemon answers and is past its start (create would get NOT_READY before)."""
    try:
        with SyncClient(path) as client:
            client.info()
    except OSError:
        return False
    except errors.NotBound:
        return True
    except errors.ConvosdError:
        return False
    return True


def bound_world(root: Path, **env: str) -> World:
    """A daemon (its own process) bound to a conversation it created, and a member."""
    net = FakeNetwork(root / "net")
    state = root / "state"
    socket = root / "d.sock"
    daemon = start_daemon(root, state, daemon_env(net, **env))
    _wait(lambda: _answers(socket))
    with SyncClient(socket) as client:
        created = client.create(name="Bench")
        member = net.create_identity_home(root, "member")
        joined = net.run(member, "conversations", "join", created.invite_slug, "--no-wait")
        assert joined.returncode == 0, joined.stderr
        _wait(lambda: client.info().member_count == 2)
    return World(root, net, daemon, socket, state, created.conversation_id, member)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass
class RssSampler:
    pid: int
    samples: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(_rss_kib(self.pid))
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _journaled(world: World, message_id: str) -> None:
    def seen() -> bool:
        with SyncClient(world.socket) as client:
            events = client.read_events(after=0, limit=1000, types=["message"]).events
        return any(e.get("messageId") == message_id for e in events)

    _wait(seen)


def download_half(world: World, *, size: int, runs: int) -> dict[str, Any]:
    """Time ``attachment.download`` against the double's ``download-attachment``."""
    direct_s: list[float] = []
    daemon_s: list[float] = []
    peak_kib: list[int] = []
    base_kib = _rss_kib(world.daemon.pid)
    for run in range(runs):
        source = world.root / f"blob-{run}.bin"
        source.write_bytes(os.urandom(size))
        sent = world.net.run(
            world.member_home,
            "conversation",
            "send-attachment",
            world.conversation_id,
            str(source),
            "--json",
            env=KEY,
            timeout=120,
        )
        assert sent.returncode == 0, sent.stderr
        message_id = json.loads(sent.stdout)["messageId"]
        _journaled(world, message_id)

        def direct(message_id: str = message_id, run: int = run) -> None:
            out = world.root / f"direct-{run}.bin"
            started = time.perf_counter()
            done = world.net.run(
                world.daemon_home,
                "conversation",
                "download-attachment",
                world.conversation_id,
                message_id,
                f"--output={out}",
                "--json",
                timeout=120,
            )
            direct_s.append(time.perf_counter() - started)
            assert done.returncode == 0, done.stderr
            assert out.stat().st_size == size

        def through_daemon(message_id: str = message_id) -> None:
            with SyncClient(world.socket) as client, RssSampler(world.daemon.pid) as rss:
                started = time.perf_counter()
                got = client.download_attachment(message_id)
                daemon_s.append(time.perf_counter() - started)
            assert got.size == size
            peak_kib.append(max(rss.samples or [0]))

        for step in (direct, through_daemon) if run % 2 == 0 else (through_daemon, direct):
            step()
    return {
        "bytes": size,
        "runs": runs,
        "direct_median_s": round(statistics.median(direct_s), 3),
        "daemon_median_s": round(statistics.median(daemon_s), 3),
        "ratio": round(statistics.median(daemon_s) / statistics.median(direct_s), 2),
        "daemon_rss_before_kib": base_kib,
        "daemon_rss_peak_kib": max(peak_kib),
    }


def _reset_peak(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")  # VmHWM := the current RSS (Linux 4.0+)
        return True
    except OSError:
        return False


def _hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _measured(pid: int, call: Any) -> tuple[float, int, int]:
    """(seconds, VmRSS before, peak VmRSS during) of one call."""
    can_reset = _reset_peak(pid)
    before = _rss_kib(pid)
    with RssSampler(pid) as rss:
        started = time.perf_counter()
        call()
        took = time.perf_counter() - started
    peak = max([*rss.samples, before, _hwm_kib(pid) if can_reset else 0])
    return took, before, peak


def send_half(world: World, *, size: int, runs: int) -> dict[str, Any]:
    """Time ``message.sendAttachment`` (data and path) against ``send-attachment``."""
    payload = os.urandom(size)
    source = world.root / "send.bin"
    source.write_bytes(payload)
    data = base64.b64encode(payload).decode("ascii")
    state = world.state
    direct_env = {  # what the daemon gives its CLI (convosd.cli.runner.child_environment)
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(state / "home"),
        "CONVOS_HOME": str(world.daemon_home),
        "CONVOS_ENV": "dev",
        "CONVOS_SKIP_NEW_VERSION_CHECK": "true",
        "OCLIF_COLUMNS": "10000",
        "NO_COLOR": "1",
        "FAKECONVOS_NETWORK": str(world.net.path),
        **KEY,
    }
    direct_argv = [
        sys.executable,
        world.net.executable,
        "conversation",
        "send-attachment",
        "--env=dev",
        f"--env-file={state / 'cli.env'}",
        "--json",
        "--",
        world.conversation_id,
        str(source),
    ]
    pid = world.daemon.pid
    by_path = {"path": str(source)}
    by_data = {"data": data, "filename": "send.bin"}
    direct_s: list[float] = []
    by: dict[str, list[tuple[float, int, int]]] = {"data": [], "path": []}
    with SyncClient(world.socket) as client:
        # warm up: the first sends import and allocate what every later one reuses
        client.call("message.sendAttachment", {"data": "d2FybQ==", "filename": "warm"})
        client.call("message.sendAttachment", {"path": str(source)})
        idle_kib = _rss_kib(pid)
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(
                direct_argv,
                env=direct_env,
                cwd=state,
                check=True,
                capture_output=True,
                stdin=subprocess.DEVNULL,
            )
            direct_s.append(time.perf_counter() - started)
            for how, params in (("path", by_path), ("data", by_data)):
                by[how].append(
                    _measured(pid, lambda p=params: client.call("message.sendAttachment", p))
                )
    direct = statistics.median(direct_s)
    result: dict[str, Any] = {
        "bytes": size,
        "base64_bytes": len(data),
        "runs": runs,
        "direct_median_s": round(direct, 3),
        "daemon_rss_idle_kib": idle_kib,
        "outbox_left": len(list((state / "outbox").rglob("*"))),
    }
    for how, rows in by.items():
        took = statistics.median(r[0] for r in rows)
        result[how] = {
            "daemon_median_s": round(took, 3),
            "ratio": round(took / direct, 2),
            "daemon_rss_before_kib": max(r[1] for r in rows),
            "daemon_rss_peak_kib": max(r[2] for r in rows),
            "largest_rise_kib": max(r[2] - r[1] for r in rows),
        }
    return result


def guard_cost(root: Path, *, checks: int = 2000, state_files: int = 2000) -> dict[str, Any]:
    """What the refusal of the daemon's own files (convosd.attachments.guard.PathGuard) costs per
    ``path``: the checks by name and on the descriptor, in the daemon's worker thread; and
    for a file with a second hard link, the search of a state dir of ``state_files`` files
    for its other names."""
    state = root / "guard-state"
    (state / "convos").mkdir(parents=True)
    for i in range(state_files):
        (state / f"f{i}").write_bytes(b"x")
    guard = PathGuard(refused_locations(state, state / "convos", None))
    source = root / "guarded.bin"
    source.write_bytes(b"x" * 1024)

    def one() -> None:
        guard.check_name(str(source))
        fd = os.open(source, os.O_RDONLY)
        try:
            guard.check_open(fd, os.fstat(fd))
        finally:
            os.close(fd)

    start = time.perf_counter()
    for _ in range(checks):
        one()
    plain = (time.perf_counter() - start) / checks
    os.link(source, root / "guarded-link.bin")
    start = time.perf_counter()
    for _ in range(checks // 10):
        one()
    linked = (time.perf_counter() - start) / (checks // 10)
    return {
        "per_path_ms": round(plain * 1000, 3),
        "hard_linked_ms": round(linked * 1000, 2),
        "state_files": state_files,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        size = int(args.mib * 1024 * 1024)
        world = bound_world(
            Path(tmp),
            **KEY,
            CONVOSD_CLI_ENV_PASSTHROUGH="FAKECONVOS_*,CONVOS_API_KEY",
            CONVOSD_FRAME_LIMIT_BYTES=str(size * 2 + 1024 * 1024),  # a base64 line fits
            CONVOSD_SEND_RATE_PER_S="100",
        )
        try:
            sent = send_half(world, size=size, runs=args.runs)
            result = download_half(world, size=size, runs=args.runs)
        finally:
            world.daemon.terminate()
            world.daemon.wait(30)
        guard = guard_cost(Path(tmp))
    print(json.dumps({"send": sent, "download": result, "path_guard": guard}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
