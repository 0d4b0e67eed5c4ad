"""The state dir's durable store: one SQLite database (WAL), versioned by ``user_version``.

It holds what must survive a restart (README, Operations): the binding, a pending join, the
seen-id table, idempotency keys, the journal (see :mod:`convosd.journal`), the children's
process groups (to reap leftovers after a SIGKILL of the daemon) and a few facts in ``meta``
(journal id, the CLI version last used, the instance's inbox id).

Calls are synchronous and short; they run on the event loop's thread (SQLite on a local
disk answers in microseconds), which keeps every write ordered without locks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convosd.errors import ConfigError, NotReady

DB_NAME = "convosd.db"
LOCK_NAME = "convosd.lock"

# Each entry upgrades the schema from version i to i + 1. Never edit a released entry.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE binding (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        conversation_id TEXT NOT NULL,
        inbox_id TEXT,
        env TEXT NOT NULL,
        how TEXT NOT NULL,
        creator_inbox_id TEXT,
        invite_tag TEXT,
        bound_at REAL NOT NULL
    );
    CREATE TABLE pending_join (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        body TEXT NOT NULL
    );
    CREATE TABLE seen (
        message_id TEXT PRIMARY KEY,
        fate TEXT NOT NULL,
        at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX seen_at ON seen (at);
    CREATE TABLE idempotency (
        key TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        intent_at REAL NOT NULL,
        body TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE children (
        name TEXT PRIMARY KEY,
        pgid INTEGER NOT NULL,
        start_ticks INTEGER NOT NULL
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        type TEXT NOT NULL,
        at REAL NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX events_type_seq ON events (type, seq);
    CREATE INDEX events_at ON events (at);
    """,
    """
    CREATE TABLE approved_senders (
        inbox_id TEXT PRIMARY KEY,
        how TEXT NOT NULL,
        at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE denied_senders (
        inbox_id TEXT PRIMARY KEY,
        at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE pairing_requests (
        code TEXT PRIMARY KEY,
        sender_inbox_id TEXT NOT NULL UNIQUE,
        sender_name TEXT,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE held_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL UNIQUE,
        sender_inbox_id TEXT NOT NULL,
        body TEXT NOT NULL,
        held_at REAL NOT NULL
    );
    CREATE INDEX held_sender ON held_messages (sender_inbox_id, id);
    CREATE TABLE policy_counts (
        reason TEXT PRIMARY KEY,
        count INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # Idempotency keys name the message that settled them: one message settles at most one
    # key (the unique index). Keys already done keep their result; where two of them name
    # the same message (the defect this step fixes), only the first records it.
    """
    ALTER TABLE idempotency ADD COLUMN message_id TEXT;
    UPDATE idempotency SET message_id = json_extract(body, '$.messageId')
        WHERE state = 'done' AND key = (
            SELECT MIN(other.key) FROM idempotency AS other
            WHERE other.state = 'done'
            AND json_extract(other.body, '$.messageId')
                = json_extract(idempotency.body, '$.messageId')
        );
    CREATE UNIQUE INDEX idempotency_message ON idempotency (message_id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class StateDirInUse(ConfigError):
    """Another daemon holds the state dir's lock."""


class StoreError(Exception):
    """The store cannot be read or written (disk full, read-only, corrupt)."""


class StateDirGone(StoreError, NotReady):
    """The state dir or its store was deleted or replaced while the daemon ran: nothing is
    written any more (it would go to a file nobody can read again)."""


@dataclass(frozen=True, slots=True)
class Binding:
    conversation_id: str
    inbox_id: str | None
    env: str
    how: str
    creator_inbox_id: str | None
    invite_tag: str | None
    bound_at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "conversationId": self.conversation_id,
            "inboxId": self.inbox_id,
            "env": self.env,
            "how": self.how,
            "creatorInboxId": self.creator_inbox_id,
            "inviteTag": self.invite_tag,
        }


