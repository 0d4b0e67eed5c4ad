"""Issue 10, the state/storage/policy part: admission under allowlist, reset clears every
check it makes obsolete, state dir ownership, the backfill cannot livelock, a state dir
deleted while running, a store file that is not a store."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from convosd.client import ConvosdClient
from tests.conftest import fake_setup
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, admitted, eventually
from tests.rpc_harness import member_cli, running_daemon


async def poll(fetch: Any, check: Any, within_s: float = WAIT_S) -> Any:
    """Poll the daemon over its socket until ``check(value)``; the last value either way."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        value = await fetch()
        if check(value) or loop.time() >= deadline:
            return value
        await asyncio.sleep(0.1)  # polling the daemon's answers over its socket


async def texts(client: ConvosdClient) -> list[str]:
    events = (await client.read_events(after=0, limit=1000)).events
    return [e["content"] for e in events if e["type"] == "message" and e["contentType"] == "text"]


# --- item 4: allowlist does not approve at admission ---------------------------------------


async def test_allowlist_does_not_approve_members_admitted_through_our_invite(
    net: FakeNetwork, tmp_path: Path
) -> None:
    async with running_daemon(net, tmp_path / "me", convos={"dm_policy": "allowlist"}) as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            created = await client.create(name="Ours")
            guest = member_cli(net, tmp_path / "guest")
            await guest.join(created.invite_slug, no_wait=True)
            assert await eventually(lambda: bool(admitted(daemon.instance)))
            await guest.send_text(created.conversation_id, "hello from an invitee")
            status = await poll(client.status, lambda s: s.policy.dropped)
            assert status.policy.dropped == {"not_allowed": 1}
            assert await texts(client) == []


def test_an_admission_under_pairing_does_not_count_after_a_switch_to_allowlist(
    tmp_path: Path,
) -> None:
    from convosd.cli.models import CliMessage
    from convosd.conversation.hook import Fate
    from convosd.conversation.pairing import SenderPolicy
    from convosd.storage.journal import Journal
    from convosd.storage.store import Store

    guest = "a" * 64
    message = CliMessage.model_validate(
        {
            "id": "f" * 64,
            "senderInboxId": guest,
            "content": "hi",
            "contentType": {"authorityId": "xmtp.org", "typeId": "text"},
            "sentAt": "2026-11-23T12:00:00.000Z",
        }
    )
    store = Store.open(tmp_path)
    try:
        journal = Journal(store)

        def policy(name: Any) -> SenderPolicy:
            return SenderPolicy(
                store, journal, policy=name, owners=frozenset, conversation_id=lambda: "c" * 32
            )

        assert policy("pairing").admit(guest) is True
        assert policy("pairing")(message).fate is Fate.JOURNALED
        allowlist = policy("allowlist")
        assert allowlist.admit(guest) is False
        decision = allowlist(message)
        assert decision.fate is Fate.DROPPED
    finally:
        store.close()


# --- item 7: reset clears every check it makes obsolete ------------------------------------


@pytest.mark.parametrize(
    ("check", "overrides"),
    [
        ("env", {"convos": {"env": "local"}}),
        ("binding", {"convos": {"owner_conversation_id": "b" * 32}}),
        ("identity", {"convos": {"identity_id": "not-this-homes-identity"}}),
    ],
)
async def test_reset_clears_the_mismatch_checks_at_once(
    net: FakeNetwork, tmp_path: Path, check: str, overrides: dict[str, Any]
) -> None:
    state = tmp_path / "me"
    async with running_daemon(net, state) as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            first = await client.create(name="First")
    async with running_daemon(net, state, **overrides) as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            before = await client.health()
            assert before.checks[check] != "ok" and before.status != "ok"
            assert await client.call("daemon.reset", {"confirm": True}) == {"clean": True}
            after = await client.health()  # at once: no probe, no restart in between
            assert after.checks[check] == "ok", after.checks
            assert after.status == "ok", after.checks
            if check == "binding":
                second = await client.create(name="Second")
                health = await client.health()
                assert health.checks["binding"] == "ok"
                assert first.conversation_id not in str(health.checks)
                assert (await client.status()).conversation_id == second.conversation_id
    if check == "env":
        # The binding saved for the other env went with the reset: nothing is resumed.
        async with running_daemon(net, state) as daemon:
            async with await ConvosdClient.connect(daemon.socket) as client:
                assert (await client.status()).conversation_id is None


# --- item 9: a state dir, CLI home or env file that is not ours is refused ----------------


def _daemon(net: FakeNetwork, state: Path, home: Path | None = None) -> Any:
    from convosd.config import Paths
    from convosd.daemon import Daemon
    from convosd.systemd import Notifier
    from tests.rpc_harness import settings_for

    return Daemon(
        settings_for(net),
        Paths(
            socket=state.parent / "s.sock", state_dir=state, convos_home=home or state / "convos"
        ),
        notifier=Notifier({}),
        environ={"PATH": "/usr/bin:/bin", "FAKECONVOS_NETWORK": str(net.path)},
    )


