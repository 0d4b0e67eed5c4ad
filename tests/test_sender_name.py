"""Issue 25 item 13: the first message after a join carried ``senderName: null`` although
the joiner set a profile name. On the CLI double, as the real CLI does it: the joiner's
join request carries its profile; our join-request watcher admits it and sends a
ProfileSnapshot with it, so ``conversation profiles`` knows the name before the joiner
writes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from convosd.cli.streams import (
    JoinAccepted,
    parse_stream_line,
    parse_watcher_line,
    stream_line_sender,
)
from convosd.client import ConvosdClient
from convosd.conversation import names
from convosd.tasks import TaskScope
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, admitted, eventually, eventually_async
from tests.rpc_harness import RunningDaemon, member_cli, running_daemon


@pytest.fixture(autouse=True)
def patient_name_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon holds a nameless first writer's lines for one ``profiles`` read, at most
    NAMES_WAIT_S (5 s), then journals them without the name. On a 2-core machine at load 20
    that CLI call, queued behind the others, took longer one full run in a few: the test
    checks that the read is waited for, not how fast the machine is."""
    monkeypatch.setattr(names, "NAMES_WAIT_S", 120.0)


async def messages(client: ConvosdClient) -> list[dict[str, Any]]:
    events = (await client.read_events(after=0, limit=1000)).events
    return [e for e in events if e["type"] == "message" and e["contentType"] == "text"]


async def test_the_first_message_after_a_join_carries_the_joiners_name(
    net: FakeNetwork, tmp_path: Path
) -> None:
    async with running_daemon(net, tmp_path / "me") as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            created = await client.create(name="Names", profileName="Agent")

            # The name comes with a request the watcher reads as it streams. One that came
            # before (its batch pass at start) is met newest first, at the invite's plain-
            # text copy, which has no profile, as in the real CLI. The watcher starts as
            # create returns, as a process or a worker role: it streams once it says so.
            async def streaming() -> bool:
                status = await client.call("status")
                return bool(status["children"]["joinRequests"]["state"] == "running")

            assert await eventually_async(streaming, within_s=WAIT_S)
            bob = member_cli(net, tmp_path / "bob")
            joined = await bob.join(created.invite_slug, profile_name="Bob", no_wait=True)
            assert await eventually(lambda: bool(admitted(daemon.instance)), within_s=WAIT_S)
            # Bob writes as soon as he is in (his CLI's join returns once admitted)
            await bob.send_text(created.conversation_id, "first")
            await bob.send_text(created.conversation_id, "second")

            async def both() -> bool:
                return len(await messages(client)) == 2

            assert await eventually_async(both, within_s=WAIT_S)
            got = await messages(client)
            assert [(m["content"], m["senderName"]) for m in got] == [
                ("first", "Bob"),
                ("second", "Bob"),
            ], joined


def test_the_watchers_acceptance_carries_the_join_requests_profile_name() -> None:
    line = (
        b'{"event":"join_request_accepted","conversationId":"c1","joinerInboxId":"ab",'
        b'"tag":"t","profile":{"name":"Bob","memberKind":"agent"},"timestamp":"x"}'
    )
    assert parse_watcher_line(line) == JoinAccepted("ab", "c1", "Bob")
    for profile in (b"", b',"profile":{}', b',"profile":{"name":5}', b',"profile":"Bob"'):
        line = b'{"event":"join_request_accepted","joinerInboxId":"ab"' + profile + b"}"
        assert parse_watcher_line(line) == JoinAccepted("ab", None, None)


