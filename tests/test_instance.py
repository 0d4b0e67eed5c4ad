"""The instance against the double: binding, both children, ingest, restarts, no loss."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from convosd.cli import ConvosCli
from convosd.config import Paths, load_settings
from convosd.conversation import report
from convosd.conversation.bound import STREAM, WATCHER, BoundConversation
from convosd.conversation.instance import Instance
from convosd.storage.journal import Journal
from convosd.storage.store import Store
from convosd.supervisor.state import ChildState
from tests.conftest import CLI_HOST, CliFactory, cli_transport, fake_setup
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import (
    WAIT_S,
    cli_command_processes,
    eventually,
    member_count,
    process_gone,
)
from tests.helpers import admitted as admitted_by


class Harness:
    def __init__(self, net: FakeNetwork, root: Path, make_cli: CliFactory, **daemon: Any) -> None:
        self.net = net
        self.root = root
        self.make_cli = make_cli
        self.daemon = daemon
        self.instances: list[Instance] = []

    def open(self, name: str = "me", **convos: Any) -> Instance:
        state = self.root / name
        settings = load_settings(
            {},
            environ={},
        ).model_copy(
            update={
                "convos": load_settings({}, environ={}).convos.model_copy(
                    update={"env": "dev", **convos}
                ),
                "daemon": load_settings({}, environ={}).daemon.model_copy(update=self.daemon),
            }
        )
        paths = Paths(socket=state / "s.sock", state_dir=state, convos_home=state / "convos")
        setup = fake_setup(self.net, state)
        setup.prepare()
        cli = ConvosCli(
            setup,
            timeout_s=WAIT_S,
            environ={"PATH": "/usr/bin:/bin", "FAKECONVOS_NETWORK": str(self.net.path)},
            transport=cli_transport(),
            host=CLI_HOST,  # type: ignore[arg-type]
        )
        store = Store.open(state)
        instance = Instance(
            settings, paths, store=store, journal=Journal(store), cli=cli, stop_grace_s=1.0
        )
        self.instances.append(instance)
        return instance

    async def close(self, instance: Instance) -> None:
        await instance.close()
        instance.store.close()
        self.instances.remove(instance)


@pytest.fixture
async def harness(net: FakeNetwork, tmp_path: Path, make_cli: CliFactory) -> AsyncIterator[Harness]:
    h = Harness(net, tmp_path, make_cli, backfill_interval_s=0.3)
    yield h
    for instance in list(h.instances):
        await h.close(instance)


def messages(instance: Instance) -> list[dict[str, Any]]:
    return [e.as_dict() for e in instance.journal.read(0, 100_000) if e.type == "message"]


def texts(instance: Instance) -> list[str]:
    return [m["content"] for m in messages(instance) if m["contentType"] == "text"]


def both_running(instance: Instance) -> Callable[[], bool]:
    return lambda: all(
        instance.children.get(n) is not None
        and instance.children[n].status.state is ChildState.RUNNING
        for n in (STREAM, WATCHER)
    )


async def created_and_joined(h: Harness, me: Instance) -> tuple[str, ConvosCli]:
    """Our instance creates a conversation and binds; bob joins through our watcher."""
    created = await me.cli.create(name="Team")
    await me.start()
    await me.bind(created.conversation_id, inbox_id=created.inbox_id, how="created")
    assert await eventually(both_running(me))
    bob = h.make_cli("bob")
    await bob.join(created.invite.slug, no_wait=True)
    assert await eventually(lambda: member_count(me) == 2)
    return created.conversation_id, bob


async def test_bind_children_members_and_messages(harness: Harness) -> None:
    me = harness.open()
    cid, bob = await created_and_joined(harness, me)
    types = [e.type for e in me.journal.read(0, 100)]
    assert types[0] == "conversation_bound"
    assert "member_joined" in types
    bob_inbox = (await bob.probe())[0].inbox_id
    joined = [e.as_dict() for e in me.journal.read(0, 100) if e.type == "member_joined"]
    assert [e["inboxId"] for e in joined] == [bob_inbox]
    assert bob_inbox in admitted_by(me)
    for i in range(5):
        await bob.send_text(cid, f"hello {i}")
    await me.cli.send_text(cid, "from me")  # own: never a message event
    assert await eventually(lambda: len(texts(me)) == 5)
    assert texts(me) == [f"hello {i}" for i in range(5)]
    first = messages(me)[-1]
    assert first["senderInboxId"] == bob_inbox and first["replyTo"] is None
    status = report.status(me)
    assert status["conversationId"] == cid
    assert status["children"]["stream"]["state"] == "running"
    assert status["children"]["joinRequests"]["pid"] is not None
    assert report.health(me)[0] == "ok"


async def test_sigkill_of_the_stream_loses_nothing(harness: Harness) -> None:
    me = harness.open()
    cid, bob = await created_and_joined(harness, me)
    sent: list[str] = []
    kills = 0

    async def sender() -> None:
        # 40 messages, and more while the stream has not been killed twice yet (a warm
        # CLI sends 40 before the first restart is over)
        for i in range(400):
            if i >= 40 and kills >= 2:
                break
            text = f"n{i:03d}"
            await bob.send_text(cid, text)
            sent.append(text)

    task = asyncio.create_task(sender())
    while not task.done():
        pid = me.children[STREAM].pid
        if pid is not None and me.children[STREAM].status.state is ChildState.RUNNING:
            os.killpg(pid, signal.SIGKILL)
            kills += 1
            assert await eventually(lambda p=pid: me.children[STREAM].pid not in (None, p))
        await asyncio.sleep(0.05)
    await task
    assert kills >= 2
    await me.backfill()
    assert await eventually(lambda: len(texts(me)) >= len(sent))
    assert sorted(texts(me)) == sent  # every message exactly once
    assert me.children[STREAM].status.restarts >= kills


async def test_a_members_read_that_fails_is_read_again_until_member_joined(
    harness: Harness,
) -> None:
    """The members view is read when our watcher admits someone and when its add shows as
    our own group_updated; each read can fail (here the network, three times): the view is
    read again with backoff until it answers, so the newcomer's member_joined is not lost."""
    me = harness.open()
    created = await me.cli.create(name="Team")
    await me.start()
    await me.bind(created.conversation_id, inbox_id=created.inbox_id, how="created")
    assert await eventually(both_running(me))
    assert await eventually(lambda: me.conversation is not None and me.conversation.members.inboxes)
    harness.net.add_fault("unreachable", command="conversation:members", count=3)
    bob = harness.make_cli("bob")
    await bob.join(created.invite.slug, no_wait=True)
    bob_inbox = (await bob.probe())[0].inbox_id

    def joined() -> list[str]:
        return [
            e.as_dict()["inboxId"] for e in me.journal.read(0, 100) if e.type == "member_joined"
        ]

    assert await eventually(lambda: joined() == [bob_inbox])
    assert harness.net.faults() == []  # all three failures happened


