"""Idempotency keys when a send's outcome is unknown, through the socket against the CLI double.

The rule under test: a key is released (a retry may send) only when the CLI provably did not
send; after any other failure it stays in flight (repeats get BUSY) until the conversation's
own messages settle it. A message settles at most one key, only own messages sent after the
key's intent count, and ambiguous evidence leaves the key in flight rather than naming a
wrong message.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from convosd import errors
from convosd.cli.models import CliMessage
from convosd.client import Client
from convosd.sending.idempotency import SKEW_S, Outcome, PendingKey, reconcile
from convosd.storage.schema import MIGRATIONS
from convosd.storage.store import Store
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, network_messages
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
    client: Client, params: dict[str, Any], within_s: float = WAIT_S
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
    rows = await network_messages(net, daemon.instance.paths.convos_home, cid)
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


async def test_an_identical_text_sent_without_a_key_just_before_is_not_taken(
    client: Client, daemon: RunningDaemon, net: FakeNetwork
) -> None:
    """The same as item 1 with the earlier "ok" sent without a key, moments before: it is a
    known send's result, so it neither settles B nor leaves B in doubt."""
    cid = (await client.call("conversation.create", {"name": "x"}))["conversationId"]
    first = await client.call("message.send", {"message": "ok"})
    net.add_fault("hang", command="conversation:send-text", count=1)
    with pytest.raises(errors.CliTimeout):
        await client.call("message.send", {"message": "ok", "idempotencyKey": "B"})
    retried, _busy = await send_until_settled(client, {"message": "ok", "idempotencyKey": "B"})
    assert retried["messageId"] != first["messageId"]
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


DB_LOCKED = "[StorageError::DieselResult] database is locked"


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "unkeyed"])
async def test_a_send_locked_after_it_went_out_is_not_sent_again(
    client: Client, daemon: RunningDaemon, net: FakeNetwork, keyed: bool
) -> None:
    """Issue 25 item 1: the CLI sent, then answered ``database is locked``. A lock retry
    would send a second copy (the answer naming only the second): a send is never run
    again on a lock. Keyed, the key's retry settles on the one message; unkeyed, the
    answer says it may have been sent."""
    cid = (await client.call("conversation.create", {"name": "x"}))["conversationId"]
    net.add_fault("exit_after_output", command="conversation:send-text", count=1, message=DB_LOCKED)
    params: dict[str, Any] = {"message": "only once"}
    if keyed:
        params["idempotencyKey"] = "L"
    answer: dict[str, Any] | errors.ConvosdError
    try:
        answer = await client.call("message.send", params)
    except errors.ConvosdError as exc:
        answer = exc
    assert await network_texts(net, daemon, cid) == ["only once"]
    assert isinstance(answer, errors.CliFailed), answer
    assert answer.code == -32012 and "may have been sent" in answer.message
    assert "database is locked" in str(answer.extra.get("error"))
    status = await client.call("status")
    assert status["cli"]["lockedRetries"] == 0
    if keyed:
        retried, _busy = await send_until_settled(client, params)
        sent = await sent_events(client)
        assert [(e["idempotencyKey"], e["messageId"]) for e in sent] == [
            ("L", retried["messageId"])
        ]
    assert await network_texts(net, daemon, cid) == ["only once"]


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


# --- the rule itself (pure) ---------------------------------------------------------------

OWN, OTHER = "a" * 64, "b" * 64
T0 = 1_800_000_000.0  # an intent time (epoch seconds)


def msg(
    mid: str,
    content: str,
    at: float,
    *,
    sender: str = OWN,
    type_id: str = "text",
    delivery: int = 1,
) -> CliMessage:
    sent = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    return CliMessage.model_validate(
        {
            "id": mid,
            "senderInboxId": sender,
            "contentType": {"authorityId": "xmtp.org", "typeId": type_id},
            "content": content,
            "sentAt": sent.replace("+00:00", "Z"),
            "deliveryStatus": delivery,
        }
    )


def verdicts(
    keys: list[PendingKey],
    messages: list[CliMessage],
    *,
    settled: set[str] | None = None,
    complete: bool = True,
) -> dict[str, tuple[Outcome, str | None]]:
    got = reconcile(keys, messages, own_inbox_id=OWN, settled=settled or set(), complete=complete)
    return {v.key: (v.outcome, v.message_id) for v in got}


