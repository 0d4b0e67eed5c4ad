"""What a message tells about the attachment it carries: pure, no I/O.

``conversation stream`` and ``conversation messages`` (0.10.15) print an attachment only as
a display string (``normalizeMessageContent``):

- ``attachment`` (inline): ``[attachment: NAME (MIME)]``
- ``remoteStaticAttachment``: ``[remote attachment: NAME (LENGTH bytes) URL]`` (LENGTH is the
  encrypted payload's, a little more than the file's)
- ``multiRemoteStaticAttachment``: ``[N attachments: NAME, NAME, ...]``
- a reply carrying one: ``reply to CONTEXT: <one of the above>`` (0.10.2 printed the decoded
  remote attachment's JSON instead: read too, its key material is redacted before this)

with ``unnamed`` for a missing filename. Other CLI commands (``agent serve``) add structured
``remoteAttachment``/``multiRemoteAttachment`` fields that carry key material:
:class:`~convosd.cli.models.CliMessage` declares only their filename and length, so the keys
are never even read into a model. Only ``filename``, ``mimeType``, ``size`` and ``count`` leave
this module; a name the string cannot settle (a multi-attachment whose names contain ``, ``) is
None.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from convosd.cli.models import CliMessage

#: the content types that are attachments (their typeId as the CLI prints it)
ATTACHMENT_TYPES = frozenset(
    {"attachment", "remoteStaticAttachment", "multiRemoteStaticAttachment", "multiRemoteAttachment"}
)
#: the types ``download-attachment`` can fetch (0.10.15 refuses the others)
DOWNLOADABLE_TYPES = frozenset({"attachment", "remoteStaticAttachment"})

_INLINE = re.compile(r"^\[attachment: (?P<name>.*) \((?P<mime>[^()]*)\)\]$", re.S)
_REMOTE = re.compile(
    r"^\[remote attachment: (?P<name>.*) \((?P<len>\d+|undefined) bytes\) \S*\]$", re.S
)
_MULTI = re.compile(r"^\[(?P<count>\d+) attachments: (?P<names>.*)\]$", re.S)
_REPLY = re.compile(r'^reply to (?:".*" \([0-9a-fA-F]+\)|[0-9a-fA-F]+): ', re.S)
_UNNAMED = "unnamed"


@dataclass(frozen=True, slots=True)
class AttachmentMeta:
    filename: str | None
    mime_type: str | None
    size: int | None
    count: int | None = None

    def as_event_field(self) -> dict[str, Any]:
        field: dict[str, Any] = {
            "filename": self.filename,
            "mimeType": self.mime_type,
            "size": self.size,
        }
        if self.count is not None:
            field["count"] = self.count
        return field


def _name(text: str) -> str | None:
    return None if text == _UNNAMED or not text else text


def from_display(text: str) -> AttachmentMeta | None:
    """The attachment a display string (no reply prefix) shows; None when it shows none."""
    match = _INLINE.match(text)
    if match:
        return AttachmentMeta(_name(match.group("name")), match.group("mime") or None, None)
    match = _REMOTE.match(text)
    if match:
        length = match.group("len")
        size = int(length) if length.isdigit() else None
        return AttachmentMeta(_name(match.group("name")), None, size)
    match = _MULTI.match(text)
    if match:
        count = int(match.group("count"))
        names = match.group("names").split(", ")
        first = _name(names[0]) if count >= 1 and len(names) == count else None
        return AttachmentMeta(first, None, None, count)
    return _from_leaked_json(text)


def _from_leaked_json(text: str) -> AttachmentMeta | None:
    """0.10.2's reply text: JSON of the decoded remote attachment (already redacted)."""
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or "url" not in value or "contentLength" not in value:
        return None
    name = value.get("filename")
    length = value.get("contentLength")
    return AttachmentMeta(
        name if isinstance(name, str) and name else None,
        None,
        length if isinstance(length, int) and not isinstance(length, bool) else None,
    )


def attachment_of(message: CliMessage) -> AttachmentMeta | None:
    """The attachment ``message`` carries: its own for the attachment types, the reply's
    content for a reply; None otherwise."""
    type_id = message.content_type.type_id
    if type_id == "reply":
        content = message.content or ""
        prefix = _REPLY.match(content)
        return from_display(content[prefix.end() :]) if prefix else None
    if type_id not in ATTACHMENT_TYPES:
        return None
    if message.remote_attachment is not None:
        remote = message.remote_attachment
        return AttachmentMeta(remote.filename or None, None, remote.content_length)
    if message.multi_remote_attachment is not None:
        items = message.multi_remote_attachment.attachments
        first = items[0].filename or None if items else None
        return AttachmentMeta(first, None, None, len(items))
    shown = from_display(message.content or "")
    return shown if shown is not None else AttachmentMeta(None, None, None)