async def test_silent_stream_gap_is_recovered_by_the_backfill(harness: Harness) -> None:
    me = harness.open()
    cid, bob = await created_and_joined(harness, me)
    harness.net.add_fault("stream_skip", command="conversation:stream", every=2)
    for i in range(10):
        await bob.send_text(cid, f"g{i}")
    assert await eventually(lambda: len(texts(me)) == 10)
    assert sorted(texts(me)) == [f"g{i}" for i in range(10)]
    ids = [m["messageId"] for m in messages(me)]
    assert len(ids) == len(set(ids))
    seqs = [e.seq for e in me.journal.read(0, 1000)]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_garbage_lines_are_counted_not_fatal(harness: Harness) -> None:
    harness.net.add_fault(
        "garbage", command="conversation:stream", every=1, long_line_bytes=5_000_000
    )
    me = harness.open()
    cid, bob = await created_and_joined(harness, me)
    await bob.send_text(cid, "through the noise")
    assert await eventually(lambda: texts(me) == ["through the noise"])
    assert me.children[STREAM].status.state is ChildState.RUNNING
    assert me.conversation is not None and me.conversation.ingest is not None
    assert me.conversation.ingest.stats.bad_lines + me.children[STREAM].bad_lines > 0


async def test_crash_loop_backs_off(harness: Harness) -> None:
    me = harness.open()
    created = await me.cli.create(name="x")
    # The network is down for the stream: it exits at once, every time.
    harness.net.add_fault("unreachable", command="conversation:stream")
    await me.start()
    await me.bind(created.conversation_id, inbox_id=created.inbox_id, how="created")
    stream = me.children[STREAM]
    assert await eventually(lambda: stream.status.restarts >= 3)
    assert stream.status.state in (ChildState.BACKOFF, ChildState.STARTING)
    assert report.health(me)[0] == "degraded"
    assert stream.status.last_exit is not None and stream.status.last_exit.code == 2
    assert "GetInboxIds" in (stream.status.last_error or "")
    # attempts grow: 0.5, 1, 2 s ... (jittered)
    assert stream.backoff.attempt >= 3


