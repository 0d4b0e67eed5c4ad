"""The state store and the journal: migrations, lock, binding, gap-free seq, retention."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from convosd.events import event
from convosd.storage.journal import Journal
from convosd.storage.lock import InstanceLock, StateDirInUse
from convosd.storage.pairing import PairingRequest
from convosd.storage.schema import SCHEMA_VERSION
from convosd.storage.store import Binding, Store, StoreError
from convosd.storage.work import CountDrops, HoldMessage, OpenPairingRequest, SettleKey
from tests.helpers import WAIT_S


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path)
    yield s
    s.close()


def msg(i: int, sent_at: str = "2026-11-23T12:00:00.000Z") -> object:
    return event(
        "message",
        "c" * 32,
        messageId=f"{i:064x}",
        senderInboxId="a" * 64,
        senderName=None,
        contentType="text",
        content=f"m{i}",
        sentAt=sent_at,
        replyTo=None,
        reaction=None,
        attachment=None,
    )


def test_schema_version_and_private_file(tmp_path: Path, store: Store) -> None:
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (tmp_path / "convosd.db").stat().st_mode & 0o777 == 0o600


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "convosd.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="refusing to downgrade"):
        Store.open(tmp_path)


def test_binding_and_pending_join_survive_reopen(tmp_path: Path, store: Store) -> None:
    b = Binding("c" * 32, "a" * 64, "dev", "created", None, "TAG1234567", 1.0)
    store.set_binding(b)
    store.set_pending_join({"slug": "x", "knownConversationIds": ["1"]})
    store.close()
    again = Store.open(tmp_path)
    assert again.binding() == b
    assert again.pending_join() == {"slug": "x", "knownConversationIds": ["1"]}
    again.clear_binding()
    again.set_pending_join(None)
    assert again.binding() is None and again.pending_join() is None
    again.close()


def test_second_instance_is_refused_with_the_holder_pid(tmp_path: Path) -> None:
    lock = InstanceLock(tmp_path)
    lock.acquire()
    try:
        code = (
            "import sys; from pathlib import Path; from convosd.storage.lock import InstanceLock\n"
            "try:\n    InstanceLock(Path(sys.argv[1])).acquire()\n"
            "except Exception as e:\n    print(e); sys.exit(1)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
        assert out.returncode == 1
        assert out.stdout.strip() == f"state dir in use by pid {os.getpid()}"
    finally:
        lock.release()
    again = InstanceLock(tmp_path)
    again.acquire()
    again.release()
    with pytest.raises(StateDirInUse):
        a, b = InstanceLock(tmp_path), InstanceLock(tmp_path)
        a.acquire()
        try:
            b.acquire()
        finally:
            a.release()


def test_seen_ids(store: Store) -> None:
    with store.transaction():
        store.seen_ids.mark([("a", "journaled"), ("b", "own")], at=10)
    assert store.seen_ids.contains("a") and not store.seen_ids.contains("z")
    assert store.seen_ids.unseen(["a", "b", "c"]) == {"c"}
    assert store.seen_ids.trim(older_than=11) == 2


def test_a_key_s_row_is_never_replaced_by_a_new_intent(store: Store) -> None:
    """Issue 25 item 2: a second send's intent must not overwrite the row of a send in
    flight (it would look unsent, or take over its result): the store refuses it."""
    keys = store.keys
    assert keys.intent("k", 1.0, '{"first": true}')
    assert not keys.intent("k", 2.0, '{"second": true}')
    assert keys.get("k") == ("in_flight", 1.0, '{"first": true}')
    keys.restate("k", '{"first": "sized"}')  # the same send says what it sends
    assert keys.get("k") == ("in_flight", 1.0, '{"first": "sized"}')
    keys.settle("k", "m1", '{"messageId": "m1"}')
    assert not keys.intent("k", 3.0, "{}")
    keys.restate("k", "{}")  # a result is never restated
    assert keys.get("k") == ("done", 1.0, '{"messageId": "m1"}')
    keys.forget("k")
    assert keys.intent("k", 4.0, "{}")  # a forgotten key may be used again


class TestJournal:
    def test_seq_is_gap_free_and_durable(self, tmp_path: Path, store: Store) -> None:
        j = Journal(store, clock=lambda: 1000.0)
        got = j.append([msg(1), msg(2)], seen=[("x", "own")])
        assert [e.seq for e in got] == [1, 2]
        body = got[0].as_dict()
        assert body["seq"] == 1 and body["type"] == "message"
        assert body["at"] == "1970-01-01T00:16:40.000Z"
        assert body["conversationId"] == "c" * 32
        assert store.seen_ids.contains("x")
        j2 = Journal(store)
        assert (j2.first_seq, j2.last_seq) == (1, 2)
        assert [e.seq for e in j2.append([msg(3)])] == [3]

    def test_listeners_see_only_committed_batches(self, store: Store) -> None:
        j = Journal(store)
        seen: list[int] = []
        j.listeners.append(lambda batch: seen.extend(e.seq for e in batch))
        j.append([msg(1)])
        with contextlib.closing(sqlite3.connect(store.path, isolation_level=None)) as other:
            other.execute("DROP TABLE events")  # the next write fails
        with pytest.raises(StoreError):
            j.append([msg(2)], seen=[("m2", "journaled")])
        assert seen == [1]
        assert j.last_seq == 1
        assert not store.seen_ids.contains("m2")  # the failed batch marked nothing

    def test_a_failing_write_rolls_back_the_whole_batch(self, store: Store) -> None:
        j = Journal(store)
        batches: list[list[int]] = []
        j.listeners.append(lambda batch: batches.append([e.seq for e in batch]))
        with store.transaction():
            store.keys.intent("k1", 1.0, "{}")
            store.keys.intent("k2", 1.0, "{}")
        j.append([msg(1)], writes=(SettleKey("k1", "m1", '{"messageId": "m1"}'),))
        request = PairingRequest("ABCDEFGH", "b" * 64, None, 2.0, 3602.0)
        # m1 already settled k1, so the last write fails after the others ran
        with pytest.raises(StoreError):
            j.append(
                [msg(2)],
                seen=[("m2", "held"), ("m3", "dropped")],
                writes=(
                    HoldMessage("m2", "b" * 64, "{}", 2.0),
                    OpenPairingRequest(request),
                    CountDrops("policy"),
                    SettleKey("k2", "m1", '{"messageId": "m1"}'),
                ),
            )
        assert batches == [[1]] and j.last_seq == 1
        assert [e.seq for e in j.read(0, 10)] == [1]
        assert store.seen_ids.unseen(["m2", "m3"]) == {"m2", "m3"}
        state = store.pairing.load()
        assert (state.held, state.requests, state.dropped) == (0, [], {})
        assert store.keys.get("k2") == ("in_flight", 1.0, "{}")
        # the store took the failure whole: the same batch without the bad write commits
        j.append([msg(2)], writes=(HoldMessage("m2", "b" * 64, "{}", 2.0),))
        assert j.last_seq == 2 and store.pairing.load().held == 1

    def test_read_after_limit_and_types(self, store: Store) -> None:
        j = Journal(store)
        j.append([msg(1), event("conversation_locked", "c" * 32, locked=True), msg(2)])
        assert [e.seq for e in j.read(0, 10)] == [1, 2, 3]
        assert [e.seq for e in j.read(1, 1)] == [2]
        assert [e.seq for e in j.read(0, 10, frozenset({"message"}))] == [1, 3]

    def test_retention_by_count_and_age(self, store: Store) -> None:
        now = [1000.0]
        j = Journal(store, max_events=3, max_age_s=100, clock=lambda: now[0])
        j.append([msg(i) for i in range(5)])
        assert j.trim() == 2
        assert (j.first_seq, j.last_seq) == (3, 5)
        now[0] = 2000.0
        assert j.trim() == 3
        assert (j.first_seq, j.last_seq) == (6, 5)  # empty: starts after the last
        assert [e.seq for e in j.append([msg(9)])] == [6]
        assert j.first_seq == 6

    def test_a_fully_trimmed_journal_continues_its_seq_after_a_restart(
        self, tmp_path: Path
    ) -> None:
        """Issue 25 item 14: retention may remove every event; the last seq is kept apart
        from them, so after a restart the same journalId goes on after it. Starting again at
        seq 1 under the same journalId, a client that read up to 5 would skip 1..5 anew."""
        now = [1000.0]
        first = Store.open(tmp_path)
        j = Journal(first, max_age_s=100, clock=lambda: now[0])
        j.append([msg(i) for i in range(5)])
        journal_id = j.journal_id
        now[0] = 2000.0
        assert j.trim() == 5
        assert (j.first_seq, j.last_seq) == (6, 5)
        first.close()
        again = Store.open(tmp_path)  # the daemon restarted
        try:
            j2 = Journal(again, max_age_s=100, clock=lambda: now[0])
            assert j2.journal_id == journal_id
            assert j2.position.as_dict() == {
                "journalId": journal_id,
                "firstSeq": 6,
                "lastSeq": 5,
            }
            assert [e.seq for e in j2.append([msg(6)])] == [6]
            assert [e.seq for e in j2.read(5, 10)] == [6]
        finally:
            again.close()

    def test_reset_starts_a_new_journal(self, store: Store) -> None:
        j = Journal(store)
        old = j.journal_id
        j.append([msg(1)])
        j.reset()
        assert j.journal_id != old
        assert (j.first_seq, j.last_seq) == (1, 0)
        assert [e.seq for e in j.append([msg(2)])] == [1]
        assert Journal(store).journal_id == j.journal_id

    def test_max_sent_at_tracks_messages(self, store: Store) -> None:
        j = Journal(store)
        j.append([msg(1, "2026-11-23T12:00:05.000Z"), msg(2, "2026-11-23T12:00:01.000Z")])
        assert j.max_sent_at == "2026-11-23T12:00:05.000Z"
        assert Journal(store).max_sent_at == "2026-11-23T12:00:05.000Z"

    def test_unicode_is_stored_as_is(self, store: Store) -> None:
        j = Journal(store)
        (e,) = j.append([event("join_failed", None, reason="ünï 👍")])
        assert "👍" in e.body and json.loads(e.body)["reason"] == "ünï 👍"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "is empty"),
        (b"not a database at all\n" * 10, "not an SQLite database"),
    ],
)
def test_an_existing_file_that_is_not_a_store_is_refused(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    (tmp_path / "convosd.db").write_bytes(content)
    with pytest.raises(StoreError, match=problem):
        Store.open(tmp_path)
    assert (tmp_path / "convosd.db").read_bytes() == content  # left as it was


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "convosd.db")
    db.execute("CREATE TABLE notes (x)")
    db.close()
    with pytest.raises(StoreError, match="another program"):
        Store.open(tmp_path)


def test_a_truncated_store_keeps_being_refused_and_a_new_one_is_complete(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.set_binding(Binding("c" * 32, "a" * 64, "dev", "created", None, None, 1.0))
    store.close()
    assert not (tmp_path / "convosd.db.new").exists()
    os.truncate(tmp_path / "convosd.db", 0)
    for _ in range(2):  # a refused file is not turned into an empty store by the attempt
        with pytest.raises(StoreError, match="is empty"):
            Store.open(tmp_path)


def sql_outside_storage(package: Path) -> list[str]:
    """``file:line`` of every sqlite3 import or SQL call in ``package`` outside storage/."""
    found: list[str] = []
    for path in sorted(package.rglob("*.py")):
        if (package / "storage") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                names = [node.func.attr]
            if {"sqlite3", "execute", "executemany", "executescript", "cursor"} & set(names):
                found.append(f"{path.relative_to(package)}:{getattr(node, 'lineno', 0)}")
    return found


def test_only_the_storage_package_runs_sql() -> None:
    import convosd

    assert sql_outside_storage(Path(convosd.__file__).parent) == []


def test_a_message_is_found_by_its_id_without_a_scan(tmp_path: Path) -> None:
    """attachment.download looks a message up by its id: an unknown or old id costs about what
    the newest one does (an index), not a walk of every message event (0.3 s at 200k)."""
    store = Store.open(tmp_path)
    try:
        journal = Journal(store, max_events=1_000_000, max_age_s=10**9)
        count = 100_000
        for start in range(0, count, 10_000):
            journal.append(msg(i) for i in range(start, start + 10_000))

        def cost(message_id: str) -> float:
            times = []
            for _ in range(7):
                t0 = time.perf_counter()
                journal.message(message_id)
                times.append(time.perf_counter() - t0)
            return statistics.median(times)

        assert journal.message(f"{0:064x}") is not None
        newest = cost(f"{count - 1:064x}")
        assert max(cost(f"{0:064x}"), cost("f" * 64)) < 20 * newest + 0.002
    finally:
        store.close()