OTHER_UID = 65534  # nobody


async def test_a_state_dir_we_create_is_0700(net: FakeNetwork, tmp_path: Path) -> None:
    state = tmp_path / "deep" / "state"
    async with running_daemon(net, state):
        assert stat.S_IMODE(state.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("target", "change", "problem"),
    [
        ("state", "chmod", "writable by group or others"),
        ("state", "chown", "owned by uid 65534"),
        ("state/cli.env", "chmod", "writable by group or others"),
        ("state/cli.env", "chown", "owned by uid 65534"),
        ("state/convos", "chmod", "writable by group or others"),
        ("home", "chown", "owned by uid 65534"),
    ],
)
async def test_a_state_dir_cli_home_or_env_file_not_ours_is_refused(
    net: FakeNetwork, tmp_path: Path, target: str, change: str, problem: str
) -> None:
    from convosd import preflight
    from convosd.errors import ConfigError

    if change == "chown" and os.geteuid() != 0:
        pytest.skip("chown to another uid needs root")
    state, home = tmp_path / "state", tmp_path / "home"
    async with running_daemon(net, state):
        pass  # a complete instance: state dir, CLI home, cli.env
    home.mkdir(mode=0o700)
    path = tmp_path / target
    if change == "chmod":
        path.chmod(path.stat().st_mode | 0o022)
    else:
        os.chown(path, OTHER_UID, -1)
    convos_home = home if target == "home" else state / "convos"
    assert await _daemon(net, state, convos_home).run() == 1
    setup = fake_setup(net, state)
    setup = dataclasses.replace(setup, convos_home=convos_home)
    with pytest.raises(ConfigError, match=problem):  # what the daemon logged
        preflight.prepare_state_dir(state)
        preflight.prepare_cli(setup)


# --- item 10: a burst sharing one millisecond cannot stall the backfill --------------------


