"""Sending an attachment: through the daemon (base64 ``data`` and ``path``) vs the CLI double's
``send-attachment`` run directly, in the same run; and the daemon's memory while it sends.

.venv/bin/python -m bench.attachments [--mib 5] [--runs 3]

The daemon runs as its own process (``python -m convosd``) on the double with an upload
provider (``CONVOS_API_KEY`` through ``cliEnvPassthrough``) and ``frameLimitBytes`` raised so
that a base64 line of the file fits. "Direct" runs the double as the daemon does (same
argv, environment and CLI home) on a file already on disk. Memory: the daemon's VmRSS is
sampled every few milliseconds during each send, and its VmHWM (peak) is reset before each
(``/proc/PID/clear_refs``, when writable) and read after; both are set against the idle RSS.
The client's own base64 encoding is done before the clock starts.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.startup import daemon_env, start_daemon
from convosd import errors
from convosd.client import SyncClient
from tests.fakeconvos.network import FakeNetwork

MIB = 1024 * 1024


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def reset_peak(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current RSS (Linux 4.0+)
        return True
    except OSError:
        return False


class Sampler:
    """The highest VmRSS seen while it runs (every ``every_s``)."""

    def __init__(self, pid: int, every_s: float = 0.002) -> None:
        self.pid = pid
        self.every_s = every_s
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
            time.sleep(self.every_s)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_for_socket(path: Path) -> SyncClient:
    for _ in range(600):
        try:
            return SyncClient(path)
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the daemon did not listen")


def create_when_ready(client: SyncClient) -> str:
    for _ in range(600):
        try:
            return str(client.call("conversation.create", {"name": "bench"})["conversationId"])
        except errors.NotReady:
            time.sleep(0.05)
    raise RuntimeError("the daemon did not get ready")


def measure(pid: int, send: Callable[[], Any]) -> tuple[float, int, int]:
    """(seconds, VmRSS before, the peak during) of one send: the peak is the highest of the
    sampled VmRSS and, when it can be reset first, VmHWM."""
    can_reset = reset_peak(pid)
    before = status_kib(pid, "VmRSS")
    with Sampler(pid) as sampler:
        started = time.perf_counter()
        send()
        elapsed = time.perf_counter() - started
    peak = max(sampler.peak_kib, status_kib(pid, "VmHWM") if can_reset else 0)
    return elapsed, before, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = int(args.mib * MIB)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        net = FakeNetwork(root / "net")
        state = root / "state"
        env = daemon_env(
            net,
            CONVOS_API_KEY="bench-agent-key",
            CONVOSD_CLI_ENV_PASSTHROUGH="FAKECONVOS_*,CONVOS_API_KEY",
            CONVOSD_FRAME_LIMIT_BYTES=str(size * 2 + MIB),
            CONVOSD_SEND_RATE_PER_S="100",
            CONVOSD_CLI_TIMEOUT_S="120",
        )
        daemon = start_daemon(root, state, env)
        try:
            with wait_for_socket(root / "d.sock") as client:
                cid = create_when_ready(client)
                payload = os.urandom(size)
                source = root / "payload.bin"
                source.write_bytes(payload)
                data = base64.b64encode(payload).decode("ascii")
                # warm up: the first sends import and allocate what every later one reuses
                small = root / "warm.bin"
                small.write_bytes(os.urandom(2 * MIB))
                client.call("message.sendAttachment", {"data": "d2FybQ==", "filename": "w"})
                client.call("message.sendAttachment", {"path": str(small)})
                time.sleep(0.5)
                idle_kib = status_kib(daemon.pid, "VmRSS")
                direct_env = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "LANG": "C.UTF-8",
                    "HOME": str(state / "home"),
                    "CONVOS_HOME": str(state / "convos"),
                    "CONVOS_ENV": "dev",
                    "CONVOS_SKIP_NEW_VERSION_CHECK": "true",
                    "OCLIF_COLUMNS": "10000",
                    "NO_COLOR": "1",
                    "FAKECONVOS_NETWORK": str(net.path),
                    "CONVOS_API_KEY": "bench-agent-key",
                }
                direct_argv = [
                    sys.executable,
                    net.executable,
                    "conversation",
                    "send-attachment",
                    "--env=dev",
                    f"--env-file={state / 'cli.env'}",
                    "--json",
                    "--",
                    cid,
                    str(source),
                ]
                direct: list[float] = []
                sends: dict[str, list[tuple[float, int, int]]] = {"path": [], "data": []}
                for _ in range(args.runs):
                    started = time.perf_counter()
                    subprocess.run(
                        direct_argv,
                        env=direct_env,
                        cwd=state,
                        check=True,
                        capture_output=True,
                        stdin=subprocess.DEVNULL,
                    )
                    direct.append(time.perf_counter() - started)
                    sends["path"].append(
                        measure(
                            daemon.pid,
                            lambda: client.call("message.sendAttachment", {"path": str(source)}),
                        )
                    )
                    sends["data"].append(
                        measure(
                            daemon.pid,
                            lambda: client.call(
                                "message.sendAttachment", {"data": data, "filename": "p.bin"}
                            ),
                        )
                    )
                    time.sleep(0.2)
                left = list((state / "outbox").rglob("*"))
        finally:
            daemon.terminate()
            daemon.wait(30)

    def mib(kib: float) -> str:
        return f"{kib / 1024:.1f} MiB"

    base = statistics.median(direct)
    print(f"{args.mib:g} MiB attachment, median of {args.runs} runs (same run, same double):")
    print(f"  the double's send-attachment run directly: {base * 1000:.0f} ms")
    for how, rows in sends.items():
        took = statistics.median(r[0] for r in rows)
        print(
            f"  through the daemon, {how:4}: {took * 1000:.0f} ms (ratio {took / base:.2f}); "
            f"daemon RSS before {mib(max(r[1] for r in rows))}, peak during "
            f"{mib(max(r[2] for r in rows))}, largest rise in one send "
            f"+{mib(max(r[2] - r[1] for r in rows))}"
        )
    print(
        f"  daemon RSS idle (before the first large send): {mib(idle_kib)}; the base64 line "
        f"of the file is {mib(len(data) / 1024)}, the file {mib(size / 1024)}"
    )
    print(f"  private copies left in the outbox after the sends: {len(left)}")


if __name__ == "__main__":
    main()
