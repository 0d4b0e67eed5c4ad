"""Messages out and attachments in: the params and results of ``message.send``,
``message.sendAttachment``, ``message.react`` and ``attachment.download``
(convosd.api.messages and convosd.api.downloads)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from convosd.rpc.schemas.base import HexId, Params, Result


class SendParams(Params):
    message: str = Field(
        description="1..maxMessageBytes (default 16384) bytes of UTF-8, without U+0000 or "
        "lone surrogates; never chunked"
    )
    reply_to: HexId | None = Field(default=None, alias="replyTo")
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, alias="idempotencyKey"
    )


class SendAttachmentParams(Params):
    data: str | None = Field(
        default=None,
        description="the file's bytes as standard base64 (RFC 4648, padded, no white space), "
        "at most maxAttachmentBytes (default 10485760) decoded; the request line must fit "
        "frameLimitBytes: send large files by path",
    )
    path: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        default=None,
        description="an absolute path to a regular file owned by the caller's or the "
        "daemon's uid (root and the daemon's uid only); a final symbolic link is not followed; "
        "never a file under /proc, /sys, /dev, the daemon's state dir, the CLI home or the "
        "config file's directory, by any name (links, .., bind mounts): -32602",
    )
    filename: Annotated[str, Field(min_length=1, max_length=255)] | None = Field(
        default=None,
        description="the attachment's file name (one path component, at most 255 bytes of "
        "UTF-8, no control character or bidi override); required with data, with path the "
        "file's own name by default",
    )
    mime_type: Annotated[str, Field(min_length=3, max_length=255)] | None = Field(
        default=None,
        alias="mimeType",
        description="type/subtype; by default the CLI picks it from the file name's extension",
    )
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, alias="idempotencyKey"
    )

    @model_validator(mode="after")
    def _one_source(self) -> SendAttachmentParams:
        if (self.data is None) == (self.path is None):
            raise ValueError("give exactly one of data or path")
        if self.data is not None and self.filename is None:
            raise ValueError("data needs a filename")
        return self


class SendResult(Result):
    message_id: str = Field(alias="messageId")


class ReactParams(Params):
    message_id: HexId = Field(alias="messageId")
    emoji: Annotated[str, Field(min_length=1, max_length=64)]
    remove: bool = False


class ReactResult(Result):
    message_id: str = Field(alias="messageId")
    reference_message_id: str = Field(alias="referenceMessageId")
    action: Literal["added", "removed"]
    emoji: str


class DownloadParams(Params):
    message_id: HexId = Field(alias="messageId")
    inline: bool = Field(
        default=False, description="also answer the bytes as base64 (files up to 786432 bytes)"
    )


class DownloadResult(Result):
    message_id: str = Field(alias="messageId")
    filename: str = Field(description="the stored file's name (the sender's, sanitised)")
    mime_type: str | None = Field(alias="mimeType")
    size: int
    path: str = Field(description="<state dir>/attachments/<messageId>/<filename>")
    data: str | None = Field(default=None, description="base64 of the file; only with inline")
