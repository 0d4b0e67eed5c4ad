"""Idempotency keys when a send's outcome is unknown, through the socket against the CLI double.

The rule under test: a key is released (a retry may send) only when the CLI provably did not
send; after any other failure it stays in flight (repeats get BUSY) until the conversation's
own messages settle it. A message settles at most one key, only own messages sent after the
key's intent count, and ambiguous evidence leaves the key in flight rather than naming a
wrong message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from convosd import errors
from convosd.client import Client
from tests.fakeconvos.network import FakeNetwork
from tests.rpc_harness import RunningDaemon, running_daemon


@pytest.fixture
async def daemon(net: FakeNetwork, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(net, tmp_path / "d", cli_timeout_s=3.0) as running:
        yield running


@pytest.fixture
async def client(daemon: RunningDaemon) -> AsyncIterator[Client]:
    c = await daemon.client()
    yield c
    await c.close()


async def send_until_settled(
    client: Client, params: dict[str, Any], within_s: float = 20
) -> tuple[dict[str, Any], int]:
    """Repeat a keyed send as a client would: wait retryAfterS after each BUSY."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    busy = 0
    while True:
        try:
            return await client.call("message.send", params), busy
        except errors.Busy as exc:
            busy += 1
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(float(exc.extra.get("retryAfterS") or 0.2))


async def network_texts(net: FakeNetwork, daemon: RunningDaemon, cid: str) -> list[str]:
    """Every message of the conversation as the network holds it (read with the instance's
    own identity through the CLI double)."""
    home = daemon.instance.paths.convos_home
    listed = await asyncio.to_thread(
        net.run_json,
        home,
        "conversation",
        "messages",
        cid,
        "--env",
        "dev",
        "--limit",
        "10000",
        "--direction",
        "ascending",
    )
    rows = [] if isinstance(listed, dict) else listed
    return [str(m["content"]) for m in rows if m["contentType"]["typeId"] in ("text", "reply")]


async def sent_events(client: Client) -> list[dict[str, Any]]:
    page = await client.call("events.read", {"after": 0, "limit": 1000, "types": ["message_sent"]})
    return list(page["events"])


async def test_a_timed_out_send_is_not_settled_by_an_earlier_identical_text(
    client: Client, daemon: RunningDaemon, net: FakeNetwork
) -> None:
    """Issue 10 item 1: "ok" under key A, then "ok" under key B times out before sending;
    the retry of B must not be answered with A's message."""
    cid = (await client.call("conversation.create", {"name": "x"}))["conversationId"]
    first = await client.call("message.send", {"message": "ok", "idempotencyKey": "A"})
    net.add_fault("hang", command="conversation:send-text", count=1)
    with pytest.raises(errors.CliTimeout):
        await client.call("message.send", {"message": "ok", "idempotencyKey": "B"})
    retried, _busy = await send_until_settled(client, {"message": "ok", "idempotencyKey": "B"})
    assert retried["messageId"] != first["messageId"]
    assert await network_texts(net, daemon, cid) == ["ok", "ok"]
    sent = await sent_events(client)
    assert [(e["idempotencyKey"], e["messageId"]) for e in sent] == [
        ("A", first["messageId"]),
        ("B", retried["messageId"]),
    ]
    again = await client.call("message.send", {"message": "ok", "idempotencyKey": "B"})
    assert again == retried
    assert await network_texts(net, daemon, cid) == ["ok", "ok"]