def test_only_one_matching_own_message_after_the_intent_settles_a_key() -> None:
    b = PendingKey("B", T0, "ok", None)
    assert verdicts([b], [msg("m1", "ok", T0 + 0.5)]) == {"B": (Outcome.SENT, "m1")}
    # the same millisecond as the intent counts (sentAt is printed in milliseconds)
    assert verdicts([b], [msg("m1", "ok", T0)]) == {"B": (Outcome.SENT, "m1")}
    # earlier than the intent (beyond the clock allowance): not this key's message
    assert verdicts([b], [msg("m0", "ok", T0 - 60)]) == {"B": (Outcome.NOT_SENT, None)}
    # others' messages, other texts and prefixed renderings never match
    for other in (
        msg("x", "ok", T0 + 1, sender=OTHER),
        msg("x", "ok!", T0 + 1),
        msg("x", "Bot: ok", T0 + 1),
        msg("x", "reply to y: ok", T0 + 1, type_id="reply"),
        msg("x", "ok", T0 + 1, type_id="markdown"),
    ):
        assert verdicts([b], [other]) == {"B": (Outcome.NOT_SENT, None)}


def test_a_message_that_settled_another_key_is_never_reused() -> None:
    b = PendingKey("B", T0, "ok", None)
    assert verdicts([b], [msg("mA", "ok", T0 + 1)], settled={"mA"}) == {
        "B": (Outcome.NOT_SENT, None)
    }


def test_ambiguous_evidence_is_unknown_never_a_guess() -> None:
    b = PendingKey("B", T0, "ok", None)
    c = PendingKey("C", T0 + 1, "ok", None)
    unknown = (Outcome.UNKNOWN, None)
    # two matching messages after the intent
    assert verdicts([b], [msg("m1", "ok", T0 + 1), msg("m2", "ok", T0 + 2)]) == {"B": unknown}
    # two keys with the same text could both own the one message
    assert verdicts([b, c], [msg("m1", "ok", T0 + 2)]) == {"B": unknown, "C": unknown}
    # ... but a message sent before C's intent can only be B's (for C it is a near miss
    # until B has taken it): B was sent, C was not
    assert verdicts([b, c], [msg("m1", "ok", T0 + 0.5)]) == {
        "B": (Outcome.SENT, "m1"),
        "C": (Outcome.NOT_SENT, None),
    }
    # two messages and two keys close together: with the clock allowance either message
    # could be either key's
    assert verdicts([b, c], [msg("m1", "ok", T0 + 0.5), msg("m2", "ok", T0 + 1.5)]) == {
        "B": unknown,
        "C": unknown,
    }
    # a matching unsettled message just before the intent (the network's clock may lag)
    assert verdicts([b], [msg("m0", "ok", T0 - SKEW_S / 2)]) == {"B": unknown}
    # a listing that may be incomplete proves nothing was sent
    assert verdicts([b], [], complete=False) == {"B": unknown}
    # a message whose delivery failed
    assert verdicts([b], [msg("m1", "ok", T0 + 1, delivery=2)]) == {"B": unknown}


def test_replies_match_their_parent_and_text_exactly() -> None:
    r = PendingKey("R", T0, "yes", "p1")
    assert verdicts([r], [msg("m", 'reply to "q" (p1): yes', T0 + 1, type_id="reply")]) == {
        "R": (Outcome.SENT, "m")
    }
    assert verdicts([r], [msg("m", "reply to p1: yes", T0 + 1, type_id="reply")]) == {
        "R": (Outcome.SENT, "m")
    }
    for content in ('reply to "q" (p2): yes', 'reply to "q" (p1): no, yes', "yes"):
        type_id = "text" if content == "yes" else "reply"
        assert verdicts([r], [msg("m", content, T0 + 1, type_id=type_id)]) == {
            "R": (Outcome.NOT_SENT, None)
        }


def test_the_migration_keeps_done_keys_and_lets_a_message_settle_one(tmp_path: Path) -> None:
    """A store written before migration 3, with the defect's trace (two keys done with the
    same message), opens; the message then settles no further key."""
    db = sqlite3.connect(tmp_path / "convosd.db", isolation_level=None)
    for script in MIGRATIONS[:2]:
        db.executescript(script)
    db.execute("PRAGMA user_version = 2")
    for key, state, body in (
        ("A", "done", '{"messageId": "m1"}'),
        ("B", "done", '{"messageId": "m1"}'),
        ("C", "in_flight", '{"message": "ok", "replyTo": null}'),
    ):
        db.execute("INSERT INTO idempotency VALUES (?, ?, ?, ?)", (key, state, T0, body))
    db.close()
    store = Store.open(tmp_path)
    try:
        assert store.keys.get("B") == ("done", T0, '{"messageId": "m1"}')
        assert store.keys.settled_by(["m1", "m2"]) == {"m1"}
        assert [row[0] for row in store.keys.in_flight()] == ["C"]
        with pytest.raises(sqlite3.IntegrityError):
            store.keys.settle("C", "m1", '{"messageId": "m1"}')
        store.keys.settle("C", "m2", '{"messageId": "m2"}')
        assert store.keys.settled_by(["m2"]) == {"m2"}
    finally:
        store.close()