async def test_a_same_millisecond_burst_is_backfilled_whole(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """251 messages the stream never delivered, 250 of them stamped in one millisecond:
    the backfill alone must journal them all, with a handful of ``messages`` calls."""
    import sys

    state = tmp_path / "me"
    calls = tmp_path / "cli-calls.log"
    wrapper = tmp_path / "convos-logged"
    wrapper.write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\nexec {sys.executable} {net.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    # The stream drops everything: only the backfill can journal the messages.
    net.add_fault("stream_skip", command="conversation:stream", home=state / "convos", next=10**6)
    async with running_daemon(
        net, state, cli=(str(wrapper),), convos={"dm_policy": "open"}
    ) as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            created = await client.create(name="Busy")
            guest = member_cli(net, tmp_path / "guest")
            await guest.join(created.invite_slug, no_wait=True)
            assert await eventually(lambda: bool(admitted(daemon.instance)))
            net.add_fault(
                "same_ms_burst",
                command="conversation:send-text",
                home=tmp_path / "guest" / "convos",
                count=1,
                copies=250,
            )
            await guest.send_text(created.conversation_id, "burst")
            await guest.send_text(created.conversation_id, "after")
            got = await poll(lambda: texts(client), lambda t: len(t) == 251)
            assert len(got) == 251 and got[-1] == "after"
            assert sorted(got[:250]) == sorted(["burst", *(f"burst #{i}" for i in range(2, 251))])
            health = await client.health()
            assert health.checks["backfill"] == "ok"
    backfills = [c for c in calls.read_text().splitlines() if c.startswith("conversation messages")]
    # a backfill of the burst: a page, the burst's millisecond alone, the short last page
    assert any("--sent-before" in c for c in backfills)


# --- item 12: the state dir deleted while the daemon runs ----------------------------------


async def test_a_spawn_in_a_deleted_state_dir_says_so_not_cli_not_found(tmp_path: Path) -> None:
    from convosd import errors
    from convosd.cli.runner import SpawnSpec

    gone = tmp_path / "state"
    spec = SpawnSpec(argv=("/bin/true",), env={}, cwd=gone)
    with pytest.raises(errors.CliUnavailable) as caught:
        await spec.spawn()
    assert "working directory" in caught.value.message and "deleted" in caught.value.message
    assert "not found" not in caught.value.message


def test_writes_into_a_deleted_store_are_refused(tmp_path: Path) -> None:
    from convosd.events import event
    from convosd.storage.journal import Journal
    from convosd.storage.store import StateDirGone, Store

    state = tmp_path / "state"
    state.mkdir()
    store = Store.open(state)
    try:
        journal = Journal(store)
        journal.append([event("member_joined", "c" * 32, inboxId="a" * 64)])
        assert store.vanished() is None
        shutil.rmtree(state)
        with pytest.raises(StateDirGone, match="deleted or replaced while the daemon ran"):
            journal.append([event("member_joined", "c" * 32, inboxId="b" * 64)])
        assert journal.position.last_seq == 1
    finally:
        store.close()


def _removed(path: Path) -> bool:
    shutil.rmtree(path, ignore_errors=True)
    return not path.exists()


async def test_a_state_dir_deleted_while_running_is_detected(
    net: FakeNetwork, tmp_path: Path
) -> None:
    from convosd import errors

    state = tmp_path / "me"
    async with running_daemon(net, state) as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            await client.create(name="Doomed")
            assert (await client.health()).checks["stateDir"] == "ok"
            # as `rm -rf` by an operator; the bound conversation's first CLI calls may still
            # be writing in it, so removed until it is gone (one pass can meet a new file)
            assert await eventually(lambda: _removed(state))
            health = await client.health()
            assert health.status == "down"
            assert "deleted or replaced while the daemon ran" in health.checks["stateDir"]
            with pytest.raises(errors.NotReady, match="deleted or replaced"):
                await client.call("message.send", {"message": "into the void"})
            # The running daemon stops its children and runs no CLI process any more (one
            # would create a new identity at the path), then takes the path again: only its
            # lock file is there, and a second daemon is refused.
            assert await eventually(lambda: (state / "convosd.lock").exists())
            children = (await client.call("status"))["children"]
            assert {c["state"] for c in children.values()} == {"stopped"}
            assert [p.name for p in state.iterdir()] == ["convosd.lock"]
            second = _daemon(net, state)
            assert await asyncio.wait_for(second.run(), WAIT_S) == 1
            assert (await client.health()).status == "down"  # still: the store is gone


# --- item 13: a convosd.db that is not a store is refused ----------------------------------


async def test_a_zero_length_store_stops_the_daemon(net: FakeNetwork, tmp_path: Path) -> None:
    state = tmp_path / "me"
    async with running_daemon(net, state) as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            await client.create(name="Kept")
    os.truncate(state / "convosd.db", 0)
    for leftover in ("convosd.db-wal", "convosd.db-shm"):
        (state / leftover).unlink(missing_ok=True)
    assert await asyncio.wait_for(_daemon(net, state).run(), WAIT_S) == 1
    assert (state / "convosd.db").stat().st_size == 0  # refused, not turned into a new store


def test_the_double_stamps_a_burst_in_one_millisecond_and_filters_exclusively(
    net: FakeNetwork, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    alice = net.create_identity_home(tmp_path, "alice")
    cid = net.run_json(alice, "conversations", "create", "--name", "Burst")["conversationId"]
    net.add_fault("same_ms_burst", command="conversation send-text", home=alice, count=1, copies=5)
    net.run_json(alice, "conversation", "send-text", cid, "x")
    net.run_json(alice, "conversation", "send-text", cid, "later")
    listed = net.run_json(alice, "conversation", "messages", cid, "--direction", "ascending")
    burst = [m for m in listed if m["contentType"]["typeId"] == "text"][:5]
    assert [m["content"] for m in burst] == ["x", "x #2", "x #3", "x #4", "x #5"]
    assert len({m["sentAt"] for m in burst}) == 1
    sent = datetime.fromisoformat(burst[0]["sentAt"].replace("Z", "+00:00"))
    ms = (sent - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    start, end = ms * 1_000_000, (ms + 1) * 1_000_000

    def window(after: int, before: int) -> list[str]:
        found = net.run_json(
            alice, "conversation", "messages", cid, "--direction", "ascending",
            f"--sent-after={after}", f"--sent-before={before}",
        )  # fmt: skip
        return [m["content"] for m in found]

    assert window(start - 1, end) == ["x", "x #2", "x #3", "x #4", "x #5"]
    assert window(end - 1, end + 10**12)[:1] == ["later"]  # the burst ends before the next ms


# --- a CLI lock left by a stopped child --------------------------------------------------


async def test_a_lock_left_by_a_stopped_cli_does_not_hold_up_reset_or_start(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """The CLI holds identity.json.lock around writes of identity.json and Node exits on
    SIGTERM without removing it: a child stopped in that window left it, and every identity
    write (reset, create, join) waited 10 s and failed, retried until the file was 30 s old."""
    state = tmp_path / "me"
    lock = state / "convos" / "identity.json.lock"
    async with running_daemon(net, state) as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            await client.create(name="First")
            lock.touch()  # as a child stopped inside the CLI's lock would leave it
            started = time.monotonic()
            assert await client.call("daemon.reset", {"confirm": True}) == {"clean": True}
            assert time.monotonic() - started < 8  # the CLI waits 10 s for its lock
            assert not lock.exists()
    lock.touch()  # left by a child of the previous daemon
    async with running_daemon(net, state) as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            started = time.monotonic()
            await client.create(name="Second")
            assert time.monotonic() - started < 8