@pytest.mark.parametrize(
    ("fault", "params", "raised"),
    [
        ("exit_after_output", {}, errors.CliFailed),
        (
            "exit_after_output",
            {"message": "[ApiError::Api] transport error: dns error"},
            errors.NetworkUnavailable,
        ),
        ("line_after_output", {}, errors.CliFailed),
        ("hang_after_output", {}, errors.CliTimeout),
    ],
    ids=["exit-1", "exit-network", "line-after-json", "hang-after-send"],
)
async def test_a_failure_after_the_cli_sent_never_sends_twice(
    client: Client,
    daemon: RunningDaemon,
    net: FakeNetwork,
    fault: str,
    params: dict[str, Any],
    raised: type[errors.ConvosdError],
) -> None:
    """Issue 10 item 6: the CLI sent, then failed; the retry of the key returns the message
    that went out instead of sending a second copy."""
    cid = (await client.call("conversation.create", {"name": "x"}))["conversationId"]
    net.add_fault(fault, command="conversation:send-text", count=1, **params)
    with pytest.raises(raised):
        await client.call("message.send", {"message": "only once", "idempotencyKey": "K"})
    retried, _busy = await send_until_settled(
        client, {"message": "only once", "idempotencyKey": "K"}
    )
    assert await network_texts(net, daemon, cid) == ["only once"]
    sent = await sent_events(client)
    assert [(e["idempotencyKey"], e["messageId"], e["content"]) for e in sent] == [
        ("K", retried["messageId"], "only once")
    ]


async def test_a_reply_that_failed_after_sending_is_settled_by_the_reply(
    client: Client, daemon: RunningDaemon, net: FakeNetwork
) -> None:
    cid = (await client.call("conversation.create", {"name": "x"}))["conversationId"]
    parent = await client.call("message.send", {"message": "question"})
    net.add_fault("exit_after_output", command="conversation:send-reply", count=1)
    params = {"message": "answer", "replyTo": parent["messageId"], "idempotencyKey": "R"}
    with pytest.raises(errors.CliFailed):
        await client.call("message.send", params)
    retried, _busy = await send_until_settled(client, params)
    texts = await network_texts(net, daemon, cid)
    assert texts == ["question", f'reply to "question" ({parent["messageId"]}): answer']
    sent = [e for e in await sent_events(client) if e["idempotencyKey"] == "R"]
    assert [(e["messageId"], e["replyTo"]) for e in sent] == [
        (retried["messageId"], parent["messageId"])
    ]


async def test_a_cli_that_cannot_start_releases_the_key_at_once(
    client: Client, daemon: RunningDaemon, net: FakeNetwork
) -> None:
    """Provably not sent (the native binding did not load): the retry sends straight away."""
    cid = (await client.call("conversation.create", {"name": "x"}))["conversationId"]
    net.add_fault("binding_missing", command="conversation:send-text", count=1)
    with pytest.raises(errors.CliUnavailable):
        await client.call("message.send", {"message": "later", "idempotencyKey": "U"})
    sent = await client.call("message.send", {"message": "later", "idempotencyKey": "U"})
    assert await network_texts(net, daemon, cid) == ["later"]
    assert [e["messageId"] for e in await sent_events(client)] == [sent["messageId"]]


async def test_keys_in_flight_at_start_are_settled_and_journaled(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """Issue 10 item 15: the daemon stops while the CLI has sent but not exited; the next
    start settles the key from the own messages and journals its message_sent."""
    state = tmp_path / "d"
    async with running_daemon(net, state, shutdown_grace_s=0.5) as first:
        c = await first.client()
        cid = (await c.call("conversation.create", {"name": "x"}))["conversationId"]
        net.add_fault("hang_after_output", command="conversation:send-text", count=1)
        pending = asyncio.create_task(
            c.call("message.send", {"message": "across restarts", "idempotencyKey": "S"})
        )
        for _ in range(200):  # until the double has sent (it then hangs)
            if await network_texts(net, first, cid):
                break
        assert await first.stop() == 0
        with pytest.raises(errors.NotReady):
            await pending
        await c.close()
    async with running_daemon(net, state) as second:
        c = await second.client()
        retried, _busy = await send_until_settled(
            c, {"message": "across restarts", "idempotencyKey": "S"}
        )
        assert await network_texts(net, second, cid) == ["across restarts"]
        sent = await sent_events(c)
        assert [(e["idempotencyKey"], e["messageId"], e["content"]) for e in sent] == [
            ("S", retried["messageId"], "across restarts")
        ]
        await c.close()
