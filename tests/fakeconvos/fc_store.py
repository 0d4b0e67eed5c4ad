"""The shared fake XMTP network: one SQLite database (WAL) per XMTP env under FAKECONVOS_NETWORK.

Every write runs in ``BEGIN IMMEDIATE`` so many processes can use it at once. Message content
is stored structured (JSON) and rendered for each reader, like libxmtp decodes and the CLI's
normalizeMessageContent() renders it.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS inboxes (
    inbox_id TEXT PRIMARY KEY, address TEXT NOT NULL, created_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS installations (
    installation_id TEXT PRIMARY KEY, inbox_id TEXT NOT NULL, created_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, created_ns INTEGER NOT NULL,
    creator_inbox TEXT NOT NULL, name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '', image_url TEXT NOT NULL DEFAULT '',
    preset INTEGER NOT NULL DEFAULT 0, policy TEXT NOT NULL DEFAULT '{}',
    app_data TEXT NOT NULL DEFAULT '{}', dm_a TEXT, dm_b TEXT);
CREATE TABLE IF NOT EXISTS members (
    conv_id TEXT NOT NULL, inbox_id TEXT NOT NULL, level INTEGER NOT NULL DEFAULT 0,
    added_seq INTEGER NOT NULL, removed_seq INTEGER, consent INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS members_by_inbox ON members (inbox_id, conv_id);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, conv_id TEXT NOT NULL,
    sender TEXT NOT NULL, authority TEXT NOT NULL, type_id TEXT NOT NULL,
    version_major INTEGER NOT NULL, version_minor INTEGER NOT NULL, kind INTEGER NOT NULL,
    content TEXT NOT NULL, sent_ns INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_conv ON messages (conv_id, seq);
CREATE INDEX IF NOT EXISTS messages_by_sent ON messages (sent_ns);
CREATE INDEX IF NOT EXISTS messages_by_conv_sent ON messages (conv_id, sent_ns);
CREATE TABLE IF NOT EXISTS streams (
    pid INTEGER NOT NULL, kind TEXT NOT NULL, conv_id TEXT, inbox_id TEXT NOT NULL,
    home TEXT NOT NULL, started_ns INTEGER NOT NULL);
"""

# PermissionPolicy: Allow 0, Deny 1, Admin 2, SuperAdmin 3. Key order as node-bindings prints it.
POLICY_KEYS = [
    "addMemberPolicy",
    "removeMemberPolicy",
    "addAdminPolicy",
    "removeAdminPolicy",
    "updateGroupNamePolicy",
    "updateGroupDescriptionPolicy",
    "updateGroupImageUrlSquarePolicy",
    "updateMessageDisappearingPolicy",
    "updateAppDataPolicy",
]
PRESETS = {
    0: dict(zip(POLICY_KEYS, [0, 2, 3, 3, 0, 0, 0, 2, 0], strict=True)),  # all-members (Default)
    1: dict(zip(POLICY_KEYS, [2, 2, 3, 3, 2, 2, 2, 2, 2], strict=True)),  # admin-only
}

CT_TEXT = ("xmtp.org", "text", 1, 0)
CT_REPLY = ("xmtp.org", "reply", 1, 0)
CT_REACTION = ("xmtp.org", "reaction", 2, 0)
CT_GROUP_UPDATED = ("xmtp.org", "group_updated", 1, 0)
CT_PROFILE_UPDATE = ("convos.org", "profile_update", 1, 0)
CT_PROFILE_SNAPSHOT = ("convos.org", "profile_snapshot", 1, 0)
CT_EXPLODE = ("convos.org", "explode_settings", 1, 0)
CT_JOIN_REQUEST = ("convos.org", "join_request", 1, 0)

KIND_APPLICATION = 0
KIND_MEMBERSHIP = 1


def now_ns() -> int:
    return time.time_ns()


def new_hex(nbytes: int) -> str:
    return secrets.token_hex(nbytes)


@dataclass
class Message:
    seq: int
    id: str
    conv_id: str
    sender: str
    content_type: tuple[str, str, int, int]
    kind: int
    content: Any
    sent_ns: int


def _row_message(row: sqlite3.Row) -> Message:
    return Message(
        seq=row["seq"],
        id=row["id"],
        conv_id=row["conv_id"],
        sender=row["sender"],
        content_type=(row["authority"], row["type_id"], row["version_major"], row["version_minor"]),
        kind=row["kind"],
        content=json.loads(row["content"]),
        sent_ns=row["sent_ns"],
    )


