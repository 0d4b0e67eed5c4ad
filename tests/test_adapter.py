"""The CLI adapter end to end against the double: every operation and every error kind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path

import pytest

from convosd import errors
from convosd.cli import CliSetup, ConvosCli, check_version
from convosd.cli.models import CliVersion, JoinJoined, JoinWaiting
from tests.conftest import CliFactory
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import PATIENCE, WAIT_S, eventually_async


async def test_version_and_probe(make_cli: CliFactory) -> None:
    cli = make_cli()
    version = await cli.version()
    assert version.version == "0.10.15"
    check_version(version)
    assert await cli.probe() == []  # no identity yet: exit 0, empty


def test_version_rules() -> None:
    def v(text: str) -> CliVersion:
        return CliVersion.parse(f"@xmtp/convos-cli/{text} linux-x64 node-v20.20.2")

    check_version(v("0.10.2"), last_used="0.10.1")
    with pytest.raises(errors.CliUnavailable, match=r"0\.10\.x only"):
        check_version(v("0.11.0"))
    with pytest.raises(errors.CliUnavailable, match=r"0\.10\.x only"):
        check_version(v("0.9.1"))
    with pytest.raises(errors.CliUnavailable, match=r"older than 0\.10\.15"):
        check_version(v("0.10.2"), last_used="0.10.15")
    with pytest.raises(ValueError):
        CliVersion.parse("garbage")


async def test_create_inspect_invite_info(make_cli: CliFactory) -> None:
    cli = make_cli()
    created = await cli.create(name="Team", profile_name="Bot", permissions="admin-only")
    assert len(created.conversation_id) == 32 and len(created.inbox_id) == 64
    assert created.invite.url.startswith("https://dev.convos.org/v2?i=")
    info = await cli.inspect_invite(created.invite.slug)
    assert info.creator_inbox_id == created.inbox_id and info.signature_valid
    assert (await cli.inspect_invite(created.invite.url)).tag == info.tag
    cid = created.conversation_id
    summary = await cli.info(cid)
    assert summary.conversation.id == cid and len(summary.members) == 1
    members = await cli.members(cid)
    assert [m.permission_level.name for m in members] == ["SUPER_ADMIN"]
    profiles = await cli.profiles(cid)
    assert [p.is_me for p in profiles.profiles] == [True]
    assert not (await cli.permissions(cid)).locked
    listed = await cli.list_conversations()
    assert [c.conversation_id for c in listed] == [cid]
    invite = await cli.invite(cid, expires_in_s=3600, single_use=True)
    assert invite.single_use and invite.expires_at is not None
    assert (await cli.probe())[0].inbox_id == created.inbox_id


async def join_accepted(net: FakeNetwork, creator: ConvosCli, joiner: ConvosCli) -> str:
    """0.10: a join request is accepted only while the creator processes requests; the
    joiner then finds a new group in ``conversations list``."""
    created = await creator.create(name="Group")
    cid = created.conversation_id
    pending = await joiner.join(created.invite.slug, no_wait=True)
    assert isinstance(pending, JoinWaiting) and pending.status == "request_sent"
    assert pending.creator_inbox_id == created.inbox_id
    assert await joiner.list_conversations(sync=True) == []
    spec = creator.join_requests_spec(cid)
    watcher = await spec.spawn()
    try:

        async def listed() -> bool:
            return bool(await joiner.list_conversations(sync=True))

        assert await eventually_async(listed)
        found = await joiner.list_conversations(sync=True)
        assert [c.conversation_id for c in found] == [cid]
    finally:
        os.killpg(watcher.pid, signal.SIGKILL)
        await watcher.wait()
    return cid


async def test_join_waits_and_returns_joined(net: FakeNetwork, make_cli: CliFactory) -> None:
    alice, bob = make_cli("alice"), make_cli("bob")
    unattended = await alice.create(name="Nobody accepts")
    timeout = await bob.join(unattended.invite.slug, timeout_s=1)
    assert isinstance(timeout, JoinWaiting) and timeout.status == "timeout"
    created = await alice.create(name="Group")
    watcher = await alice.join_requests_spec(created.conversation_id).spawn()
    try:
        joined = await bob.join(created.invite.slug, timeout_s=WAIT_S)
    finally:
        os.killpg(watcher.pid, signal.SIGKILL)
        await watcher.wait()
    assert isinstance(joined, JoinJoined)
    assert joined.conversation_id == created.conversation_id


async def test_join_send_reply_react_messages(net: FakeNetwork, make_cli: CliFactory) -> None:
    alice, bob = make_cli("alice"), make_cli("bob")
    cid = await join_accepted(net, alice, bob)
    assert len(await alice.members(cid)) == 2
    texts = ["--help", "-t x", "a\nb", "ünïcödé 👍", "-- x", "--", " lead"]
    sent = [await bob.send_text(cid, text) for text in texts]
    assert [s.text for s in sent] == texts
    reply = await alice.send_reply(cid, sent[0].message_id, "-h")
    assert reply.reference_message_id == sent[0].message_id
    reaction = await alice.send_reaction(cid, sent[1].message_id, "👍")
    assert (reaction.action, reaction.emoji) == ("add", "👍")
    removed = await alice.send_reaction(cid, sent[1].message_id, "👍", remove=True)
    assert removed.action == "remove"
    history = await alice.messages(cid, sync=True)
    texts_seen = [m.content for m in history if m.content_type.type_id == "text"]
    assert texts_seen == texts
    assert history == sorted(history, key=lambda m: m.sent_at)
    # sentAt is printed in ms, the network keeps ns: a cursor from a printed sentAt may
    # return that message again (the backfill de-duplicates by id).
    after = await alice.messages(cid, sent_after_ns=history[-2].sent_at_ns)
    assert history[-1].id in [m.id for m in after]
    assert all(m.sent_at >= history[-2].sent_at for m in after)
    assert len(await alice.messages(cid, limit=3)) == 3
    types = {m.content_type.type_id for m in history}
    assert {"reply", "reaction", "group_updated"} <= types


async def test_lock_rename_profile_explode(net: FakeNetwork, make_cli: CliFactory) -> None:
    alice, bob = make_cli("alice"), make_cli("bob")
    cid = await join_accepted(net, alice, bob)
    assert (await alice.lock(cid)).action == "locked"
    assert (await alice.permissions(cid)).locked
    assert (await alice.lock(cid, unlock=True)).action == "unlocked"
    assert not (await alice.permissions(cid)).locked
    assert (await alice.update_name(cid, "--renamed")).name == "--renamed"
    assert (await alice.update_profile(cid, name="Al")).name == "Al"
    exploded = await alice.explode(cid)
    assert exploded.members_removed == 1
    listed = await bob.list_conversations(include_inactive=True)
    assert [(c.conversation_id, c.is_active) for c in listed] == [(cid, False)]
    assert await bob.list_conversations() == []


async def test_unsafe_flag_text_is_refused_before_the_cli(make_cli: CliFactory) -> None:
    """The builder's UnsafeText leaves the adapter as INVALID_PARAMS (mapped at the edge)."""
    cli = make_cli()
    with pytest.raises(errors.InvalidParams, match="cannot start with"):
        await cli.create(name="--json")
    with pytest.raises(errors.InvalidParams):
        await cli.send_text("ab" * 16, "--json")