class InstanceLock:
    """The single-instance flock on ``<state dir>/convosd.lock``; the file holds the pid."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StateDirInUse(f"state dir in use by pid {holder}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def reclaim(self) -> bool:
        """The lock file was deleted (with the state dir) while we hold it: take the path
        again, so that a second daemon started on it is refused rather than sharing it.
        Creates the state dir (0700) if it is gone. False if another process holds it."""
        if self._fd is None:
            return False
        try:
            held = os.fstat(self._fd)
            current = os.stat(self.path)
            if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                return True
        except FileNotFoundError:
            pass
        old = self._fd
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.acquire()
        except (OSError, StateDirInUse):
            self._fd = old
            return False
        os.close(old)
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Store:
    """The durable state of one instance. Open with :meth:`open`; close with :meth:`close`."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self.db = connection
        self.path = path
        self._pending: dict[str, Any] | None = None
        self._pending_loaded = False
        #: (dev, inode) of the state dir and of the store file, taken at open
        self._identity: tuple[tuple[int, int], tuple[int, int]] | None = None

    @classmethod
    def open(cls, state_dir: Path) -> Store:
        """Open the store, or create it when the state dir has none.

        A new store is built under a temporary name and renamed into place once its schema
        is written, so ``convosd.db`` is always a complete store: an existing file that is
        not one (empty, truncated, another program's database) is refused, never replaced.
        """
        path = state_dir / DB_NAME
        if path.exists() or path.is_symlink():
            _check_existing(path)
        else:
            _create(state_dir, path)
        try:
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a committed transaction survives a crash of the process (SIGKILL);
            # only an OS crash or power loss may lose the last ones, never corrupt the file.
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA busy_timeout=5000")
            store = cls(connection, path)
            store._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"state store {path} cannot be opened: {exc}") from None
        os.chmod(path, 0o600)
        store._identity = _identity(path)
        return store

    def vanished(self) -> str | None:
        """Why the state dir or the store file is no longer the one opened (deleted,
        replaced), or None while it is. A stat or two: cheap enough for every write."""
        if self._identity is None:
            return None
        try:
            now = _identity(self.path)
        except OSError:
            now = None
        if now == self._identity:
            return None
        return (
            f"the state dir {self.path.parent} was deleted or replaced while the daemon ran "
            "(its store is gone): nothing is written any more. Stop the daemon, restore the "
            "state dir from a backup (or remove it to start anew), then start the daemon"
        )

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.close()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"state store schema {version} is newer than this convosd knows "
                f"({SCHEMA_VERSION}): refusing to downgrade"
            )
        for index in range(version, SCHEMA_VERSION):
            with self.transaction():
                self._apply(index)
        if self.get_meta("journal_id") is None:
            self.set_meta("journal_id", new_journal_id())

    def _apply(self, index: int) -> None:
        for statement in _statements(MIGRATIONS[index]):
            self.db.execute(statement)
        self.db.execute(f"PRAGMA user_version = {index + 1}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; rolled back on any error. Refused (StateDirGone) when
        the store file is no longer in the state dir."""
        problem = self.vanished()
        if problem is not None:
            raise StateDirGone(problem)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    # --- meta ---------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self.db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self.db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # --- binding ------------------------------------------------------------------------

    def binding(self) -> Binding | None:
        row = self.db.execute(
            "SELECT conversation_id, inbox_id, env, how, creator_inbox_id, invite_tag, bound_at "
            "FROM binding WHERE id = 1"
        ).fetchone()
        return None if row is None else Binding(*row)

    def set_binding(self, binding: Binding) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO binding (id, conversation_id, inbox_id, env, how, "
            "creator_inbox_id, invite_tag, bound_at) VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
            (
                binding.conversation_id,
                binding.inbox_id,
                binding.env,
                binding.how,
                binding.creator_inbox_id,
                binding.invite_tag,
                binding.bound_at,
            ),
        )

    def clear_binding(self) -> None:
        self.db.execute("DELETE FROM binding")

    # --- pending join -------------------------------------------------------------------

    def pending_join(self) -> dict[str, Any] | None:
        row = self.db.execute("SELECT body FROM pending_join WHERE id = 1").fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def set_pending_join(self, body: dict[str, Any] | None) -> None:
        if body is None:
            self.db.execute("DELETE FROM pending_join")
        else:
            self.db.execute(
                "INSERT OR REPLACE INTO pending_join (id, body) VALUES (1, ?)", (json.dumps(body),)
            )

    # --- seen ids -----------------------------------------------------------------------

    def seen(self, message_id: str) -> bool:
        row = self.db.execute("SELECT 1 FROM seen WHERE message_id = ?", (message_id,)).fetchone()
        return row is not None

    def filter_unseen(self, message_ids: list[str]) -> set[str]:
        if not message_ids:
            return set()
        found: set[str] = set()
        for start in range(0, len(message_ids), 500):
            chunk = message_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0]
                for row in self.db.execute(
                    f"SELECT message_id FROM seen WHERE message_id IN ({marks})", chunk
                )
            )
        return set(message_ids) - found

    def mark_seen(self, items: list[tuple[str, str]], now: float | None = None) -> None:
        """Record ``(message_id, fate)`` pairs; call inside the batch's transaction."""
        at = time.time() if now is None else now
        self.db.executemany(
            "INSERT OR IGNORE INTO seen (message_id, fate, at) VALUES (?, ?, ?)",
            [(message_id, fate, at) for message_id, fate in items],
        )

    def trim_seen(self, older_than: float) -> int:
        """Forget ids older than any backfill window can re-read (they cannot come back)."""
        return self.db.execute("DELETE FROM seen WHERE at < ?", (older_than,)).rowcount

    # --- idempotency keys (state: in_flight | done) -------------------------------------

    def key_get(self, key: str) -> tuple[str, float, str] | None:
        """``(state, intent_at, body)`` of ``key``, or None."""
        row = self.db.execute(
            "SELECT state, intent_at, body FROM idempotency WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else (str(row[0]), float(row[1]), str(row[2]))

    def key_intent(self, key: str, at: float, body: str) -> None:
        """Record ``key`` as in flight from ``at`` (before the CLI is called)."""
        self.db.execute(
            "INSERT OR REPLACE INTO idempotency (key, state, intent_at, body, message_id) "
            "VALUES (?, 'in_flight', ?, ?, NULL)",
            (key, at, body),
        )

    def key_settle(self, key: str, message_id: str, body: str) -> None:
        """Mark ``key`` done with ``message_id``. Raises sqlite3.IntegrityError when the
        message already settled another key (a message settles at most one)."""
        self.db.execute(
            "UPDATE idempotency SET state = 'done', body = ?, message_id = ? WHERE key = ?",
            (body, message_id, key),
        )

    def key_forget(self, key: str) -> None:
        self.db.execute("DELETE FROM idempotency WHERE key = ?", (key,))

    def keys_in_flight(self) -> list[tuple[str, float, str]]:
        """``(key, intent_at, body)`` of every key in flight, oldest intent first."""
        return [
            (str(k), float(a), str(b))
            for k, a, b in self.db.execute(
                "SELECT key, intent_at, body FROM idempotency WHERE state = 'in_flight' "
                "ORDER BY intent_at"
            )
        ]

    def keys_settled_by(self, message_ids: list[str]) -> set[str]:
        """Which of ``message_ids`` already settled a key."""
        found: set[str] = set()
        for start in range(0, len(message_ids), 500):
            chunk = message_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                str(row[0])
                for row in self.db.execute(
                    f"SELECT message_id FROM idempotency WHERE message_id IN ({marks})", chunk
                )
            )
        return found

    def keys_expire(self, older_than: float) -> int:
        """Forget keys whose intent is older than ``older_than``."""
        return int(
            self.db.execute("DELETE FROM idempotency WHERE intent_at < ?", (older_than,)).rowcount
        )

    def keys_clear(self) -> None:
        self.db.execute("DELETE FROM idempotency")

    # --- children (for reaping after a daemon crash) ------------------------------------

    def record_child(self, name: str, pgid: int, start_ticks: int) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO children (name, pgid, start_ticks) VALUES (?, ?, ?)",
            (name, pgid, start_ticks),
        )

    def forget_child(self, name: str) -> None:
        self.db.execute("DELETE FROM children WHERE name = ?", (name,))

    def recorded_children(self) -> list[tuple[str, int, int]]:
        return [
            (str(n), int(p), int(t))
            for n, p, t in self.db.execute("SELECT name, pgid, start_ticks FROM children")
        ]


