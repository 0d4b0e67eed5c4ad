"""message.send, message.sendAttachment and message.react: the wire's params checked, the
rate limit taken, then the send under its idempotency key (:mod:`convosd.sending.keys`
claims, settles and reconciles keys). Attachments go through private copies
(:mod:`convosd.attachments.outbox`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from convosd import errors
from convosd.api.guards import BindingView, bound_id
from convosd.attachments.checks import check_filename, check_mime_type
from convosd.attachments.outbox import Outbox, Staged
from convosd.cli import ConvosCli
from convosd.cli.replies import SendResult
from convosd.config import Settings
from convosd.ratelimit import TokenBucket
from convosd.rpc import schemas as s
from convosd.rpc.dispatch import CallContext
from convosd.sending.idempotency import AttachmentIntent, PendingKey
from convosd.sending.keys import KeyedSends
from convosd.storage.journal import Journal
from convosd.storage.keys import IdempotencyKeys
from convosd.text import text_problem


class SendHost(BindingView, Protocol):
    """What sends use of the instance besides the binding: its task scope."""

    def spawn_task(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...


class MessagesApi:
    def __init__(
        self,
        host: SendHost,
        cli: ConvosCli,
        journal: Journal,
        keys: IdempotencyKeys,
        settings: Settings,
        outbox: Outbox,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.cli = cli
        #: the idempotency keys of sends
        self.sends = KeyedSends(host, cli, journal, keys, clock=clock)
        self.max_message_bytes = settings.daemon.max_message_bytes
        self.send_rate_per_s = settings.daemon.send_rate_per_s
        self.bucket = TokenBucket(self.send_rate_per_s)
        #: the private copies of outgoing attachments
        self.outbox = outbox
        self.daemon_uid = os.getuid()

    def _check_message(self, text: str) -> None:
        limit = self.max_message_bytes
        if not text:
            raise errors.InvalidParams("message is empty")
        problem = text_problem(text)
        if problem is not None:
            raise errors.InvalidParams(f"message {problem}")
        size = len(text.encode("utf-8"))
        if size > limit:
            raise errors.InvalidParams(
                f"message is {size} bytes of UTF-8; at most {limit} (maxMessageBytes)"
            )

    async def send(self, ctx: CallContext, p: s.SendParams) -> s.SendResult:
        cid = bound_id(self.host)
        self._check_message(p.message)
        key = p.idempotency_key
        if key is not None:
            previous = self.sends.result(key)
            if previous is not None:
                return s.SendResult(message_id=previous)
        wait = self.bucket.take(time.monotonic())
        if wait > 0:
            raise errors.Busy(f"over sendRatePerS ({self.send_rate_per_s}/s)", retry_after_s=wait)
        cli = self.cli
        reply_to = p.reply_to

        def call(on_start: Callable[[], None]) -> Coroutine[Any, Any, SendResult]:
            if reply_to is not None:
                return cli.send_reply(cid, reply_to, p.message, on_start=on_start)
            return cli.send_text(cid, p.message, on_start=on_start)

        self.sends.claim(key, PendingKey(key or "", 0.0, p.message, reply_to))
        sent = await self.sends.send(key, call)
        self.sends.journal_sent(
            cid, key, sent.message_id, PendingKey("", 0.0, p.message, p.reply_to)
        )
        return s.SendResult(message_id=sent.message_id)

    async def send_attachment(self, ctx: CallContext, p: s.SendAttachmentParams) -> s.SendResult:
        """Copy the file into the outbox, send the copy with ``send-attachment``, remove it."""
        cid = bound_id(self.host)
        if p.filename is not None:
            check_filename(p.filename)
        if p.mime_type is not None:
            check_mime_type(p.mime_type)
        if p.path is not None and ctx.peer_uid not in (0, self.daemon_uid):
            raise errors.Forbidden(
                "path is only for root and the daemon's own uid: send the bytes as data"
            )
        key = p.idempotency_key
        if key is not None:
            previous = self.sends.result(key)
            if previous is not None:
                return s.SendResult(message_id=previous)
        if not self.cli.upload_provider_configured():
            raise errors.UploadUnavailable()
        # The key is claimed before anything is awaited: a second call with it meanwhile
        # gets BUSY instead of making its own copy and sending it too. Its size is known
        # once the copy is made (restated then, before the CLI is called).
        planned = AttachmentIntent(self._planned_filename(p), None, p.mime_type)
        self.sends.claim(key, PendingKey(key or "", 0.0, "", None, planned))
        try:
            staged = await self._stage(ctx, p)
        except BaseException:
            self.sends.release(key)
            raise
        try:
            message_id = await self._send_staged(cid, key, staged, p.mime_type)
        finally:
            staged.remove()
        return s.SendResult(message_id=message_id)

    @staticmethod
    def _planned_filename(p: s.SendAttachmentParams) -> str:
        """The attachment's filename as far as it is known before the copy (checked then)."""
        if p.filename is not None:
            return p.filename
        assert p.path is not None  # the params' own rule: data comes with a filename
        return os.path.basename(p.path)

    async def _stage(self, ctx: CallContext, p: s.SendAttachmentParams) -> Staged:
        if p.data is not None:
            assert p.filename is not None  # the params' own rule
            return await self.outbox.from_base64(p.data, p.filename)
        assert p.path is not None
        owners = {self.daemon_uid} | ({ctx.peer_uid} if ctx.peer_uid is not None else set())
        return await self.outbox.from_path(p.path, p.filename, owners)

    async def _send_staged(
        self, cid: str, key: str | None, staged: Staged, mime_type: str | None
    ) -> str:
        """Send the copy under ``key`` (claimed by the caller: released here if the CLI is
        not called, else settled or kept in flight by :meth:`KeyedSends.send`)."""
        intent = PendingKey(
            key or "", 0.0, "", None, AttachmentIntent(staged.filename, staged.size, mime_type)
        )
        try:
            wait = self.bucket.take(time.monotonic())
            if wait > 0:
                raise errors.Busy(
                    f"over sendRatePerS ({self.send_rate_per_s}/s)", retry_after_s=wait
                )
            self.sends.restate(key, intent)
        except BaseException:
            self.sends.release(key)
            raise
        cli = self.cli
        sent = await self.sends.send(
            key,
            lambda on_start: cli.send_attachment(
                cid, staged.file, mime_type=mime_type, on_start=on_start
            ),
        )
        attachment = AttachmentIntent(
            staged.filename, staged.size, sent.mime_type if sent.mime_type else mime_type
        )
        self.sends.journal_sent(cid, key, sent.message_id, intent, attachment)
        return sent.message_id

    async def react(self, ctx: CallContext, p: s.ReactParams) -> s.ReactResult:
        cid = bound_id(self.host)
        cli = self.cli
        done = await cli.send_reaction(cid, p.message_id, p.emoji, remove=p.remove)
        return s.ReactResult(
            message_id=done.message_id,
            reference_message_id=done.reference_message_id,
            action="removed" if done.action == "remove" else "added",
            emoji=done.emoji,
        )

    async def reconcile_keys(self, only: str | None = None) -> None:
        """Settle the keys left in flight (:meth:`KeyedSends.reconcile`)."""
        await self.sends.reconcile(only)
