"""Settling idempotency keys whose send has an unknown outcome (pure: no I/O, no SQL).

A key is recorded *in flight* before the CLI is called and *done* with the message id after.
The rule for a failed call:

- The key is released (deleted: a retry may send) only when the CLI provably did not send:
  the text was refused before a process started, the CLI could not start or load its
  native binding (``CLI_UNAVAILABLE``), the CLI did not know the conversation or had no
  identity, or the call never left the queue.
- After any other failure (a timeout, a non-zero exit, output that cannot be read, a network
  error, a lock error (a send is never retried on one), a cancelled request) the CLI may
  have sent: the outcome is *unknown*. The key stays in flight; repeats get ``BUSY`` with
  ``retryAfterS``; it is reconciled against the conversation's own messages
  (:func:`reconcile`), right after the failure, at the next start, and again when a repeat
  finds it still unknown.

Reconciling never names a wrong message. A message is a *candidate* for a key when it is an
own message of the same kind (a text, or a reply to the same message) whose content is
exactly what the key sent, sent at or after the key's intent time, and not already the
result of another send (a key's, or a ``message_sent`` journaled without one). For an
attachment the candidate is an own ``remoteStaticAttachment`` with the same filename and a
size that fits (:func:`attachment_fits`: the listing shows the *encrypted* length, which
is the file's size plus a bounded envelope). Then:

- exactly one candidate, no other key in flight could claim it (the same send, or any key
  the message would also match, recorded before the message), no matching own message
  shortly before the intent (:data:`SKEW_S`: the network's clock may lag ours) and its
  delivery did not fail → *sent*;
- no candidate and no such near miss, over a complete listing → *not sent* (released);
- an attachment key still without a size (recorded, then the daemon stopped while it made
  its copy, before the CLI was called) → *not sent*;
- anything else → *unknown*: stays in flight and is tried again later.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from convosd.cli.models import CliMessage

#: How far before a key's intent a matching own message makes the evidence ambiguous: the
#: network may stamp a message with a clock a little behind ours.
SKEW_S = 2.0
#: The deliveryStatus of a message the CLI failed to publish (node-bindings' enum:
#: 0 unpublished, 1 published, 2 failed), as a number or a name.
_FAILED = frozenset({"2", "failed"})


class Outcome(enum.Enum):
    SENT = "sent"
    NOT_SENT = "not_sent"
    UNKNOWN = "unknown"


#: The CLI's display string of a remote attachment (``utils/xmtp.js``): the name, the
#: encrypted payload's length and the URL (which has no spaces).
_REMOTE_ATTACHMENT = re.compile(
    r"^\[remote attachment: (?P<name>.*) \((?P<length>\d+) bytes\) (?P<url>\S*)\]$", re.S
)
#: The encrypted payload of an attachment of n bytes is n plus an envelope: the encoded
#: content's type id, parameters (filename, MIME type), fallback text (which repeats the
#: filename) and field framing, plus the cipher's tag. This bounds the envelope generously.
ENVELOPE_BASE = 1024


@dataclass(frozen=True, slots=True)
class AttachmentIntent:
    """What an attachment send sends: its filename, size in bytes and the MIME type asked
    for (None: the CLI picks it from the extension). ``size`` is None while the daemon's
    copy is being made: the key is recorded before that, and restated with the copy's size
    before the CLI is called, so a key left without a size never reached the CLI."""

    filename: str
    size: int | None
    mime_type: str | None = None

    def body(self) -> dict[str, object]:
        return {"filename": self.filename, "size": self.size, "mimeType": self.mime_type}


@dataclass(frozen=True, slots=True)
class PendingKey:
    """A key in flight: what it sends and when it was recorded (a text or reply, or an
    attachment: then ``message`` is empty)."""

    key: str
    intent_at: float
    message: str
    reply_to: str | None
    attachment: AttachmentIntent | None = None

    @classmethod
    def from_row(cls, key: str, intent_at: float, body: str) -> PendingKey:
        data = json.loads(body)
        found = data.get("attachment")
        attachment = (
            None
            if not isinstance(found, dict)
            else AttachmentIntent(
                str(found["filename"]),
                None if found.get("size") is None else int(found["size"]),
                found.get("mimeType"),
            )
        )
        return cls(key, intent_at, str(data["message"]), data.get("replyTo"), attachment)

    def body(self) -> str:
        if self.attachment is not None:
            return json.dumps(
                {"message": self.message, "replyTo": None, "attachment": self.attachment.body()}
            )
        return json.dumps({"message": self.message, "replyTo": self.reply_to})

    def same_send(self, other: PendingKey) -> bool:
        return (self.message, self.reply_to, self.attachment) == (
            other.message,
            other.reply_to,
            other.attachment,
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    key: str
    outcome: Outcome
    message_id: str | None = None
    reason: str = ""


def matches(key: PendingKey, message: CliMessage) -> bool:
    """The message's content is exactly what ``key`` sent (strict: no prefix heuristics).

    A text renders as itself; a reply as ``reply to "<parent>" (<id>): <text>``, or
    ``reply to <id>: <text>`` when the parent is unknown to the CLI.
    """
    content = message.content
    if content is None or message.content_type.authority_id not in (None, "xmtp.org"):
        return False
    type_id = message.content_type.type_id
    if key.attachment is not None:
        return type_id == "remoteStaticAttachment" and attachment_fits(key.attachment, content)
    if key.reply_to is None:
        return type_id == "text" and content == key.message
    if type_id != "reply":
        return False
    if content == f"reply to {key.reply_to}: {key.message}":
        return True
    return content.startswith('reply to "') and content.endswith(
        f'" ({key.reply_to}): {key.message}'
    )


def attachment_fits(intent: AttachmentIntent, content: str) -> bool:
    """The display string names the same file, with an encrypted length that a file of
    ``intent.size`` bytes gives: at least the size, at most the size plus a bounded envelope
    (the listing does not show the plain size)."""
    match = _REMOTE_ATTACHMENT.match(content)
    if intent.size is None or match is None or match.group("name") != intent.filename:
        return False
    length = int(match.group("length"))
    envelope = (
        ENVELOPE_BASE
        + 2 * len(intent.filename.encode("utf-8"))
        + len((intent.mime_type or "x" * 255).encode("utf-8"))
    )
    return intent.size <= length <= intent.size + envelope


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def reconcile(
    keys: Sequence[PendingKey],
    messages: Sequence[CliMessage],
    *,
    own_inbox_id: str,
    settled: Collection[str],
    complete: bool,
) -> list[Verdict]:
    """A verdict for each of ``keys`` (every key in flight, so that keys sending the same
    text see each other) from the conversation's ``messages`` listed from before the
    earliest intent minus :data:`SKEW_S`. ``settled`` holds the ids that are already some
    send's result; ``complete`` is False when the listing may have left messages out.

    Runs in rounds: a key found sent takes its message out of the others' evidence (and
    stops being their rival), which may settle them in the next round."""
    taken = set(settled)
    remaining = list(keys)
    final: dict[str, Verdict] = {}
    while True:
        own = [m for m in messages if m.sender_inbox_id == own_inbox_id and m.id not in taken]
        found = _round(remaining, own, complete)
        sent = [v for v in found if v.outcome is Outcome.SENT and v.message_id is not None]
        if not sent:
            final.update((v.key, v) for v in found)
            return [final[k.key] for k in keys]
        for verdict in sent:
            final[verdict.key] = verdict
            taken.add(str(verdict.message_id))
        remaining = [k for k in remaining if k.key not in final]


def _round(keys: Sequence[PendingKey], own: Sequence[CliMessage], complete: bool) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for key in keys:
        if key.attachment is not None and key.attachment.size is None:
            verdicts.append(Verdict(key.key, Outcome.NOT_SENT, reason="never reached the CLI"))
            continue
        # sentAt has millisecond precision: compare in whole milliseconds.
        intent_ms = _ms(key.intent_at)
        matching = [m for m in own if matches(key, m)]
        after = [m for m in matching if m.sent_at_ns // 1_000_000 >= intent_ms]
        near = [
            m
            for m in matching
            if m not in after and m.sent_at_ns // 1_000_000 >= intent_ms - _ms(SKEW_S)
        ]
        if near:
            verdicts.append(
                Verdict(key.key, Outcome.UNKNOWN, reason="a matching own message just before")
            )
            continue
        if not after:
            if complete:
                verdicts.append(Verdict(key.key, Outcome.NOT_SENT, reason="no matching message"))
            else:
                verdicts.append(Verdict(key.key, Outcome.UNKNOWN, reason="incomplete listing"))
            continue
        if len(after) > 1:
            verdicts.append(Verdict(key.key, Outcome.UNKNOWN, reason="several matching messages"))
            continue
        (found,) = after
        if str(found.delivery_status).lower() in _FAILED:
            verdicts.append(Verdict(key.key, Outcome.UNKNOWN, reason="delivery failed"))
            continue
        found_ms = found.sent_at_ns // 1_000_000
        rivals = [
            other
            for other in keys
            if other.key != key.key
            and (other.same_send(key) or matches(other, found))
            and _ms(other.intent_at) <= found_ms
        ]
        if rivals:
            verdicts.append(
                Verdict(key.key, Outcome.UNKNOWN, reason="another key may own the message")
            )
            continue
        verdicts.append(Verdict(key.key, Outcome.SENT, found.id, reason="one matching message"))
    return verdicts
