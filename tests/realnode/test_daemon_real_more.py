"""More of convosd on the real CLI and the local node (warm transport): our join to a real
creator (pending, then bound; and cancelled), attachments both ways, lock/unlock, explode."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from convosd.client import Client
from tests.helpers import eventually_async
from tests.realnode.conftest import WAIT_S, journal, real_daemon, wait_events
from tests.realnode.test_daemon_real import (
    admit_peer,
    children_running,
    message_events,
    peer_messages,
    peer_sees,
)
from tests.xmtpnode.harness import LocalNode, Peer

pytestmark = pytest.mark.timeout(900)


#: How an attachment's key material is named wherever a CLI or SDK spells it out.
KEY_NAMES = ("secret", "salt", "nonce", "contentDigest", "content_digest")


def key_material_named(text: str) -> list[str]:
    """Key-material field names written as JSON keys or key=value in ``text``."""
    return [
        name
        for name in KEY_NAMES
        if f'"{name}"' in text or f"{name}=" in text or f"'{name}'" in text
    ]


def files_text(root: Path, skip: Path) -> str:
    return "\n".join(
        path.read_bytes().decode("latin-1")
        for path in root.rglob("*")
        if path.is_file() and skip not in path.parents
    )


async def test_join_a_real_creator_pairing_then_attachments(
    xmtp_node: LocalNode, peer: Peer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """We join a real creator's conversation under dmPolicy = pairing: the creator and a
    second member it admitted are strangers to us, so their first messages are held."""
    theirs = await asyncio.to_thread(
        peer.json, "conversations", "create", "--name", "Theirs", "--profile-name", "Creator"
    )
    cid = theirs["conversationId"]
    state = tmp_path / "state"
    strangers = [Peer(xmtp_node, tmp_path / name, name) for name in ("ann", "dan")]
    async with real_daemon(xmtp_node, state, "warm", convos={"dm_policy": "pairing"}) as daemon:
        client = await daemon.client()
        try:
            # pending until the creator processes the request, then bound
            answer = await client.call(
                "conversation.join", {"inviteUrl": theirs["invite"]["url"], "timeoutS": 3}
            )
            assert answer["status"] == "pending_acceptance", answer
            assert answer["creatorInboxId"] == theirs["inboxId"]
            assert (await client.call("status"))["pending"] is True

            async def creator_admits() -> bool:
                await asyncio.to_thread(
                    peer.json, "conversations", "process-join-requests", "--conversation", cid
                )
                status = await client.call("status")
                return bool(status["conversationId"] == cid)

            assert await eventually_async(creator_admits, within_s=WAIT_S, pause_s=2.0)
            events = await journal(client)
            assert [e["how"] for e in events if e["type"] == "conversation_bound"] == ["joined"]
            await children_running(client)

            # Our first message here is the pairing notice: our client's first commit in a
            # group it joined goes out while the strangers write (docs/LOCAL_NODE.md).
            await pairing_with_real_senders(
                client, peer, strangers, cid, theirs["invite"]["slug"], ours=state
            )
            await client.call("message.send", {"message": "hello from the agent"})
            await attachments_both_ways(client, peer, cid, tmp_path)
            events_after = await journal(client)
        finally:
            await client.close()
    # no key material in the journal, the daemon's own files (its CLI's home aside) or logs
    logs = capsys.readouterr()
    assert not key_material_named(json.dumps(events_after))
    assert not key_material_named(files_text(state, state / "convos"))
    assert not key_material_named(logs.out + logs.err)


async def pairing_with_real_senders(
    client: Client, creator: Peer, strangers: list[Peer], cid: str, slug: str, *, ours: Path
) -> None:
    """Two members the creator admitted (not us): their messages are held until approved
    (then released in order) or denied (then dropped). The creator's own pass. ``ours`` is
    the daemon's state dir: on failure, what its CLI home lists is shown beside the
    creator's (a message both list but the journal lacks was dropped by convosd; one only
    the creator lists never reached our client: with separate processes, a fork,
    docs/LOCAL_NODE.md)."""
    joining = [
        asyncio.create_task(
            asyncio.to_thread(
                stranger.json, "conversations", "join", slug, "--timeout", "240", timeout_s=300
            )
        )
        for stranger in strangers
    ]

    async def creator_admits_them() -> bool:
        await asyncio.to_thread(
            creator.json, "conversations", "process-join-requests", "--conversation", cid
        )
        return all(task.done() for task in joining)

    assert await eventually_async(creator_admits_them, within_s=WAIT_S, pause_s=2.0)
    approved_inbox, denied_inbox = [(await task)["inboxId"] for task in joining]
    to_approve, to_deny = strangers

    held = ["held a1", "held a2", "held a3"]
    for text in held:
        await asyncio.to_thread(to_approve.json, "conversation", "send-text", cid, text)
    await asyncio.to_thread(to_deny.json, "conversation", "send-text", cid, "held d1")
    await asyncio.to_thread(creator.json, "conversation", "send-text", cid, "creator passes")
    requested: list[dict[str, Any]] = []

    async def two_requests() -> bool:
        requested[:] = (await client.call("pairing.list"))["requests"]
        return len(requested) == 2 and sum(r["held"] for r in requested) == 4

    if not await eventually_async(two_requests, within_s=WAIT_S, pause_s=0.5):
        tail = [
            (e["type"], e.get("content"), e.get("senderInboxId")) for e in await journal(client)
        ]
        listed = {}
        for name, who in (("creator", creator), ("ours", Peer(creator.node, ours, "convosd"))):
            listed[name] = [m.get("content") for m in await peer_messages(who, cid)]
        pytest.fail(f"requests {requested}; journal {tail}; listed {listed}")
    events = await wait_events(
        client, lambda es: message_events(es, "creator passes"), "the creator's text"
    )
    assert {e["senderInboxId"] for e in events if e["type"] == "pairing_requested"} == {
        approved_inbox,
        denied_inbox,
    }
    assert not [e for e in events if e["type"] == "message" and e["content"].startswith("held")]
    codes = {r["senderInboxId"]: r["code"] for r in requested}
    assert (await client.call("pairing.approve", {"code": codes[approved_inbox]}))["released"] == 3
    denied = await client.call("pairing.deny", {"code": codes[denied_inbox]})
    assert denied["senderInboxId"] == denied_inbox
    events = await journal(client)
    released = [
        e["content"] for e in events if e["type"] == "message" and e["content"].startswith("held")
    ]
    assert released == held  # in order, and the denied sender's never
    assert (await client.call("pairing.list"))["requests"] == []


async def attachments_both_ways(client: Client, peer: Peer, cid: str, tmp_path: Path) -> None:
    # inbound: the peer's remote attachment, downloaded by the daemon, bytes equal
    payload = os.urandom(20_000)
    source = tmp_path / "from-peer.bin"
    source.write_bytes(payload)
    sent = await asyncio.to_thread(peer.json, "conversation", "send-attachment", cid, str(source))
    events = await wait_events(
        client,
        lambda es: any(e.get("messageId") == sent["messageId"] for e in es),
        "the peer's attachment",
    )
    (event,) = [e for e in events if e.get("messageId") == sent["messageId"]]
    assert event["contentType"] in ("remoteStaticAttachment", "attachment"), event
    got = await client.call("attachment.download", {"messageId": sent["messageId"], "inline": True})
    assert base64.b64decode(got["data"]) == payload
    assert await asyncio.to_thread(Path(got["path"]).read_bytes) == payload

    # outbound: ours, as the peer downloads it
    ours = os.urandom(12_345)
    mine = await client.call(
        "message.sendAttachment",
        {"data": base64.b64encode(ours).decode(), "filename": "ours.bin"},
    )
    await peer_sees(peer, cid, mine["messageId"])
    target = tmp_path / "at-peer.bin"
    await asyncio.to_thread(
        peer.json,
        "conversation",
        "download-attachment",
        cid,
        mine["messageId"],
        "--output",
        str(target),
    )
    assert target.read_bytes() == ours


async def test_cancel_a_pending_join(xmtp_node: LocalNode, peer: Peer, tmp_path: Path) -> None:
    theirs = await asyncio.to_thread(peer.json, "conversations", "create", "--name", "Never")
    async with real_daemon(xmtp_node, tmp_path / "state", "warm") as daemon:
        client = await daemon.client()
        try:
            answer = await client.call(
                "conversation.join", {"inviteUrl": theirs["invite"]["slug"], "timeoutS": 2}
            )
            assert answer["status"] == "pending_acceptance", answer
            assert await client.call("conversation.cancelJoin") == {"cancelled": True}
            status = await client.call("status")
            assert status["pending"] is False and status["conversationId"] is None
            # the creator admits the old request now: the daemon stays unbound
            await asyncio.to_thread(
                peer.json,
                "conversations",
                "process-join-requests",
                "--conversation",
                theirs["conversationId"],
            )
            created = await client.call("conversation.create", {"name": "Mine"})
            assert (await client.call("status"))["conversationId"] == created["conversationId"]
        finally:
            await client.close()


async def test_lock_unlock_and_explode(xmtp_node: LocalNode, peer: Peer, tmp_path: Path) -> None:
    late = Peer(xmtp_node, tmp_path / "late", "late")
    async with real_daemon(xmtp_node, tmp_path / "state", "warm") as daemon:
        client = await daemon.client()
        try:
            created = await client.call("conversation.create", {"name": "Lockable"})
            await children_running(client)
            await admit_peer(client, peer, created["inviteSlug"])
            assert await client.call("conversation.lock", {}) == {"locked": True}
            await wait_events(
                client,
                lambda es: any(e["type"] == "conversation_locked" and e["locked"] for e in es),
                "conversation_locked",
            )
            # the old invite no longer admits
            refused = await asyncio.to_thread(
                late.run,
                "conversations",
                "join",
                created["inviteSlug"],
                "--timeout",
                "20",
                "--json",
            )
            assert refused.returncode != 0 or '"joined"' not in refused.stdout, refused.stdout
            assert (await client.call("conversation.info"))["memberCount"] == 2
            assert await client.call("conversation.lock", {"unlock": True}) == {"locked": False}
            exploded = await client.call("conversation.explode", {"confirm": True})
            assert exploded["exploded"] is True
            await wait_events(
                client,
                lambda es: any(e["type"] == "conversation_exploded" for e in es),
                "conversation_exploded",
            )
            assert (await client.call("status"))["conversationId"] is None
        finally:
            await client.close()
