"""Facts kept in the ``meta`` table, one value per named key."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Literal

MetaKey = Literal[
    "journal_id",  # the journal's id (a new one at each reset)
    "last_seq",  # the journal's last seq, kept when retention empties it
    "max_sent_at",  # the newest journaled message's sentAt (the backfill cursor's base)
    "cli_version",  # the CLI version last used
    "cli_bindings_version",  # its native bindings' version
    "owner_conversation_id",  # the conversation this instance created as its owner's
    "owner_identity_id",  # the identity that conversation belongs to
    "pending_as_owner",  # set while a pending join would bind as the owner's conversation
    "departed",  # {conversationId, inboxIds}: whose member_left is journaled (not back since)
    "past_conversation_ids",  # the conversations the identity was bound to (a JSON list)
    "adds_refused",  # adds by inboxes not allowed to add the instance, refused so far
    "search_indexed_seq",  # events up to it are in the search index's FTS5 table
]


class Meta:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def get(self, key: MetaKey) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set(self, key: MetaKey, value: str | None) -> None:
        """Set ``key`` to ``value``; None removes it."""
        if value is None:
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def set_all(self, items: Sequence[tuple[MetaKey, str]]) -> None:
        """Set each ``(key, value)`` of ``items`` in one statement (a journal append sets
        two: one round trip into SQLite instead of two)."""
        if not items:
            return
        marks = ",".join(["(?, ?)"] * len(items))
        self._db.execute(
            f"INSERT INTO meta (key, value) VALUES {marks} "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [part for item in items for part in item],
        )