def _identity(path: Path) -> tuple[tuple[int, int], tuple[int, int]]:
    directory, store = os.stat(path.parent), os.stat(path)
    return (directory.st_dev, directory.st_ino), (store.st_dev, store.st_ino)


_SQLITE_MAGIC = b"SQLite format 3\x00"
_NEW_SUFFIX = ".new"


def _check_existing(path: Path) -> None:
    """Refuse a ``convosd.db`` that cannot be a store this daemon (or an older one) wrote."""
    fix = (
        "restore it from a backup, or move it away to start a new store (the binding, the "
        "journal and the policy state in it are then lost)"
    )
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError(f"state store {path} cannot be read: {exc.strerror}") from None
    if not head:
        raise StoreError(f"state store {path} is empty (0 bytes), not a convosd store: {fix}")
    if head != _SQLITE_MAGIC:
        raise StoreError(f"state store {path} is not an SQLite database: {fix}")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as exc:
        raise StoreError(f"state store {path} cannot be opened: {exc}: {fix}") from None
    if version == 0 and tables:
        raise StoreError(f"state store {path} is an SQLite database of another program: {fix}")
    if 0 < version <= SCHEMA_VERSION and not {"meta", "binding", "events"} <= tables:
        raise StoreError(f"state store {path} lacks the convosd tables: {fix}")


def _create(state_dir: Path, path: Path) -> None:
    """Build a new store under a temporary name, then rename it to ``convosd.db``."""
    staging = state_dir / (DB_NAME + _NEW_SUFFIX)
    for leftover in (staging, *(Path(f"{staging}{s}") for s in ("-wal", "-shm", "-journal"))):
        leftover.unlink(missing_ok=True)
    try:
        connection = sqlite3.connect(staging, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            store = Store(connection, staging)
            store._migrate()
        finally:
            connection.close()  # the last connection: checkpoints and removes the WAL
        os.chmod(staging, 0o600)
        os.replace(staging, path)
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"state store {path} cannot be created: {exc}") from None


def new_journal_id() -> str:
    return uuid.uuid4().hex


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]
