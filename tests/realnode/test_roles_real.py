"""``cliHost = "single"`` on the real CLI and the local node, whatever CONVOSD_TEST_CLI_HOST
says: the stream and the join-request watcher run in the warm worker (one Node process), a
real peer is admitted by the watcher role, and while the peer sends bursts (one real XMTP
client sending as fast as it can: tests/realnode/burst_tool.mjs) the worker's process group
is SIGKILLed, then the worker is frozen under a command until that command times out: every
text the peer sent is journaled exactly once and in the order it was sent, both roles run
again in a new worker, and the resumed stream role reads lines of the burst (each burst goes
on until it has). The counts and the rate the peer reached are printed (``-s``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from convosd import errors
from convosd.client import Client
from tests.helpers import eventually, eventually_async, process_gone
from tests.realnode.conftest import WAIT_S, RealDaemon, journal, real_daemon
from tests.realnode.test_daemon_real import admit_peer
from tests.worker_kill import stream_lines
from tests.xmtpnode.harness import LocalNode, Peer, pinned_node

pytestmark = pytest.mark.timeout(900)

#: short enough to wait for, long enough for a real command on a loaded machine
TIMEOUT_S = 30.0
TOOL = Path(__file__).with_name("burst_tool.mjs")
#: each burst's least length, and when the worker is killed or frozen in it; a burst goes on
#: (held) until the resumed stream role has read lines, whatever the machine's speed
BURST = 200
HARM_AT = 100
#: a held burst's bound: minutes at the 44-122 messages/s one client reaches here
BURST_MAX = 20_000


async def roles_running(client: Client, *, not_pid: int | None = None) -> dict[str, Any]:
    """Both roles running in the worker (their pid is the worker's), not in ``not_pid``."""
    status: dict[str, Any] = {}

    async def check() -> bool:
        status.update(await client.call("status"))
        worker = (status["cli"]["worker"] or {}).get("pid")
        return worker not in (None, not_pid) and all(
            c["state"] == "running" and c["pid"] == worker for c in status["children"].values()
        )

    assert await eventually_async(check, within_s=WAIT_S, pause_s=0.5), status
    return status


class Burst:
    """The peer's burst tool, running: how many it has sent, and when it is done."""

    def __init__(self, process: asyncio.subprocess.Process, hold: Path) -> None:
        self.process = process
        self.hold = hold
        self.sent = 0
        self.seconds: float | None = None
        self.stderr = bytearray()
        self.reading = asyncio.create_task(self._read())
        self.draining = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.read(65536):
            self.stderr = (self.stderr + chunk)[-4096:]

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                if "sent" in item:
                    self.sent = int(item["sent"])
                elif "done" in item:
                    self.seconds = float(item["seconds"])

    async def reached(self, count: int) -> None:
        assert await eventually(lambda: self.sent >= count, within_s=WAIT_S), self.sent

    async def done(self) -> float:
        """Let the burst end; its rate."""
        self.hold.unlink(missing_ok=True)
        code = await asyncio.wait_for(self.process.wait(), WAIT_S)
        await self.reading
        await self.draining
        assert code == 0 and self.seconds is not None, bytes(self.stderr)
        return self.sent / self.seconds


@contextlib.asynccontextmanager
async def burst(peer: Peer, cid: str, prefix: str) -> AsyncIterator[Burst]:
    """``BURST`` texts and on while ``burst.hold`` exists."""
    hold = peer.root / f"hold-{prefix.strip()}"
    hold.touch()
    process = await asyncio.create_subprocess_exec(
        *peer.node.enter,
        str(pinned_node()),
        str(TOOL),
        cid,
        str(BURST),
        prefix,
        str(hold),
        str(BURST_MAX),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=peer.env(),
        cwd=peer.root,
        start_new_session=True,
    )
    running = Burst(process, hold)
    try:
        yield running
    finally:
        hold.unlink(missing_ok=True)
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # nsenter and the node under it
            await process.wait()
        for task in (running.reading, running.draining):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Resumed:
    """Where the burst and the stream were when the roles ran again."""

    def __init__(self, sent: int, lines: int) -> None:
        self.sent = sent
        self.lines = lines

    def report(self, daemon: RealDaemon, sending: Burst) -> dict[str, int]:
        return {
            "sent_after_resume": sending.sent - self.sent,
            "stream_lines_after_resume": stream_lines(daemon.daemon.instance) - self.lines,
        }


async def carried_live(daemon: RealDaemon, sending: Burst) -> Resumed:
    """The roles run again: the burst goes on until the resumed stream role has read lines
    of it (not only the backfill)."""
    resumed = Resumed(sending.sent, stream_lines(daemon.daemon.instance))
    assert await eventually(
        lambda: stream_lines(daemon.daemon.instance) > resumed.lines, within_s=WAIT_S
    ), "the resumed stream role read nothing"
    return resumed


async def fallbacks(client: Client) -> int:
    return int((await client.call("status"))["cli"]["worker"]["fallbacks"])


async def message_texts(client: Client) -> list[str]:
    """Every ``message`` event's content, in journal order (paged: bursts are long)."""
    texts: list[str] = []
    after = 0
    while True:
        page = await client.call(
            "events.read", {"after": after, "limit": 1000, "types": ["message"]}
        )
        if not page["events"]:
            return texts
        texts += [str(e.get("content")) for e in page["events"]]
        after = page["events"][-1]["seq"]


async def every_text_once_in_order(
    client: Client, prefix: str, count: int, what: str
) -> dict[str, int]:
    """Wait until the journal holds ``prefix0`` .. ``prefix<count-1>``; count them."""
    indexes: list[int] = []

    async def check() -> bool:
        indexes[:] = [
            int(t[len(prefix) :]) for t in await message_texts(client) if t.startswith(prefix)
        ]
        return set(range(count)) <= set(indexes)

    found = await eventually_async(check, within_s=WAIT_S, pause_s=0.5)
    highest, out_of_order = -1, 0
    for index in indexes:
        out_of_order += index < highest
        highest = max(highest, index)
    counts = {
        "sent": count,
        "journaled": len(set(indexes)),
        "duplicates": len(indexes) - len(set(indexes)),
        "lost": count - len(set(indexes) & set(range(count))),
        "out_of_order": out_of_order,
    }
    assert found, f"{what}: {counts}"
    assert counts["duplicates"] == counts["out_of_order"] == 0, f"{what}: {counts}"
    return counts


async def test_roles_survive_a_worker_kill_and_a_command_timeout_under_a_burst(
    xmtp_node: LocalNode, peer: Peer, tmp_path: Path
) -> None:
    async with real_daemon(
        xmtp_node, tmp_path / "state", "warm", cli_host="single", cli_timeout_s=TIMEOUT_S
    ) as daemon:
        client = await daemon.client()
        try:
            created = await client.call("conversation.create", {"name": "Roles"})
            cid = created["conversationId"]
            first = await roles_running(client)
            await admit_peer(client, peer, created["inviteSlug"])  # the watcher role admits

            # the worker's process group SIGKILLed (a crash) during a burst
            worker = first["cli"]["worker"]["pid"]
            async with burst(peer, cid, "kill ") as sending:
                await sending.reached(HARM_AT)
                at_sent = sending.sent
                killed = time.monotonic()
                os.killpg(worker, signal.SIGKILL)
                assert await eventually(lambda: process_gone(worker), within_s=WAIT_S)
                second = await roles_running(client, not_pid=worker)
                resume_s = time.monotonic() - killed
                resumed = await carried_live(daemon, sending)
                rate = await sending.done()
            assert all(c["restarts"] >= 1 for c in second["children"].values())
            counts = await every_text_once_in_order(
                client, "kill ", sending.sent, "every text after the worker was killed"
            )
            print(
                "worker SIGKILL:",
                {
                    **counts,
                    "rate_per_s": round(rate, 1),
                    "killed_at_sent": at_sent,
                    "resume_s": round(resume_s, 2),
                    **resumed.report(daemon, sending),
                    "one_shot_fallbacks": await fallbacks(client),
                    "load_average": round(os.getloadavg()[0], 1),
                },
            )

            # the worker frozen under a command until it times out, during a burst
            worker = second["cli"]["worker"]["pid"]
            async with burst(peer, cid, "timeout ") as sending:
                await sending.reached(HARM_AT)
                at_sent = sending.sent
                os.kill(worker, signal.SIGSTOP)  # a hung command: the roles hang with it
                started = time.monotonic()
                gone_after: list[float] = []

                async def gone() -> bool:
                    # nothing else kills a stopped worker: a command of it timed out
                    found = await eventually(lambda: process_gone(worker), within_s=WAIT_S)
                    gone_after.append(time.monotonic() - started)
                    return found

                watching = asyncio.create_task(gone())
                # The first command in the queue times out and the worker is killed for it:
                # this send, or a backfill page that was asked for first (the backfill runs
                # every 2 s here), and then the send runs in the next worker.
                try:
                    await client.call("message.send", {"message": "sent to a frozen worker"})
                    send = "sent after the restart"
                except errors.CliTimeout:
                    send = "timed out"
                send_s = time.monotonic() - started
                assert await watching, "the frozen worker was never killed"
                third = await roles_running(client, not_pid=worker)
                resumed = await carried_live(daemon, sending)
                rate = await sending.done()
            counts = await every_text_once_in_order(
                client, "timeout ", sending.sent, "every text after the command timed out"
            )
            print(
                "command timeout:",
                {
                    **counts,
                    "rate_per_s": round(rate, 1),
                    "frozen_at_sent": at_sent,
                    "worker_killed_after_s": round(gone_after[0], 1),
                    "the_send": send,
                    "the_send_s": round(send_s, 1),
                    **resumed.report(daemon, sending),
                    "one_shot_fallbacks": await fallbacks(client),
                    "load_average": round(os.getloadavg()[0], 1),
                },
            )
            assert third["cli"]["worker"]["pid"] != worker
            assert (await client.call("health"))["status"] == "ok"
            events = await journal(client, ["member_joined"])
            assert len(events) == 1
        finally:
            await client.close()
