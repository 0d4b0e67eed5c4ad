"""The example echo agent (contrib/echo_agent), end to end on a daemon on the CLI double."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from contrib.echo_agent.echo_agent import EchoAgent, Position, reply_for, save_position
from convosd.client import ConvosdClient, error_from
from convosd.storage.journal import Journal
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, eventually, member_count
from tests.rpc_harness import member_cli, running_daemon

REPO = Path(__file__).resolve().parent.parent


@contextlib.asynccontextmanager
async def running_agent(socket: Path, state_file: Path) -> AsyncIterator[EchoAgent]:
    agent = EchoAgent(socket, state_file, retry_max_s=1.0)
    task = asyncio.create_task(agent.run())
    try:
        ready = asyncio.create_task(agent.ready.wait())
        await asyncio.wait({task, ready}, timeout=WAIT_S, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        assert agent.ready.is_set(), task.result() if task.done() else "agent not ready"
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def done_with(agent: EchoAgent, journal: Journal) -> bool:
    return agent.position is not None and agent.position.seq == journal.last_seq


def journaled(journal: Journal, kind: str) -> list[dict[str, Any]]:
    return [e.as_dict() for e in journal.read(0, 10_000) if e.type == kind]


async def test_echoes_once_across_restarts(net: FakeNetwork, tmp_path: Path) -> None:
    state_file = tmp_path / "agent" / "position.json"
    async with running_daemon(net, tmp_path / "d") as daemon:
        journal = daemon.instance.journal
        async with await ConvosdClient.connect(daemon.socket) as client:
            created = await client.create(name="Echo")
        cid = created.conversation_id
        bob = member_cli(net, tmp_path / "bob")
        await bob.join(created.invite_slug, no_wait=True)
        instance = daemon.instance
        assert await eventually(lambda: member_count(instance) == 2)

        async with running_agent(daemon.socket, state_file) as agent:
            assert agent.position == Position(journal.position.journal_id, journal.last_seq)
            before_hello = journal.last_seq
            hello = await bob.send_text(cid, "hello")
            assert await eventually(lambda: agent.replies == 1)
            # handled to the end (the typing stop follows the answer) and its seq saved
            assert await eventually(lambda: done_with(agent, journal))

        replies = [m for m in await bob.messages(cid) if "echo:" in (m.content or "")]
        assert len(replies) == 1 and replies[0].content_type.type_id == "reply"
        # it marked the conversation read and showed "typing" until its answer was out
        own = [m for m in await bob.messages(cid) if m.sender_inbox_id == created.inbox_id]
        assert [(m.content_type.type_id, m.content) for m in own][-3:] == [
            ("typing_indicator", '{"isTyping":true}'),
            ("reply", replies[0].content),
            ("typing_indicator", '{"isTyping":false}'),
        ]
        # the receipt is not listed (as on the real CLI): its time shows in last-read-times,
        # no later than the typing indicator that followed it
        read = net.run_json(tmp_path / "bob" / "convos", "conversation", "last-read-times", cid)
        assert read["readTimes"][created.inbox_id] <= own[-3].sent_at_ns
        assert replies[0].content is not None and replies[0].content.endswith("echo: hello")
        (sent,) = journaled(journal, "message_sent")
        assert (sent["replyTo"], sent["idempotencyKey"]) == (
            hello.message_id,
            f"echo-{hello.message_id}",
        )

        # A restart resumes after the saved seq: only the new message gets an answer.
        async with running_agent(daemon.socket, state_file) as agent:
            second = await bob.send_text(cid, "second")
            assert await eventually(lambda: agent.replies == 1)
            # handled to the end (the typing stop follows the answer) and its seq saved
            assert await eventually(lambda: done_with(agent, journal))
        assert [e["replyTo"] for e in journaled(journal, "message_sent")] == [
            hello.message_id,
            second.message_id,
        ]

        # A crash after sending but before saving the seq: the replay sends the same keys
        # and the daemon answers with the first results instead of sending again.
        position = agent.position
        assert position is not None
        save_position(state_file, Position(position.journal_id, before_hello))
        async with running_agent(daemon.socket, state_file) as agent:
            assert await eventually(lambda: agent.replies == 2)
            assert await eventually(
                lambda: agent.position is not None and agent.position.seq == journal.last_seq
            )
        assert len(journaled(journal, "message_sent")) == 2
        seen = [m.content or "" for m in await bob.messages(cid)]
        answers = [text for text in seen if "echo:" in text]
        assert len(answers) == 2
        assert answers[0].endswith("echo: hello") and answers[1].endswith("echo: second")


class StubClient:
    """Stands in for ConvosdClient: errors built the way the wire client builds them."""

    def __init__(self, conversation_id: str | None, failures: list[dict[str, Any]]) -> None:
        self.conversation_id = conversation_id
        self.failures = failures
        self.sends: list[dict[str, Any]] = []
        self.signals: list[str] = []

    async def mark_read(self) -> Any:
        self.signals.append("read")

    async def typing(self, typing: bool = True) -> Any:
        self.signals.append(f"typing:{typing}")

    async def status(self) -> Any:
        return type("Status", (), {"conversation_id": self.conversation_id})()

    async def send(self, message: str, **params: Any) -> Any:
        self.sends.append({"message": message, **params})
        if self.failures:
            raise error_from(self.failures.pop(0))
        return type("Sent", (), {"message_id": "ab" * 32})()


def stub_agent(tmp_path: Path, client: StubClient) -> EchoAgent:
    agent = EchoAgent(tmp_path / "none.sock", tmp_path / "state.json", retry_max_s=0.05)

    async def connect() -> Any:
        return client

    agent._connect = connect  # type: ignore[method-assign]
    return agent


def message(**fields: Any) -> dict[str, Any]:
    base = {
        "seq": 7,
        "type": "message",
        "conversationId": "c1",
        "messageId": "ff" * 32,
        "contentType": "text",
        "content": "hi",
    }
    return {**base, **fields}


async def test_busy_is_retried_with_the_same_key(tmp_path: Path) -> None:
    busy = {"code": -32020, "message": "busy", "data": {"kind": "BUSY", "retryAfterS": 0.01}}
    not_ready = {"code": -32021, "message": "starting", "data": {"kind": "NOT_READY"}}
    client = StubClient("c1", [busy, not_ready, busy])
    agent = stub_agent(tmp_path, client)
    await asyncio.wait_for(agent.handle(message()), WAIT_S)
    assert agent.replies == 1 and agent.busy_retries == 2
    assert len(client.sends) == 4
    assert all(s == client.sends[0] for s in client.sends)
    assert client.sends[0] == {
        "message": "echo: hi",
        "replyTo": "ff" * 32,
        "idempotencyKey": f"echo-{'ff' * 32}",
    }
    assert client.signals == ["read", "typing:True", "typing:False"]  # once, not per retry


async def test_not_bound_and_other_conversations_are_skipped(tmp_path: Path) -> None:
    not_bound = {"code": -32001, "message": "No active conversation", "data": {"kind": "NOT_BOUND"}}
    client = StubClient(None, [not_bound])
    agent = stub_agent(tmp_path, client)
    await asyncio.wait_for(agent.handle(message()), WAIT_S)
    assert (agent.replies, agent.skipped, len(client.sends)) == (0, 1, 1)
    client.conversation_id = "c2"  # the journal replays a message of an exploded conversation
    signals = list(client.signals)
    await asyncio.wait_for(agent.handle(message()), WAIT_S)
    assert (agent.replies, agent.skipped, len(client.sends)) == (0, 2, 1)
    assert client.signals == signals  # nothing in a conversation the message is not from


def test_what_gets_an_answer() -> None:
    assert reply_for(message()) is not None
    assert reply_for(message(type="message_sent")) is None
    for content_type in ("markdown", "reply", "reaction", "group_updated", "attachment"):
        assert reply_for(message(contentType=content_type)) is None
    assert reply_for(message(content=None)) is None
    long = reply_for(message(content="é" * 20_000), max_bytes=100)
    assert long is not None and len(long["message"].encode()) <= 100
    assert long["message"] == "echo: " + "é" * 47


async def test_main_runs_and_stops_on_sigterm(net: FakeNetwork, tmp_path: Path) -> None:
    state_file = tmp_path / "position.json"
    async with running_daemon(net, tmp_path / "d") as daemon:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "contrib.echo_agent.echo_agent",
            "--socket",
            str(daemon.socket),
            "--state-file",
            str(state_file),
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert await eventually(state_file.exists)
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0, err.decode()
        position = daemon.instance.journal.position
        assert json.loads(state_file.read_text()) == {
            "journalId": position.journal_id,
            "after": position.last_seq,
        }
