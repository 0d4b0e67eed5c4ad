"""History search (events.search) and message.context: the index kept with the journal
(append, retention, reset, upgrade), the query language, and both methods on the socket."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convosd import errors
from convosd.client import Client
from convosd.events import NewEvent, event
from convosd.rpc.schemas import ContextResult, SearchResult
from convosd.search import MAX_TERMS, QueryError, match_expression, parse
from convosd.storage.journal import Journal
from convosd.storage.schema import MIGRATIONS
from convosd.storage.search import TAIL, Hit
from convosd.storage.store import Store
from tests.fakeconvos.network import FakeNetwork
from tests.rpc_harness import RunningDaemon, running_daemon

ALICE, BOB = "a" * 64, "b" * 64
#: the schema version that made the search index
SEARCH_SCHEMA = 5


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
    before = SEARCH_SCHEMA - 1
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


def test_a_store_with_the_first_index_is_upgraded(tmp_path: Path) -> None:
    """A store at schema 5 (every event indexed in FTS5 as it was journaled, no prefix
    index): the table is made again with its new options and finds what it found; the
    journal goes on with a tail."""
    path = tmp_path / "convosd.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        for script in MIGRATIONS[:SEARCH_SCHEMA]:
            db.executescript(script)
        db.execute(f"PRAGMA user_version = {SEARCH_SCHEMA}")
        db.execute("INSERT INTO meta VALUES ('journal_id', 'j1'), ('last_seq', '3')")
        for seq, type_, body in [
            (1, "message", '{"contentType": "text", "content": "old findable text"}'),
            (2, "member_joined", '{"inboxId": "findable"}'),
            (3, "message_sent", '{"contentType": "text", "content": "findable sent"}'),
        ]:  # as that version journaled: the event, then its row in the index
            db.execute("INSERT INTO events VALUES (?, ?, 0, ?)", (seq, type_, body))
            db.execute(
                "INSERT INTO search (rowid, text, sender, kind) SELECT seq, text, sender, "
                "kind FROM search_source WHERE seq = ? AND text IS NOT NULL",
                (seq,),
            )
        (old,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'search'").fetchone()
        assert "prefix" not in old
        assert db.execute("SELECT COUNT(*) FROM search").fetchone()[0] == 2
    store = Store.open(tmp_path)
    try:
        (definition,) = store_sql(store)
        assert "prefix = '2 3'" in definition and "columnsize = 0" in definition
        assert automerge(store) == 8
        assert store.search.indexed_seq() == 3
        journal = Journal(store)
        assert sorted(find(journal, "findable")) == [1, 3]
        assert sorted(find(journal, "fi*")) == [1, 3] and find(journal, "findab*", after=1) == [3]
        journal.append([message(4, "new findable one")])
        assert store.search.indexed_seq() == 3  # the new one is the tail
        assert sorted(find(journal, "findable")) == [1, 3, 4]
    finally:
        store.close()


def store_sql(store: Store) -> tuple[str]:
    """The FTS5 table's definition."""
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        row = db.execute("SELECT sql FROM sqlite_master WHERE name = 'search'").fetchone()
    return (str(row[0]),)


def automerge(store: Store) -> int | None:
    """The FTS5 table's automerge setting; None: FTS5's default (4)."""
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        row = db.execute("SELECT v FROM search_config WHERE k = 'automerge'").fetchone()
    return None if row is None else int(row[0])


def test_a_held_message_is_found_only_once_released(tmp_path: Path) -> None:
    from convosd.cli.models import CliMessage
    from convosd.conversation.hook import Fate
    from convosd.conversation.pairing import SenderPolicy

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
    journal.append([message(i, f"unindexed words {i}") for i in range(1, TAIL + 1)])
    journal.append([sent(TAIL + 1, "mine too")])
    assert store.search.indexed_seq() == 0  # all of it the tail (found in the journal)
    with store.transaction():
        store.search.rebuild()
    assert store.search.indexed_seq() == TAIL + 1
    assert len(find(journal, "words", limit=100)) == 100 and find(journal, "mine") == [TAIL + 1]


# --- snippets and tokens (pure) -------------------------------------------------------------


