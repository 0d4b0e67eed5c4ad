"""conversation.awaitAdd on the CLI double: the instance waits to be added by an allowed inbox
(docs/PROTOCOL.md, Being added), binds to the first such add, refuses the others (consent
denied, counted), and can be cancelled, resumed after a restart, configured, and failed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from convosd import errors
from convosd.cli import ConvosCli
from convosd.client import Client
from convosd.ctl.output import awaiting_human
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, eventually, eventually_async
from tests.rpc_harness import RunningDaemon, member_cli, running_daemon
from tests.test_ctl_client import ctl

FAST = {"await_add_poll_s": 0.2}


@pytest.fixture
async def daemon(net: FakeNetwork, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(net, tmp_path / "d", **FAST) as running:
        yield running


@pytest.fixture
async def client(daemon: RunningDaemon) -> AsyncIterator[Client]:
    c = await daemon.client()
    yield c
    await c.close()


async def events(client: Client, types: list[str] | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"after": 0, "limit": 1000}
    if types:
        params["types"] = types
    return list((await client.call("events.read", params))["events"])


def add(net: FakeNetwork, home: Path, conversation_id: str, inbox_id: str) -> Any:
    """``convos conversation add-members`` run by another member (its own home)."""
    return net.run_json(
        home / "convos", "conversation", "add-members", conversation_id, inbox_id, "--env", "dev"
    )


async def owner_with_group(net: FakeNetwork, tmp_path: Path, name: str) -> tuple[ConvosCli, str]:
    owner = member_cli(net, tmp_path / name)
    created = await owner.create(name=f"{name}'s group")
    return owner, created.conversation_id


async def test_await_add_binds_to_an_allowed_add_and_refuses_a_stranger(
    client: Client, daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    owner, group = await owner_with_group(net, tmp_path, "owner")
    owner_inbox = (await owner.identity_list())[0].inbox_id
    assert owner_inbox is not None
    _, spam = await owner_with_group(net, tmp_path, "stranger")
    assert (await client.call("status"))["inboxId"] is None  # no identity yet
    waiting = await client.call(
        "conversation.awaitAdd", {"from": [owner_inbox], "profileName": "Scout"}
    )
    inbox = waiting["inboxId"]
    assert waiting["status"] == "awaiting_add" and len(inbox) == 64
    assert waiting["from"] == [owner_inbox] and waiting["until"] is not None
    status = await client.call("status")
    assert status["inboxId"] == inbox and status["pending"] is True and status["clean"] is False
    assert status["awaitingAdd"]["inboxId"] == inbox
    assert status["awaitingAdd"]["from"] == [owner_inbox]
    # the identity was made with the profile name asked for
    identity = json.loads((daemon.daemon.paths.convos_home / "identity.json").read_text())
    assert identity["profileName"] == "Scout"
    # create and join are refused meanwhile, saying how to get out of it
    with pytest.raises(errors.AlreadyBound) as refused:
        await client.call("conversation.create", {"name": "other"})
    assert refused.value.extra == {"pending": True, "awaitingAdd": True}
    # a second awaitAdd answers the wait already running
    assert await client.call("conversation.awaitAdd") == waiting

    add(net, tmp_path / "stranger", spam, inbox)

    async def refused_once() -> bool:
        return bool((await client.call("status"))["addsRefused"] == 1)

    assert await eventually_async(refused_once)
    assert daemon.instance.binding is None
    consent = net.run_json(
        daemon.daemon.paths.convos_home, "conversation", "consent-state", spam, "--env", "dev"
    )
    assert consent["consentState"] == 2  # denied

    add(net, tmp_path / "owner", group, inbox)
    assert await eventually(lambda: daemon.instance.binding is not None)
    binding = daemon.instance.binding
    assert binding.conversation_id == group and binding.how == "added"
    assert binding.creator_inbox_id == owner_inbox
    bound = await events(client, ["conversation_bound"])
    assert [(b["how"], b["by"], b["conversationId"]) for b in bound] == [
        ("added", owner_inbox, group)
    ]
    status = await client.call("status")
    assert status["pending"] is False and status["awaitingAdd"] is None
    assert status["conversationId"] == group and status["addsRefused"] == 1
    # a joined group's rules: its super admins (the creator) are owners
    assert await eventually(lambda: daemon.instance.owner_inbox_ids == [owner_inbox])
    # the stranger's group was never bound to, and stays refused
    assert [b["conversationId"] for b in await events(client, ["conversation_bound"])] == [group]
    # the count belonged to the identity a reset removes: the next status shows it gone
    await client.call("daemon.reset", {"confirm": True})
    assert (await client.call("status"))["addsRefused"] == 0


async def test_await_add_defaults_to_allow_from_and_needs_someone(
    net: FakeNetwork, tmp_path: Path
) -> None:
    owner, group = await owner_with_group(net, tmp_path, "owner")
    owner_inbox = (await owner.identity_list())[0].inbox_id
    async with running_daemon(net, tmp_path / "a", **FAST) as bare:
        c = await bare.client()
        try:
            with pytest.raises(errors.InvalidParams):
                await c.call("conversation.awaitAdd")
            assert (await c.call("status"))["pending"] is False
        finally:
            await c.close()
    async with running_daemon(
        net, tmp_path / "b", convos={"allow_from": (owner_inbox,)}, **FAST
    ) as running:
        c = await running.client()
        try:
            waiting = await c.call("conversation.awaitAdd", {"timeoutS": 3600})
            assert waiting["from"] == [owner_inbox]
            add(net, tmp_path / "owner", group, waiting["inboxId"])
            assert await eventually(lambda: running.instance.binding is not None)
            bound = await events(c, ["conversation_bound"])
            assert [(b["how"], b["by"]) for b in bound] == [("added", owner_inbox)]
        finally:
            await c.close()


async def test_cancel_and_restart_resume(net: FakeNetwork, tmp_path: Path) -> None:
    owner, group = await owner_with_group(net, tmp_path, "owner")
    owner_inbox = (await owner.identity_list())[0].inbox_id
    state = tmp_path / "d"
    async with running_daemon(net, state, **FAST) as running:
        c = await running.client()
        try:
            first = await c.call("conversation.awaitAdd", {"from": [owner_inbox]})
            assert await c.call("conversation.cancelJoin") == {"cancelled": True}
            status = await c.call("status")
            assert status["pending"] is False and status["awaitingAdd"] is None
            with pytest.raises(errors.NotFound):
                await c.call("conversation.cancelJoin")
            # cancelled: an add now binds nothing
            add(net, tmp_path / "owner", group, first["inboxId"])
            second = await c.call("conversation.awaitAdd", {"from": [owner_inbox]})
            assert second["inboxId"] == first["inboxId"]  # the same identity
        finally:
            await c.close()
    # the second wait is persisted; the group it was added to meanwhile still counts
    async with running_daemon(net, state, **FAST) as running:
        c = await running.client()
        try:
            assert await eventually(lambda: running.instance.binding is not None)
            assert running.instance.binding.conversation_id == group
            bound = await events(c, ["conversation_bound"])
            assert [(b["how"], b["by"]) for b in bound] == [("added", owner_inbox)]
        finally:
            await c.close()


async def test_await_add_gives_up_after_timeout(client: Client, daemon: RunningDaemon) -> None:
    waiting = await client.call("conversation.awaitAdd", {"from": ["a" * 64], "timeoutS": 1})
    assert waiting["until"] is not None

    async def failed() -> bool:
        return bool(await events(client, ["join_failed"]))

    assert await eventually_async(failed)
    (event,) = await events(client, ["join_failed"])
    assert "not added" in event["reason"]
    assert (await client.call("status"))["pending"] is False


async def test_await_add_while_bound_or_joining(
    client: Client, net: FakeNetwork, tmp_path: Path
) -> None:
    owner, _ = await owner_with_group(net, tmp_path, "owner")
    created = await owner.create(name="Invite only")
    pending = await client.call(
        "conversation.join", {"inviteUrl": created.invite.slug, "timeoutS": 1}
    )
    assert pending["status"] == "pending_acceptance"
    with pytest.raises(errors.AlreadyBound) as refused:
        await client.call("conversation.awaitAdd", {"from": ["a" * 64]})
    assert refused.value.extra == {"pending": True}
    await client.call("conversation.cancelJoin")
    await client.call("conversation.create", {"name": "mine"})
    with pytest.raises(errors.AlreadyBound):
        await client.call("conversation.awaitAdd", {"from": ["a" * 64]})
    with pytest.raises(errors.InvalidParams):
        await client.call("conversation.awaitAdd", {"from": ["not an inbox"]})


async def test_configured_await_add_starts_by_itself(net: FakeNetwork, tmp_path: Path) -> None:
    owner, group = await owner_with_group(net, tmp_path, "owner")
    owner_inbox = (await owner.identity_list())[0].inbox_id
    async with running_daemon(
        net, tmp_path / "d", convos={"allow_from": (owner_inbox,), "await_add": True}, **FAST
    ) as running:
        c = await running.client()
        try:

            async def inbox_shown() -> bool:
                waiting = (await c.call("status"))["awaitingAdd"]
                return bool(waiting and waiting["inboxId"])

            assert await eventually_async(inbox_shown)
            status = await c.call("status")
            assert status["pending"] is True and status["awaitingAdd"]["until"] is None
            add(net, tmp_path / "owner", group, status["awaitingAdd"]["inboxId"])
            assert await eventually(lambda: running.instance.binding is not None)
        finally:
            await c.close()


async def test_an_earlier_conversation_is_never_bound_again(
    client: Client, daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    """After its conversation ended the instance may still be a member of it (a scheduled
    explosion leaves the group): a wait to be added does not bind to it again."""
    owner, group = await owner_with_group(net, tmp_path, "owner")
    owner_inbox = (await owner.identity_list())[0].inbox_id
    waiting = await client.call("conversation.awaitAdd", {"from": [owner_inbox]})
    add(net, tmp_path / "owner", group, waiting["inboxId"])
    assert await eventually(lambda: daemon.instance.binding is not None)
    assert await eventually(lambda: bool(daemon.instance.children))
    assert await eventually(daemon.instance.running_children)
    await daemon.instance.conversation_gone(by=owner_inbox, reason="expired")
    assert daemon.instance.binding is None
    await client.call("conversation.awaitAdd", {"from": [owner_inbox]})
    _, second = await owner_with_group(net, tmp_path, "owner")
    # polls see the old group (still a member) and leave it; the new add binds
    add(net, tmp_path / "owner", second, waiting["inboxId"])
    assert await eventually(lambda: daemon.instance.binding is not None)
    assert daemon.instance.binding.conversation_id == second


async def test_convosctl_await_add_prints_the_inbox_id_and_waits(
    daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    owner, group = await owner_with_group(net, tmp_path, "owner")
    owner_inbox = (await owner.identity_list())[0].inbox_id
    assert owner_inbox is not None
    code, answer, _ = await ctl(daemon.socket, "await-add", "--from", owner_inbox)
    inbox = daemon.instance.home.identity_inbox_id
    assert code == 0 and inbox is not None and answer["inboxId"] == inbox
    human = awaiting_human(answer)  # what a terminal shows
    assert f"inbox id  {inbox}" in human and f"add-members CONVERSATION_ID {inbox}" in human
    code, _, err = await ctl(daemon.socket, "create", "x", json_out=False)
    assert code == 1 and "convosctl cancel-join" in err and "waits to be added" in err
    code, cancelled, _ = await ctl(daemon.socket, "cancel-join")
    assert code == 0 and cancelled == {"cancelled": True}
    # --wait: the answer, then the binding once the owner adds it
    waiting = asyncio.create_task(ctl(daemon.socket, "await-add", "--from", owner_inbox, "--wait"))
    assert await eventually(lambda: daemon.instance.store.pending_join() is not None)
    add(net, tmp_path / "owner", group, inbox)
    code, lines, err = await asyncio.wait_for(waiting, WAIT_S)
    assert code == 0, err
    assert lines[0]["inboxId"] == inbox and lines[0]["from"] == [owner_inbox]
    assert lines[1] == {"status": "added", "conversationId": group}