# --- error kinds ------------------------------------------------------------------------


async def test_network_unreachable(net: FakeNetwork, make_cli: CliFactory) -> None:
    net.add_fault("unreachable")
    with pytest.raises(errors.NetworkUnavailable):
        await make_cli().create(name="x")


async def test_no_network_at_all(tmp_path: Path, net: FakeNetwork) -> None:
    setup = CliSetup((sys.executable, net.executable), "dev", tmp_path / "c", tmp_path, ())
    setup.prepare()
    cli = ConvosCli(setup, environ={"PATH": "/usr/bin:/bin"})  # no FAKECONVOS_NETWORK
    with pytest.raises(errors.NetworkUnavailable):
        await cli.send_text("ab" * 16, "hi")


async def test_database_locked_and_identity_lock_are_retried_for_reads(
    net: FakeNetwork, make_cli: CliFactory
) -> None:
    """The adapter's queue retries a read the CLI answers with a lock error (the error
    itself is classified in test_cli_output); the caller only sees the result."""
    cli = make_cli()
    await cli.create(name="x")
    net.add_fault("db_locked", count=1)
    assert len(await cli.list_conversations()) == 1
    net.add_fault("identity_lock", count=1)
    assert len(await cli.list_conversations()) == 1
    assert cli.transport_status()["lockedRetries"] == 2


