"""A live conversation: typing, read receipts, member.remove, conversation.update, a scheduled
explosion and expiry, through the socket against the CLI double (and the double itself)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from convosd import errors
from convosd.cli import ConvosCli
from convosd.client import Client
from convosd.timefmt import iso, parse_rfc3339
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, eventually, eventually_async
from tests.rpc_harness import RunningDaemon, member_cli, running_daemon


@pytest.fixture
async def daemon(net: FakeNetwork, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(net, tmp_path / "d", send_rate_per_s=1.0) as running:
        yield running


@pytest.fixture
async def client(daemon: RunningDaemon) -> AsyncIterator[Client]:
    c = await daemon.client()
    yield c
    await c.close()


def network_rows(net: FakeNetwork, conversation_id: str) -> tuple[int, list[tuple[str, int]]]:
    """What the double's network holds for a conversation: its message count and its members
    (inbox, still a member) — to show a refused call sent nothing."""
    db = sqlite3.connect(net.path / "dev.sqlite3")
    try:
        count = db.execute(
            "SELECT COUNT(*) FROM messages WHERE conv_id = ?", (conversation_id,)
        ).fetchone()[0]
        members = db.execute(
            "SELECT inbox_id, removed_seq IS NULL FROM members WHERE conv_id = ? ORDER BY rowid",
            (conversation_id,),
        ).fetchall()
    finally:
        db.close()
    return int(count), [(str(a), int(b)) for a, b in members]


def type_ids(net: FakeNetwork, conversation_id: str, sender: str) -> list[str]:
    db = sqlite3.connect(net.path / "dev.sqlite3")
    try:
        rows = db.execute(
            "SELECT type_id FROM messages WHERE conv_id = ? AND sender = ? ORDER BY seq",
            (conversation_id, sender),
        ).fetchall()
    finally:
        db.close()
    return [str(r[0]) for r in rows]


async def events(client: Client, **params: Any) -> list[dict[str, Any]]:
    return list((await client.call("events.read", {"limit": 1000, **params}))["events"])


async def create_with(
    client: Client, net: FakeNetwork, tmp_path: Path, *names: str
) -> tuple[dict[str, Any], dict[str, ConvosCli]]:
    """The daemon creates a conversation; each named member joins it through its invite.
    Returns once the daemon has journaled each one's member_joined too (a test that reads
    the journal from here on sees only what it does)."""
    start = (await client.call("status"))["journal"]["lastSeq"]
    created = await client.call("conversation.create", {"name": "Team", "profileName": "Bot"})
    members = {}
    for index, name in enumerate(names, start=2):
        cli = member_cli(net, tmp_path / name)
        await cli.join(created["inviteSlug"], no_wait=True)

        async def joined(n: int = index) -> bool:
            if len((await client.call("conversation.info"))["members"]) != n:
                return False
            joins = [e for e in await events(client, after=start) if e["type"] == "member_joined"]
            return len(joins) == n - 1

        assert await eventually_async(joined), f"{name} did not show in conversation.info"
        members[name] = cli
    return created, members


async def inbox_of(cli: ConvosCli) -> str:
    identities = await cli.identity_list()
    assert identities and identities[0].inbox_id
    return identities[0].inbox_id


async def join_as_member(
    client: Client, net: FakeNetwork, tmp_path: Path
) -> tuple[ConvosCli, str, str]:
    """Someone else creates a conversation; the daemon joins it as a plain member."""
    owner = member_cli(net, tmp_path / "owner")
    created = await owner.create(name="Owner's")
    watcher = await owner.join_requests_spec(created.conversation_id).spawn()
    try:
        result = await client.call(
            "conversation.join", {"inviteUrl": created.invite.url, "timeoutS": 20}
        )
    finally:
        os.killpg(watcher.pid, signal.SIGKILL)
        await watcher.wait()
    assert result["status"] == "joined"
    return owner, created.conversation_id, created.inbox_id


# --- the double ---------------------------------------------------------------------------


def test_double_typing_read_receipts_remove_and_explode_status(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """The real 0.10.15's output shapes and errors; typing indicators and read receipts are
    never printed by ``stream``; ``messages`` lists the typing indicators but (like the real
    CLI on a node) no read receipt, which shows in ``last-read-times``; a scheduled explosion
    by one member shows in every member's ``explode-status``."""
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    created = net.run_json(alice, "conversations", "create", "--name", "T")
    cid = created["conversationId"]
    net.run_json(bob, "conversations", "join", created["invite"]["slug"], "--no-wait")
    net.run_json(alice, "conversations", "process-join-requests")
    stream = net.spawn(alice, "conversation", "stream", cid, "--json")
    try:
        assert net.wait_for_stream(stream.pid)
        typing = net.run_json(bob, "conversation", "send-typing-indicator", cid)
        assert list(typing) == ["success", "messageId", "conversationId", "isTyping"]
        assert typing["isTyping"] is True
        stop = net.run_json(bob, "conversation", "send-typing-indicator", cid, "--stop")
        assert stop["isTyping"] is False
        receipt = net.run_json(bob, "conversation", "send-read-receipt", cid)
        assert list(receipt) == ["success", "messageId", "conversationId"]
        text = net.run_json(bob, "conversation", "send-text", cid, "--text", "after")
        listed = net.run_json(alice, "conversation", "messages", cid, "--limit", "4")
        by_id = {m["id"]: m for m in listed}
        assert by_id[typing["messageId"]]["content"] == '{"isTyping":true}'
        assert by_id[typing["messageId"]]["contentType"]["authorityId"] == "convos.org"
        assert by_id[stop["messageId"]]["content"] == '{"isTyping":false}'
        # like the real CLI on a node: a read receipt is never listed, last-read-times has it
        assert receipt["messageId"] not in by_id
        read = net.run_json(alice, "conversation", "last-read-times", cid)
        assert list(read["readTimes"]) == [net.run_json(bob, "identity", "list")[0]["inboxId"]]
        line = json.loads(stream.stdout.readline())  # type: ignore[union-attr]
        assert line["id"] == text["messageId"]  # the silent signals were not printed
    finally:
        net.stop(stream)
    human = net.run(bob, "conversation", "send-typing-indicator", cid)
    assert human.returncode == 0 and "isTyping        true" in human.stdout
    # explode-status: nothing scheduled, then bob's schedule seen by alice too
    status = net.run_json(alice, "conversation", "explode-status", cid)
    assert status["effectiveExpiresAt"] is None and status["expired"] is False
    at = "2099-01-01T00:00:00.000Z"
    net.run_json(bob, "conversation", "explode", cid, "--scheduled", at, "--force")
    for home in (alice, bob):
        status = net.run_json(home, "conversation", "explode-status", cid, "--sync")
        assert list(status) == [
            "conversationId",
            "isActive",
            "appData",
            "mostRecentExplodeSettings",
            "effectiveExpiresAt",
            "expired",
            "scannedMessages",
        ]
        assert status["effectiveExpiresAt"] == at and status["expired"] is False
        assert status["appData"] == {"expiresAtUnix": 4070908800, "expiresAt": at}
        assert status["mostRecentExplodeSettings"]["expiresAt"] == at
    # remove-members: argv, output, errors
    missing = net.run(alice, "conversation", "remove-members", cid)
    assert missing.returncode == 2 and "At least one inbox ID is required" in missing.stderr
    bob_inbox = net.run_json(bob, "identity", "list")[0]["inboxId"]
    removed = net.run_json(alice, "conversation", "remove-members", cid, bob_inbox)
    assert removed == {
        "success": True,
        "conversationId": cid,
        "removedInboxIds": [bob_inbox],
        "count": 1,
    }
    gone = net.run(bob, "conversation", "send-typing-indicator", cid)
    assert gone.returncode == 2 and "Group is inactive" in gone.stderr
    unknown = net.run(alice, "conversation", "send-read-receipt", "ab" * 16)
    assert unknown.returncode == 2 and f"Conversation not found: {'ab' * 16}" in unknown.stderr


