"""Start-up time to READY=1 (systemd notify), unbound and bound, on the CLI double.

.venv/bin/python -m bench.startup [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from convosd.client import SyncClient
from tests.fakeconvos.network import FakeNetwork


def daemon_env(net: FakeNetwork, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "FAKECONVOS_NETWORK": str(net.path),
        "CONVOSD_ENV": "dev",
        "CONVOSD_CLI": f"{sys.executable} {net.executable}",
        "CONVOSD_CLI_ENV_PASSTHROUGH": "FAKECONVOS_*",
        "CONVOSD_LOG_LEVEL": "warning",
        **extra,
    }


def start_daemon(root: Path, state: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "convosd",
            "--socket",
            str(root / "d.sock"),
            "--state-dir",
            str(state),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def socket_up(sock: Path, within_s: float = 10.0) -> None:
    """Wait until the daemon's socket exists (it listens from then on), at most ``within_s``."""
    for _ in range(int(within_s / 0.02)):
        if await asyncio.to_thread(sock.exists):
            return
        await asyncio.sleep(0.02)


def time_to_ready(root: Path, net: FakeNetwork, state: Path) -> float:
    notify = root / f"notify-{time.monotonic_ns()}.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify))
    receiver.settimeout(60)
    started = time.perf_counter()
    daemon = start_daemon(root, state, daemon_env(net, NOTIFY_SOCKET=str(notify)))
    try:
        while b"READY=1" not in receiver.recv(4096):
            pass
        return time.perf_counter() - started
    finally:
        daemon.terminate()
        daemon.wait(30)
        receiver.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        net = FakeNetwork(root / "net")
        state = root / "state"
        unbound = [time_to_ready(root, net, state) for _ in range(args.runs)]
        daemon = start_daemon(root, state, daemon_env(net))
        try:
            for _ in range(600):
                try:
                    with SyncClient(root / "d.sock") as client:
                        client.call("conversation.create", {"name": "bench"})
                    break
                except Exception:
                    time.sleep(0.05)
        finally:
            daemon.terminate()
            daemon.wait(30)
        bound = [time_to_ready(root, net, state) for _ in range(args.runs)]
    print(
        f"start-up to READY=1 ({args.runs} runs): unbound median "
        f"{statistics.median(unbound) * 1000:.0f} ms, bound (children spawned) median "
        f"{statistics.median(bound) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
