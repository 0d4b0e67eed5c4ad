"""The node's durable state in one SQLite file: ids only ever increase (AUTOINCREMENT never
reuses one, even across a restart), so clients' cursors stay valid when the node restarts."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

ASCENDING, DESCENDING = 1, 2
DEFAULT_LIMIT = 100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS identity_updates (
    sequence_id INTEGER PRIMARY KEY AUTOINCREMENT,
    inbox_id TEXT NOT NULL,
    server_timestamp_ns INTEGER NOT NULL,
    update_bytes BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS identity_updates_inbox ON identity_updates (inbox_id, sequence_id);
CREATE TABLE IF NOT EXISTS inbox_ids (
    identifier TEXT NOT NULL,
    identifier_kind INTEGER NOT NULL,
    inbox_id TEXT NOT NULL,
    PRIMARY KEY (identifier, identifier_kind)
);
CREATE TABLE IF NOT EXISTS key_packages (
    installation_key BLOB PRIMARY KEY,
    key_package BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS group_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id BLOB NOT NULL,
    created_ns INTEGER NOT NULL,
    data BLOB NOT NULL,
    digest BLOB NOT NULL UNIQUE,
    sender_hmac BLOB NOT NULL,
    should_push INTEGER NOT NULL,
    is_commit INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS group_messages_topic ON group_messages (group_id, id);
CREATE TABLE IF NOT EXISTS welcome_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    installation_key BLOB NOT NULL,
    created_ns INTEGER NOT NULL,
    is_pointer INTEGER NOT NULL,
    data BLOB NOT NULL,
    hpke_public_key BLOB NOT NULL,
    wrapper_algorithm INTEGER NOT NULL,
    welcome_metadata BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS welcome_messages_topic ON welcome_messages (installation_key, id);
CREATE TABLE IF NOT EXISTS commit_log (
    sequence_id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id BLOB NOT NULL,
    entry BLOB NOT NULL,
    signature BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS commit_log_group ON commit_log (group_id, sequence_id);
"""


@dataclass(frozen=True, slots=True)
class GroupRow:
    id: int
    group_id: bytes
    created_ns: int
    data: bytes
    sender_hmac: bytes
    should_push: bool
    is_commit: bool