def test_snippets_mark_matches_in_the_best_window_and_keep_the_text() -> None:
    from convosd.search import snippet

    def cut(query: str, text: str, size: int = 16) -> str:
        return snippet(text, parse(query).terms, size)

    assert cut("friday", "ship it on Friday!") == "ship it on «Friday»!"
    assert cut('"deploy is on"', "the deploy is on friday.") == "the «deploy is on» friday."
    assert cut("dep*", "deploy, deploy") == "«deploy», «deploy»"
    assert cut("cafe", "the Cafe\u0301 is open") == "the «Cafe\u0301» is open"  # the accent too
    words = " ".join(f"w{i}" for i in range(40))
    assert cut("target", f"{words} target {words}", 6) == "…w38 w39 «target» w0 w1 w2…"
    assert cut("target", f"target {words}", 4) == "«target» w0 w1 w2…"
    # the window with both terms wins over the first match of one
    assert cut("alpha beta", f"alpha {words} beta x alpha", 5) == "…w38 w39 «beta» x «alpha»"
    assert cut("nothing", "no match here") == "no match here"
    assert cut("x", "") == "" and cut("x", " !? ") == ""


def test_spans_are_the_tokens_with_where_they_are() -> None:
    from convosd.search import spans, tokens

    for text in (
        "Hello, World! it_s 42x",
        "Crème brûlée, s'il vous plaît",
        "e\u0301te\u0301 İstanbul Straße ǅemal",
        "日本語 テスト 🚀rocket",
        "a\u200bb -- ",
    ):
        found = spans(text)
        assert [word for word, _, _ in found] == tokens(text), text
        for word, start, end in found:
            assert tokens(text[start:end]) == [word], (text, word)


# --- the index's tail: the newest events, searched in the journal ---------------------------


def test_new_messages_are_found_before_and_after_they_are_indexed(store: Store) -> None:
    journal = Journal(store)
    for i in range(1, TAIL):
        journal.append([message(i, f"deploy step {i} of the deployment")])
    assert store.search.indexed_seq() == 0  # all in the tail
    tail_hits = journal.search(parse("deploy*"), limit=100)
    assert len(tail_hits) == 100 and store.search.count() == TAIL - 1
    journal.append([message(TAIL, "the last deploy")])  # the TAIL-th: all indexed in FTS5
    assert store.search.indexed_seq() == TAIL == journal.indexed_seq
    assert find(journal, "last") == [TAIL]
    assert journal.search(parse("deploy*"), before=TAIL, limit=100) == tail_hits
    journal.append([message(TAIL + 1, "one more deploy")])  # the next tail
    assert store.search.indexed_seq() == TAIL
    assert find(journal, "deploy", limit=3) == [TAIL + 1, TAIL, TAIL - 1]
    assert store.search.count() == TAIL + 1


def test_a_failed_append_indexes_nothing(store: Store) -> None:
    from convosd.storage.store import StoreError
    from convosd.storage.work import SettleKey

    journal = Journal(store)
    journal.append([message(i, f"note {i}") for i in range(1, TAIL)])
    with store.transaction():
        store.keys.intent("k1", 1.0, "{}")
        store.keys.intent("k2", 1.0, "{}")
    journal.append([message(TAIL, "settles k1")], writes=(SettleKey("k1", "m1", "{}"),))
    assert journal.indexed_seq == TAIL
    journal.append([message(i, f"note {i}") for i in range(TAIL + 1, 2 * TAIL)])
    assert find(journal, "note", limit=1) == [2 * TAIL - 1]  # the tail, read into memory
    with pytest.raises(StoreError):  # m1 settled k1 already: the batch rolls back
        journal.append([message(2 * TAIL, "lost note")], writes=(SettleKey("k2", "m1", "{}"),))
    assert journal.indexed_seq == store.search.indexed_seq() == TAIL
    assert find(journal, "lost") == [] and store.search.count() == 2 * TAIL - 1
    journal.append([message(2 * TAIL, "kept note")])  # the same seq, another event
    assert journal.indexed_seq == 2 * TAIL
    assert find(journal, "kept") == [2 * TAIL] and find(journal, "lost") == []


