"""events.read splices the stored bodies: its answer is byte for byte the answer of
decoding every body and encoding the whole answer again (what it did before)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convosd.api.events import EventsApi
from convosd.events import event
from convosd.jsonutil import dumps
from convosd.rpc import protocol
from convosd.rpc import schemas as s
from convosd.rpc.dispatch import CallContext
from convosd.rpc.subscriptions import SubscriptionHub
from convosd.storage.journal import Journal
from convosd.storage.store import Store

TEXTS = [
    "plain",
    "é ☃ 😀 and \u2028",
    "control \x00 \x1f \x7f",
    'quote " backslash \\ and \\ud800 as text',
    "lone \ud800 surrogate",
    "1e-5 and 0.00001, :1e-7,",
    "",
]


def message(i: int, content: str | None, sent_at: str = "2026-11-23T12:00:00.000Z") -> Any:
    return event(
        "message",
        "c" * 32,
        messageId=f"{i:064x}",
        senderInboxId="a" * 64,
        senderName="Zoë" if i % 2 else None,
        contentType="text",
        content=content,
        sentAt=sent_at,
        replyTo=None,
        reaction={"emoji": "👍", "action": "added"} if i % 3 == 0 else None,
        attachment=None,
    )


def before(result: dict[str, Any], request_id: int) -> bytes:
    """The answer as it was built before: bodies decoded, the whole encoded again."""
    decoded = {**result, "events": [json.loads(dumps(e)) for e in result["events"]]}
    return (dumps(protocol.result_object(request_id, decoded)) + "\n").encode()


async def read_line(journal: Journal, **params: Any) -> tuple[dict[str, Any], bytes]:
    api = EventsApi(journal, SubscriptionHub(journal, queue_limit=10))
    ctx = CallContext(connection=None, peer_uid=None, is_admin=True)
    result = await api.read(ctx, s.ReadParams(**params))
    s.ReadResult.model_validate(json.loads(dumps(result)))  # the documented shape
    return result, protocol.encode(protocol.result_object(7, result))


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    store = Store.open(tmp_path)
    yield Journal(store)
    store.close()


@pytest.mark.parametrize("with_lone_surrogate", [False, True])
async def test_read_answers_byte_for_byte_as_before(
    journal: Journal, with_lone_surrogate: bool
) -> None:
    texts = [t for t in TEXTS if with_lone_surrogate or "\ud800" not in t.replace("\\", "")]
    journal.append([message(i, text) for i, text in enumerate(texts)])
    journal.append([event("conversation_locked", "c" * 32, locked=True)])
    result, line = await read_line(journal, limit=1000)
    assert line == before(result, 7)
    result, line = await read_line(journal, after=2, limit=3, types=["message"])
    assert line == before(result, 7)
    assert [json.loads(line)["result"]["events"][0]["seq"]] == [3]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.one_of(st.none(), st.text()), min_size=1, max_size=5))
async def test_any_content_reads_as_before(tmp_path: Path, contents: list[str | None]) -> None:
    store = Store.open(tmp_path)
    try:
        journal = Journal(store)
        journal.reset()
        journal.append([message(i, text) for i, text in enumerate(contents)])
        result, line = await read_line(journal, limit=1000)
        assert line == before(result, 7)
    finally:
        store.close()
