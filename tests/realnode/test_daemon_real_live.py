"""Live-conversation methods on the real CLI and the local node (warm transport), one daemon
and one peer: typing and read receipts as the peer sees them, conversation.update as the
peer's ``conversation info`` shows it, member.remove (member_left once), and a scheduled
explosion that unbinds the daemon at its time (status.expiresAt)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from convosd.client import Client
from tests.helpers import WAIT_S, eventually, eventually_async
from tests.realnode.conftest import journal, real_daemon, wait_events
from tests.realnode.test_daemon_real import admit_peer, children_running, peer_messages
from tests.xmtpnode.harness import LocalNode, Peer

pytestmark = pytest.mark.timeout(600)


async def test_typing_receipts_update_remove_and_expiry(
    xmtp_node: LocalNode, peer: Peer, tmp_path: Path
) -> None:
    async with real_daemon(xmtp_node, tmp_path / "state", "warm") as daemon:
        client = await daemon.client()
        try:
            created = await client.call("conversation.create", {"name": "Live"})
            cid = created["conversationId"]
            await children_running(client)
            inbox = await admit_peer(client, peer, created["inviteSlug"])
            await typing_and_receipts(client, peer, cid)
            await update_as_the_peer_sees_it(client, peer, cid)
            await remove_the_peer(client, peer, cid, inbox)
            await scheduled_explosion(client)
            # once, though the daemon's stream and several backfills have passed the removal
            # by the time the conversation expired
            events = await journal(client)
            assert [e["inboxId"] for e in events if e["type"] == "member_left"] == [inbox]
        finally:
            await client.close()


def type_id(line: dict[str, Any]) -> str:
    kind = line.get("contentType")
    return str(kind.get("typeId") if isinstance(kind, dict) else kind)


async def typing_and_receipts(client: Client, peer: Peer, cid: str) -> None:
    """The real stream never prints typing indicators or read receipts (the CLI's
    isDisplayableMessage filters both); ``conversation messages`` lists the typing
    indicators, and ``conversation last-read-times`` shows the receipt."""
    with peer.stream("conversation", "stream", cid) as stream:
        # the stream is subscribed once it prints a message sent after it started
        async def subscribed() -> bool:
            await client.call("message.send", {"message": "ping"})
            return await eventually(
                lambda: any(line.get("content") == "ping" for line in stream.lines), within_s=5
            )

        assert await eventually_async(subscribed, within_s=WAIT_S, pause_s=0.5), stream.stderr
        assert await client.call("conversation.typing", {}) == {"ok": True}
        assert await client.call("conversation.typing", {"typing": False}) == {"ok": True}
        assert await client.call("message.markRead", {}) == {"ok": True}
        await client.call("message.send", {"message": "after"})
        assert await eventually(
            lambda: any(line.get("content") == "after" for line in stream.lines), within_s=WAIT_S
        ), stream.stderr
        printed = [type_id(line) for line in stream.lines]
    assert set(printed) == {"text"}, stream.lines
    listed = await peer_messages(peer, cid)
    kinds = {type_id(item): item.get("content") for item in listed}
    assert any("typing" in kind.lower() for kind in kinds), kinds
    assert "readReceipt" not in kinds, kinds  # libxmtp keeps no message for a receipt
    # the peer sees our receipt as our last read time
    ours = (await client.call("status"))["inboxId"]
    read: dict[str, Any] = {}

    async def receipt_seen() -> bool:
        read.update(
            await asyncio.to_thread(peer.json, "conversation", "last-read-times", cid, "--sync")
        )
        return ours in json.dumps(read)

    assert await eventually_async(receipt_seen, within_s=WAIT_S, pause_s=1.0), read
    # neither is journaled
    types = {e["type"] for e in await journal(client)}
    assert not {t for t in types if "typing" in t or "receipt" in t}, types


async def update_as_the_peer_sees_it(client: Client, peer: Peer, cid: str) -> None:
    answer = await client.call(
        "conversation.update", {"name": "Renamed", "description": "Now with a description"}
    )
    assert answer == {"name": "Renamed", "description": "Now with a description"}
    info: dict[str, Any] = {}

    async def peer_info() -> bool:
        await peer_messages(peer, cid)  # `info` does not sync: `messages --sync` does
        shown = await asyncio.to_thread(peer.json, "conversation", "info", cid)
        info.update(shown["conversation"])
        return info.get("name") == "Renamed" and info.get("description") == answer["description"]

    assert await eventually_async(peer_info, within_s=WAIT_S, pause_s=1.0), info


async def remove_the_peer(client: Client, peer: Peer, cid: str, inbox: str) -> None:
    assert await client.call("member.remove", {"inboxId": inbox}) == {"removed": [inbox]}
    assert (await client.call("conversation.info"))["memberCount"] == 1
    events = await journal(client)
    assert [e["inboxId"] for e in events if e["type"] == "member_left"] == [inbox]

    # the peer is no longer a member: its own view says so after a sync
    async def peer_removed() -> bool:
        await peer_messages(peer, cid)  # syncs the group: `members` does not
        listed = await asyncio.to_thread(peer.json, "conversation", "members", cid)
        shown = await asyncio.to_thread(peer.json, "conversation", "info", cid)
        return inbox not in json.dumps(listed) and shown["conversation"]["isActive"] is False

    assert await eventually_async(peer_removed, within_s=WAIT_S, pause_s=1.0)


async def scheduled_explosion(client: Client) -> None:
    at = (datetime.now(UTC) + timedelta(seconds=6)).replace(microsecond=0)
    answer = await client.call("conversation.explode", {"confirm": True, "at": at.isoformat()})
    assert answer["exploded"] is False, answer
    scheduled = datetime.fromisoformat(answer["scheduledAt"].replace("Z", "+00:00"))
    assert scheduled == at, answer
    status = await client.call("status")
    assert status["conversationId"] is not None  # bound until then
    assert datetime.fromisoformat(status["expiresAt"].replace("Z", "+00:00")) == at, status
    events = await wait_events(
        client,
        lambda es: any(e["type"] == "conversation_exploded" for e in es),
        "the expiry",
        within_s=WAIT_S,
    )
    assert time.time() >= at.timestamp()
    (exploded,) = [e for e in events if e["type"] == "conversation_exploded"]
    assert exploded["reason"] == "expired", exploded
    # the daemon journals the explosion, then unbinds (stopping its children): wait for it
    after: dict[str, Any] = {}

    async def unbound() -> bool:
        after.update(await client.call("status"))
        return after["conversationId"] is None and after["expiresAt"] is None

    assert await eventually_async(unbound, within_s=WAIT_S, pause_s=0.2), after
