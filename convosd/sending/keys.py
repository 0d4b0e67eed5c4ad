"""Keyed sends: the idempotency keys of message.send and message.sendAttachment, from the
intent to the settled result, across a crash (the rule is :mod:`convosd.sending.idempotency`).

A key is in flight from the send's intent until its ``message_sent`` is journalled (the key
is settled in the same transaction) or the send provably did not happen (the key is
released). The intent is recorded before anything of the send is awaited (an attachment's
before its copy is made), and the store never replaces a key's row: a second call with a
key in flight gets BUSY and sends nothing. A send whose outcome is unknown leaves its key
in flight, reconciled later from the conversation's own messages (at the next start, after
the failure, or when a repeat finds the key in flight).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

import structlog

from convosd import errors
from convosd.cli import ConvosCli
from convosd.cli.models import CliMessage
from convosd.events import event
from convosd.sending.idempotency import (
    SKEW_S,
    AttachmentIntent,
    Outcome,
    PendingKey,
    Verdict,
    reconcile,
)
from convosd.storage.journal import Journal
from convosd.storage.keys import IdempotencyKeys
from convosd.storage.store import Binding, StoreError
from convosd.storage.work import SettleKey

SentT = TypeVar("SentT")

IDEMPOTENCY_TTL_S = 24 * 3600
#: retryAfterS of a repeat that finds its key in flight.
KEY_BUSY_RETRY_S = 1.0
#: A repeat that finds its key in flight reconciles it again at most this often.
RECONCILE_EVERY_S = 5.0
RECONCILE_PAGE = 200
RECONCILE_MAX_PAGES = 50
#: Failures of a send after which the CLI provably did not send: the key is released. Every
#: other failure after the CLI was called leaves the outcome unknown (convosd.sending.idempotency).
_NOT_SENT: tuple[type[BaseException], ...] = (
    errors.InvalidParams,  # the text was refused before a process started
    errors.CliUnavailable,  # the CLI could not start or load its native binding
    errors.ConversationNotFound,  # the CLI does not know the conversation
    errors.IdentityNotFound,  # the CLI home has no identity
    errors.UploadUnavailable,  # send-attachment found no upload provider: nothing uploaded
)
log = structlog.get_logger("convosd.service")


def _key_busy() -> errors.Busy:
    return errors.Busy(
        "a send with this idempotencyKey is in flight or its outcome is not known yet; "
        "repeat it later with the same key",
        retry_after_s=KEY_BUSY_RETRY_S,
    )


class KeysHost(Protocol):
    """What keyed sends use of the instance: the binding, the own inbox, its task scope."""

    @property
    def binding(self) -> Binding | None: ...

    @property
    def own_inbox_id(self) -> str | None: ...

    def spawn_task(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...


class KeyedSends:
    """The keys' states (``in_flight`` | ``done``, in the store) and their settling."""

    def __init__(
        self,
        host: KeysHost,
        cli: ConvosCli,
        journal: Journal,
        keys: IdempotencyKeys,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.cli = cli
        self.journal = journal
        self.keys = keys
        self.clock = clock
        self._reconciling: set[str] = set()
        self._sending: set[str] = set()  # keys whose CLI call is queued or running
        self._reconciled_at: dict[str, float] = {}  # key -> monotonic time of the last try

    def result(self, key: str) -> str | None:
        """The message id a settled ``key`` sent; None for a key not known (or expired);
        BUSY for one in flight (which is reconciled again when due)."""
        row = self.keys.get(key)
        if row is None:
            return None
        state, intent_at, body = row
        if self.clock() - intent_at > IDEMPOTENCY_TTL_S:
            self.keys.forget(key)
            return None
        if state == "done":
            return str(json.loads(body)["messageId"])
        self._reconcile_if_due(key)
        raise _key_busy()

    def claim(self, key: str | None, intent: PendingKey) -> None:
        """Record ``key`` in flight with what it sends, before anything of the send is
        awaited (callers check :meth:`result` first, in the same step of the loop).
        The store never replaces a key's row: one recorded meanwhile means BUSY."""
        if key is None:
            return
        if not self.keys.intent(key, self.clock(), intent.body()):
            raise _key_busy()
        self._sending.add(key)

    def restate(self, key: str | None, intent: PendingKey) -> None:
        """What the claimed ``key`` sends, now known in full (an attachment's size)."""
        if key is not None:
            self.keys.restate(key, intent.body())

    def release(self, key: str | None) -> None:
        """The claimed ``key``'s send never reached the CLI: a retry may send."""
        if key is not None:
            self.keys.forget(key)
            self._sending.discard(key)

    async def send(
        self,
        key: str | None,
        call: Callable[[Callable[[], None]], Coroutine[Any, Any, SentT]],
    ) -> SentT:
        """One CLI send under its idempotency key, claimed before (:meth:`claim`); on a
        failure the key is released or kept in flight by :meth:`_send_failed`, knowing
        whether the CLI had started (``call`` passes ``on_start`` to the CLI)."""
        started = False

        def on_start() -> None:
            nonlocal started
            started = True  # from here on the CLI may send

        try:
            return await call(on_start)
        except BaseException as exc:
            if key is not None:
                self._send_failed(key, exc, started=started)
            raise
        finally:
            if key is not None:
                self._sending.discard(key)

    def _send_failed(self, key: str, exc: BaseException, *, started: bool) -> None:
        """The rule of convosd.sending.idempotency: release the key only when the CLI
        provably did not send; otherwise keep it in flight and reconcile it."""
        if not started or isinstance(exc, _NOT_SENT):
            self.keys.forget(key)
            return
        log.warning(
            "send_outcome_unknown",
            error=getattr(exc, "kind", type(exc).__name__),
            hint="the key stays in flight until the own messages settle it",
        )
        if not isinstance(exc, asyncio.CancelledError):
            # (Cancelled: shutting down or the request went away; the next start or the
            # next repeat of the key reconciles it.)
            self.host.spawn_task(self.reconcile(only=key), "reconcile-key")

    def journal_sent(
        self,
        cid: str,
        key: str | None,
        message_id: str,
        sent: PendingKey,
        attachment: AttachmentIntent | None = None,
    ) -> None:
        """Journal ``message_sent`` for what ``sent`` describes and, in the same
        transaction, settle ``key``. ``attachment`` is what the CLI said it sent (the MIME
        type it chose), else what the key recorded."""
        settle = json.dumps({"messageId": message_id})
        attachment = attachment or sent.attachment
        if attachment is not None:
            fields: dict[str, Any] = {
                "content": None,
                "replyTo": None,
                "contentType": "remoteStaticAttachment",
                "attachment": {
                    "filename": attachment.filename,
                    "mimeType": attachment.mime_type,
                    "size": attachment.size,
                },
            }
        else:
            fields = {
                "content": sent.message,
                "replyTo": sent.reply_to,
                "contentType": "text" if sent.reply_to is None else "reply",
                "attachment": None,
            }
        self.journal.append(
            [
                event(
                    "message_sent",
                    cid,
                    messageId=message_id,
                    content=fields.pop("content"),
                    replyTo=fields.pop("replyTo"),
                    idempotencyKey=key,
                    **fields,
                )
            ],
            seen=[(message_id, "own")],
            writes=() if key is None else (SettleKey(key, message_id, settle),),
        )

    def _reconcile_if_due(self, key: str) -> None:
        """A repeat found ``key`` in flight: reconcile it again unless its send is still
        running, a reconciliation is under way or one ran moments ago."""
        if key in self._sending or key in self._reconciling:
            return
        now = time.monotonic()
        if now - self._reconciled_at.get(key, -RECONCILE_EVERY_S) < RECONCILE_EVERY_S:
            return
        self._reconciled_at[key] = now
        self.host.spawn_task(self.reconcile(only=key), "reconcile-key")

    async def reconcile(self, only: str | None = None) -> None:
        """Settle keys left in flight (at start, after a send with an unknown outcome, or
        when a repeat finds one) from the conversation's own messages; see
        :func:`convosd.sending.idempotency.reconcile`. A settled key journals its
        ``message_sent``."""
        keys = self.keys
        keys.expire(self.clock() - IDEMPOTENCY_TTL_S)
        names = {
            row[0]
            for row in keys.in_flight()
            if (only is None or row[0] == only)
            and row[0] not in self._sending
            and row[0] not in self._reconciling
        }
        if not names:
            return
        binding = self.host.binding
        own = self.host.own_inbox_id
        if binding is None or own is None:
            log.info("idempotency_reconcile_deferred", keys=len(names), reason="not bound")
            return
        cid = binding.conversation_id
        self._reconciling |= names
        now = time.monotonic()
        for name in names:
            self._reconciled_at[name] = now
        try:
            pending = [PendingKey.from_row(*row) for row in keys.in_flight()]
            since = min(k.intent_at for k in pending if k.key in names) - SKEW_S
            try:
                messages, complete = await self._messages_since(cid, since)
            except errors.ConvosdError as exc:
                log.warning("idempotency_reconcile_failed", error=exc.message, keys=len(names))
                return  # stay in flight: repeats get BUSY and try again
            # Read again: sends may have finished or started while the CLI ran.
            pending = [PendingKey.from_row(*row) for row in keys.in_flight()]
            # Ids already reported as some send's result (a key's, or a send without one)
            # cannot be this send's.
            settled = keys.settled_by([m.id for m in messages])
            settled |= self.journal.sent_message_ids(since)
            verdicts = reconcile(
                pending, messages, own_inbox_id=own, settled=settled, complete=complete
            )
            by_key = {k.key: k for k in pending}
            for verdict in verdicts:
                if verdict.key not in names or verdict.key in self._sending:
                    continue
                self._apply(cid, by_key[verdict.key], verdict)
        finally:
            self._reconciling -= names

    def _apply(self, cid: str, key: PendingKey, verdict: Verdict) -> None:
        log.info("idempotency_reconciled", outcome=verdict.outcome.value, why=verdict.reason)
        if verdict.outcome is Outcome.NOT_SENT:
            self.keys.forget(key.key)
            self._reconciled_at.pop(key.key, None)
        elif verdict.outcome is Outcome.SENT and verdict.message_id is not None:
            try:
                self.journal_sent(cid, key.key, verdict.message_id, key)
            except StoreError as exc:
                log.warning("idempotency_settle_failed", error=str(exc))
                return
            self._reconciled_at.pop(key.key, None)

    async def _messages_since(self, cid: str, since: float) -> tuple[list[CliMessage], bool]:
        """The conversation's messages sent after ``since`` (epoch seconds), paged; the flag
        says whether the listing is complete."""
        cli = self.cli
        after_ns = int(since * 1e9)
        found: dict[str, CliMessage] = {}
        for _ in range(RECONCILE_MAX_PAGES):
            page = await cli.messages(cid, sent_after_ns=after_ns, limit=RECONCILE_PAGE)
            fresh = [m for m in page if m.id not in found]
            found.update((m.id, m) for m in fresh)
            if len(page) < RECONCILE_PAGE:
                return list(found.values()), True
            if not fresh:
                return list(found.values()), False  # a page of one millisecond: no progress
            # sentAt has millisecond precision: re-read the last millisecond.
            after_ns = max(m.sent_at_ns for m in page) - 1
        return list(found.values()), False
