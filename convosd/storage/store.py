"""The state dir's durable store: one SQLite database (WAL), versioned by ``user_version``.

It holds what must survive a restart (README, Operations). :class:`Store` opens it, applies
the migrations (:mod:`convosd.storage.schema`), runs the write transactions and refuses them
once the state dir is gone; it keeps the binding, a pending join and the children's process
groups (to reap leftovers after a SIGKILL of the daemon) itself. The other tables each have
one owner, reached through the store: ``meta`` (:mod:`~convosd.storage.meta`), the seen-id
table (:mod:`~convosd.storage.seen`), idempotency keys (:mod:`~convosd.storage.keys`), the
pairing state (:mod:`~convosd.storage.pairing`) and the journal
(:mod:`~convosd.storage.journal`).

Calls are synchronous and short; they run on the event loop's thread (SQLite on a local
disk answers in microseconds), which keeps every write ordered without locks.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convosd.errors import NotReady
from convosd.storage.events import EventRows
from convosd.storage.keys import IdempotencyKeys
from convosd.storage.meta import Meta
from convosd.storage.pairing import PairingState
from convosd.storage.schema import MIGRATIONS, SCHEMA_VERSION, statements
from convosd.storage.search import SearchIndex
from convosd.storage.seen import SeenIds

DB_NAME = "convosd.db"
_UNREAD = object()


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


class Store:
    """The durable state of one instance. Open with :meth:`open`; close with :meth:`close`."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self.meta = Meta(connection)
        self.events = EventRows(connection)
        self.seen_ids = SeenIds(connection)
        self.keys = IdempotencyKeys(connection)
        self.pairing = PairingState(connection)
        self.search = SearchIndex(connection, self.meta)
        #: (dev, inode) of the state dir and of the store file, taken at open
        self._identity: tuple[tuple[int, int], tuple[int, int]] | None = None
        #: the same two as strings: every write transaction stats them
        self._dir_name, self._file_name = str(path.parent), str(path)
        #: the pending join's row as last written here (None: none), so reading it costs no
        #: query; :data:`_UNREAD` until first read and after a rolled-back transaction
        self._pending_body: str | object | None = _UNREAD

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
            directory, store = os.stat(self._dir_name), os.stat(self._file_name)
        except OSError:
            now = None
        else:
            now = (directory.st_dev, directory.st_ino), (store.st_dev, store.st_ino)
        if now == self._identity:
            return None
        return (
            f"the state dir {self.path.parent} was deleted or replaced while the daemon ran "
            "(its store is gone): nothing is written any more. Stop the daemon, restore the "
            "state dir from a backup (or remove it to start anew), then start the daemon"
        )

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"state store schema {version} is newer than this convosd knows "
                f"({SCHEMA_VERSION}): refusing to downgrade"
            )
        for index in range(version, SCHEMA_VERSION):
            with self.transaction():
                self._apply(index)
        if self.meta.get("journal_id") is None:
            self.meta.set("journal_id", new_journal_id())

    def _apply(self, index: int) -> None:
        for statement in statements(MIGRATIONS[index]):
            self._db.execute(statement)
        self._db.execute(f"PRAGMA user_version = {index + 1}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; rolled back on any error. Refused (StateDirGone) when
        the store file is no longer in the state dir."""
        problem = self.vanished()
        if problem is not None:
            raise StateDirGone(problem)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._pending_body = _UNREAD  # a write of it may have been undone
            self.search.rolled_back()
            raise
        else:
            self._db.execute("COMMIT")

    # --- binding ------------------------------------------------------------------------

    def binding(self) -> Binding | None:
        row = self._db.execute(
            "SELECT conversation_id, inbox_id, env, how, creator_inbox_id, invite_tag, bound_at "
            "FROM binding WHERE id = 1"
        ).fetchone()
        return None if row is None else Binding(*row)

    def set_binding(self, binding: Binding) -> None:
        self._db.execute(
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
        self._db.execute("DELETE FROM binding")

    # --- pending join -------------------------------------------------------------------

    def _pending_row(self) -> str | None:
        if self._pending_body is _UNREAD:
            row = self._db.execute("SELECT body FROM pending_join WHERE id = 1").fetchone()
            self._pending_body = None if row is None else str(row[0])
        assert self._pending_body is None or isinstance(self._pending_body, str)
        return self._pending_body

    def pending_join(self) -> dict[str, Any] | None:
        body = self._pending_row()
        return None if body is None else dict(json.loads(body))

    @property
    def has_pending_join(self) -> bool:
        """Whether a join is pending (kept in memory: ``status`` reads it on every call)."""
        return self._pending_row() is not None

    def set_pending_join(self, body: dict[str, Any] | None) -> None:
        if body is None:
            self._db.execute("DELETE FROM pending_join")
            self._pending_body = None
        else:
            text = json.dumps(body)
            self._db.execute(
                "INSERT OR REPLACE INTO pending_join (id, body) VALUES (1, ?)", (text,)
            )
            self._pending_body = text

    # --- departed members (member_left journaled once) ----------------------------------

    def departed(self, conversation_id: str) -> frozenset[str]:
        """The members of ``conversation_id`` whose ``member_left`` is journaled and who were
        not seen as members since."""
        raw = self.meta.get("departed")
        value = json.loads(raw) if raw else {}
        if value.get("conversationId") != conversation_id:
            return frozenset()
        return frozenset(value.get("inboxIds") or ())

    def set_departed(self, conversation_id: str, inbox_id: str, departed: bool) -> None:
        """Mark (or unmark) ``inbox_id``; marks of another conversation are dropped."""
        inboxes = set(self.departed(conversation_id))
        if departed:
            inboxes.add(inbox_id)
        else:
            inboxes.discard(inbox_id)
        body = {"conversationId": conversation_id, "inboxIds": sorted(inboxes)}
        self.meta.set("departed", json.dumps(body))

    # --- children (for reaping after a daemon crash) ------------------------------------

    def record_child(self, name: str, pgid: int, start_ticks: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO children (name, pgid, start_ticks) VALUES (?, ?, ?)",
            (name, pgid, start_ticks),
        )

    def forget_child(self, name: str) -> None:
        self._db.execute("DELETE FROM children WHERE name = ?", (name,))

    def recorded_children(self) -> list[tuple[str, int, int]]:
        return [
            (str(n), int(p), int(t))
            for n, p, t in self._db.execute("SELECT name, pgid, start_ticks FROM children")
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
