"""History search (events.search) and message.context: the index kept with the journal
(append, retention, reset, upgrade), the query language, and both methods on the socket."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from convosd import errors
from convosd.client import Client
from convosd.events import NewEvent, event
from convosd.rpc.schemas import ContextResult, SearchResult
from convosd.search import MAX_TERMS, QueryError, match_expression, parse
from convosd.storage.journal import Journal
from convosd.storage.schema import MIGRATIONS
from convosd.storage.store import Store
from tests.fakeconvos.network import FakeNetwork
from tests.rpc_harness import RunningDaemon, running_daemon

ALICE, BOB = "a" * 64, "b" * 64


def message(
    i: int,
    content: str | None,
    *,
    sender: str = ALICE,
    content_type: str = "text",
    reply_to: str | None = None,
    attachment: dict[str, Any] | None = None,
) -> NewEvent:
    return event(
        "message",
        "c" * 32,
        messageId=f"{i:064x}",
        senderInboxId=sender,
        senderName=None,
        contentType=content_type,
        content=content,
        sentAt="2026-11-23T12:00:00.000Z",
        replyTo=reply_to,
        reaction=None,
        attachment=attachment,
    )


def sent(i: int, content: str) -> NewEvent:
    return event(
        "message_sent",
        "c" * 32,
        messageId=f"{i:064x}",
        content=content,
        replyTo=None,
        idempotencyKey=None,
        contentType="text",
        attachment=None,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path)
    yield s
    s.close()


def find(journal: Journal, query: str, **kw: Any) -> list[int]:
    return [hit.seq for hit in journal.search(parse(query), **kw)]


# --- the query language (pure) ------------------------------------------------------------


def test_every_term_is_quoted_so_nothing_is_fts5_syntax() -> None:
    assert match_expression("deploy friday") == '"deploy" AND "friday"'
    assert match_expression('"the release" notes') == '"the release" AND "notes"'
    assert match_expression("deplo*") == '"deplo" *'
    assert match_expression("NEAR(a b) OR -c") == '"NEAR(a" AND "b)" AND "OR" AND "-c"'
    assert match_expression('say "hi') == '"say" AND "hi"'
    assert match_expression('a"b') == '"a" AND "b"'
    for nothing in ("***", '""', "- ( ) :", "   "):
        with pytest.raises(QueryError, match="no word"):
            match_expression(nothing)
    with pytest.raises(QueryError, match="U\\+0000"):
        match_expression("a\x00b")
    with pytest.raises(QueryError, match="terms"):
        match_expression(" ".join(f"w{i}" for i in range(MAX_TERMS + 1)))


# --- the index with the journal -------------------------------------------------------------


def test_finds_ranks_and_snippets(store: Store) -> None:
    journal = Journal(store)
    journal.append(
        [
            message(1, "the deploy is on friday"),
            message(2, "deploy deploy deploy: the deploy checklist"),
            message(3, "lunch at noon"),
            sent(4, "I will check the Café deploy"),
        ]
    )
    hits = journal.search(parse("deploy"))
    assert hits[0].seq == 2 and {h.seq for h in hits} == {1, 2, 4}
    assert hits == sorted(hits, key=lambda h: -h.score)  # best first
    assert "«deploy»" in hits[0].snippet
    assert find(journal, "cafe") == [4]  # accents and case do not matter
    assert find(journal, "deplo*") and find(journal, "dep*") == find(journal, "deploy")
    assert find(journal, '"deploy is on"') == [1]
    assert find(journal, "deploy friday") == [1]  # every term
    assert find(journal, "nowhere") == []


def test_filters_by_type_sender_seq_and_limit(store: Store) -> None:
    journal = Journal(store)
    journal.append([message(i, f"report number {i}", sender=ALICE) for i in range(1, 6)])
    journal.append([message(i, f"report number {i}", sender=BOB) for i in range(6, 9)])
    journal.append([sent(9, "report sent")])
    assert sorted(find(journal, "report")) == list(range(1, 10))
    assert find(journal, "report", types=frozenset({"message_sent"})) == [9]
    assert sorted(find(journal, "report", types=frozenset({"message"}))) == list(range(1, 9))
    assert sorted(find(journal, "report", sender=BOB)) == [6, 7, 8]
    assert sorted(find(journal, "report", after=3, before=7)) == [4, 5, 6]
    assert len(find(journal, "report", limit=4)) == 4


def test_what_is_text(store: Store) -> None:
    """A reply's own text (not the quote), an attachment's filename; not a reaction."""
    journal = Journal(store)
    ref = "e" * 64
    journal.append(
        [
            message(
                1,
                f'reply to "quoted words here" ({ref}): my answer',
                content_type="reply",
                reply_to=ref,
            ),
            message(2, f"reacted 👍 to {ref}", content_type="reaction", reply_to=ref),
            message(
                3,
                "[attachment: x]",
                content_type="remoteStaticAttachment",
                attachment={"filename": "budget-2027.pdf", "mimeType": None, "size": None},
            ),
            message(4, None),
        ]
    )
    assert find(journal, "answer") == [1]
    assert find(journal, "quoted") == []
    assert find(journal, "reacted") == []
    assert find(journal, "budget 2027") == [3]
    assert find(journal, "attachment") == []
    assert store.search.count() == 2


def test_trimmed_events_leave_the_index(store: Store) -> None:
    now = [1000.0]
    journal = Journal(store, max_events=3, max_age_s=100, clock=lambda: now[0])
    journal.append([message(i, f"old note {i}") for i in range(1, 6)])
    assert journal.trim() == 2
    assert sorted(find(journal, "note")) == [3, 4, 5]
    now[0] += 200  # by age: the rest
    journal.append([message(6, "new note")])
    assert journal.trim() == 3
    assert find(journal, "note") == [6]
    assert store.search.count() == 1


async def test_trim_in_steps_keeps_index_and_journal_together(store: Store) -> None:
    journal = Journal(store, max_events=10)
    journal.append([message(i, f"word {i}") for i in range(1, 2501)])
    await journal.trim_in_steps()
    assert store.search.count() == 10
    assert sorted(find(journal, "word", limit=100)) == list(range(2491, 2501))


def test_reset_empties_the_index(store: Store) -> None:
    journal = Journal(store)
    journal.append([message(1, "before the reset")])
    journal.reset()
    assert store.search.count() == 0 and find(journal, "reset") == []
    journal.append([message(2, "after the reset")])
    assert find(journal, "reset") == [1]  # the new journal's seq 1


def test_an_upgraded_store_indexes_its_existing_messages(tmp_path: Path) -> None:
    """A store at the schema before search: the migration indexes what its journal has."""
    path = tmp_path / "convosd.db"
    before = len(MIGRATIONS) - 1
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        for script in MIGRATIONS[:before]:
            db.executescript(script)
        db.execute(f"PRAGMA user_version = {before}")
        db.execute("INSERT INTO meta VALUES ('journal_id', 'j1'), ('last_seq', '3')")
        db.executemany(
            "INSERT INTO events (seq, type, at, body) VALUES (?, ?, 0, ?)",
            [
                (1, "message", '{"contentType": "text", "content": "old findable text"}'),
                (2, "member_joined", '{"inboxId": "findable"}'),
                (3, "message_sent", '{"contentType": "text", "content": "findable sent"}'),
            ],
        )
    store = Store.open(tmp_path)
    try:
        journal = Journal(store)
        assert sorted(find(journal, "findable")) == [1, 3]
    finally:
        store.close()


def test_a_held_message_is_found_only_once_released(tmp_path: Path) -> None:
    from convosd.cli.models import CliMessage
    from convosd.ingest import Fate
    from convosd.pairing import SenderPolicy

    store = Store.open(tmp_path)
    try:
        journal = Journal(store)
        policy = SenderPolicy(
            store, journal, policy="pairing", owners=frozenset, conversation_id=lambda: "c" * 32
        )
        held = CliMessage.model_validate(
            {
                "id": "f" * 64,
                "senderInboxId": ALICE,
                "content": "xylophone secret",
                "contentType": {"authorityId": "xmtp.org", "typeId": "text"},
                "sentAt": "2026-11-23T12:00:00.000Z",
            }
        )
        decision = policy(held)
        assert decision.fate is Fate.HELD
        journal.append(decision.events, writes=decision.writes)  # as the ingest commits it
        assert find(journal, "xylophone") == []
        policy.approve(decision.events[0].fields["code"])
        (hit,) = journal.search(parse("xylophone"))
        assert hit.type == "message" and '"messageId":"' + "f" * 64 in hit.body.replace(" ", "")
    finally:
        store.close()


def test_context_around_a_message(store: Store) -> None:
    journal = Journal(store)
    journal.append([message(i, f"line {i}") for i in range(1, 11)])
    journal.append([sent(11, "mine")])
    earlier, at, later = journal.around(f"{5:064x}", 2, 3) or ([], None, [])
    assert [e.seq for e in earlier] == [3, 4] and at.seq == 5
    assert [e.seq for e in later] == [6, 7, 8]
    earlier, at, later = journal.around(f"{11:064x}", 1, 5) or ([], None, [])
    assert ([e.seq for e in earlier], at.seq, later) == ([10], 11, [])
    assert journal.around("9" * 64, 1, 1) is None


# --- on the socket --------------------------------------------------------------------------


@pytest.fixture
async def daemon(net: FakeNetwork, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(net, tmp_path / "d") as running:
        yield running


@pytest.fixture
async def client(daemon: RunningDaemon) -> AsyncIterator[Client]:
    c = await daemon.client()
    yield c
    await c.close()


async def test_search_and_context_on_the_socket(daemon: RunningDaemon, client: Client) -> None:
    journal = daemon.instance.journal
    journal.append([message(i, f"deploy step {i}") for i in range(1, 5)])
    journal.append([message(5, "ship it on friday", sender=BOB)])
    found = await client.call("events.search", {"query": "friday"})
    SearchResult.model_validate(found)
    (hit,) = found["results"]
    assert hit["event"]["seq"] == 5 and hit["event"]["senderInboxId"] == BOB
    assert hit["snippet"] == "ship it on «friday»" and hit["score"] > 0
    assert found["lastSeq"] == 5
    two = await client.call("events.search", {"query": "deploy", "limit": 2})
    assert len(two["results"]) == 2
    context = await client.call("message.context", {"messageId": f"{3:064x}", "before": 1})
    ContextResult.model_validate(context)
    assert [e["seq"] for e in context["before"]] == [2] and context["message"]["seq"] == 3
    assert [e["seq"] for e in context["after"]] == [4, 5]
    with pytest.raises(errors.NotFound):
        await client.call("message.context", {"messageId": "9" * 64})


HOSTILE = [
    '"',
    '"""',
    "'",
    "NEAR",
    "NEAR(deploy step, 2)",
    "deploy NEAR step",
    "*",
    "de*",
    "*ploy",
    "-deploy",
    "deploy -step",
    "(deploy",
    "deploy)",
    "((()))",
    "step:4",
    "text:deploy",
    "{text}: deploy",
    "^deploy",
    "deploy AND OR NOT",
    "AND",
    "deploy + step",
    "\\",
    "%_",
    "a\x00b",
    "\x00",
    "x" * 1024,
    "x" * 10_000,
    "deploy " * 40,
    "🚀",
    "\u200b",
]


