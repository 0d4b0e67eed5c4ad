"""convosctl and the Python client, end to end against a running daemon on the CLI double."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from convosd import errors
from convosd.client import ConvosdClient, EventStream, SyncClient
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, eventually
from tests.rpc_harness import RunningDaemon, member_cli, running_daemon


@pytest.fixture
async def daemon(net: FakeNetwork, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(net, tmp_path / "d") as running:
        yield running


async def ctl(socket: Path, *args: str, json_out: bool = True) -> tuple[int, Any, str]:
    argv = [sys.executable, "-m", "convosd.ctl", "--socket", str(socket)]
    if json_out:
        argv.append("--json")
    proc = await asyncio.create_subprocess_exec(
        *argv,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode is not None
    text = out.decode()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()] if json_out else text
    value: Any = lines[0] if json_out and len(lines) == 1 else lines
    return proc.returncode, value, err.decode()


async def test_every_command(daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path) -> None:
    sock = daemon.socket
    code, status, _ = await ctl(sock, "status")
    assert code == 0 and status["conversationId"] is None
    code, health, _ = await ctl(sock, "health")
    assert code == 0 and health["status"] == "ok"
    code, created, _ = await ctl(sock, "create", "Team", "--profile-name", "Bot")
    assert code == 0 and set(created) == {"conversationId", "inviteUrl", "inviteSlug", "inboxId"}
    code, _, err = await ctl(sock, "create", "Again")
    assert code == 1 and "ALREADY_BOUND" in err
    bob = member_cli(net, tmp_path / "bob")
    await bob.join(created["inviteSlug"], no_wait=True)
    code, info, _ = await ctl(sock, "info")
    assert code == 0 and info["conversationId"] == created["conversationId"]
    code, invite, _ = await ctl(sock, "invite", "--expires-in", "600", "--single-use")
    assert code == 0 and invite["expiresAt"]
    code, renamed, _ = await ctl(sock, "rename", "--", "-dash name")
    assert code == 0 and renamed == {"name": "-dash name"}
    code, sent, _ = await ctl(sock, "send", "hello", "--idempotency-key", "k")
    assert code == 0 and len(sent["messageId"]) == 64
    code, again, _ = await ctl(sock, "send", "hello", "--idempotency-key", "k")
    assert again == sent
    code, reacted, _ = await ctl(sock, "react", sent["messageId"], "👍")
    assert code == 0 and reacted["action"] == "added"
    code, locked, _ = await ctl(sock, "lock")
    assert locked == {"locked": True}
    code, _, err = await ctl(sock, "invite")
    assert code == 1 and "LOCKED" in err
    code, unlocked, _ = await ctl(sock, "unlock")
    assert unlocked == {"locked": False}
    code, events, _ = await ctl(sock, "events", "--after", "0")
    assert code == 0 and [e["seq"] for e in events] == list(range(1, len(events) + 1))
    code, result, _ = await ctl(sock, "call", "status")
    assert code == 0 and result["conversationId"] == created["conversationId"]
    code, _, err = await ctl(sock, "call", "status", "{not json")
    assert code == 2 and "not JSON" in err
    code, listed, _ = await ctl(sock, "pairing", "list")
    assert code == 0 and listed == {"requests": []}
    code, _, err = await ctl(sock, "pairing", "approve")
    assert code == 2 and "needs a CODE" in err
    code, _, err = await ctl(sock, "pairing", "deny", "ABCDEFGH")
    assert code == 1 and "NOT_FOUND" in err
    code, exploded, _ = await ctl(sock, "explode", "--yes")
    assert code == 0 and exploded["exploded"] is True
    code, _, err = await ctl(sock, "info")
    assert code == 1 and "NOT_BOUND" in err
    code, reset, _ = await ctl(sock, "reset", "--yes")
    assert code == 0 and reset == {"clean": True}
    code, _, err = await ctl(sock, "cancel-join")
    assert code == 1 and "NOT_FOUND" in err


async def test_human_output_and_usage(daemon: RunningDaemon) -> None:
    code, text, _ = await ctl(daemon.socket, "status", json_out=False)
    # stdout is a pipe here, so the output is JSON lines even without --json
    assert code == 0 and json.loads(text)["clean"] is True
    code, _, err = await ctl(daemon.socket, "explode")
    assert code == 2 and "--yes" in err


async def test_unreachable_daemon(tmp_path: Path) -> None:
    code, value, _ = await ctl(tmp_path / "none.sock", "health")
    assert code == 3 and value["status"] == "unreachable"
    code, _, err = await ctl(tmp_path / "none.sock", "status")
    assert code == 3 and "unreachable" in err


async def test_health_exit_code_down(net: FakeNetwork, tmp_path: Path) -> None:
    net.add_fault("binding_missing")
    async with running_daemon(net, tmp_path / "d") as daemon:
        code, health, _ = await ctl(daemon.socket, "health")
        assert code == 2 and health["status"] == "down"


async def test_setup_waits_for_acceptance(
    daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    owner = member_cli(net, tmp_path / "owner")
    created = await owner.create(name="Owner")
    setup = asyncio.create_task(ctl(daemon.socket, "setup", created.invite.url, "--timeout", "1"))
    watcher = None
    try:
        assert await eventually(lambda: daemon.instance.store.pending_join() is not None)
        watcher = await owner.join_requests_spec(created.conversation_id).spawn()
        code, result, _ = await setup
    finally:
        if watcher is not None:
            os.killpg(watcher.pid, signal.SIGKILL)
            await watcher.wait()
    assert code == 0 and result == {"status": "joined", "conversationId": created.conversation_id}


async def test_typed_client_and_sync_wrapper(daemon: RunningDaemon) -> None:
    async with await ConvosdClient.connect(daemon.socket) as client:
        assert (await client.health()).status == "ok"
        created = await client.create(name="Typed")
        assert (await client.status()).conversation_id == created.conversation_id
        sent = await client.send("typed hello")
        events = await client.read_events(after=0)
        assert events.events[-1]["messageId"] == sent.message_id
        with pytest.raises(errors.AlreadyBound):
            await client.create()
    sync = await asyncio.to_thread(SyncClient, daemon.socket)
    try:
        status = await asyncio.to_thread(sync.call, "status")
        assert status["conversationId"] == created.conversation_id
    finally:
        await asyncio.to_thread(sync.close)


async def test_event_stream_survives_overflow_and_restart(net: FakeNetwork, tmp_path: Path) -> None:
    from convosd.events import event

    state = tmp_path / "d"
    async with running_daemon(net, state, subscriber_queue=5) as daemon:
        journal = daemon.instance.journal
        for i in range(30):
            journal.append([event("join_failed", None, reason=f"a{i}")])
        stream = EventStream(daemon.socket, after=0)
        got: list[int] = []
        iterator = aiter(stream)
        while len(got) < 30:
            got.append((await asyncio.wait_for(anext(iterator), WAIT_S))["seq"])
        assert got == list(range(1, 31))
        await daemon.stop()
        follow = asyncio.ensure_future(anext(iterator))  # waits across the restart
        async with running_daemon(net, state) as again:
            again.instance.journal.append([event("join_failed", None, reason="after")])
            after = await asyncio.wait_for(follow, WAIT_S)
        assert after["seq"] == 31 and after["reason"] == "after"
        assert stream.reconnects >= 1
        await iterator.aclose()


async def test_a_cancelled_event_stream_leaves_no_waiter_behind(daemon: RunningDaemon) -> None:
    stream = EventStream(daemon.socket, after=0)
    iterator = aiter(stream)
    before = asyncio.all_tasks()
    waiting = asyncio.ensure_future(anext(iterator))  # nothing in the journal: it waits
    assert await eventually(lambda: len(asyncio.all_tasks() - before) >= 3)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await iterator.aclose()
    left = lambda: asyncio.all_tasks() - before - {asyncio.current_task()}  # noqa: E731
    assert await eventually(lambda: not left()), left()
