"""The sender policy's durable state: approved and denied senders, pending pairing requests,
held messages and drop counts (the policy itself is in convosd.conversation.pairing)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

_TABLES = ("approved_senders", "denied_senders", "pairing_requests", "held_messages")


@dataclass(frozen=True, slots=True)
class PairingRequest:
    code: str
    sender_inbox_id: str
    sender_name: str | None
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class PairingSnapshot:
    """Everything the policy keeps in memory, as stored."""

    #: approved sender -> how ("pairing": the operator approved; "admitted": our invite)
    approved: dict[str, str]
    #: denied sender -> when
    denied: dict[str, float]
    requests: list[PairingRequest]
    #: reason -> messages dropped for it
    dropped: dict[str, int]
    held: int


class PairingState:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    # --- reading ------------------------------------------------------------------------

    def load(self) -> PairingSnapshot:
        db = self._db
        return PairingSnapshot(
            approved={
                str(i): str(how)
                for i, how in db.execute("SELECT inbox_id, how FROM approved_senders")
            },
            denied={
                str(i): float(at) for i, at in db.execute("SELECT inbox_id, at FROM denied_senders")
            },
            requests=[
                PairingRequest(str(r[0]), str(r[1]), r[2], float(r[3]), float(r[4]))
                for r in db.execute(
                    "SELECT code, sender_inbox_id, sender_name, created_at, expires_at "
                    "FROM pairing_requests"
                )
            ],
            dropped={
                str(r): int(c) for r, c in db.execute("SELECT reason, count FROM policy_counts")
            },
            held=int(db.execute("SELECT COUNT(*) FROM held_messages").fetchone()[0]),
        )

    def held_per_sender(self) -> dict[str, int]:
        return {
            str(sender): int(count)
            for sender, count in self._db.execute(
                "SELECT sender_inbox_id, COUNT(*) FROM held_messages GROUP BY sender_inbox_id"
            )
        }

    def held_bodies(self, sender: str) -> list[str]:
        """The held messages of ``sender`` (event fields as JSON text), in arrival order."""
        return [
            str(body)
            for (body,) in self._db.execute(
                "SELECT body FROM held_messages WHERE sender_inbox_id = ? ORDER BY id", (sender,)
            )
        ]

    # --- writing (inside a transaction) -------------------------------------------------

    def hold(self, message_id: str, sender: str, body: str, at: float) -> None:
        """Keep a message until its sender is approved or denied (once per message id)."""
        self._db.execute(
            "INSERT OR IGNORE INTO held_messages (message_id, sender_inbox_id, body, held_at) "
            "VALUES (?, ?, ?, ?)",
            (message_id, sender, body, at),
        )

    def open_request(self, request: PairingRequest) -> None:
        self._db.execute(
            "INSERT INTO pairing_requests (code, sender_inbox_id, sender_name, created_at, "
            "expires_at) VALUES (?, ?, ?, ?, ?)",
            (
                request.code,
                request.sender_inbox_id,
                request.sender_name,
                request.created_at,
                request.expires_at,
            ),
        )

    def close_request(self, code: str, sender: str) -> int:
        """Remove the request and drop its sender's held messages; returns how many."""
        dropped = self._db.execute(
            "DELETE FROM held_messages WHERE sender_inbox_id = ?", (sender,)
        ).rowcount
        self._db.execute("DELETE FROM pairing_requests WHERE code = ?", (code,))
        return int(dropped)

    def count_drops(self, reason: str, count: int = 1) -> None:
        self._db.execute(
            "INSERT INTO policy_counts (reason, count) VALUES (?, ?) "
            "ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count",
            (reason, count),
        )

    def approve(self, sender: str, how: str, at: float) -> None:
        """Approve ``sender`` (``how``: "pairing" or "admitted"), forgetting a denial."""
        self._db.execute(
            "INSERT OR REPLACE INTO approved_senders (inbox_id, how, at) VALUES (?, ?, ?)",
            (sender, how, at),
        )

    def forget_denial(self, sender: str) -> None:
        self._db.execute("DELETE FROM denied_senders WHERE inbox_id = ?", (sender,))

    def deny(self, sender: str, at: float) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO denied_senders (inbox_id, at) VALUES (?, ?)", (sender, at)
        )

    def clear(self, *, counts: bool = False) -> None:
        """Approvals, denials, requests and held messages go; with ``counts``, the counts."""
        for table in _TABLES:
            self._db.execute(f"DELETE FROM {table}")
        if counts:
            self._db.execute("DELETE FROM policy_counts")