def test_the_tail_follows_resets_and_trims(store: Store) -> None:
    now = [1000.0]
    journal = Journal(store, max_events=2, clock=lambda: now[0])
    journal.append([message(1, "before the reset")])
    assert find(journal, "before") == [1]  # the tail is in memory now
    journal.reset()
    journal.append([message(2, "after: word word word")])  # seq 1 again, new journal
    assert find(journal, "before") == [] and find(journal, "after") == [1]
    journal.append([message(i, f"word {i}") for i in range(3, 5)])
    assert find(journal, "word", limit=1) == [1]  # the best match
    assert journal.trim() == 1
    assert find(journal, "after") == [] and find(journal, "word", limit=1) == [3]


def test_prefixes_find_what_they_found(store: Store) -> None:
    """2 and 3 characters have prefix indexes, longer prefixes do not: the same words are
    found either way, in the tail (no prefix index) and in the FTS5 table."""
    texts = ["deploy now", "the Déploiement", "deployment done", "a depot", "redeploy it"]
    journal = Journal(store)
    journal.append([message(i, text) for i, text in enumerate(texts, 1)])
    expected = {"de*": [1, 2, 3, 4], "dep*": [1, 2, 3, 4], "depl*": [1, 2, 3], "deplo*": [1, 2, 3]}
    expected |= {"deploy*": [1, 3], "DEPLOYM*": [3], "depo*": [4], "d*": [1, 2, 3, 4]}
    for query, seqs in expected.items():
        assert sorted(find(journal, query)) == seqs, query
    journal.append([message(i, "filler") for i in range(6, TAIL + 6)])
    assert journal.indexed_seq == TAIL + 5  # all of it in the FTS5 table now
    for query, seqs in expected.items():
        assert sorted(find(journal, query)) == seqs, query


def test_the_tail_table_is_the_index_table_without_its_prefix_indexes(store: Store) -> None:
    """And the scratch table that cuts text into search_terms has its tokenizer."""
    from convosd.storage.search import SCRATCH_TABLE, TAIL_TABLE

    (definition,) = store_sql(store)

    def options(sql: str) -> list[str]:
        inside = re.sub(r"\s+", " ", sql[sql.index("(") + 1 : sql.rindex(")")])
        return sorted(part.strip() for part in inside.split(","))

    assert "prefix = '2 3'" in options(definition)
    assert [o for o in options(definition) if not o.startswith("prefix")] == options(TAIL_TABLE)
    (tokenizer,) = [o for o in options(definition) if o.startswith("tokenize")]
    assert tokenizer in options(SCRATCH_TABLE)


def test_a_journal_opened_with_a_long_tail_indexes_it_at_once(store: Store) -> None:
    """Events journaled without the index (more than an append leaves unindexed) are
    indexed when the journal is opened with it, not copied into memory by a search."""
    Journal(store, search_index=False).append(
        [message(i, f"old words {i}") for i in range(1, TAIL + 6)]
    )
    assert store.search.indexed_seq() == 0
    journal = Journal(store)
    assert journal.indexed_seq == store.search.indexed_seq() == TAIL + 5
    assert len(find(journal, "words", limit=100)) == 100


# --- long prefixes: the OR of the terms they start (search_terms) --------------------------


def table_terms(store: Store) -> tuple[set[str], set[str]]:
    """``search_terms``, and FTS5's own list of the terms of the table's text longer than
    its prefix indexes."""
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        kept = {str(t) for (t,) in db.execute("SELECT term FROM search_terms")}
        db.execute("CREATE VIRTUAL TABLE temp.v USING fts5vocab(main, search, col)")
        fts5 = {
            str(t)
            for (t,) in db.execute(
                "SELECT term FROM temp.v WHERE col = 'text' AND length(term) > 3"
            )
        }
    return kept, fts5


def plain_prefix(store: Store, prefix: str) -> list[int]:
    """The rows of the FTS5 table a prefix finds as FTS5 searches it (no expansion)."""
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        rows = db.execute(
            "SELECT rowid FROM search WHERE search MATCH ? ORDER BY rowid DESC",
            ("{text} : (" + match_expression(prefix + "*") + ")",),
        )
        return [int(seq) for (seq,) in rows]


