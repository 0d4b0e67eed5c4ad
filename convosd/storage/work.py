"""Units of work: the writes that must stand or fall with a journal batch.

The sender policy and the send path describe their writes as these frozen values (a held
message, a pairing request, a drop count, an approval, a settled idempotency key) instead of
running SQL themselves; :meth:`convosd.storage.journal.Journal.append` applies them with
:func:`apply` inside the batch's transaction, so the batch's events, its seen ids and these
writes commit together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from convosd.storage.pairing import PairingRequest
from convosd.storage.store import Store


@dataclass(frozen=True, slots=True)
class HoldMessage:
    """Keep a message from a sender not approved yet (``body``: its event fields, JSON)."""

    message_id: str
    sender_inbox_id: str
    body: str
    held_at: float


@dataclass(frozen=True, slots=True)
class OpenPairingRequest:
    request: PairingRequest


@dataclass(frozen=True, slots=True)
class CountDrops:
    reason: str
    count: int = 1


@dataclass(frozen=True, slots=True)
class ApproveSender:
    """The operator approved the request ``code``: its held messages (journaled by the same
    batch) and the request go, the sender is approved and any denial forgotten."""

    sender_inbox_id: str
    code: str
    at: float


@dataclass(frozen=True, slots=True)
class SettleKey:
    """An idempotency key is done with ``message_id`` (``body``: its result, JSON). Fails
    the batch when the message already settled another key."""

    key: str
    message_id: str
    body: str


@dataclass(frozen=True, slots=True)
class MarkDeparted:
    """``member_left`` of ``inbox_id`` is journaled (``departed``), or they are a member
    again (not ``departed``): the durable key that journals a departure once, whether
    member.remove or the members diff notices it first."""

    conversation_id: str
    inbox_id: str
    departed: bool = True


Write = HoldMessage | OpenPairingRequest | CountDrops | ApproveSender | SettleKey | MarkDeparted


def apply(store: Store, write: Write) -> None:
    """Run ``write``; call inside a transaction of ``store``."""
    match write:
        case HoldMessage(message_id, sender, body, held_at):
            store.pairing.hold(message_id, sender, body, held_at)
        case OpenPairingRequest(request):
            store.pairing.open_request(request)
        case CountDrops(reason, count):
            store.pairing.count_drops(reason, count)
        case ApproveSender(sender, code, at):
            store.pairing.close_request(code, sender)
            store.pairing.approve(sender, "pairing", at)
            store.pairing.forget_denial(sender)
        case SettleKey(key, message_id, body):
            store.keys.settle(key, message_id, body)
        case MarkDeparted(conversation_id, inbox_id, departed):
            store.set_departed(conversation_id, inbox_id, departed)
        case _:
            assert_never(write)
