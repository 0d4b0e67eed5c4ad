"""The double held to the real CLI: one daemon scenario on the CLI double and on the real CLI
against the local node; what the daemon journals must match (event types, their fields, their
order; ids and times left out). Remaining differences are listed in tests/fakeconvos/README.md.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from convosd.client import Client
from tests.fakeconvos.network import FakeNetwork
from tests.realnode.conftest import journal, real_daemon, wait_events
from tests.realnode.test_daemon_real import message_events
from tests.rpc_harness import member_cli, running_daemon
from tests.xmtpnode.harness import LocalNode, Peer

pytestmark = pytest.mark.timeout(600)

#: what may differ run to run: ids, times, sequence numbers, the journal's own id
VARIABLE = {
    "seq",
    "at",
    "conversationId",
    "messageId",
    "senderInboxId",
    "inboxId",
    "sentAt",
    "replyTo",
    "code",
    "creatorInboxId",
    "journalId",
}


#: ids inside display strings ("reacted 👍 to <message id>")
ID_IN_TEXT = re.compile(r"\b[0-9a-f]{64}\b|\b[0-9a-f]{32}\b")


def masked(name: str, value: Any) -> str:
    if name in VARIABLE and value is not None:
        return "<v>"
    return ID_IN_TEXT.sub("<id>", repr(value))


def projection(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Each event as (type, its fields and their values once the variable ones are masked)."""
    shown = []
    for event in events:
        fields = tuple(
            sorted((name, masked(name, value)) for name, value in event.items() if name != "type")
        )
        shown.append((event["type"], fields))
    return shown


Join = Callable[[str], Awaitable[str]]
Send = Callable[[str, str], Awaitable[Any]]
React = Callable[[str, str, str], Awaitable[Any]]


async def scenario(client: Client, join: Join, send: Send, react: React) -> list[dict[str, Any]]:
    created = await client.call("conversation.create", {"name": "Same", "profileName": "Bot"})
    cid = created["conversationId"]
    await join(created["inviteSlug"])
    await wait_events(
        client, lambda es: any(e["type"] == "member_joined" for e in es), "member_joined"
    )
    await send(cid, "hello daemon")
    await wait_events(client, lambda es: message_events(es, "hello daemon"), "inbound text")
    sent = await client.call("message.send", {"message": "hello peer"})
    await react(cid, sent["messageId"], "👍")
    await wait_events(
        client,
        lambda es: any(e.get("contentType") == "reaction" for e in es),
        "the peer's reaction",
    )
    return await journal(client)


async def test_the_double_journals_what_the_real_cli_does(
    xmtp_node: LocalNode, peer: Peer, tmp_path: Path
) -> None:
    async def real_join(slug: str) -> str:
        joined = await asyncio.to_thread(
            peer.json, "conversations", "join", slug, "--timeout", "240", timeout_s=300
        )
        return str(joined["inboxId"])

    async def real_send(cid: str, text: str) -> Any:
        return await asyncio.to_thread(peer.json, "conversation", "send-text", cid, text)

    async def real_react(cid: str, mid: str, emoji: str) -> Any:
        return await asyncio.to_thread(
            peer.json, "conversation", "send-reaction", cid, mid, "add", emoji
        )

    async with real_daemon(xmtp_node, tmp_path / "real", "warm") as daemon:
        client = await daemon.client()
        try:
            real = await scenario(client, real_join, real_send, real_react)
        finally:
            await client.close()

    net = FakeNetwork(tmp_path / "net")
    bob = member_cli(net, tmp_path / "bob")

    async def fake_join(slug: str) -> str:
        joined = await bob.join(slug, profile_name=None, no_wait=True)
        return str(getattr(joined, "inbox_id", ""))

    async def fake_send(cid: str, text: str) -> Any:
        return await bob.send_text(cid, text)

    async def fake_react(cid: str, mid: str, emoji: str) -> Any:
        return await bob.send_reaction(cid, mid, emoji)

    try:
        async with running_daemon(net, tmp_path / "fake", convos={"dm_policy": "open"}) as daemon:
            client = await daemon.client()
            try:
                fake = await scenario(client, fake_join, fake_send, fake_react)
            finally:
                await client.close()
    finally:
        await bob.aclose()

    assert projection(fake) == projection(real), (
        "\n".join(
            f"double {f}\nreal   {r}"
            for f, r in zip(projection(fake), projection(real), strict=False)
        )
        + f"\n(double {len(fake)} events, real {len(real)})"
    )