def fill(journal: Journal, texts: list[str], first: int = 1) -> None:
    """``texts`` and filler up to a whole batch: all of it in the FTS5 table."""
    filler = [f"filler {i}" for i in range(-len(texts) % TAIL)]
    journal.append([message(first + i, t) for i, t in enumerate(texts + filler)])
    assert journal.indexed_seq == journal.last_seq


def test_a_long_prefix_is_the_or_of_the_terms_it_starts(store: Store) -> None:
    """A prefix longer than the prefix indexes is searched in the FTS5 table as the OR of
    the terms it starts; a prefix of other text, a prefix that starts a term that is not
    ASCII or more than EXPAND_MAX terms is searched as a prefix. Both find the same."""
    from convosd.storage.search import EXPAND_MAX

    journal = Journal(store)
    texts = ["deploy now", "deployed", "the Deployment", "Déploiement", "redeploy", "hello"]
    texts += ["helloжж", "Ｄeployment"] + [f"many{i:03}" for i in range(EXPAND_MAX + 1)]
    fill(journal, texts)
    expression = store.search.expression
    assert expression(parse("deplo* now")) == (
        '("deploiement" OR "deploy" OR "deployed" OR "deployment") AND "now"'
    )
    assert expression(parse("deploye*")) == '("deployed")'
    assert expression(parse("many00*")) == '("many000" OR "many001" OR ' + (
        " OR ".join(f'"many00{i}"' for i in range(2, 10)) + ")"
    )
    for plain in ("dep*", "hell*", "many*", "ｄeplo*", '"deploy now"*', "deploy"):
        assert expression(parse(plain)) == parse(plain).match, plain
    assert expression(parse("zzzz*")) is None and expression(parse("deploy zzzz*")) is None
    assert sorted(find(journal, "deplo*")) == [1, 2, 3, 4]
    assert sorted(find(journal, "hell*")) == [6, 7] and find(journal, "ｄeplo*") == [8]
    assert len(find(journal, "many*", limit=100)) == EXPAND_MAX + 1
    assert find(journal, "zzzz*") == []


def test_the_terms_are_the_ones_fts5_makes(store: Store) -> None:
    """search_terms holds every term of the table's text FTS5 made that is longer than
    the prefix indexes (ASCII cut by convosd, other text by FTS5), and only those."""
    journal = Journal(store)
    texts = ["Hello, wörld! ÇA-VA l'été 2027_v2", "ﬁnal ＦＵＬＬ straße İstanbul ǅemal"]
    texts += ["e\u0301te\u0301 ça", "snake_case_word don't", "x" * 40, "日本語のテキスト"]
    fill(journal, texts)
    kept, fts5 = table_terms(store)
    assert kept == fts5 and "istanbul" in kept and "2027" in kept and "straße" in kept


def test_reset_and_rollback_keep_the_terms_right(store: Store) -> None:
    """A batch whose transaction rolls back leaves no term, and its terms are written
    again by the next batch that has them; a reset empties the terms."""
    from convosd.storage.store import StoreError
    from convosd.storage.work import SettleKey

    journal = Journal(store)
    with store.transaction():
        store.keys.intent("k1", 1.0, "{}")
        store.keys.intent("k2", 1.0, "{}")
    journal.append([message(i, f"zebrafish {i}") for i in range(1, TAIL)])
    journal.append([message(TAIL, "settles k1")], writes=(SettleKey("k1", "m1", "{}"),))
    journal.append([message(i, f"xylophone {i}") for i in range(TAIL + 1, 2 * TAIL)])
    with pytest.raises(StoreError):  # m1 settled k1 already: the batch rolls back
        journal.append([message(2 * TAIL, "lost")], writes=(SettleKey("k2", "m1", "{}"),))
    assert "xylophone" not in table_terms(store)[0]
    journal.append([message(2 * TAIL, "kept")])  # the same batch, indexed
    assert table_terms(store)[0] == table_terms(store)[1]
    assert len(find(journal, "xylo*", limit=100)) == 100 and find(journal, "zebr*", limit=1)
    journal.reset()
    assert table_terms(store) == (set(), set()) and find(journal, "xylo*") == []
    fill(journal, ["xylophone again"])  # written again: the reset forgot them
    assert table_terms(store)[0] == table_terms(store)[1] and find(journal, "xylo*") == [1]