async def test_unknown_conversation_is_fatal(harness: Harness) -> None:
    me = harness.open()
    await me.cli.create(name="x")
    await me.start()
    inbox = (await me.cli.probe())[0].inbox_id
    await me.bind("ab" * 16, inbox_id=inbox, how="created")
    assert await eventually(lambda: me.children[STREAM].status.state is ChildState.FATAL)
    assert "Conversation not found" in (me.children[STREAM].status.last_error or "")
    assert report.health(me)[0] == "down"


async def test_resume_after_restart_journals_nothing_new(harness: Harness) -> None:
    me = harness.open()
    cid, bob = await created_and_joined(harness, me)
    last = me.journal.last_seq
    pids = [c.pid for c in me.children.values()]
    await harness.close(me)
    for pid in pids:
        assert pid is not None and await eventually(lambda p=pid: process_gone(p))
    again = harness.open()
    await again.start()
    assert again.binding is not None and again.binding.conversation_id == cid
    assert await eventually(both_running(again))
    await bob.send_text(cid, "after restart")
    assert await eventually(lambda: texts(again)[-1:] == ["after restart"])
    assert [e.type for e in again.journal.read(last, 10)] == ["message"]


async def test_leftover_children_are_reaped_at_start(harness: Harness, tmp_path: Path) -> None:
    me = harness.open()
    leftover = subprocess.Popen(  # noqa: ASYNC220 - started once, reaped by the code under test
        [sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True
    )
    try:
        from convosd import reaper

        ticks = reaper.start_ticks(leftover.pid)
        assert ticks is not None
        me.store.record_child("stream", leftover.pid, ticks)
        await me.start()
        assert leftover.wait(timeout=WAIT_S) == -signal.SIGKILL
        assert me.store.recorded_children() == []
    finally:
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait()


async def admitted(me: Instance, owner: ConvosCli, created: Any) -> None:
    """``me`` asks to join ``owner``'s conversation; the owner's watcher accepts it."""
    await me.cli.join(created.invite.slug, no_wait=True)
    watcher = await owner.join_requests_spec(created.conversation_id).spawn()
    try:
        assert await eventually_async(lambda: me.cli.list_conversations(sync=True))
    finally:
        os.killpg(watcher.pid, signal.SIGKILL)
        await watcher.wait()


async def test_attach_to_owner_conversation(harness: Harness, make_cli: CliFactory) -> None:
    owner = make_cli("owner")
    created = await owner.create(name="Owner")
    me = harness.open()
    await admitted(me, owner, created)
    await harness.close(me)
    me = harness.open(owner_conversation_id=created.conversation_id)
    await me.start()
    assert me.binding is not None and me.binding.how == "attached"
    assert await eventually(lambda: me.owner_inbox_ids == [created.inbox_id])
    bound = [e.as_dict() for e in me.journal.read(0, 10) if e.type == "conversation_bound"]
    assert [b["how"] for b in bound] == ["attached"]


async def test_explode_by_the_creator_unbinds(harness: Harness, make_cli: CliFactory) -> None:
    owner = make_cli("owner")
    created = await owner.create(name="Owner")
    me = harness.open(owner_conversation_id=created.conversation_id)
    await admitted(me, owner, created)
    await me.start()
    assert await eventually(both_running(me))
    await owner.explode(created.conversation_id)
    assert await eventually(lambda: me.binding is None)
    gone = [e.as_dict() for e in me.journal.read(0, 100) if e.type == "conversation_exploded"]
    assert len(gone) == 1
    assert (gone[0]["reason"], gone[0]["by"]) == ("exploded", created.inbox_id)
    assert me.children == {}


async def eventually_async(probe: Callable[[], Any], within_s: float = WAIT_S) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        if await probe():
            return True
    return False


def bound_tasks_alive(conversation: BoundConversation) -> list[str]:
    """Names of the bound object's tasks still running, from its scope and from the loop."""
    prefixes = ("refresh-", "backfill-", "pairing-notice", "conversation-exploded")
    mine = {t.get_name() for t in conversation.tasks.running()}
    loop_wide = {
        t.get_name()
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task() and t.get_name().startswith(prefixes)
    }
    return sorted(mine | loop_wide)


async def test_unbind_drops_every_bound_task_child_and_view(harness: Harness) -> None:
    me = harness.open()
    cid, _bob = await created_and_joined(harness, me)
    conversation = me.conversation
    assert conversation is not None and conversation.conversation_id == cid
    assert any(n == "backfill-loop" for n in bound_tasks_alive(conversation))
    # What runs the children: their own processes (cliHost "separate"), or roles of the warm
    # worker, which the double runs as processes of their own (the pid the children show is
    # then the worker's, which outlives the conversation).
    running = [
        *cli_command_processes(("conversation", "stream"), cid),
        *cli_command_processes(("conversations", "process-join-requests"), cid),
    ]
    assert len(running) == 2, running
    known = list(conversation.names.known)
    assert known  # the profile view saw the members
    await me.unbind(reason="test")
    assert me.conversation is None and not me.bound
    assert bound_tasks_alive(conversation) == []
    assert conversation.children == {} and conversation.closed
    assert all(process_gone(pid) for pid in running)
    status = report.status(me)
    assert status["conversationId"] is None and status["ownerInboxIds"] == []
    assert {c["state"] for c in status["children"].values()} == {"stopped"}
    assert report.health_inputs(me).bound is False and report.health_inputs(me).children == {}
    assert all(me.known_name(inbox) is None for inbox in known)
    assert await me.backfill() == 0  # nothing of the binding runs any more


async def test_a_new_binding_starts_with_fresh_views(harness: Harness) -> None:
    me = harness.open()
    await created_and_joined(harness, me)
    first = me.conversation
    await me.unbind(reason="test")
    created = await me.cli.create(name="Again")
    await me.bind(created.conversation_id, inbox_id=created.inbox_id, how="created")
    second = me.conversation
    assert second is not None and second is not first
    assert second.admitted == set() and member_count(me) <= 1
    assert await eventually(both_running(me))


async def test_the_conversation_ends_once_whoever_notices_it(harness: Harness) -> None:
    """Explode by us, explode or removal seen by the bound conversation: one path. A second
    caller returns only once the first one has unbound, and nothing is journaled twice."""
    me = harness.open()
    cid, _bob = await created_and_joined(harness, me)
    first = asyncio.create_task(me.conversation_gone(by=None, reason="removed"))
    await asyncio.sleep(0)  # the first caller is inside, stopping the children
    await me.conversation_gone(by="someone", reason="exploded")
    assert me.conversation is None and report.status(me)["conversationId"] is None
    await first
    gone = [e.as_dict() for e in me.journal.read(0, 1000) if e.type == "conversation_exploded"]
    assert [(g["conversationId"], g["reason"]) for g in gone] == [(cid, "removed")]
