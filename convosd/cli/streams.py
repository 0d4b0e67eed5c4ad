"""Reading what the long-lived commands print: pure functions, no I/O.

- :func:`parse_stream_line`: one line of ``conversation stream`` (one JSON message a line).
- :func:`parse_watcher_line`: one line of ``conversations process-join-requests --watch``
  (JSON events mixed with human lines, among them ``Adding <inbox> to conversation <id>``).
- :func:`is_explode_notice`: a message that announces the conversation's explosion.
- :func:`is_scheduled_explode`: an explode notice that schedules the explosion for later.

The supervisor reads the children's stderr with :mod:`convosd.cli.output`
(:func:`~convosd.cli.output.child_error_summary`, :func:`~convosd.cli.output.is_fatal_child_error`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from convosd.cli.models import CliMessage
from convosd.jsonutil import loads

_ADDING = re.compile(rb"^Adding ([0-9a-fA-F]+) to conversation ([0-9a-fA-F]+)\s*$")


#: a message line's sender: the key and its quotes are unescaped, so text inside a JSON
#: string (where a quote is \") cannot match
_SENDER = re.compile(rb'"senderInboxId"\s*:\s*"([0-9a-fA-F]{1,256})"')


class BadLine(ValueError):
    """A stream line that is not a message."""


def stream_line_sender(line: bytes) -> str | None:
    """The ``senderInboxId`` of a stream line, without parsing the whole line (the stream's
    consumer asks before the line is parsed); None when it names none."""
    at = line.find(b'"senderInboxId"')
    while at >= 0:
        match = _SENDER.match(line, at)
        if match is not None:
            return match.group(1).decode()
        at = line.find(b'"senderInboxId"', at + 1)
    return None


def parse_stream_line(line: bytes) -> CliMessage | None:
    """The message on one stream line; None for a blank line. Raises :class:`BadLine` for
    anything else (not JSON, an ``{"event": ...}`` line, a message of the wrong shape)."""
    stripped = line.strip()
    if not stripped:
        return None
    try:
        value: Any = loads(stripped)
        if not isinstance(value, dict) or "event" in value:
            raise BadLine("not a message line")
        return CliMessage.model_validate(value)
    except BadLine:
        raise
    except (ValueError, ValidationError, UnicodeDecodeError):
        raise BadLine("not a message line") from None


@dataclass(frozen=True, slots=True)
class JoinAccepted:
    """The watcher accepted ``joiner_inbox_id``'s join request. ``conversation_id`` is the
    conversation it names (None when the event names none); ``profile_name`` the name in the
    join request's profile (None when it had none, and in the first pass's lines)."""

    joiner_inbox_id: str
    conversation_id: str | None
    profile_name: str | None = None


@dataclass(frozen=True, slots=True)
class WatcherStreamEnded:
    """The watcher's stream ended: it idles from then on instead of exiting."""

    reason: object


@dataclass(frozen=True, slots=True)
class WatcherError:
    """The watcher reported an error on one request; ``message`` is cut to 200 characters."""

    has_message_id: bool
    message: str


WatcherEvent = JoinAccepted | WatcherStreamEnded | WatcherError


def parse_watcher_line(line: bytes) -> WatcherEvent | None:
    """What one watcher line reports; None for the lines that report nothing convosd uses.

    Its first (batch) pass reports acceptances only as ``Adding <inbox> to conversation
    <id>`` (printed just before the member is added), later ones as JSON events."""
    if line.startswith(b"Adding "):
        match = _ADDING.match(line)
        if match is None:
            return None
        return JoinAccepted(match.group(1).decode(), match.group(2).decode())
    try:
        item = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None  # the watcher's other human lines share stdout
    if not isinstance(item, dict):
        return None
    kind = item.get("event")
    if kind == "join_request_accepted":
        joiner, conversation = item.get("joinerInboxId"), item.get("conversationId")
        if not isinstance(joiner, str):
            return None
        if conversation is not None and not isinstance(conversation, str):
            return None
        profile = item.get("profile")
        name = profile.get("name") if isinstance(profile, dict) else None
        return JoinAccepted(joiner, conversation, name if isinstance(name, str) else None)
    if kind == "stream_ended":
        return WatcherStreamEnded(item.get("reason"))
    if kind == "error":
        return WatcherError(bool(item.get("messageId")), str(item.get("message"))[:200])
    return None


def is_explode_notice(message: CliMessage) -> bool:
    """An explode sends its ExplodeSettings message before it removes the members."""
    return "explode" in message.content_type.type_id.lower()


def is_scheduled_explode(message: CliMessage) -> bool:
    """An ExplodeSettings message that schedules the explosion (its ``expiresAt`` is after
    its own ``sentAt``) rather than announcing an explosion now (the CLI stamps
    ``expiresAt`` before it sends). Its content is ``{"expiresAt":"<ISO-8601>"}``; one
    that cannot be read counts as an explosion now."""
    if not is_explode_notice(message) or not message.content:
        return False
    try:
        value = json.loads(message.content)
        expires = datetime.fromisoformat(str(value["expiresAt"]).replace("Z", "+00:00"))
    except (ValueError, TypeError, KeyError):
        return False
    if expires.tzinfo is None:
        return False
    return expires > message.sent_at