@dataclass(frozen=True, slots=True)
class WelcomeRow:
    id: int
    installation_key: bytes
    created_ns: int
    is_pointer: bool
    data: bytes
    hpke_public_key: bytes
    wrapper_algorithm: int
    welcome_metadata: bytes


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a topic query: the rows and the cursor for the next page (0: no more)."""

    rows: list[tuple[int, object]]
    next_cursor: int


def _now_ns() -> int:
    return time.time_ns()


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    # identity -------------------------------------------------------------------------

    def publish_identity_update(
        self,
        inbox_id: str,
        update: bytes,
        associate: list[tuple[str, int]],
        revoke: list[tuple[str, int]],
    ) -> int:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            cursor = self.db.execute(
                "INSERT INTO identity_updates (inbox_id, server_timestamp_ns, update_bytes)"
                " VALUES (?, ?, ?)",
                (inbox_id, _now_ns(), update),
            )
            for identifier, kind in associate:
                self.db.execute(
                    "INSERT OR REPLACE INTO inbox_ids VALUES (?, ?, ?)",
                    (identifier.lower(), kind, inbox_id),
                )
            for identifier, kind in revoke:
                self.db.execute(
                    "DELETE FROM inbox_ids WHERE identifier = ? AND identifier_kind = ?"
                    " AND inbox_id = ?",
                    (identifier.lower(), kind, inbox_id),
                )
        return int(cursor.lastrowid or 0)

    def identity_updates(self, inbox_id: str, after: int) -> list[tuple[int, int, bytes]]:
        return list(
            self.db.execute(
                "SELECT sequence_id, server_timestamp_ns, update_bytes FROM identity_updates"
                " WHERE inbox_id = ? AND sequence_id > ? ORDER BY sequence_id",
                (inbox_id, after),
            )
        )

    def inbox_id(self, identifier: str, kind: int) -> str | None:
        row = self.db.execute(
            "SELECT inbox_id FROM inbox_ids WHERE identifier = ? AND identifier_kind IN (?, 0)",
            (identifier.lower(), kind),
        ).fetchone()
        return None if row is None else str(row[0])

    # key packages ---------------------------------------------------------------------

    def put_key_package(self, installation_key: bytes, key_package: bytes) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO key_packages VALUES (?, ?)", (installation_key, key_package)
        )

    def key_package(self, installation_key: bytes) -> bytes | None:
        row = self.db.execute(
            "SELECT key_package FROM key_packages WHERE installation_key = ?",
            (installation_key,),
        ).fetchone()
        return None if row is None else bytes(row[0])

    # group messages -------------------------------------------------------------------

    def add_group_message(
        self, group_id: bytes, data: bytes, sender_hmac: bytes, should_push: bool, is_commit: bool
    ) -> int | None:
        """Store one message; None when the exact same bytes were already stored."""
        digest = hashlib.sha256(data).digest()
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO group_messages"
            " (group_id, created_ns, data, digest, sender_hmac, should_push, is_commit)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (group_id, _now_ns(), data, digest, sender_hmac, int(should_push), int(is_commit)),
        )
        return int(cursor.lastrowid) if cursor.rowcount == 1 and cursor.lastrowid else None

    _GROUP_COLUMNS = "id, group_id, created_ns, data, sender_hmac, should_push, is_commit"

    @staticmethod
    def _group_row(row: tuple[object, ...]) -> GroupRow:
        id_, group_id, created_ns, data, hmac, push, commit = row
        return GroupRow(
            int(id_),  # type: ignore[call-overload]
            bytes(group_id),  # type: ignore[call-overload]
            int(created_ns),  # type: ignore[call-overload]
            bytes(data),  # type: ignore[call-overload]
            bytes(hmac),  # type: ignore[call-overload]
            bool(push),
            bool(commit),
        )

    def query_group(
        self, group_id: bytes, direction: int, cursor: int, limit: int
    ) -> tuple[list[GroupRow], int]:
        rows = self._page(
            "group_messages", self._GROUP_COLUMNS, "group_id", group_id, direction, cursor, limit
        )
        found = [self._group_row(row) for row in rows]
        return found, _next_cursor(found, limit)

    def group_after(self, cursors: dict[bytes, int], limit: int = 500) -> list[GroupRow]:
        """Messages on any of the groups with an id above that group's cursor, ascending."""
        found: list[GroupRow] = []
        for group_id, after in cursors.items():
            found.extend(
                self._group_row(row)
                for row in self.db.execute(
                    f"SELECT {self._GROUP_COLUMNS} FROM group_messages"
                    " WHERE group_id = ? AND id > ? ORDER BY id LIMIT ?",
                    (group_id, after, limit),
                )
            )
        found.sort(key=lambda row: row.id)
        return found

    def newest_group_message(self, group_id: bytes) -> GroupRow | None:
        row = self.db.execute(
            f"SELECT {self._GROUP_COLUMNS} FROM group_messages WHERE group_id = ?"
            " ORDER BY id DESC LIMIT 1",
            (group_id,),
        ).fetchone()
        return None if row is None else self._group_row(row)

    # welcomes -------------------------------------------------------------------------

    def add_welcome(
        self,
        installation_key: bytes,
        is_pointer: bool,
        data: bytes,
        hpke_public_key: bytes,
        wrapper_algorithm: int,
        welcome_metadata: bytes,
    ) -> int:
        cursor = self.db.execute(
            "INSERT INTO welcome_messages (installation_key, created_ns, is_pointer, data,"
            " hpke_public_key, wrapper_algorithm, welcome_metadata) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                installation_key,
                _now_ns(),
                int(is_pointer),
                data,
                hpke_public_key,
                wrapper_algorithm,
                welcome_metadata,
            ),
        )
        return int(cursor.lastrowid or 0)

    _WELCOME_COLUMNS = (
        "id, installation_key, created_ns, is_pointer, data, hpke_public_key,"
        " wrapper_algorithm, welcome_metadata"
    )

    @staticmethod
    def _welcome_row(row: tuple[object, ...]) -> WelcomeRow:
        id_, key, created_ns, pointer, data, hpke, algorithm, metadata = row
        return WelcomeRow(
            int(id_),  # type: ignore[call-overload]
            bytes(key),  # type: ignore[call-overload]
            int(created_ns),  # type: ignore[call-overload]
            bool(pointer),
            bytes(data),  # type: ignore[call-overload]
            bytes(hpke),  # type: ignore[call-overload]
            int(algorithm),  # type: ignore[call-overload]
            bytes(metadata),  # type: ignore[call-overload]
        )

    def query_welcomes(
        self, installation_key: bytes, direction: int, cursor: int, limit: int
    ) -> tuple[list[WelcomeRow], int]:
        rows = self._page(
            "welcome_messages",
            self._WELCOME_COLUMNS,
            "installation_key",
            installation_key,
            direction,
            cursor,
            limit,
        )
        found = [self._welcome_row(row) for row in rows]
        return found, _next_cursor(found, limit)

    def welcomes_after(self, cursors: dict[bytes, int], limit: int = 500) -> list[WelcomeRow]:
        found: list[WelcomeRow] = []
        for key, after in cursors.items():
            found.extend(
                self._welcome_row(row)
                for row in self.db.execute(
                    f"SELECT {self._WELCOME_COLUMNS} FROM welcome_messages"
                    " WHERE installation_key = ? AND id > ? ORDER BY id LIMIT ?",
                    (key, after, limit),
                )
            )
        found.sort(key=lambda row: row.id)
        return found

    # commit log -----------------------------------------------------------------------

    def add_commit_log(self, group_id: bytes, entry: bytes, signature: bytes) -> int:
        cursor = self.db.execute(
            "INSERT INTO commit_log (group_id, entry, signature) VALUES (?, ?, ?)",
            (group_id, entry, signature),
        )
        return int(cursor.lastrowid or 0)

    def query_commit_log(
        self, group_id: bytes, direction: int, cursor: int, limit: int
    ) -> tuple[list[tuple[int, bytes, bytes]], int]:
        rows = [
            (int(seq), bytes(entry), bytes(signature))
            for seq, entry, signature in self._page(
                "commit_log",
                "sequence_id, entry, signature",
                "group_id",
                group_id,
                direction,
                cursor,
                limit,
                id_column="sequence_id",
            )
        ]
        next_cursor = rows[-1][0] if rows and len(rows) >= limit else 0
        return rows, next_cursor

    # paging ---------------------------------------------------------------------------

    def _page(
        self,
        table: str,
        columns: str,
        key_column: str,
        key: bytes,
        direction: int,
        cursor: int,
        limit: int,
        id_column: str = "id",
    ) -> list[tuple[object, ...]]:
        """Ascending: ids above the cursor; descending: ids below it (0: from the newest)."""
        if direction == DESCENDING:
            where, order = (f"AND {id_column} < ?", "DESC") if cursor else ("AND ? = 0", "DESC")
        else:
            where, order = f"AND {id_column} > ?", "ASC"
        return list(
            self.db.execute(
                f"SELECT {columns} FROM {table} WHERE {key_column} = ? {where}"
                f" ORDER BY {id_column} {order} LIMIT ?",
                (key, cursor, limit),
            )
        )


def _next_cursor(rows: list[GroupRow] | list[WelcomeRow], limit: int) -> int:
    return rows[-1].id if rows and len(rows) >= limit else 0


def page_limit(requested: int) -> int:
    return requested if requested > 0 else DEFAULT_LIMIT