DB_LOCKED = "[StorageError::DieselResult] database is locked"


async def outcome(call: Awaitable[object]) -> object:
    """What ``call`` returned, or the ConvosdError it raised."""
    try:
        return await call
    except errors.ConvosdError as exc:
        return exc


def not_run_again(result: object) -> bool:
    return isinstance(result, errors.CliFailed) and (
        "may have done its work, so it was not run again" in result.message
    )


async def test_create_join_and_lock_locked_after_their_work_never_run_twice(
    net: FakeNetwork, make_cli: CliFactory
) -> None:
    """Issue 25 item 1: the CLI did the work, then answered ``database is locked``. A
    retry would create a second group, send a second join request, lock twice: none is
    run again, and CLI_FAILED says it may have done its work."""
    alice, bob = make_cli("alice"), make_cli("bob")
    net.add_fault("exit_after_output", command="conversations:create", count=1, message=DB_LOCKED)
    created = await outcome(alice.create(name="Once"))
    groups = await alice.list_conversations()
    assert [g.name for g in groups] == ["Once"]
    assert not_run_again(created), created
    cid = groups[0].conversation_id
    invite = await alice.invite(cid)
    net.add_fault("exit_after_output", command="conversations:join", count=1, message=DB_LOCKED)
    joined = await outcome(bob.join(invite.slug, no_wait=True))
    bob_inbox = net.inbox_id(bob.setup.convos_home)
    assert [m["type_id"] for m in net.sent_by(bob_inbox)].count("join_request") == 1
    assert not_run_again(joined), joined
    alice_inbox = net.inbox_id(alice.setup.convos_home)
    before = len(net.sent_by(alice_inbox))
    net.add_fault("exit_after_output", command="conversation:lock", count=1, message=DB_LOCKED)
    locked = await outcome(alice.lock(cid))
    assert len(net.sent_by(alice_inbox)) == before + 1  # one commit: locked once
    assert not_run_again(locked), locked
    assert (await alice.permissions(cid)).locked
    assert alice.transport_status()["lockedRetries"] == 0


async def test_a_lock_that_stays_is_busy(net: FakeNetwork, make_cli: CliFactory) -> None:
    # The lock is met when a command opens the identity's client: one must exist. Created
    # under the generous default: the short timeout below would bound the create too, and a
    # one-shot create took about a second at load 20.
    await make_cli().create(name="x")
    # The retries of a locked call last the adapter's timeout, which also bounds each attempt
    # (one exit-2 process): short enough for a quick test, five times what one took at load 20.
    cli = make_cli(timeout_s=5.0 * PATIENCE)
    net.add_fault("db_locked")
    with pytest.raises(errors.Busy, match="stayed locked") as busy:
        await cli.list_conversations()
    assert busy.value.retry_after_s == 1.0


async def test_native_binding_missing(net: FakeNetwork, make_cli: CliFactory) -> None:
    net.add_fault("binding_missing")
    with pytest.raises(errors.CliUnavailable, match="native binding"):
        await make_cli().probe()


async def test_hang_is_a_timeout_and_kills_the_group(
    net: FakeNetwork, make_cli: CliFactory
) -> None:
    net.add_fault("hang", command="identity:list")
    with pytest.raises(errors.CliTimeout):
        await make_cli(timeout_s=1.0).probe()