class Store:
    def __init__(self, network_dir: str, env: str) -> None:
        os.makedirs(network_dir, exist_ok=True)
        self.path = os.path.join(network_dir, f"{env}.sqlite3")
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA busy_timeout = 60000")
        deadline = time.monotonic() + 60
        while True:  # switching to WAL can fail with SQLITE_BUSY without waiting
            try:
                if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute("PRAGMA synchronous = NORMAL")
                if self.db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] < 8:
                    with self.write():
                        for statement in SCHEMA.split(";"):
                            if statement.strip():
                                self.db.execute(statement)
                break
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ─── identities ───

    def register(self, inbox_id: str, address: str, installation_id: str) -> None:
        with self.write() as db:
            db.execute(
                "INSERT OR IGNORE INTO inboxes VALUES (?, ?, ?)", (inbox_id, address, now_ns())
            )
            db.execute(
                "INSERT OR IGNORE INTO installations VALUES (?, ?, ?)",
                (installation_id, inbox_id, now_ns()),
            )

    def address_of(self, inbox_id: str) -> str | None:
        row = self.db.execute(
            "SELECT address FROM inboxes WHERE inbox_id = ?", (inbox_id,)
        ).fetchone()
        return row["address"] if row else None

    # ─── conversations ───

    def conversation(self, conv_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM conversations WHERE id = ?", (conv_id,)
        ).fetchone()
        return row

    def membership(self, conv_id: str, inbox_id: str) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT * FROM members WHERE conv_id = ? AND inbox_id = ? ORDER BY added_seq",
            (conv_id, inbox_id),
        ).fetchall()

    def knows(self, conv_id: str, inbox_id: str) -> bool:
        return bool(self.membership(conv_id, inbox_id))

    def is_active(self, conv_id: str, inbox_id: str) -> bool:
        return any(r["removed_seq"] is None for r in self.membership(conv_id, inbox_id))

    def current_members(self, conv_id: str) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT * FROM members WHERE conv_id = ? AND removed_seq IS NULL"
            " ORDER BY added_seq, rowid",
            (conv_id,),
        ).fetchall()

    def known_conversations(self, inbox_id: str) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT * FROM conversations"
            " WHERE id IN (SELECT conv_id FROM members WHERE inbox_id = ?) ORDER BY created_ns, id",
            (inbox_id,),
        ).fetchall()

    def max_seq(self) -> int:
        row = self.db.execute("SELECT MAX(seq) AS s FROM messages").fetchone()
        return int(row["s"] or 0)

    def _insert_message(
        self,
        db: sqlite3.Connection,
        conv_id: str,
        sender: str,
        content_type: tuple[str, str, int, int],
        content: Any,
        kind: int = KIND_APPLICATION,
        stamp: int = 0,
    ) -> tuple[str, int]:
        last = db.execute("SELECT MAX(sent_ns) AS s FROM messages").fetchone()["s"] or 0
        # ``stamp``: a burst stamped by the caller (consecutive nanoseconds from there)
        sent = max(stamp, int(last) + 1) if stamp else max(now_ns(), int(last) + 1)
        message_id = new_hex(32)
        cursor = db.execute(
            "INSERT INTO messages (id, conv_id, sender, authority, type_id, version_major,"
            " version_minor, kind, content, sent_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (message_id, conv_id, sender, *content_type, kind, json.dumps(content), sent),
        )
        seq = cursor.lastrowid
        assert seq is not None
        return message_id, seq

    def send(
        self,
        conv_id: str,
        sender: str,
        content_type: tuple[str, str, int, int],
        content: Any,
        kind: int = KIND_APPLICATION,
        *,
        same_ms: tuple[Any, ...] = (),
    ) -> str:
        """Send one message; ``same_ms`` contents are sent right after it, all stamped within
        the same millisecond (consecutive nanoseconds), like a busy group's burst."""
        with self.write() as db:
            self._require_active(db, conv_id, sender)
            stamp = 0
            if same_ms:
                last = db.execute("SELECT MAX(sent_ns) AS s FROM messages").fetchone()["s"] or 0
                stamp = max(now_ns(), int(last) + 1)
                if stamp % 1_000_000 + len(same_ms) >= 1_000_000:
                    stamp += 1_000_000 - stamp % 1_000_000  # they all fit in the next ms
            message_id, _ = self._insert_message(
                db, conv_id, sender, content_type, content, kind, stamp
            )
            for extra in same_ms:
                self._insert_message(db, conv_id, sender, content_type, extra, kind, stamp)
            db.execute(
                "UPDATE members SET consent = 1"
                " WHERE conv_id = ? AND inbox_id = ? AND removed_seq IS NULL",
                (conv_id, sender),
            )
            return message_id

    def _require_active(self, db: sqlite3.Connection, conv_id: str, inbox_id: str) -> None:
        row = db.execute(
            "SELECT 1 FROM members WHERE conv_id = ? AND inbox_id = ? AND removed_seq IS NULL",
            (conv_id, inbox_id),
        ).fetchone()
        if row is None:
            raise GroupError("[GroupError::GroupInactive] Group is inactive")

    def create_group(
        self,
        creator: str,
        name: str,
        description: str,
        image_url: str,
        preset: int,
    ) -> str:
        conv_id = new_hex(16)
        with self.write() as db:
            db.execute(
                "INSERT INTO conversations (id, kind, created_ns, creator_inbox, name,"
                " description, image_url, preset, policy, app_data)"
                " VALUES (?, 'group', ?, ?, ?, ?, ?, ?, ?, '{}')",
                (
                    conv_id,
                    now_ns(),
                    creator,
                    name,
                    description,
                    image_url,
                    preset,
                    json.dumps(PRESETS[preset]),
                ),
            )
            db.execute(
                "INSERT INTO members (conv_id, inbox_id, level, added_seq, consent)"
                " VALUES (?, ?, 2, 0, 1)",
                (conv_id, creator),
            )
        return conv_id

    def policy(self, conv: sqlite3.Row) -> dict[str, int]:
        return dict(json.loads(conv["policy"]))

    def app_data(self, conv: sqlite3.Row) -> dict[str, Any]:
        return dict(json.loads(conv["app_data"]))

    def _actor_level(self, db: sqlite3.Connection, conv_id: str, inbox_id: str) -> int:
        row = db.execute(
            "SELECT level FROM members WHERE conv_id = ? AND inbox_id = ? AND removed_seq IS NULL",
            (conv_id, inbox_id),
        ).fetchone()
        if row is None:
            raise GroupError("[GroupError::GroupInactive] Group is inactive")
        return int(row["level"])

    def _check(self, db: sqlite3.Connection, conv_id: str, actor: str, policy_key: str) -> None:
        level = self._actor_level(db, conv_id, actor)
        conv = db.execute("SELECT policy FROM conversations WHERE id = ?", (conv_id,)).fetchone()
        policy = json.loads(conv["policy"])[policy_key]
        allowed = {0: True, 1: False, 2: level >= 1, 3: level >= 2}.get(policy, False)
        if not allowed:
            raise GroupError(PERMISSION_ERROR)

    def update_app_data(self, conv_id: str, actor: str, changes: dict[str, Any]) -> None:
        with self.write() as db:
            self._check(db, conv_id, actor, "updateAppDataPolicy")
            conv = db.execute(
                "SELECT app_data FROM conversations WHERE id = ?", (conv_id,)
            ).fetchone()
            old = json.loads(conv["app_data"])
            new = {**old, **changes}
            db.execute(
                "UPDATE conversations SET app_data = ? WHERE id = ?", (json.dumps(new), conv_id)
            )
            if old != new:
                content = {"initiator": actor, "appData": {"old": old, "new": new}}
                self._insert_message(db, conv_id, actor, CT_GROUP_UPDATED, content, KIND_MEMBERSHIP)

    def update_field(self, conv_id: str, actor: str, column: str, value: str) -> None:
        policy_key, field = {
            "name": ("updateGroupNamePolicy", "group_name"),
            "description": ("updateGroupDescriptionPolicy", "description"),
        }[column]
        with self.write() as db:
            self._check(db, conv_id, actor, policy_key)
            old = db.execute(
                f"SELECT {column} FROM conversations WHERE id = ?", (conv_id,)
            ).fetchone()[0]
            db.execute(f"UPDATE conversations SET {column} = ? WHERE id = ?", (value, conv_id))
            if old != value:
                content = {
                    "initiator": actor,
                    "fields": [{"field": field, "old": old, "new": value}],
                }
                self._insert_message(db, conv_id, actor, CT_GROUP_UPDATED, content, KIND_MEMBERSHIP)

    def update_permission(self, conv_id: str, actor: str, policy_key: str, value: int) -> None:
        with self.write() as db:
            if self._actor_level(db, conv_id, actor) < 2:
                raise GroupError(PERMISSION_ERROR)
            conv = db.execute(
                "SELECT policy FROM conversations WHERE id = ?", (conv_id,)
            ).fetchone()
            policy = json.loads(conv["policy"])
            policy[policy_key] = value
            db.execute(
                "UPDATE conversations SET policy = ? WHERE id = ?", (json.dumps(policy), conv_id)
            )

    def add_member(self, conv_id: str, actor: str, inbox_id: str) -> bool:
        """addMembers([inbox]); False when it already is a member (no commit, no error)."""
        with self.write() as db:
            present = db.execute(
                "SELECT 1 FROM members WHERE conv_id = ? AND inbox_id = ? AND removed_seq IS NULL",
                (conv_id, inbox_id),
            ).fetchone()
            if present:
                self._actor_level(db, conv_id, actor)
                return False
            self._check(db, conv_id, actor, "addMemberPolicy")
            content = {"initiator": actor, "added": [inbox_id]}
            _, seq = self._insert_message(
                db, conv_id, actor, CT_GROUP_UPDATED, content, KIND_MEMBERSHIP
            )
            db.execute(
                "INSERT INTO members (conv_id, inbox_id, level, added_seq, consent)"
                " VALUES (?, ?, 0, ?, 0)",
                (conv_id, inbox_id, seq),
            )
            return True

    def remove_members(self, conv_id: str, actor: str, inbox_ids: list[str]) -> None:
        if not inbox_ids:
            return
        with self.write() as db:
            self._check(db, conv_id, actor, "removeMemberPolicy")
            for inbox_id in inbox_ids:
                row = db.execute(
                    "SELECT level FROM members"
                    " WHERE conv_id = ? AND inbox_id = ? AND removed_seq IS NULL",
                    (conv_id, inbox_id),
                ).fetchone()
                if row is not None and row["level"] >= 2 and inbox_id != actor:
                    raise GroupError(PERMISSION_ERROR)
            content = {"initiator": actor, "removed": inbox_ids}
            _, seq = self._insert_message(
                db, conv_id, actor, CT_GROUP_UPDATED, content, KIND_MEMBERSHIP
            )
            db.executemany(
                "UPDATE members SET removed_seq = ? WHERE conv_id = ? AND inbox_id = ?"
                " AND removed_seq IS NULL",
                [(seq, conv_id, inbox_id) for inbox_id in inbox_ids],
            )

    # ─── DMs ───

    def create_dm(self, me: str, peer: str) -> str:
        low, high = sorted((me, peer))
        with self.write() as db:
            row = db.execute(
                "SELECT id FROM conversations WHERE kind = 'dm' AND dm_a = ? AND dm_b = ?",
                (low, high),
            ).fetchone()
            if row is not None:
                db.execute(
                    "UPDATE members SET consent = 1 WHERE conv_id = ? AND inbox_id = ?",
                    (row["id"], me),
                )
                return str(row["id"])
            conv_id = new_hex(16)
            db.execute(
                "INSERT INTO conversations (id, kind, created_ns, creator_inbox, dm_a, dm_b)"
                " VALUES (?, 'dm', ?, ?, ?, ?)",
                (conv_id, now_ns(), me, low, high),
            )
            db.execute(
                "INSERT INTO members (conv_id, inbox_id, level, added_seq, consent)"
                " VALUES (?, ?, 0, 0, 1)",
                (conv_id, me),
            )
            if peer != me:
                db.execute(
                    "INSERT INTO members (conv_id, inbox_id, level, added_seq, consent)"
                    " VALUES (?, ?, 0, 0, 0)",
                    (conv_id, peer),
                )
            return conv_id

    def send_dm(
        self, conv_id: str, sender: str, content_type: tuple[str, str, int, int], content: Any
    ) -> str:
        with self.write() as db:
            message_id, _ = self._insert_message(db, conv_id, sender, content_type, content)
            return message_id

    def set_consent(self, conv_id: str, inbox_id: str, state: int) -> None:
        with self.write() as db:
            db.execute(
                "UPDATE members SET consent = ? WHERE conv_id = ? AND inbox_id = ?",
                (state, conv_id, inbox_id),
            )

    def consent(self, conv_id: str, inbox_id: str) -> int:
        rows = self.membership(conv_id, inbox_id)
        return int(rows[-1]["consent"]) if rows else 0

    def dms_with_consent(self, inbox_id: str, states: tuple[int, ...]) -> list[sqlite3.Row]:
        marks = ",".join("?" * len(states))
        return self.db.execute(
            "SELECT c.* FROM conversations c JOIN members m ON m.conv_id = c.id"
            f" WHERE c.kind = 'dm' AND m.inbox_id = ? AND m.consent IN ({marks})"
            " ORDER BY c.created_ns",
            (inbox_id, *states),
        ).fetchall()

    # ─── reading messages ───

    _VISIBLE = (
        "EXISTS (SELECT 1 FROM members mb WHERE mb.conv_id = m.conv_id AND mb.inbox_id = ?"
        " AND mb.added_seq <= m.seq AND (mb.removed_seq IS NULL OR m.seq <= mb.removed_seq))"
    )

    def messages(
        self,
        conv_id: str,
        viewer: str,
        *,
        after_seq: int = 0,
        descending: bool = False,
        limit: int | None = None,
    ) -> list[Message]:
        sql = (
            f"SELECT * FROM messages m WHERE m.conv_id = ? AND m.seq > ? AND {self._VISIBLE}"
            f" ORDER BY m.seq {'DESC' if descending else 'ASC'}"
        )
        params: list[Any] = [conv_id, after_seq, viewer]
        if limit is not None and limit > 0:
            sql += " LIMIT ?"
            params.append(limit)
        return [_row_message(r) for r in self.db.execute(sql, params).fetchall()]

    def messages_sent(
        self,
        conv_id: str,
        viewer: str,
        *,
        sent_after_ns: int | None = None,
        sent_before_ns: int | None = None,
        descending: bool = False,
    ) -> Iterator[Message]:
        """The messages ``viewer`` can see, in ``sent_ns`` order (libxmtp's order for
        ``conversation messages``), both bounds exclusive, read lazily: a caller that stops
        after its limit reads no further (libxmtp answers a page from its index, whatever
        the conversation's size)."""
        sql = f"SELECT * FROM messages m WHERE m.conv_id = ? AND {self._VISIBLE}"
        params: list[Any] = [conv_id, viewer]
        if sent_after_ns is not None:
            sql += " AND m.sent_ns > ?"
            params.append(sent_after_ns)
        if sent_before_ns is not None:
            sql += " AND m.sent_ns < ?"
            params.append(sent_before_ns)
        order = "DESC" if descending else "ASC"
        sql += f" ORDER BY m.sent_ns {order}, m.seq {order}"
        cursor = self.db.execute(sql, params)
        try:
            while rows := cursor.fetchmany(256):
                for row in rows:
                    yield _row_message(row)
        finally:
            cursor.close()

    def message_by_id(self, message_id: str, viewer: str) -> Message | None:
        row = self.db.execute(
            f"SELECT * FROM messages m WHERE m.id = ? AND {self._VISIBLE}", (message_id, viewer)
        ).fetchone()
        return _row_message(row) if row else None

    def dm_messages_since(self, viewer: str, after_seq: int) -> list[Message]:
        rows = self.db.execute(
            "SELECT m.* FROM messages m JOIN conversations c ON c.id = m.conv_id"
            " JOIN members mb ON mb.conv_id = c.id AND mb.inbox_id = ?"
            " WHERE c.kind = 'dm' AND m.seq > ? AND mb.consent != 2 ORDER BY m.seq",
            (viewer, after_seq),
        ).fetchall()
        return [_row_message(r) for r in rows]

    # ─── live streams (so tests can tell when a stream is listening) ───

    def stream_started(self, kind: str, conv_id: str | None, inbox_id: str, home: str) -> None:
        with self.write() as db:
            db.execute(
                "INSERT INTO streams VALUES (?, ?, ?, ?, ?, ?)",
                (os.getpid(), kind, conv_id, inbox_id, home, now_ns()),
            )


PERMISSION_ERROR = "[GroupError::CommitValidation] Commit validation error Insufficient permissions"


class GroupError(Exception):
    """An error libxmtp raises (the CLI shows it as an unexpected error, with help)."""
