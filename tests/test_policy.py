"""dmPolicy: the pure decision, and each policy end to end through the socket with the CLI
double and several identities (an owner who created the conversation, this instance that
joined it, other members)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from convosd import errors
from convosd.cli import ConvosCli
from convosd.client import ConvosdClient
from convosd.conversation.policy import (
    CODE_ALPHABET,
    MAX_PENDING,
    SenderView,
    Verdict,
    decide,
    new_code,
    normalise_code,
)
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, admitted, eventually
from tests.rpc_harness import member_cli, running_daemon

OWNER, ALICE, BOB = "o" * 64, "a" * 64, "b" * 64


def view(**kw: Any) -> SenderView:
    base: dict[str, Any] = {
        "owners": frozenset(),
        "approved": frozenset(),
        "pending": frozenset(),
        "denied": frozenset(),
    }
    base.update({k: frozenset(v) for k, v in kw.items()})
    return SenderView(**base)


class TestDecide:
    def test_open_and_disabled(self) -> None:
        assert decide("open", ALICE, view()).verdict is Verdict.JOURNAL
        assert decide("disabled", OWNER, view(owners={OWNER})).verdict is Verdict.DROP

    def test_allowlist(self) -> None:
        assert decide("allowlist", OWNER, view(owners={OWNER})).verdict is Verdict.JOURNAL
        assert decide("allowlist", ALICE, view(approved={ALICE})).verdict is Verdict.JOURNAL
        dropped = decide("allowlist", BOB, view())
        assert (dropped.verdict, dropped.reason) == (Verdict.DROP, "not_allowed")

    def test_pairing(self) -> None:
        assert decide("pairing", OWNER, view(owners={OWNER})).verdict is Verdict.JOURNAL
        assert decide("pairing", ALICE, view()).verdict is Verdict.REQUEST
        assert decide("pairing", ALICE, view(pending={ALICE})).verdict is Verdict.HOLD
        full = view(pending={f"{i}" * 64 for i in range(MAX_PENDING)})
        assert (decide("pairing", BOB, full).verdict, decide("pairing", BOB, full).reason) == (
            Verdict.DROP,
            "pairing_full",
        )
        assert decide("pairing", BOB, view(denied={BOB})).reason == "denied"

    def test_codes(self) -> None:
        rng = random.Random(1)
        codes = {new_code(rng) for _ in range(500)}
        assert all(len(c) == 8 and set(c) <= set(CODE_ALPHABET) for c in codes)
        assert not set("".join(codes)) & set("OI01")
        taken = frozenset({new_code(random.Random(2))})
        assert new_code(random.Random(2), taken) not in taken
        assert normalise_code(" abcd-efgh ") == "ABCDEFGH"


# --- end to end -----------------------------------------------------------------------


class Scene:
    def __init__(self, net: FakeNetwork, root: Path) -> None:
        self.net = net
        self.root = root
        self.owner = member_cli(net, root / "owner")
        self.watcher: Any = None
        self.cid = ""
        self.slug = ""

    async def start_owner(self) -> None:
        created = await self.owner.create(name="Owner's room")
        self.cid, self.slug = created.conversation_id, created.invite.slug
        self.owner_inbox = created.inbox_id
        self.watcher = await self.owner.join_requests_spec(self.cid).spawn()

    async def stop(self) -> None:
        if self.watcher is not None:
            os.killpg(self.watcher.pid, signal.SIGKILL)
            await self.watcher.wait()

    async def member(self, name: str) -> ConvosCli:
        cli = member_cli(self.net, self.root / name)
        await cli.join(self.slug, no_wait=True)
        assert await eventually_async(
            lambda: cli.list_conversations(sync=True),
            lambda listed: any(c.conversation_id == self.cid for c in listed),
        ), f"{name} was not admitted"
        return cli


@asynccontextmanager
async def scene(net: FakeNetwork, root: Path) -> AsyncIterator[Scene]:
    s = Scene(net, root)
    await s.start_owner()
    try:
        yield s
    finally:
        await s.stop()


async def join_as_instance(client: ConvosdClient, sc: Scene) -> None:
    result = await client.join(sc.slug, timeoutS=20, asOwner=True)
    assert result.status == "joined"


async def messages(client: ConvosdClient) -> list[dict[str, Any]]:
    events = (await client.read_events(after=0, limit=1000)).events
    return [e for e in events if e["type"] == "message" and e["contentType"] == "text"]


async def test_pairing_holds_then_releases_in_order_across_a_restart(
    net: FakeNetwork, tmp_path: Path
) -> None:
    state = tmp_path / "me"
    async with scene(net, tmp_path) as sc:
        async with running_daemon(net, state) as daemon:
            async with await ConvosdClient.connect(daemon.socket) as client:
                await join_as_instance(client, sc)
                status = await client.status()
                assert status.owner_conversation_id == sc.cid  # recorded by onboarding
                assert sc.owner_inbox in status.owner_inbox_ids
                carol = await sc.member("carol")
                await sc.owner.send_text(sc.cid, "from the owner")
                for text in ("c1", "c2"):
                    await carol.send_text(sc.cid, text)
                await wait_for(client, lambda s: s.policy.held == 2)
                requests = (await client.call("pairing.list"))["requests"]
                assert len(requests) == 1 and requests[0]["held"] == 2
                code = requests[0]["code"]
                events = (await client.read_events(after=0, limit=1000)).events
                asked = [e for e in events if e["type"] == "pairing_requested"]
                assert [e["code"] for e in asked] == [code]
                assert [m["content"] for m in await messages(client)] == ["from the owner"]

                # one notice with the code, posted into the conversation (asynchronously)
                async def notices() -> list[Any]:
                    history = await sc.owner.messages(sc.cid)
                    return [m for m in history if code in (m.content or "")]

                assert await eventually_async(notices, lambda found: len(found) == 1)
        async with running_daemon(net, state) as daemon:  # restart while held
            async with await ConvosdClient.connect(daemon.socket) as client:
                assert (await client.status()).policy.held == 2
                with pytest.raises(errors.NotFound):
                    await client.call("pairing.approve", {"code": "WRONGCOD"})
                approved = await client.call("pairing.approve", {"code": code.lower()})
                assert approved["released"] == 2
                assert [m["content"] for m in await messages(client)] == [
                    "from the owner",
                    "c1",
                    "c2",
                ]
                with pytest.raises(errors.NotFound):  # used
                    await client.call("pairing.approve", {"code": code})
                await carol.send_text(sc.cid, "c3")
                assert await eventually_async(
                    lambda: messages(client), lambda ms: ms[-1:] and ms[-1]["content"] == "c3"
                )
                assert (await client.status()).policy.held == 0


async def test_deny_flood_and_counts(net: FakeNetwork, tmp_path: Path) -> None:
    async with scene(net, tmp_path) as sc, running_daemon(net, tmp_path / "me") as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            await join_as_instance(client, sc)
            senders = [await sc.member(f"m{i}") for i in range(MAX_PENDING + 2)]
            for i, cli in enumerate(senders):
                await cli.send_text(sc.cid, f"hi {i}")
            await wait_for(client, lambda s: s.policy.held + sum(s.policy.dropped.values()) == 5)
            status = await client.status()
            assert status.policy.held == MAX_PENDING
            assert status.policy.dropped == {"pairing_full": 2}
            requests = (await client.call("pairing.list"))["requests"]
            assert len(requests) == MAX_PENDING
            denied = await client.call("pairing.deny", {"code": requests[0]["code"]})
            assert denied["senderInboxId"] == requests[0]["senderInboxId"]
            status = await client.status()
            assert status.policy.held == MAX_PENDING - 1
            assert status.policy.dropped == {"pairing_full": 2, "denied": 1}
            assert await messages(client) == []


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("open", ["owner", "carol"]), ("allowlist", ["owner"]), ("disabled", [])],
)
async def test_other_policies(
    net: FakeNetwork, tmp_path: Path, policy: str, expected: list[str]
) -> None:
    async with (
        scene(net, tmp_path) as sc,
        running_daemon(net, tmp_path / "me", convos={"dm_policy": policy}) as daemon,
    ):
        async with await ConvosdClient.connect(daemon.socket) as client:
            await join_as_instance(client, sc)
            carol = await sc.member("carol")
            await sc.owner.send_text(sc.cid, "owner")
            await carol.send_text(sc.cid, "carol")
            drops = 2 - len(expected)
            await wait_for(client, lambda s: len_seen(s) == drops)
            assert await eventually_async(
                lambda: messages(client), lambda ms: [m["content"] for m in ms] == expected
            )
            assert (await client.status()).policy.held == 0


def len_seen(status: Any) -> int:
    return int(sum(status.policy.dropped.values()))


async def test_members_admitted_through_our_invite_are_approved(
    net: FakeNetwork, tmp_path: Path
) -> None:
    async with running_daemon(net, tmp_path / "me") as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            created = await client.create(name="Ours")
            guest = member_cli(net, tmp_path / "guest")
            await guest.join(created.invite_slug, no_wait=True)
            assert await eventually(lambda: bool(admitted(daemon.instance)))
            await guest.send_text(created.conversation_id, "hello from an invitee")
            assert await eventually_async(
                lambda: messages(client),
                lambda ms: [m["content"] for m in ms] == ["hello from an invitee"],
            )
            assert (await client.call("pairing.list"))["requests"] == []


async def wait_for(client: ConvosdClient, predicate: Any, within_s: float = WAIT_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        if predicate(await client.status()):
            return
        await asyncio.sleep(0.1)  # polling the daemon's status over its socket
    raise AssertionError("condition not met in time")


async def eventually_async(fetch: Any, check: Any, within_s: float = WAIT_S) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        if check(await fetch()):
            return True
        await asyncio.sleep(0.1)
    return False


def test_expired_code_is_not_found_and_its_messages_are_dropped(tmp_path: Path) -> None:
    from convosd.cli.models import CliMessage
    from convosd.conversation.hook import Fate
    from convosd.conversation.pairing import SenderPolicy
    from convosd.storage.journal import Journal
    from convosd.storage.store import Store

    store = Store.open(tmp_path)
    now = [1000.0]
    try:
        journal = Journal(store)
        policy = SenderPolicy(
            store,
            journal,
            policy="pairing",
            owners=frozenset,
            conversation_id=lambda: "c" * 32,
            clock=lambda: now[0],
        )
        message = CliMessage.model_validate(
            {
                "id": "f" * 64,
                "senderInboxId": ALICE,
                "content": "hi",
                "contentType": {"authorityId": "xmtp.org", "typeId": "text"},
                "sentAt": "2026-11-23T12:00:00.000Z",
            }
        )
        decision = policy(message)
        assert decision.fate is Fate.HELD and decision.events[0].type == "pairing_requested"
        journal.append([], writes=decision.writes)  # as the ingest commits it
        code = decision.events[0].fields["code"]
        assert [r["code"] for r in policy.list_requests()] == [code]
        now[0] += 3601
        with pytest.raises(errors.NotFound, match="expired"):
            policy.approve(code)
        assert policy.counts() == {"held": 0, "dropped": {"expired": 1}}
        policy.reload()  # the store agrees with the view
        assert policy.counts() == {"held": 0, "dropped": {"expired": 1}}
    finally:
        store.close()


async def test_a_join_accepted_by_the_watchers_first_pass_is_approved(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """A request sent while the daemon was down is accepted by the watcher's batch pass,
    which reports it only as 'Adding <inbox> to conversation <id>': approved all the same."""
    state = tmp_path / "me"
    async with running_daemon(net, state) as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            created = await client.create(name="Ours")
    guest = member_cli(net, tmp_path / "guest")
    await guest.join(created.invite_slug, no_wait=True)  # nobody processes it yet
    async with running_daemon(net, state) as daemon:
        assert await eventually(lambda: bool(admitted(daemon.instance)))
        await guest.send_text(created.conversation_id, "sent while you were away")
        async with await ConvosdClient.connect(daemon.socket) as client:
            assert await eventually_async(
                lambda: messages(client),
                lambda ms: [m["content"] for m in ms] == ["sent while you were away"],
            )
            assert (await client.call("pairing.list"))["requests"] == []


def test_messages_held_before_the_attachment_field_existed_are_released(tmp_path: Path) -> None:
    """A daemon upgraded while messages were held: their stored fields lack ``attachment``."""
    import json

    from convosd.cli.models import CliMessage
    from convosd.conversation.hook import Fate
    from convosd.conversation.pairing import SenderPolicy
    from convosd.storage.journal import Journal
    from convosd.storage.store import Store

    store = Store.open(tmp_path)
    try:
        journal = Journal(store)
        policy = SenderPolicy(
            store, journal, policy="pairing", owners=frozenset, conversation_id=lambda: "c" * 32
        )
        message = CliMessage.model_validate(
            {
                "id": "f" * 64,
                "senderInboxId": ALICE,
                "content": "hi",
                "contentType": {"authorityId": "xmtp.org", "typeId": "text"},
                "sentAt": "2026-11-23T12:00:00.000Z",
            }
        )
        decision = policy(message)
        assert decision.fate is Fate.HELD
        journal.append([], writes=decision.writes)
        (body,) = store.pairing.held_bodies(ALICE)
        old = {k: v for k, v in json.loads(body).items() if k != "attachment"}
        old["messageId"] = "e" * 64
        with store.transaction():
            store.pairing.hold("e" * 64, ALICE, json.dumps(old), 0.0)
        policy.approve(decision.events[0].fields["code"])
        released = [e.as_dict() for e in journal.read(0, 10) if e.type == "message"]
        assert [e["messageId"] for e in released] == ["f" * 64, "e" * 64]
        assert all(e["attachment"] is None for e in released)
    finally:
        store.close()
