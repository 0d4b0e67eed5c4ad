"""convosd end to end on the real CLI and the local node, through its socket like any client.

The warm transport runs the whole scenario; the one-shot transport a subset (create, an
invitee admitted by our join-request child, inbound and outbound text). A second real CLI
identity (the peer) is run directly. The CLI's ``messages`` never lists reactions, so the
peer watches its own ``conversation stream`` for ours.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from convosd.client import Client
from tests.conftest import CLI_HOST
from tests.helpers import eventually, eventually_async, process_gone
from tests.realnode.conftest import WAIT_S, journal, real_daemon, wait_events
from tests.xmtpnode.harness import LocalNode, Peer, Stream

pytestmark = pytest.mark.timeout(900)


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


async def children_running(client: Client) -> dict[str, Any]:
    """The status's children once both run, each a live process of the real CLI."""
    status: dict[str, Any] = {}

    async def check() -> bool:
        status.update(await client.call("status"))
        return all(c["state"] == "running" and c["pid"] for c in status["children"].values())

    assert await eventually_async(check, within_s=WAIT_S, pause_s=0.5), status["children"]
    worker = (status["cli"]["worker"] or {}).get("pid")
    for name, child in status["children"].items():
        line = cmdline(child["pid"])
        assert "convos-cli" in line, (name, line)
        if CLI_HOST == "single" and worker is not None:  # a role of the warm worker
            assert child["pid"] == worker and "worker.mjs" in line, (name, line)
            continue
        wanted = "stream" if name == "stream" else "process-join-requests"
        assert wanted in line, (name, line)
    return status


async def admit_peer(client: Client, peer: Peer, slug: str) -> str:
    """The peer joins by invite (the real CLI, waiting); our join-request child admits it."""
    joined = await asyncio.to_thread(
        peer.json,
        "conversations",
        "join",
        slug,
        "--profile-name",
        "Peer",
        "--timeout",
        "240",
        timeout_s=300,
    )
    assert joined["status"] == "joined", joined
    inbox = str(joined["inboxId"])
    await wait_events(
        client,
        lambda events: any(
            e["type"] == "member_joined" and e.get("inboxId") == inbox for e in events
        ),
        "member_joined for the peer",
    )
    return inbox


def message_events(events: list[dict[str, Any]], content: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "message" and e.get("content") == content]


async def peer_messages(peer: Peer, cid: str) -> list[dict[str, Any]]:
    listed = await asyncio.to_thread(
        peer.json, "conversation", "messages", cid, "--sync", "--limit", "200"
    )
    return list(listed)


