"""attachment.download: an inbound attachment, fetched by the CLI into the state dir.

The message must be journaled as an inbound ``message`` whose content type is an attachment
the CLI can download (``attachment``, ``remoteStaticAttachment``); anything else is
NOT_FOUND, before any file is touched. The CLI (``download-attachment --output``, through the
adapter's queue) reads the URL and key material from its own database, so they never pass
through convosd. The file lands under :class:`~convosd.attachments.store.AttachmentStore`'s
layout; a second call for the same message answers from disk without the CLI.

Bounds, checked before the CLI runs (docs/PROTOCOL.md, "Download bounds"):

- the announced size (a remote attachment's ``contentLength``, the encrypted payload's,
  which is the file's plus at most :data:`ENCRYPTION_SLACK` bytes) against
  ``maxAttachmentBytes``;
- the URL of a remote attachment (read from its display string by
  :mod:`convosd.cli.attachment_url`): https only, and no loopback, private, link-local or
  local host, as a literal or as what a host name resolves to here;
- the folder: what ``attachments/`` holds plus the announced size against
  ``maxAttachmentStoreBytes``; past it the download is refused (BUSY, ``data.limit``), the
  stored files are never removed to make room.

After the CLI wrote the file, its real size is checked against both again, and a file past
either is removed (the real CLI reads the whole answer into its memory before it writes
the file: the check after bounds the disk, not the CLI's memory).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from pathlib import Path
from typing import Protocol

import structlog

from convosd import errors
from convosd.api.guards import BindingView, bound_id
from convosd.attachments.store import AttachmentStore, StoredAttachment
from convosd.cli import ConvosCli
from convosd.cli.attachment_meta import ATTACHMENT_TYPES, DOWNLOADABLE_TYPES
from convosd.cli.attachment_url import address_problem, remote_url, url_problem
from convosd.rpc import schemas as s
from convosd.rpc.dispatch import CallContext
from convosd.storage.journal import Journal

#: ``data`` is sent only up to this many bytes (1 MiB of base64)
MAX_INLINE_BYTES = 786_432
#: a remote attachment's announced length is its encrypted payload's: the file's and a bit
ENCRYPTION_SLACK = 4096
#: how long a URL's host name may take to resolve before the CLI is let try it
RESOLVE_TIMEOUT_S = 5.0
log = structlog.get_logger("convosd.service")


class DownloadHost(BindingView, Protocol):
    @property
    def attachments(self) -> AttachmentStore: ...


def _refused(message_id: str, problem: str) -> errors.InvalidParams:
    return errors.InvalidParams(
        f"the attachment of message {message_id} is refused: {problem}",
        data={"errors": [{"param": "messageId", "problem": problem}]},
    )


class DownloadsApi:
    def __init__(
        self,
        host: DownloadHost,
        cli: ConvosCli,
        journal: Journal,
        *,
        max_file_bytes: int,
        max_store_bytes: int,
        trusted_hosts: tuple[str, ...] = (),
    ) -> None:
        self.host = host
        self.cli = cli
        self.journal = journal
        self.max_file_bytes = max_file_bytes
        self.max_store_bytes = max_store_bytes
        self.trusted_hosts = frozenset(h.lower().strip("[]").rstrip(".") for h in trusted_hosts)
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
        await self._check(store, message_id, message)
        partial = store.begin(message_id)
        try:
            done = await self.cli.download_attachment(conversation, message_id, partial)
            self._check_written(store, message_id, partial)
            meta = message.get("attachment")
            fallback = meta.get("filename") if isinstance(meta, dict) else None
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

    async def _check(
        self, store: AttachmentStore, message_id: str, message: dict[str, object]
    ) -> None:
        """Refuse before the CLI runs: the announced size (when the message tells it), the
        URL, the folder's room. Two downloads checked at once may both find room: the
        check after the CLI wrote (which counts every partial file) catches that."""
        meta = message.get("attachment")
        size = meta.get("size") if isinstance(meta, dict) else None
        announced = size if isinstance(size, int) and not isinstance(size, bool) else 0
        if announced > self.max_file_bytes + ENCRYPTION_SLACK:
            raise _refused(
                message_id,
                f"it is announced as {announced} bytes; at most {self.max_file_bytes} "
                "(maxAttachmentBytes)",
            )
        if message.get("contentType") == "remoteStaticAttachment":
            content = message.get("content")
            url = remote_url(content) if isinstance(content, str) else None
            if url is None:
                raise _refused(message_id, "its URL cannot be read from the message")
            verdict = url_problem(url, self.trusted_hosts)
            if verdict.problem is not None:
                raise _refused(message_id, verdict.problem)
            if verdict.name is not None:
                problem = await self._resolves_to(verdict.name)
                if problem is not None:
                    raise _refused(message_id, problem)
        self._check_room(store, announced)

    @staticmethod
    async def _resolves_to(name: str) -> str | None:
        """Why the CLI may not fetch from ``name`` (it resolves to an address that is not
        global), or None. A name that does not resolve here is left to the CLI, whose
        fetch fails the same way; what a name resolves to when the CLI fetches (DNS
        rebinding) and where a redirect leads are not checked."""
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(name, 443, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            return None
        for info in infos:
            try:
                address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            except ValueError:
                return "the URL's host resolves to something that is not an address"
            problem = address_problem(address)
            if problem is not None:
                return f"the URL's host resolves to {problem} ({address})"
        return None

    def _check_room(self, store: AttachmentStore, size: int) -> None:
        held = store.total_bytes()
        if held + size > self.max_store_bytes:
            raise errors.Busy(
                f"attachments/ holds {held} bytes; with this attachment ({size} bytes) it "
                f"would pass maxAttachmentStoreBytes ({self.max_store_bytes}): remove "
                "downloaded files there (or raise the setting), then retry",
                data={"limit": "maxAttachmentStoreBytes", "max": self.max_store_bytes},
            )

    def _check_written(self, store: AttachmentStore, message_id: str, partial: Path) -> None:
        """The file the CLI wrote, against both limits (the caller removes it on a refusal)."""
        written = partial.lstat().st_size
        if written > self.max_file_bytes:
            raise _refused(
                message_id,
                f"the file is {written} bytes; at most {self.max_file_bytes} (maxAttachmentBytes)",
            )
        self._check_room(store, 0)  # the partial counts already

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
