"""Chaos, bounded in time: SIGKILL and SIGSTOP/SIGCONT of the children and of the daemon
itself while a member keeps writing and an agent keeps sending.

Afterwards: every inbound message is in the journal exactly once, the journal is gap-free,
every acknowledged send went out exactly once (idempotency keys carry retries across
daemon restarts), no child process is left over, and the daemon answers.
``CHAOS_SECONDS`` (default 12) sets the length; the long version is documented in the README.
The test's own timeout grows with it (the suite's 60 s per test fits the default only).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from convosd import errors
from convosd.client import ConvosdClient
from tests.conftest import CLI_HOST, CLI_TRANSPORT
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, eventually, eventually_async, process_gone
from tests.rpc_harness import member_cli

SECONDS = float(os.environ.get("CHAOS_SECONDS", "12"))
#: 300 s (the suite's per-test limit) holds the default run; a longer run gets its extra
#: chaos time and half as much again for the retries and checks that follow it.
TIMEOUT_S = 300.0 + 1.5 * max(0.0, SECONDS - 12.0)


class DaemonProcess:
    def __init__(self, net: FakeNetwork, root: Path) -> None:
        self.net = net
        self.root = root
        self.socket = root / "d.sock"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = (root / "daemon.log").open("ab")
        self.starts = 0

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "FAKECONVOS_NETWORK": str(self.net.path),
            "CONVOSD_ENV": "dev",
            "CONVOSD_CLI": f"{sys.executable} {self.net.executable}",
            "CONVOSD_CLI_ENV_PASSTHROUGH": "FAKECONVOS_*",
            "CONVOSD_CLI_TRANSPORT": CLI_TRANSPORT,
            "CONVOSD_CLI_HOST": CLI_HOST,
            "CONVOSD_SEND_RATE_PER_S": "1000",
            "CONVOSD_BACKFILL_INTERVAL_S": "1",
            "CONVOSD_SHUTDOWN_GRACE_S": "1",
            "CONVOSD_LOG_LEVEL": "warning",
        }

    async def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: ASYNC220 - a quick fork, then we wait on events
            [
                sys.executable,
                "-m",
                "convosd",
                "--socket",
                str(self.socket),
                "--state-dir",
                str(self.root / "state"),
                "--log-format",
                "json",
            ],
            env=self.env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1
        assert await eventually(self._serving), "daemon did not become ready"

    def _serving(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"daemon exited with {self.process.returncode}")
        return self.socket.exists()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(30)


async def connect(daemon: DaemonProcess) -> ConvosdClient:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while loop.time() < deadline:
        try:
            client = await ConvosdClient.connect(daemon.socket)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        try:
            await client.call("events.read", {"limit": 1})  # NOT_READY while starting
            return client
        except (ConnectionError, errors.NotReady):
            await client.close()
            await asyncio.sleep(0.05)
    raise AssertionError("cannot connect")


@pytest.fixture
async def chaos(net: FakeNetwork, tmp_path: Path) -> AsyncIterator[DaemonProcess]:
    daemon = DaemonProcess(net, tmp_path)
    await daemon.start()
    try:
        yield daemon
    finally:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.kill()
        daemon.log.close()


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT_S)
async def test_chaos_keeps_every_message_once(
    chaos: DaemonProcess, net: FakeNetwork, tmp_path: Path
) -> None:
    rng = random.Random(7)
    client = await connect(chaos)
    created = await client.create(name="Chaos")
    cid = created.conversation_id
    await client.close()
    member = member_cli(net, tmp_path / "member")
    await member.join(created.invite_slug, no_wait=True)

    async def member_joined() -> bool:
        c = await connect(chaos)
        try:
            return len((await c.info()).members) == 2
        finally:
            await c.close()

    assert await eventually_async(member_joined), "the member never showed in the daemon's info"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SECONDS
    inbound: list[str] = []
    acked: dict[str, str] = {}
    unsettled: list[str] = []  # keys whose send failed with an unknown outcome, then repeated

    async def member_writes() -> None:
        i = 0
        while loop.time() < deadline:
            text = f"in-{i:04d}"
            try:
                await member.send_text(cid, text)
            except errors.ConvosdError:
                continue
            inbound.append(text)
            i += 1

    async def agent_sends() -> None:
        i = 0
        while loop.time() < deadline:
            key, text = f"key-{i}", f"out-{i:04d}"
            give_up = deadline + WAIT_S
            while loop.time() < give_up:  # retry the same key until the daemon acknowledges it
                try:
                    c = await ConvosdClient.connect(chaos.socket)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                try:
                    sent = await c.send(text, idempotencyKey=key)
                    acked[key] = sent.message_id
                    break
                except (ConnectionError, errors.NotReady, errors.Busy):
                    await asyncio.sleep(0.05)
                except errors.CliFailed as exc:
                    # The CLI died under the send (with cliHost "single" a killed child is
                    # the worker that runs the sends): it may have gone out, so it was not
                    # run again. The protocol: repeat the same key, which the daemon settles
                    # from the conversation (BUSY until then), never a new one.
                    if "not run again" not in exc.message:
                        raise
                    unsettled.append(key)
                    await asyncio.sleep(0.05)
                finally:
                    await c.close()
            i += 1

    async def havoc() -> None:
        kills = stops = daemon_kills = 0
        while loop.time() < deadline - 2:
            await asyncio.sleep(rng.uniform(0.3, 0.8))
            try:
                c = await ConvosdClient.connect(chaos.socket)
                status = await c.status()
                await c.close()
            except (OSError, ConnectionError, errors.ConvosdError):
                continue
            action = rng.choice(
                ["kill-child", "kill-child", "stop-child", "kill-daemon", "stop-daemon"]
            )
            pids = [ch.pid for ch in status.children.values() if ch.pid]
            if action == "kill-daemon" and daemon_kills < 2:
                chaos.kill()
                daemon_kills += 1
                for pid in pids:  # PR_SET_PDEATHSIG: the children die with the daemon
                    assert await eventually(lambda p=pid: process_gone(p))
                await chaos.start()
            elif action == "stop-daemon" and chaos.process is not None:
                chaos.process.send_signal(signal.SIGSTOP)  # a frozen daemon, then thawed
                await asyncio.sleep(rng.uniform(0.2, 0.6))
                chaos.process.send_signal(signal.SIGCONT)
                stops += 1
            elif pids and action == "stop-child":
                pid = rng.choice(pids)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGSTOP)
                    await asyncio.sleep(rng.uniform(0.2, 0.6))
                    os.killpg(pid, signal.SIGCONT)
                stops += 1
            elif pids:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(rng.choice(pids), signal.SIGKILL)
                kills += 1
        assert kills + stops + daemon_kills >= 3

    await asyncio.gather(member_writes(), agent_sends(), havoc())
    assert set(unsettled) <= set(acked), "a key whose send had an unknown outcome never settled"

    client = await connect(chaos)
    try:

        async def everything_journaled() -> set[str]:
            await client.call("health")
            events: list[dict[str, Any]] = []
            after = 0
            while True:
                page = await client.read_events(after=after, limit=1000)
                events += page.events
                if not page.events:
                    break
                after = page.events[-1]["seq"]
            return {e["content"] for e in events if e["type"] == "message"}

        async def all_inbound_journaled() -> bool:
            return set(inbound) <= await everything_journaled()

        await eventually_async(all_inbound_journaled, pause_s=0.2)  # the checks below say what
        page_events: list[dict[str, Any]] = []
        after = 0
        while True:
            page = await client.read_events(after=after, limit=1000)
            if not page.events:
                break
            page_events += page.events
            after = page.events[-1]["seq"]
        seqs = [e["seq"] for e in page_events]
        assert seqs == list(range(1, len(seqs) + 1)), "the journal has a gap"
        received = [e["content"] for e in page_events if e["type"] == "message"]
        assert sorted(received) == sorted(inbound), "an inbound message is missing or doubled"
        history = await member.messages(cid, limit=100_000)
        outgoing = [m.content for m in history if (m.content or "").startswith("out-")]
        assert sorted(outgoing) == sorted(f"out-{int(k[4:]):04d}" for k in acked)
        assert len(outgoing) == len(set(outgoing)), "an acknowledged send went out twice"
        assert (await client.health()).status in ("ok", "degraded")
        status = await client.status()
    finally:
        await client.close()
    pids = [ch.pid for ch in status.children.values() if ch.pid]
    assert chaos.stop() == 0
    for pid in pids:
        assert await eventually(lambda p=pid: process_gone(p)), "a child survived"