async def test_a_name_set_after_the_join_shows_on_later_messages(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """A sender known without a name is looked up again (at most every 5 s): a missing
    name was cached for good before."""
    async with running_daemon(net, tmp_path / "me") as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            created = await client.create(name="Names")
            cid = created.conversation_id
            carol = member_cli(net, tmp_path / "carol")
            await carol.join(created.invite_slug, no_wait=True)  # no profile name
            assert await eventually(lambda: bool(admitted(daemon.instance)), within_s=WAIT_S)
            await carol.send_text(cid, "nameless")
            assert await eventually_async(lambda: _has_text(client, "nameless"), within_s=WAIT_S)
            await carol.update_profile(cid, name="Carol")
            sent = 0

            async def named() -> bool:
                nonlocal sent
                got = await messages(client)
                if any(m["senderName"] == "Carol" for m in got):
                    return True
                sent += 1
                await carol.send_text(cid, f"again {sent}")
                return False

            assert await eventually_async(named, within_s=WAIT_S, pause_s=0.5)
            first = (await messages(client))[0]
            assert (first["content"], first["senderName"]) == ("nameless", None)


async def _has_text(client: ConvosdClient, text: str) -> bool:
    return any(m["content"] == text for m in await messages(client))


async def _joined_and_named(
    client: ConvosdClient, daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path, name: str
) -> tuple[str, Any]:
    """A conversation we created, joined (without waiting) by a member admitted by our
    watcher with no name, who then sends a profile naming them ``name``."""
    created = await client.create(name="Names")
    cid = created.conversation_id
    member = member_cli(net, tmp_path / name.lower())
    await member.join(created.invite_slug, no_wait=True)
    assert await eventually(lambda: bool(admitted(daemon.instance)), within_s=WAIT_S)
    await member.update_profile(cid, name=name)
    return cid, member


async def test_a_profile_message_before_the_first_text_names_it(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """A joiner whose join request had no name sends its profile (as the CLI's waiting join
    does once it is in), then writes: the first text waits for one profiles read."""
    async with running_daemon(net, tmp_path / "me") as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            cid, dave = await _joined_and_named(client, daemon, net, tmp_path, "Dave")
            await dave.send_text(cid, "hello")
            assert await eventually_async(lambda: _has_text(client, "hello"), within_s=WAIT_S)
            [first] = await messages(client)
            assert first["senderName"] == "Dave"


async def test_a_backfill_page_read_while_the_stream_looks_up_a_name_waits_for_it(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """The stream holds a first message while it looks up its sender's name; a backfill page
    read meanwhile holds the same message and must not journal it first, nameless. The
    window is forced: a backfill's ``messages`` call is slowed, and the text is sent while it
    runs (the stream's profiles read then waits behind it in the CLI queue)."""
    async with running_daemon(net, tmp_path / "me") as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            cid, erin = await _joined_and_named(client, daemon, net, tmp_path, "Erin")
            net.add_fault("slow_start", command="conversation:messages", count=1, seconds=2.0)
            # the next backfill (every 0.5 s here) has taken it: its read is under way
            assert await eventually(lambda: net.faults() == [], within_s=WAIT_S)
            await erin.send_text(cid, "hello")
            assert await eventually_async(lambda: _has_text(client, "hello"), within_s=WAIT_S)
            [first] = await messages(client)
            assert first["senderName"] == "Erin"


class _ProfilesNeverAnswer:
    """A CLI whose ``profiles`` read is under way until cancelled (a slow queue)."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()

    async def profiles(self, conversation_id: str) -> Any:
        self.asked.set()
        await asyncio.Event().wait()


async def test_a_backfill_page_waiting_for_the_names_lookup_ends_when_the_binding_closes() -> None:
    """Unbind hung 300 s in a full run: the binding closed while a backfill page waited for
    the stream's names lookup, and the page swallowed its own cancellation with the
    lookup's (both cancelled by the scope): the backfill loop went on, the scope's close
    waited for it for ever. Closing the scope must end the page, cancelled."""
    scope = TaskScope("bound:test")
    cli = _ProfilesNeverAnswer()
    sender_names = names.SenderNames(
        "c0" * 16,
        cli=cli,  # type: ignore[arg-type]
        tasks=scope,
        own_inbox_id=lambda: "me",
        ask_refresh=lambda: None,
        deliver=lambda _lines: None,
    )
    line = json.dumps(
        {
            "id": "m1",
            "senderInboxId": "a1" * 32,
            "contentType": {"authorityId": "xmtp.org", "typeId": "text", "versionMajor": 1},
            "content": "hi",
            "sentAt": "2026-11-26T00:00:00.123Z",
        }
    ).encode()
    message = parse_stream_line(line)
    assert message is not None
    sender_names.on_stream_lines([line])  # a first writer, nameless: held behind a lookup
    assert await eventually(cli.asked.is_set)
    waiting = asyncio.Event()

    async def page() -> None:
        waiting.set()  # nothing suspends before the wait for the lookup
        await sender_names.before_backfill_page([message])

    task = scope.spawn(page(), "backfill-page")
    assert await eventually(waiting.is_set)
    await asyncio.wait_for(scope.close(), WAIT_S)
    assert task.cancelled()


def test_a_stream_lines_sender_is_read_without_parsing_it() -> None:
    line = b'{"id":"m1","senderInboxId":"aB12","contentType":{},"content":"hi"}'
    assert stream_line_sender(line) == "aB12"
    # a quoted key inside the content is escaped: it cannot pass for the sender
    spoof = b'{"id":"m1","content":"x\\"senderInboxId\\":\\"ee\\"","senderInboxId":"a1"}'
    assert stream_line_sender(spoof) == "a1"
    assert stream_line_sender(b'{"event":"ready"}') is None
    assert stream_line_sender(b"not json") is None