# --- typing and read receipts -------------------------------------------------------------


async def test_typing_and_mark_read_are_sent_not_journaled_nor_rate_limited(
    client: Client, daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    created, members = await create_with(client, net, tmp_path, "bob")
    cid, bob = created["conversationId"], members["bob"]
    before = (await client.call("status"))["journal"]["lastSeq"]
    # sendRatePerS is 1 here: six silent signals in a row are not refused
    for _ in range(2):
        assert await client.call("conversation.typing") == {"ok": True}
        assert await client.call("conversation.typing", {"typing": False}) == {"ok": True}
        assert await client.call("message.markRead") == {"ok": True}
    sent = type_ids(net, cid, created["inboxId"])
    assert sent[-6:] == ["typing_indicator", "typing_indicator", "readReceipt"] * 2
    # bob's typing and read receipt reach the daemon's backfill and are not journaled
    await bob.typing(cid)
    await bob.read_receipt(cid)
    await bob.send_text(cid, "visible")
    await wait_for_event(client, "message", after=before)
    await daemon.instance.backfill()  # the backfill reads bob's typing and read receipt too
    new = await events(client, after=before)
    assert [(e["type"], e["content"]) for e in new] == [("message", "visible")]


async def test_bad_typing_and_update_params_send_nothing(
    client: Client, net: FakeNetwork, tmp_path: Path
) -> None:
    created, _ = await create_with(client, net, tmp_path)
    cid = created["conversationId"]
    before = network_rows(net, cid)
    for bad in ("yes", 1, 0, "true", None):
        with pytest.raises(errors.InvalidParams):
            await client.call("conversation.typing", {"typing": bad})
    for bad_update in ({}, {"name": None, "description": None}, {"name": ""}, {"nom": "x"}):
        with pytest.raises(errors.InvalidParams):
            await client.call("conversation.update", bad_update)
    assert network_rows(net, cid) == before


@pytest.mark.parametrize(
    ("params", "param", "problem"),
    [
        ({"name": "\x00"}, "name", "U+0000"),  # the group was renamed to NUL
        ({"name": "Desk\x00"}, "name", "U+0000"),
        ({"name": "Desk\nBank"}, "name", "control character"),
        ({"name": "Desk\x1b[2J"}, "name", "control character"),
        ({"name": "Desk\x9b"}, "name", "control character"),
        ({"name": "Desk\u202e"}, "name", "U+202E"),
        ({"description": "notes\x00"}, "description", "U+0000"),
    ],
)
async def test_update_refuses_nul_and_control_characters_as_message_send_does(
    client: Client,
    net: FakeNetwork,
    tmp_path: Path,
    params: dict[str, str],
    param: str,
    problem: str,
) -> None:
    """One rule for text (message.send's: no U+0000, no lone surrogate); a name is also one
    line without control characters or bidi overrides. Nothing reaches the CLI."""
    created, _ = await create_with(client, net, tmp_path)
    before = network_rows(net, created["conversationId"])
    with pytest.raises(errors.InvalidParams) as caught:
        await client.call("conversation.update", params)
    [found] = caught.value.extra["errors"]
    assert found["param"] == param and problem in found["problem"], found
    assert network_rows(net, created["conversationId"]) == before
    assert (await client.call("conversation.info"))["name"] == "Team"


@pytest.mark.parametrize(
    ("method", "params", "param"),
    [
        ("conversation.rename", {"name": "\x00"}, "name"),
        ("conversation.rename", {"name": "a\u202eb"}, "name"),
        ("profile.update", {"name": "Bot\x07"}, "name"),
        ("conversation.create", {"name": "x\x00"}, "name"),
        ("conversation.create", {"profileName": "x\u2066"}, "profileName"),
        ("conversation.join", {"inviteUrl": "x", "profileName": "\r"}, "profileName"),
    ],
)
async def test_every_name_a_caller_gives_follows_the_same_rule(
    client: Client,
    net: FakeNetwork,
    tmp_path: Path,
    method: str,
    params: dict[str, str],
    param: str,
) -> None:
    created, _ = await create_with(client, net, tmp_path)
    before = network_rows(net, created["conversationId"])
    with pytest.raises(errors.InvalidParams) as caught:
        await client.call(method, params)
    assert [e["param"] for e in caught.value.extra["errors"]] == [param]
    assert network_rows(net, created["conversationId"]) == before


async def test_names_keep_what_is_not_a_control_character(
    client: Client, net: FakeNetwork, tmp_path: Path
) -> None:
    """Emoji joined by U+200D (a format character, not a control), right-to-left text and
    its marks are names; multi-line descriptions are text."""
    await create_with(client, net, tmp_path)
    name = "\U0001f468\u200d\U0001f469\u200d\U0001f467 \u05e9\u05dc\u05d5\u05dd\u200f"
    done = await client.call("conversation.update", {"name": name, "description": "a\n\tb"})
    assert done == {"name": name, "description": "a\n\tb"}


async def test_update_name_and_description(
    client: Client, net: FakeNetwork, tmp_path: Path
) -> None:
    await create_with(client, net, tmp_path)
    both = await client.call("conversation.update", {"name": "Desk", "description": "-notes"})
    assert both == {"name": "Desk", "description": "-notes"}
    only = await client.call("conversation.update", {"description": "Daily"})
    assert only == {"name": "Desk", "description": "Daily"}
    assert (await client.call("conversation.info"))["name"] == "Desk"


# --- member.remove ------------------------------------------------------------------------


async def test_member_remove_journals_member_left_once(
    client: Client, daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    """The call journals member_left; the members diff that follows (a group_updated from
    someone else, a refresh) and a restart do not journal it again."""
    created, members = await create_with(client, net, tmp_path, "bob", "carol")
    cid = created["conversationId"]
    bob = await inbox_of(members["bob"])
    carol = members["carol"]
    assert await client.call("member.remove", {"inboxId": bob.upper()}) == {"removed": [bob]}
    assert (bob, 0) in network_rows(net, cid)[1]
    await carol.update_name(cid, "Renamed by carol")  # a group_updated: the diff runs
    conversation = daemon.instance.conversation
    assert conversation is not None
    await conversation.members.refresh()

    async def renamed() -> bool:
        return any(e["type"] == "message" for e in await events(client, types=["message"]))

    assert await eventually_async(renamed)
    left = [e for e in await events(client) if e["type"] == "member_left"]
    assert [e["inboxId"] for e in left] == [bob]
    # the diff first, the call after: still once (the durable mark decides)
    dave = member_cli(net, tmp_path / "dave")
    invite = await client.call("conversation.invite")
    await dave.join(invite["inviteSlug"], no_wait=True)
    dave_inbox = await inbox_of(dave)
    assert await eventually(lambda: (dave_inbox, 1) in network_rows(net, cid)[1])
    await conversation.members.refresh()  # dave is a member in the diff's view
    await daemon.instance.cli.remove_members(cid, [dave_inbox])  # behind the daemon's back
    await conversation.members.refresh()
    daemon.instance.member_removed(dave_inbox)
    left = [e["inboxId"] for e in await events(client) if e["type"] == "member_left"]
    assert left == [bob, dave_inbox]


async def test_member_remove_bad_inputs_send_nothing(
    client: Client, net: FakeNetwork, tmp_path: Path
) -> None:
    created, _members = await create_with(client, net, tmp_path, "bob")
    cid = created["conversationId"]
    stranger = "ab" * 32
    before = network_rows(net, cid)
    with pytest.raises(errors.InvalidParams, match="itself"):
        await client.call("member.remove", {"inboxId": created["inboxId"]})
    with pytest.raises(errors.InvalidParams, match="not a member"):
        await client.call("member.remove", {"inboxId": stranger})
    for bad in ("not-hex", "", 42):
        with pytest.raises(errors.InvalidParams):
            await client.call("member.remove", {"inboxId": bad})
    assert network_rows(net, cid) == before
    assert [e for e in await events(client) if e["type"] == "member_left"] == []


async def test_member_remove_needs_admin_rights_before_the_cli(
    client: Client, net: FakeNetwork, tmp_path: Path
) -> None:
    _owner, cid, owner_inbox = await join_as_member(client, net, tmp_path)
    before = network_rows(net, cid)
    with pytest.raises(errors.PermissionDenied, match="admin"):
        await client.call("member.remove", {"inboxId": owner_inbox})
    assert network_rows(net, cid) == before


# --- scheduled explosion and expiry -------------------------------------------------------


async def test_explode_at_bad_times_send_nothing(
    client: Client, net: FakeNetwork, tmp_path: Path
) -> None:
    created, _ = await create_with(client, net, tmp_path)
    cid = created["conversationId"]
    before = network_rows(net, cid)
    past = iso(time.time() - 60)
    for bad in (
        past,
        "2099-01-01",
        "2099-01-01T00:00:00",
        "2099-01-01 00:00:00Z",
        "4070908800",
        "tomorrow",
        "2099-13-01T00:00:00Z",
        "2099-01-01T00:00:00+0100",
    ):
        with pytest.raises(errors.InvalidParams):
            await client.call("conversation.explode", {"confirm": True, "at": bad})
    with pytest.raises(errors.InvalidParams):
        await client.call("conversation.explode", {"confirm": True, "at": 4070908800})
    assert network_rows(net, cid) == before
    assert (await client.call("status"))["expiresAt"] is None


async def test_own_scheduled_explosion_expires_and_unbinds_once(
    client: Client, daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    created, _ = await create_with(client, net, tmp_path, "bob")
    at = iso(time.time() + 2.0)
    result = await client.call("conversation.explode", {"confirm": True, "at": at})
    assert result == {"exploded": False, "scheduledAt": at}
    status = await client.call("status")
    assert status["conversationId"] == created["conversationId"] and status["expiresAt"] == at
    assert (await client.call("conversation.info"))["memberCount"] == 2  # bound until then
    gone = await wait_for_event(client, "conversation_exploded")
    assert (gone["by"], gone["reason"]) == (created["inboxId"], "expired")
    latency = parse_rfc3339(gone["at"]).timestamp() - parse_rfc3339(at).timestamp()
    assert 0 <= latency < 0.5  # the timer; the backfill interval is 0.5 s
    assert await eventually(lambda: daemon.instance.conversation is None)
    status = await client.call("status")
    assert status["conversationId"] is None and status["expiresAt"] is None
    kinds = [e["type"] for e in await events(client)]
    assert kinds.count("conversation_exploded") == 1


async def test_scheduled_explosion_by_another_member_expires_the_binding(
    client: Client, daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    """A scheduled explode notice is no explosion now: the daemon stays bound (also after a
    backfill has read the notice) until the time passes, then journals expired, by the
    member who scheduled it."""
    owner, cid, owner_inbox = await join_as_member(client, net, tmp_path)
    at = iso(time.time() + 3.0)
    await owner.explode_scheduled(cid, at)
    assert await eventually(lambda: daemon.instance.expires_at == at)
    await daemon.instance.backfill()  # reads the ExplodeSettings message itself
    status = await client.call("status")
    assert status["conversationId"] == cid and status["expiresAt"] == at
    assert [e for e in await events(client) if e["type"] == "conversation_exploded"] == []
    gone = await wait_for_event(client, "conversation_exploded")
    assert (gone["by"], gone["reason"]) == (owner_inbox, "expired")
    latency = parse_rfc3339(gone["at"]).timestamp() - parse_rfc3339(at).timestamp()
    assert 0 <= latency < 0.5
    assert await eventually(lambda: daemon.instance.conversation is None)


async def test_expiry_after_a_restart(net: FakeNetwork, tmp_path: Path) -> None:
    """The scheduled time passes while the daemon is down: it expires at start; one that
    is still ahead at start is re-armed from explode-status."""
    state = tmp_path / "d"
    async with running_daemon(net, state) as running:
        c = await running.client()
        created, _ = await create_with(c, net, tmp_path, "bob")
        at = iso(time.time() + 2.0)
        await c.call("conversation.explode", {"confirm": True, "at": at})
        await c.close()
    stopped_at = time.time()
    deadline = parse_rfc3339(at).timestamp()
    assert stopped_at < deadline  # stopped before the time
    assert await eventually(lambda: time.time() > deadline + 0.1)  # passes while down
    async with running_daemon(net, state) as running:
        c = await running.client()
        gone = await wait_for_event(c, "conversation_exploded")
        assert (gone["by"], gone["reason"]) == (created["inboxId"], "expired")
        assert await eventually(lambda: running.instance.conversation is None)
        # a second conversation whose time is still ahead when the daemon starts again
        second, _ = await create_with(c, net, tmp_path / "2", "bob")
        later = iso(time.time() + 4.0)
        await c.call("conversation.explode", {"confirm": True, "at": later})
        seq = (await c.call("status"))["journal"]["lastSeq"]
        await c.close()
    async with running_daemon(net, state) as running:
        c = await running.client()
        assert await eventually(lambda: running.instance.expires_at == later)
        gone = await wait_for_event(c, "conversation_exploded", after=seq)
        assert (gone["conversationId"], gone["reason"]) == (second["conversationId"], "expired")
        assert parse_rfc3339(gone["at"]).timestamp() >= parse_rfc3339(later).timestamp()
        await c.close()


async def wait_for_event(
    client: Client, kind: str, *, within_s: float = WAIT_S, after: int = 0
) -> dict[str, Any]:
    """The newest event of ``kind`` after seq ``after``, waiting for one to be journaled."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        found = [e for e in await events(client, after=after) if e["type"] == kind]
        if found:
            return found[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {kind} event within {within_s} s")


# --- convosctl ----------------------------------------------------------------------------


async def test_convosctl_live_commands_print_what_the_daemon_answered(
    net: FakeNetwork, tmp_path: Path
) -> None:
    from tests.test_ctl_typed import RecordingProxy, shows_error, shows_result

    async with (
        running_daemon(net, tmp_path / "me") as daemon,
        RecordingProxy(daemon.socket, tmp_path / "proxy.sock").running() as proxy,
    ):
        c = await daemon.client()
        created, members = await create_with(c, net, tmp_path, "bob")
        await c.close()
        bob = await inbox_of(members["bob"])
        assert await shows_result(proxy, "typing") == {"ok": True}
        assert await shows_result(proxy, "typing", "--stop") == {"ok": True}
        assert await shows_error(proxy, "update") == "INVALID_PARAMS"
        updated = await shows_result(proxy, "update", "--description=-notes")
        assert updated == {"name": "Team", "description": "-notes"}
        assert await shows_error(proxy, "remove", created["inboxId"]) == "INVALID_PARAMS"
        assert await shows_result(proxy, "remove", bob) == {"removed": [bob]}
        assert await shows_error(proxy, "explode", "--yes", "--at", "2020-01-01T00:00:00Z") == (
            "INVALID_PARAMS"
        )
        at = iso(time.time() + 3600)
        scheduled = await shows_result(proxy, "explode", "--yes", "--at", at)
        assert scheduled == {"exploded": False, "scheduledAt": at}
        assert (await shows_result(proxy, "status"))["expiresAt"] == at
        assert (await shows_result(proxy, "explode", "--yes"))["exploded"] is True


async def test_a_removed_member_with_a_valid_invite_comes_back_until_the_tag_rotates(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """What docs/PROTOCOL.md says of member.remove: the CLI's join-request watcher accepts
    the removed member's old, still valid request again when it starts (it rescans the DMs
    it accepted requests on); lock + unlock rotates the invite tag and ends that."""
    state = tmp_path / "d"
    async with running_daemon(net, state) as running:
        c = await running.client()
        created, members = await create_with(c, net, tmp_path, "bob")
        cid = created["conversationId"]
        bob = await inbox_of(members["bob"])
        assert await c.call("member.remove", {"inboxId": bob}) == {"removed": [bob]}
        await c.close()
    async with running_daemon(net, state) as running:  # the watcher starts again
        assert await eventually(lambda: (bob, 1) in network_rows(net, cid)[1])
        c = await running.client()
        assert await c.call("member.remove", {"inboxId": bob}) == {"removed": [bob]}
        assert await c.call("conversation.lock") == {"locked": True}
        assert await c.call("conversation.lock", {"unlock": True}) == {"locked": False}
        await c.close()
    async with running_daemon(net, state) as running:
        c = await running.client()
        # the watcher's start-up pass is done once a fresh member is let in after it
        carol = member_cli(net, tmp_path / "carol")
        await carol.join((await c.call("conversation.invite"))["inviteSlug"], no_wait=True)
        carol_inbox = await inbox_of(carol)
        assert await eventually(lambda: (carol_inbox, 1) in network_rows(net, cid)[1])
        assert (bob, 1) not in network_rows(net, cid)[1]
        left = [e["inboxId"] for e in await events(c) if e["type"] == "member_left"]
        assert left == [bob, bob]  # each removal once
        await c.close()


def test_rfc3339_parsing() -> None:
    from datetime import UTC, datetime

    assert parse_rfc3339("2026-05-04T09:15:02Z") == datetime(2026, 5, 4, 9, 15, 2, tzinfo=UTC)
    assert parse_rfc3339("2026-05-04t11:15:02.250+02:00") == datetime(
        2026, 5, 4, 9, 15, 2, 250000, tzinfo=UTC
    )
    assert parse_rfc3339("2026-05-04T09:15:02.123456789z").microsecond == 123456
    for bad in (
        "2026-05-04",
        "2026-05-04T09:15:02",
        "2026-05-04 09:15:02Z",
        "2026-05-04T09:15Z",
        "2026-02-30T00:00:00Z",
        "2026-05-04T24:00:00Z",
        "2026-05-04T09:15:02+0200",
        "1777886102",
        " 2026-05-04T09:15:02Z",
        "２０２６-05-04T09:15:02Z",
    ):
        with pytest.raises(ValueError):
            parse_rfc3339(bad)