def test_trimmed_terms_stay_and_find_nothing(store: Store) -> None:
    journal = Journal(store, max_events=TAIL)
    fill(journal, ["quokka one", "quokkas two"])
    fill(journal, ["quokkas three"], first=TAIL + 1)
    assert journal.trim() == TAIL
    kept, fts5 = table_terms(store)
    assert "quokka" in kept - fts5  # stale: costs an OR one more term
    assert store.search.expression(parse("quokk*")) == '("quokka" OR "quokkas")'
    assert find(journal, "quokk*") == [TAIL + 1]


def test_an_index_of_schema_6_gets_its_terms(tmp_path: Path) -> None:
    path = tmp_path / "convosd.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        for script in MIGRATIONS[:6]:
            db.executescript(script)
        db.execute("PRAGMA user_version = 6")
        db.execute("INSERT INTO meta VALUES ('journal_id', 'j1'), ('last_seq', '3')")
        db.executemany(
            "INSERT INTO events (seq, type, at, body) VALUES (?, ?, 0, ?)",
            [
                (seq, "message", json.dumps({"contentType": "text", "content": text}))
                for seq, text in ((1, "old Déploiement"), (2, "deployed"), (3, "tail deploy"))
            ],
        )
        db.execute(  # as schema 6 indexed a batch: 1 and 2 in FTS5, 3 the tail
            "INSERT INTO search (rowid, text, sender, kind) "
            "SELECT seq, text, sender, kind FROM search_source WHERE seq <= 2"
        )
        db.execute("UPDATE meta SET value = '2' WHERE key = 'search_indexed_seq'")
    store = Store.open(tmp_path)
    try:
        assert table_terms(store) == ({"deploiement", "deployed"},) * 2
        assert store.search.expression(parse("deplo*")) == '("deploiement" OR "deployed")'
        assert sorted(find(journal := Journal(store), "deplo*")) == [1, 2, 3]
        assert find(journal, "tail") == [3]
    finally:
        store.close()


_LETTERS = "abdeé"


def answer(hit: Hit) -> tuple[int, str, float, str]:
    """What a hit answers but for the time its event was journaled."""
    return hit.seq, hit.snippet, hit.score, re.sub(r'"at":"[^"]*"', "", hit.body)


@settings(
    max_examples=30,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    texts=st.lists(
        st.lists(
            st.text(alphabet=_LETTERS + "AЖжＡß", min_size=1, max_size=7), min_size=1, max_size=6
        ).map(lambda words: " ".join(words)),
        min_size=1,
        max_size=60,
    ),
    prefix=st.text(alphabet="abde", min_size=4, max_size=6),
    with_word=st.booleans(),
)
def test_a_long_prefix_finds_what_fts5_finds(
    tmp_path: Path, texts: list[str], prefix: str, with_word: bool
) -> None:
    """Random texts and prefixes: the FTS5 table (a long prefix as the OR of its terms)
    answers what FTS5 finds for the prefix, and exactly what the tail (the same texts, all
    searched as FTS5 searches the prefix) answers: the same events, scores, snippets."""
    query = prefix + "* " + ("a" if with_word else "")
    stores = [Store.open(Path(tempfile.mkdtemp(dir=tmp_path))) for _ in range(2)]
    try:
        table, tail = Journal(stores[0]), Journal(stores[1])
        fill(table, texts)
        tail.append([message(1 + i, t) for i, t in enumerate(texts)])
        assert tail.indexed_seq == 0
        kept, fts5 = table_terms(stores[0])
        assert kept == fts5
        found = [answer(hit) for hit in table.search(parse(query), limit=100)]
        assert found == [answer(hit) for hit in tail.search(parse(query), limit=100)]
        if not with_word:
            assert sorted(seq for seq, *_ in found) == sorted(plain_prefix(stores[0], prefix))
    finally:
        for s in stores:
            s.close()
