"""attachment.download: an inbound attachment, fetched by the CLI into the state dir.

The message must be journaled as an inbound ``message`` whose content type is an attachment
the CLI can download (``attachment``, ``remoteStaticAttachment``); anything else is
NOT_FOUND, before any file is touched. The CLI (``download-attachment --output``, through the
adapter's queue) reads the URL and key material from its own database, so they never pass
through convosd. The file lands under :class:`~convosd.attachment_store.AttachmentStore`'s
layout; a second call for the same message answers from disk without the CLI.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Protocol

import structlog

from convosd import errors
from convosd.api.guards import BindingView, bound_id
from convosd.attachment_store import AttachmentStore, StoredAttachment
from convosd.cli import ConvosCli
from convosd.cli.attachment_meta import ATTACHMENT_TYPES, DOWNLOADABLE_TYPES
from convosd.rpc import schemas as s
from convosd.rpc.dispatch import CallContext
from convosd.storage.journal import Journal

#: ``data`` is sent only up to this many bytes (1 MiB of base64)
MAX_INLINE_BYTES = 786_432
log = structlog.get_logger("convosd.service")


class DownloadHost(BindingView, Protocol):
    @property
    def attachments(self) -> AttachmentStore: ...


class DownloadsApi:
    def __init__(self, host: DownloadHost, cli: ConvosCli, journal: Journal) -> None:
        self.host = host
        self.cli = cli
        self.journal = journal
        self._locks: dict[str, asyncio.Lock] = {}

    async def download(self, ctx: CallContext, p: s.DownloadParams) -> s.DownloadResult:
        bound = bound_id(self.host)
        message_id = p.message_id
        message = self.journal.message(message_id)
        if message is None:
            raise errors.NotFound(
                f"No inbound message {message_id} in the journal (unknown, own, or trimmed)"
            )
        content_type = message.get("contentType")
        if content_type not in DOWNLOADABLE_TYPES:
            if content_type in ATTACHMENT_TYPES or message.get("attachment") is not None:
                raise errors.NotFound(
                    f"Message {message_id} carries an attachment ({content_type}) that the "
                    "convos CLI cannot download: it downloads single attachment messages only"
                )
            raise errors.NotFound(f"Message {message_id} is not an attachment ({content_type})")
        store = self.host.attachments
        lock = self._locks.setdefault(message_id, asyncio.Lock())
        try:
            async with lock:
                stored = store.lookup(message_id)
                if stored is None:
                    conversation = message.get("conversationId") or bound
                    stored = await self._fetch(store, str(conversation), message_id, message)
        finally:
            if not lock.locked() and self._locks.get(message_id) is lock:
                del self._locks[message_id]
        return self._result(stored, inline=p.inline)

    async def _fetch(
        self, store: AttachmentStore, conversation: str, message_id: str, message: dict[str, object]
    ) -> StoredAttachment:
        partial = store.begin(message_id)
        try:
            done = await self.cli.download_attachment(conversation, message_id, partial)
            announced = message.get("attachment")
            fallback = announced.get("filename") if isinstance(announced, dict) else None
            stored = store.finish(
                message_id,
                partial,
                filename=done.filename or (fallback if isinstance(fallback, str) else None),
                mime_type=done.mime_type,
            )
        except BaseException:
            store.discard(message_id, partial)
            raise
        log.info("attachment_downloaded", message_id=message_id, size=stored.size)
        return stored

    @staticmethod
    def _result(stored: StoredAttachment, *, inline: bool) -> s.DownloadResult:
        data = None
        if inline:
            if stored.size > MAX_INLINE_BYTES:
                raise errors.InvalidParams(
                    f"the attachment is {stored.size} bytes; inline data is sent only up to "
                    f"{MAX_INLINE_BYTES}: read it from path {stored.path}",
                    data={"path": str(stored.path), "size": stored.size},
                )
            data = base64.b64encode(stored.path.read_bytes()).decode("ascii")
        return s.DownloadResult(
            message_id=stored.message_id,
            filename=stored.filename,
            mime_type=stored.mime_type,
            size=stored.size,
            path=str(stored.path),
            data=data,
        )
