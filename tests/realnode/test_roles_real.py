"""``cliHost = "single"`` on the real CLI and the local node, whatever CONVOSD_TEST_CLI_HOST
says: the stream and the join-request watcher run in the warm worker (one Node process), a
real peer is admitted by the watcher role, and while the peer keeps writing the worker is
SIGKILLed, then frozen under a command until that command times out: every text the peer
sent is journaled exactly once, and both roles run again in a new worker."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from convosd import errors
from convosd.client import Client
from tests.helpers import eventually, eventually_async, process_gone
from tests.realnode.conftest import WAIT_S, journal, real_daemon, wait_events
from tests.realnode.test_daemon_real import admit_peer, message_events, send_texts
from tests.xmtpnode.harness import LocalNode, Peer

pytestmark = pytest.mark.timeout(900)

#: short enough to wait for, long enough for a real command on a loaded machine
TIMEOUT_S = 30.0


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


async def every_text_once(client: Client, texts: list[str], what: str) -> None:
    events = await wait_events(
        client, lambda es: all(message_events(es, text) for text in texts), what
    )
    for text in texts:
        assert len(message_events(events, text)) == 1, text
    ids = [e["messageId"] for e in events if e["type"] == "message"]
    assert len(ids) == len(set(ids))


async def test_roles_survive_a_worker_kill_and_a_command_timeout(
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

            # the worker SIGKILLed while the peer writes
            worker = first["cli"]["worker"]["pid"]
            texts = [f"kill {n}" for n in range(8)]
            sending = asyncio.create_task(send_texts(peer, cid, texts))
            await wait_events(client, lambda es: message_events(es, texts[0]), "the first text")
            os.kill(worker, signal.SIGKILL)
            assert await eventually(lambda: process_gone(worker), within_s=WAIT_S)
            await sending
            await every_text_once(client, texts, "every text after the worker was killed")
            second = await roles_running(client, not_pid=worker)
            assert all(c["restarts"] >= 1 for c in second["children"].values())

            # the worker frozen under a command until it times out; the peer writes meanwhile
            worker = second["cli"]["worker"]["pid"]
            texts = [f"timeout {n}" for n in range(4)]
            os.kill(worker, signal.SIGSTOP)
            sending = asyncio.create_task(send_texts(peer, cid, texts))
            with pytest.raises(errors.CliTimeout):
                await client.call("message.send", {"message": "sent to a frozen worker"})
            assert await eventually(lambda: process_gone(worker), within_s=WAIT_S)
            await sending
            await every_text_once(client, texts, "every text after the command timed out")
            await roles_running(client, not_pid=worker)
            assert (await client.call("health"))["status"] == "ok"
            events = await journal(client)
            assert len([e for e in events if e["type"] == "member_joined"]) == 1
        finally:
            await client.close()
