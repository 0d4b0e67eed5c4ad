"""The events of docs/PROTOCOL.md, Events, and the mapping from the CLI's message JSON. Pure.

An event is ``{seq, type, at, conversationId, ...fields}``; the journal assigns ``seq`` and
``at``. Every field a type lists is present, null where unknown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from convosd.cli.attachment_meta import attachment_of
from convosd.cli.models import CliMessage
from convosd.timefmt import iso

#: the fields of each event type, in the contract's order.
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "message": (
        "messageId",
        "senderInboxId",
        "senderName",
        "contentType",
        "content",
        "sentAt",
        "replyTo",
        "reaction",
        "attachment",
    ),
    "message_sent": (
        "messageId",
        "content",
        "replyTo",
        "idempotencyKey",
        "contentType",
        "attachment",
    ),
    "member_joined": ("inboxId",),
    "member_left": ("inboxId",),
    "pairing_requested": ("code", "senderInboxId", "senderName"),
    "conversation_bound": ("how", "by"),
    "conversation_locked": ("locked",),
    "conversation_exploded": ("by", "reason"),
    "join_failed": ("reason",),
}
EVENT_TYPES = frozenset(EVENT_FIELDS)

_REACTION = re.compile(r"^(?P<verb>reacted|removed) (?P<emoji>.+) to (?P<ref>[0-9a-fA-F]+)$", re.S)
_REPLY_QUOTED = re.compile(r'^reply to ".*?" \((?P<ref>[0-9a-fA-F]+)\): ', re.S)
_REPLY_BARE = re.compile(r"^reply to (?P<ref>[0-9a-fA-F]+): ", re.S)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event before the journal numbers it."""

    type: str
    conversation_id: str | None
    fields: dict[str, Any]

    def __post_init__(self) -> None:
        expected = EVENT_FIELDS[self.type]
        missing = [name for name in expected if name not in self.fields]
        if missing:
            raise ValueError(f"{self.type} event lacks {', '.join(missing)}")


def reference_of(type_id: str, content: str | None) -> tuple[str | None, dict[str, str] | None]:
    """(replyTo, reaction) read from the CLI's display string of a reply or reaction."""
    if content is None:
        return None, None
    if type_id == "reaction":
        match = _REACTION.match(content)
        if match:
            action = "added" if match.group("verb") == "reacted" else "removed"
            return match.group("ref"), {"emoji": match.group("emoji"), "action": action}
        return None, None
    if type_id == "reply":
        match = _REPLY_QUOTED.match(content) or _REPLY_BARE.match(content)
        if match:
            return match.group("ref"), None
    return None, None


def message_event(message: CliMessage, conversation_id: str, sender_name: str | None) -> NewEvent:
    type_id = message.content_type.type_id
    reply_to, reaction = reference_of(type_id, message.content)
    attachment = attachment_of(message)
    return NewEvent(
        type="message",
        conversation_id=conversation_id,
        fields={
            "messageId": message.id,
            "senderInboxId": message.sender_inbox_id,
            "senderName": sender_name,
            "contentType": type_id,
            "content": message.content,
            "sentAt": iso(message.sent_at),
            "replyTo": reply_to,
            "reaction": reaction,
            "attachment": attachment.as_event_field() if attachment is not None else None,
        },
    )


def event(type_: str, conversation_id: str | None, **fields: Any) -> NewEvent:
    return NewEvent(type=type_, conversation_id=conversation_id, fields=fields)