async def test_hostile_queries_give_results_or_invalid_params(
    daemon: RunningDaemon, client: Client
) -> None:
    daemon.instance.journal.append([message(i, f"deploy step {i}") for i in range(1, 5)])
    for query in HOSTILE:
        try:
            found = await client.call("events.search", {"query": query})
        except errors.InvalidParams as exc:
            assert "query" in str(exc.message) or exc.extra.get("errors"), query
            continue
        except errors.ConvosdError as exc:  # pragma: no cover - the failure this test is for
            pytest.fail(f"{query[:40]!r}: {exc.kind} {exc.message}")
        SearchResult.model_validate(found)
    with pytest.raises(errors.InvalidParams) as info:
        await client.call("events.search", {"query": "- ( )"})
    assert info.value.extra["errors"] == [
        {"param": "query", "problem": "query has no word to search for"}
    ]
    assert (await client.call("events.search", {"query": "(deploy) -step"}))["results"]


def test_score_counts_terms_phrases_prefixes_and_length() -> None:
    from convosd.search import score, tokens

    def of(terms: str, text: str, average: float) -> float:
        return score(parse(terms).terms, tokens(text), average)

    assert of("deploy", "deploy deploy now", 3) > of("deploy", "deploy now please", 3)
    assert of("deploy", "deploy now", 3) > of("deploy", "deploy now and then later", 3)
    assert of('"Café deploy"', "the CAFÉ deploy", 3) > 0 == of('"cafe deploy"', "deploy cafe", 3)
    assert of("depl*", "deployed", 1) > 0 == of("depl*", "redeploy", 1)
    assert tokens("Crème_brûlée x2") == ["creme", "brulee", "x2"]


def test_ranking_is_over_the_newest_matches_and_before_pages_back(store: Store) -> None:
    from convosd.storage.search import CANDIDATES

    journal = Journal(store)
    journal.append([message(1, "alpha alpha alpha")])  # the best match, and the oldest
    journal.append([message(i, f"alpha and filler words {i}") for i in range(2, CANDIDATES + 3)])
    newest = find(journal, "alpha", limit=100)
    assert 1 not in newest and max(newest) == CANDIDATES + 2
    assert find(journal, "alpha", before=3, limit=2) == [1, 2]


def test_rebuild_indexes_what_the_journal_holds(store: Store) -> None:
    journal = Journal(store, search_index=False)
    journal.append([message(1, "unindexed words"), sent(2, "mine too")])
    assert find(journal, "words") == []
    with store.transaction():
        store.search.rebuild()
    assert find(journal, "words") == [1] and find(journal, "mine") == [2]