async def test_conversation_not_found(make_cli: CliFactory) -> None:
    cli = make_cli()
    await cli.create(name="x")
    with pytest.raises(errors.ConversationNotFound) as info:
        await cli.send_text("ab" * 16, "hi")
    assert info.value.rpc_data()["kind"] == "CLI_FAILED"


async def test_invite_errors(net: FakeNetwork, make_cli: CliFactory) -> None:
    alice, bob = make_cli("alice"), make_cli("bob")
    created = await alice.create(name="x")
    with pytest.raises(errors.InviteInvalid):
        await bob.inspect_invite("garbage")
    with pytest.raises(errors.InviteInvalid):
        await bob.join("garbage", no_wait=True)
    with pytest.raises(errors.InviteInvalid, match="own invite"):
        await alice.join(created.invite.slug, no_wait=True)
    short = await alice.invite(created.conversation_id, expires_in_s=1)
    info = await bob.inspect_invite(short.slug)
    assert info.expires_at is not None
    # The invite expires on the CLI's clock, 1 s after creation: poll for it, bounded in time
    # (not in calls: a warm CLI answers 100 of them well within that second).
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not (await bob.inspect_invite(short.slug)).invite_expired:
        assert loop.time() < deadline, "the invite did not expire"
        await asyncio.sleep(0.05)
    with pytest.raises(errors.InviteExpired):
        await bob.join(short.slug, no_wait=True)


async def test_missing_cli_and_garbage_output(tmp_path: Path) -> None:
    setup = CliSetup((str(tmp_path / "nope"),), "dev", tmp_path / "c", tmp_path, ())
    setup.prepare()
    with pytest.raises(errors.CliUnavailable, match="not found"):
        await ConvosCli(setup, environ={}).probe()
    script = tmp_path / "garbage-convos"
    script.write_text("#!/bin/sh\necho 'not json at all'\n")
    script.chmod(0o755)
    setup = CliSetup((str(script),), "dev", tmp_path / "c", tmp_path, ())
    with pytest.raises(errors.CliFailed, match="printed no JSON") as garbage:
        await ConvosCli(setup, environ={"PATH": "/bin"}).probe()
    # what it printed may be message text: data.error describes it, never repeats it
    assert "not json" not in json.dumps(garbage.value.rpc_data())
    script.write_text("#!/bin/sh\necho '{\"unexpected\": true}'\n")
    with pytest.raises(errors.CliFailed, match="unexpected shape"):
        await ConvosCli(setup, environ={"PATH": "/bin"}).create(name="x")


async def test_env_file_is_created_private(tmp_path: Path, net: FakeNetwork) -> None:
    setup = CliSetup((sys.executable, net.executable), "dev", tmp_path / "c", tmp_path / "s", ())
    setup.prepare()
    assert setup.env_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o700


async def test_an_identity_lock_met_before_the_work_is_retried_for_any_command(
    net: FakeNetwork, make_cli: CliFactory
) -> None:
    """The CLI takes the identity lock while it builds its client, before a create or a
    send does anything: such a lock error is retried (once here) and the work is done once.
    update-profile takes it after it sent the profile, so it is not run again."""
    alice = make_cli("alice")
    net.add_fault("identity_lock", command="conversations:create", count=1)
    created = await alice.create(name="Once")
    assert [g.name for g in await alice.list_conversations()] == ["Once"]
    inbox = net.inbox_id(alice.setup.convos_home)
    before = len(net.sent_by(inbox))
    net.add_fault("identity_lock", command="conversation:send-text", count=1)
    await alice.send_text(created.conversation_id, "hello")
    assert len(net.sent_by(inbox)) == before + 1
    assert alice.transport_status()["lockedRetries"] == 2
    net.add_fault("identity_lock", command="conversation:update-profile", count=1)
    profiled = await outcome(alice.update_profile(created.conversation_id, name="A"))
    assert isinstance(profiled, errors.CliFailed), profiled
    assert "may have done its work, so it was not run again" in profiled.message
    assert alice.transport_status()["lockedRetries"] == 2