async def peer_sees(peer: Peer, cid: str, message_id: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def check() -> bool:
        for item in await peer_messages(peer, cid):
            if item["id"] == message_id:
                found.update(item)
                return True
        return False

    assert await eventually_async(check, within_s=WAIT_S, pause_s=1.0), message_id
    return found


async def test_warm_end_to_end(xmtp_node: LocalNode, peer: Peer, tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with real_daemon(xmtp_node, state, "warm") as daemon:
        client = await daemon.client()
        try:
            cid = await scenario_warm(client, peer)
            # the daemon stops while the peer is sending, and starts again on its state
            texts = [f"restart {n}" for n in range(4)]
            sending = asyncio.create_task(send_texts(peer, cid, texts))
            await wait_events(client, lambda es: message_events(es, texts[0]), texts[0])
        finally:
            await client.close()
    await sending
    async with real_daemon(xmtp_node, state, "warm") as daemon:
        client = await daemon.client()
        try:
            events = await wait_events(
                client,
                lambda es: all(message_events(es, text) for text in texts),
                "every text sent across the daemon's restart",
            )
            for text in texts:
                assert len(message_events(events, text)) == 1, text
            await children_running(client)
            assert (await client.call("health"))["status"] == "ok"
        finally:
            await client.close()


async def send_texts(peer: Peer, cid: str, texts: list[str]) -> None:
    for text in texts:
        await asyncio.to_thread(peer.json, "conversation", "send-text", cid, text)


async def scenario_warm(client: Client, peer: Peer) -> str:
    status = await client.call("status")
    assert status["env"] == "local" and status["conversationId"] is None
    assert all(c["state"] == "stopped" for c in status["children"].values())

    created = await client.call("conversation.create", {"name": "Real", "profileName": "Bot"})
    cid = created["conversationId"]
    status = await children_running(client)
    assert status["conversationId"] == cid
    health = await client.call("health")
    assert health["status"] == "ok", health

    peer_inbox = await admit_peer(client, peer, created["inviteSlug"])
    info = await client.call("conversation.info")
    assert info["memberCount"] == 2
    assert peer_inbox in {m["inboxId"] for m in info["members"]}

    # inbound text, and our reply as the peer sees it
    await asyncio.to_thread(peer.json, "conversation", "send-text", cid, "hello daemon")
    events = await wait_events(
        client, lambda es: message_events(es, "hello daemon"), "the peer's text"
    )
    (inbound,) = message_events(events, "hello daemon")
    assert inbound["senderInboxId"] == peer_inbox and inbound["contentType"] == "text"
    reply = await client.call(
        "message.send", {"message": "a reply", "replyTo": inbound["messageId"]}
    )
    seen = await peer_sees(peer, cid, reply["messageId"])
    assert seen["contentType"]["typeId"] == "reply", seen

    # outbound text as the peer sees it, sent once even when the key is used twice
    sent = await client.call("message.send", {"message": "from convosd", "idempotencyKey": "k1"})
    again = await client.call("message.send", {"message": "from convosd", "idempotencyKey": "k1"})
    assert again["messageId"] == sent["messageId"]
    seen = await peer_sees(peer, cid, sent["messageId"])
    assert (seen["content"], seen["senderInboxId"]) == ("from convosd", created["inboxId"])
    texts = [m for m in await peer_messages(peer, cid) if m.get("content") == "from convosd"]
    assert len(texts) == 1

    # reactions: ours as the peer's stream delivers it, the peer's as our event
    with peer.stream("conversation", "stream", cid) as watch:
        await stream_listening(client, watch)
        reacted = await client.call(
            "message.react", {"messageId": inbound["messageId"], "emoji": "🎉"}
        )
        assert reacted["action"] == "added"

        def reaction_seen() -> bool:
            return any(
                line.get("id") == reacted["messageId"]
                and line.get("contentType", {}).get("typeId") == "reaction"
                for line in watch.lines
            )

        assert await eventually(reaction_seen, within_s=WAIT_S), (watch.lines, watch.stderr)
    await asyncio.to_thread(
        peer.json, "conversation", "send-reaction", cid, sent["messageId"], "add", "👍"
    )
    events = await wait_events(
        client,
        lambda es: any(e["type"] == "message" and e["contentType"] == "reaction" for e in es),
        "the peer's reaction",
    )
    (reaction,) = [e for e in events if e["type"] == "message" and e["contentType"] == "reaction"]
    assert reaction["replyTo"] == sent["messageId"]
    assert reaction["reaction"] == {"emoji": "👍", "action": "added"} or (
        reaction["reaction"]["emoji"] == "👍"
    ), reaction

    # the stream child SIGKILLed during traffic: nothing lost, nothing twice
    await stream_kill_during_traffic(client, peer, cid)
    return str(cid)


async def stream_listening(client: Client, watch: Stream) -> None:
    """The peer's stream delivers new messages only, from when it subscribed (it prints
    nothing before): send marks until one arrives."""
    count = 0

    async def delivered() -> bool:
        nonlocal count
        if watch.lines:
            return True
        count += 1
        await client.call("message.send", {"message": f"mark {count}"})
        return await eventually(lambda: bool(watch.lines), within_s=3.0)

    assert await eventually_async(delivered, within_s=WAIT_S), watch.stderr


async def stream_kill_during_traffic(client: Client, peer: Peer, cid: str) -> None:
    before = await children_running(client)
    old_pid = before["children"]["stream"]["pid"]
    texts = [f"burst {n}" for n in range(4)]

    sending = asyncio.create_task(send_texts(peer, cid, texts))
    await wait_events(client, lambda es: message_events(es, texts[0]), "the first burst text")
    os.kill(old_pid, signal.SIGKILL)
    assert await eventually(lambda: process_gone(old_pid), within_s=WAIT_S)
    await sending
    events = await wait_events(
        client,
        lambda es: all(message_events(es, text) for text in texts),
        "every burst text after the stream child was killed",
    )
    for text in texts:
        assert len(message_events(events, text)) == 1, text
    ids = [e["messageId"] for e in events if e["type"] == "message"]
    assert len(ids) == len(set(ids))
    after = await children_running(client)
    assert after["children"]["stream"]["pid"] != old_pid
    assert after["children"]["stream"]["restarts"] >= 1, after["children"]["stream"]
    assert (await client.call("health"))["status"] == "ok"


async def test_oneshot_subset(xmtp_node: LocalNode, peer: Peer, tmp_path: Path) -> None:
    async with real_daemon(xmtp_node, tmp_path / "state", "oneshot") as daemon:
        client = await daemon.client()
        try:
            status = await client.call("status")
            assert status["cli"]["transport"] == "oneshot", status["cli"]
            created = await client.call("conversation.create", {"name": "One"})
            cid = created["conversationId"]
            await children_running(client)
            await admit_peer(client, peer, created["inviteSlug"])
            await asyncio.to_thread(peer.json, "conversation", "send-text", cid, "hi one-shot")
            await wait_events(client, lambda es: message_events(es, "hi one-shot"), "inbound")
            sent = await client.call("message.send", {"message": "one-shot out"})
            seen = await peer_sees(peer, cid, sent["messageId"])
            assert seen["content"] == "one-shot out"
            events = await journal(client)
            assert [e["how"] for e in events if e["type"] == "conversation_bound"] == ["created"]
        finally:
            await client.close()
