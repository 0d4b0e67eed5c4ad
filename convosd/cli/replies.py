"""What the convos CLI replies (``--json``) to the commands that act on the bound
conversation: sends, reactions, lock, explode, name and profile updates, typing, read
receipts, removals, downloads. The other outputs are :mod:`convosd.cli.models`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from convosd.cli.models import CliOutput


class SendResult(CliOutput):
    """``send-text`` and ``send-reply``."""

    success: bool
    message_id: str = Field(alias="messageId")
    conversation_id: str = Field(alias="conversationId")
    reference_message_id: str | None = Field(default=None, alias="referenceMessageId")
    text: str | None = None


class AttachmentSendResult(CliOutput):
    """``send-attachment``: ``{success, messageId, conversationId, filename, mimeType, size,
    type: "remote", provider, url}`` (the url is not kept: only what is declared here)."""

    success: bool
    message_id: str = Field(alias="messageId")
    conversation_id: str = Field(alias="conversationId")
    filename: str | None = None
    mime_type: str | None = Field(default=None, alias="mimeType")
    size: int | None = None


class ReactionResult(CliOutput):
    success: bool
    message_id: str = Field(alias="messageId")
    conversation_id: str = Field(alias="conversationId")
    reference_message_id: str = Field(alias="referenceMessageId")
    action: Literal["add", "remove"]
    emoji: str


class LockResult(CliOutput):
    success: bool
    conversation_id: str = Field(alias="conversationId")
    action: Literal["locked", "unlocked"]


class ExplodeResult(CliOutput):
    success: bool
    conversation_id: str = Field(alias="conversationId")
    members_removed: int = Field(default=0, alias="membersRemoved")
    expires_at: str | None = Field(default=None, alias="expiresAt")


class UpdateNameResult(CliOutput):
    success: bool
    conversation_id: str = Field(alias="conversationId")
    name: str


class UpdateProfileResult(CliOutput):
    conversation_id: str = Field(alias="conversationId")
    inbox_id: str | None = Field(default=None, alias="inboxId")
    name: str | None = None
    image: str | None = None


# --- a live conversation: typing, read receipts, members, the explode status ------------


class TypingResult(CliOutput):
    success: bool
    message_id: str = Field(alias="messageId")
    conversation_id: str = Field(alias="conversationId")
    is_typing: bool = Field(alias="isTyping")


class ReadReceiptResult(CliOutput):
    success: bool
    message_id: str = Field(alias="messageId")
    conversation_id: str = Field(alias="conversationId")


class RemoveMembersResult(CliOutput):
    success: bool
    conversation_id: str = Field(alias="conversationId")
    removed_inbox_ids: list[str] = Field(alias="removedInboxIds")


class UpdateDescriptionResult(CliOutput):
    success: bool
    conversation_id: str = Field(alias="conversationId")
    description: str


class ExplodeSettingsOut(CliOutput):
    message_id: str = Field(alias="messageId")
    sender_inbox_id: str = Field(alias="senderInboxId")
    expires_at: datetime = Field(alias="expiresAt")
    sent_at: datetime = Field(alias="sentAt")

    @property
    def immediate(self) -> bool:
        """An immediate explode stamps ``expiresAt`` before it sends; a scheduled one names a
        time after its own ``sentAt``."""
        return self.expires_at <= self.sent_at


class ExplodeStatus(CliOutput):
    """``conversation explode-status``: the group metadata's ``expiresAtUnix`` and the most
    recent ExplodeSettings message among the last ``--limit`` messages."""

    conversation_id: str = Field(alias="conversationId")
    is_active: bool = Field(default=True, alias="isActive")
    most_recent: ExplodeSettingsOut | None = Field(default=None, alias="mostRecentExplodeSettings")
    effective_expires_at: datetime | None = Field(default=None, alias="effectiveExpiresAt")
    expired: bool = False


class DownloadResult(CliOutput):
    """``conversation download-attachment``: ``type`` is ``inline``, ``remote`` or
    ``remote-raw``; ``filename`` is absent when the message has none."""

    success: bool
    type: str
    output_path: str = Field(alias="outputPath")
    filename: str | None = None
    mime_type: str | None = Field(default=None, alias="mimeType")
    size: int
