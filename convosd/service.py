"""The JSON-RPC methods (docs/API.md, docs/PROTOCOL.md), on top of the instance.

Binding rules: create/join while bound or pending → ALREADY_BOUND; any other method that needs
a conversation while unbound → NOT_BOUND. Every one-shot CLI call goes through the instance's
single queue. Rights are checked before the CLI is called (lock/unlock need super admin,
explode needs the creator), because the CLI rotates the tag or sends the explode notice
before it fails.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import structlog

from convosd import __version__, errors
from convosd.cli.models import CliMessage, JoinJoined, PermissionLevel
from convosd.events import event
from convosd.idempotency import SKEW_S, Outcome, PendingKey, Verdict, reconcile
from convosd.instance import Instance
from convosd.invites import extract_slug
from convosd.joins import JoinTiming, PendingJoin
from convosd.jsonutil import has_lone_surrogate
from convosd.ratelimit import TokenBucket
from convosd.rpc import schemas as s
from convosd.rpc.dispatch import CallContext, MethodSpec
from convosd.rpc.subscriptions import SubscriptionHub
from convosd.storage.store import StoreError
from convosd.storage.work import SettleKey
from convosd.timefmt import iso

IDEMPOTENCY_TTL_S = 24 * 3600
#: retryAfterS of a repeat that finds its key in flight.
KEY_BUSY_RETRY_S = 1.0
#: A repeat that finds its key in flight reconciles it again at most this often.
RECONCILE_EVERY_S = 5.0
RECONCILE_PAGE = 200
RECONCILE_MAX_PAGES = 50
#: Failures of a send after which the CLI provably did not send: the key is released. Every
#: other failure after the CLI was called leaves the outcome unknown (convosd.idempotency).
_NOT_SENT: tuple[type[BaseException], ...] = (
    errors.InvalidParams,  # the text was refused before a process started
    errors.CliUnavailable,  # the CLI could not start or load its native binding
    errors.ConversationNotFound,  # the CLI does not know the conversation
    errors.IdentityNotFound,  # the CLI home has no identity
)
log = structlog.get_logger("convosd.service")


class ConvosService:
    def __init__(
        self,
        instance: Instance,
        hub: SubscriptionHub,
        *,
        join_timing: JoinTiming | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.instance = instance
        self.hub = hub
        self.settings = instance.settings
        self.clock = clock
        self.pending = PendingJoin(instance, join_timing or JoinTiming())
        self.bucket = TokenBucket(self.settings.daemon.send_rate_per_s)
        self._binding_lock = asyncio.Lock()
        self._reconciling: set[str] = set()
        self._sending: set[str] = set()  # keys whose CLI call is queued or running
        self._reconciled_at: dict[str, float] = {}  # key -> monotonic time of the last try

    # --- helpers ------------------------------------------------------------------------

    def _bound_id(self) -> str:
        binding = self.instance.binding
        if binding is None:
            raise errors.NotBound()
        return binding.conversation_id

    def _not_bound_or_pending(self) -> None:
        if self.instance.binding is not None:
            raise errors.AlreadyBound()
        if self.instance.store.pending_join() is not None:
            raise errors.AlreadyBound.join_pending()

    def _own(self) -> str:
        own = self.instance.own_inbox_id
        if own is None:
            raise errors.NotReady("the instance's inbox id is not known yet")
        return own

    # --- status and health --------------------------------------------------------------

    async def status(self, ctx: CallContext, _p: s.NoParams) -> dict[str, Any]:
        # The hot path of health checks: built as the wire shape directly (tests validate it
        # against StatusResult, which also documents it in rpc.discover).
        return self.instance.status(subscribers=len(self.hub), policy=self.policy_counts())

    def policy_counts(self) -> dict[str, Any]:
        return self.instance.sender_policy.counts()

    async def health(self, ctx: CallContext, _p: s.NoParams) -> s.HealthResult:
        status, checks = self.instance.health()
        return s.HealthResult(status=status, checks=checks)

    # --- create / join ------------------------------------------------------------------

    async def create(self, ctx: CallContext, p: s.CreateParams) -> s.CreateResult:
        async with self._binding_lock:
            self._not_bound_or_pending()
            cli = self.instance.cli
            created = await cli.create(
                name=p.name,
                profile_name=p.profile_name,
                description=p.description,
                image_url=p.image_url,
                permissions=p.permissions,
            )
            self.instance.identity_inbox_id = created.inbox_id
            await self.instance.bind(
                created.conversation_id,
                inbox_id=created.inbox_id,
                how="created",
                creator_inbox_id=created.inbox_id,
                invite_tag=created.invite.tag,
            )
        return s.CreateResult(
            conversation_id=created.conversation_id,
            invite_url=created.invite.url,
            invite_slug=created.invite.slug,
            inbox_id=created.inbox_id,
        )

    async def join(self, ctx: CallContext, p: s.JoinParams) -> dict[str, Any]:
        result = await self._join(p)
        # One of two shapes: the other shape's fields are left out, not null.
        return result.model_dump(by_alias=True, mode="json", exclude_none=True)

    async def _join(self, p: s.JoinParams) -> s.JoinResult:
        slug = extract_slug(p.invite_url)
        async with self._binding_lock:
            self._not_bound_or_pending()
            cli = self.instance.cli
            info = await cli.inspect_invite(slug)
            if not info.signature_valid:
                raise errors.InviteInvalid("Invalid invite signature")
            if info.invite_expired:
                raise errors.InviteExpired("Invite has expired")
            if info.conversation_expired:
                raise errors.InviteExpired("Conversation has expired")
            own = self.instance.identity_inbox_id
            if own is not None and info.creator_inbox_id == own:
                raise errors.InviteInvalid("This is the instance's own invite")
            known = await cli.list_conversations(sync=False, include_inactive=True)
            result = await cli.join(slug, profile_name=p.profile_name, timeout_s=p.timeout_s)
            if result.inbox_id:
                self.instance.identity_inbox_id = result.inbox_id
            if p.as_owner:
                self.instance.store.meta.set("pending_as_owner", "1")
            if isinstance(result, JoinJoined):
                await self.instance.bind(
                    result.conversation_id,
                    inbox_id=result.inbox_id,
                    how="joined",
                    creator_inbox_id=info.creator_inbox_id,
                    invite_tag=result.tag or info.tag,
                )
                return s.JoinResult(status="joined", conversation_id=result.conversation_id)
            now = self.clock()
            retry_until = now + self.settings.daemon.join_retry_max_s
            record = {
                "slug": slug,
                "tag": info.tag,
                "creatorInboxId": info.creator_inbox_id,
                "knownConversationIds": sorted(c.conversation_id for c in known),
                "inboxId": result.inbox_id,
                "profileName": p.profile_name,
                "startedAt": now,
                "lastRequestAt": now,
                "retryUntil": retry_until,
            }
            self.instance.store.set_pending_join(record)
            self.pending.start()
            self.instance.changed()
        return s.JoinResult(
            status="pending_acceptance",
            creator_inbox_id=info.creator_inbox_id,
            retry_until=iso(retry_until),
        )

    async def cancel_join(self, ctx: CallContext, _p: s.NoParams) -> s.CancelJoinResult:
        if self.instance.store.pending_join() is None:
            raise errors.NotFound("No pending join to cancel")
        await self.pending.cancel()
        self.instance.store.meta.set("pending_as_owner", None)
        self.instance.changed()
        return s.CancelJoinResult(cancelled=True)

    # --- the bound conversation ---------------------------------------------------------

    async def info(self, ctx: CallContext, _p: s.NoParams) -> s.InfoResult:
        cid = self._bound_id()
        cli = self.instance.cli
        info = await cli.info(cid)
        permissions = await cli.permissions(cid)
        try:
            profiles = await cli.profiles(cid)
            names = {p.inbox_id: p.name for p in profiles.profiles}
        except errors.CliError:
            names = {}
        members = [
            s.MemberOut(
                inbox_id=m.inbox_id,
                name=names.get(m.inbox_id) or self.instance.known_name(m.inbox_id),
                is_admin=m.permission_level >= PermissionLevel.ADMIN,
            )
            for m in info.members
        ]
        return s.InfoResult(
            conversation_id=cid,
            name=info.conversation.name,
            member_count=len(members),
            members=members,
            locked=permissions.locked,
        )

    async def invite(self, ctx: CallContext, p: s.InviteParams) -> s.InviteResult:
        cid = self._bound_id()
        cli = self.instance.cli
        permissions = await cli.permissions(cid)
        if permissions.locked:
            raise errors.Locked("The conversation is locked: unlock it before inviting")
        made = await cli.invite(cid, expires_in_s=p.expires_in_s, single_use=p.single_use)
        return s.InviteResult(
            invite_url=made.url, invite_slug=made.slug, expires_at=made.expires_at
        )

    async def rename(self, ctx: CallContext, p: s.RenameParams) -> s.RenameResult:
        cid = self._bound_id()
        cli = self.instance.cli
        done = await cli.update_name(cid, p.name)
        return s.RenameResult(name=done.name)

    async def lock(self, ctx: CallContext, p: s.LockParams) -> s.LockResult:
        cid = self._bound_id()
        cli = self.instance.cli
        permissions = await cli.permissions(cid)
        if self._own() not in permissions.super_admins:
            raise errors.PermissionDenied("Locking and unlocking need super-admin rights")
        await cli.lock(cid, unlock=p.unlock)
        locked = not p.unlock
        self.instance.journal.append([event("conversation_locked", cid, locked=locked)])
        return s.LockResult(locked=locked)

    async def explode(self, ctx: CallContext, _p: s.ConfirmParams) -> s.ExplodeResult:
        cid = self._bound_id()
        cli = self.instance.cli
        info = await cli.info(cid)
        own = self._own()
        if info.conversation.creator_inbox_id != own:
            raise errors.PermissionDenied("Only the conversation's creator can explode it")
        done = await cli.explode(cid)
        await self.instance.conversation_gone(by=own, reason="exploded")
        self._clear_keys()
        return s.ExplodeResult(exploded=True, members_removed=done.members_removed)

    async def profile_update(self, ctx: CallContext, p: s.ProfileUpdateParams) -> s.OkResult:
        cid = self._bound_id()
        cli = self.instance.cli
        await cli.update_profile(cid, name=p.name, image=p.image_url)
        return s.OkResult(ok=True)

    # --- messages -----------------------------------------------------------------------

    def _check_message(self, text: str) -> None:
        limit = self.settings.daemon.max_message_bytes
        if not text:
            raise errors.InvalidParams("message is empty")
        if "\x00" in text:
            raise errors.InvalidParams("message contains U+0000")
        if has_lone_surrogate(text):
            raise errors.InvalidParams("message contains a lone surrogate (not valid UTF-8)")
        size = len(text.encode("utf-8"))
        if size > limit:
            raise errors.InvalidParams(
                f"message is {size} bytes of UTF-8; at most {limit} (maxMessageBytes)"
            )

    async def send(self, ctx: CallContext, p: s.SendParams) -> s.SendResult:
        cid = self._bound_id()
        self._check_message(p.message)
        key = p.idempotency_key
        if key is not None:
            previous = self._key_result(key)
            if previous is not None:
                return s.SendResult(message_id=previous)
        wait = self.bucket.take(time.monotonic())
        if wait > 0:
            raise errors.Busy(
                f"over sendRatePerS ({self.settings.daemon.send_rate_per_s}/s)", retry_after_s=wait
            )
        cli = self.instance.cli
        started = False

        def on_start() -> None:
            nonlocal started
            started = True  # from here on the CLI may send

        if key is not None:
            self.instance.store.keys.intent(
                key, self.clock(), PendingKey(key, 0.0, p.message, p.reply_to).body()
            )
            self._sending.add(key)
        try:
            if p.reply_to is not None:
                sent = await cli.send_reply(cid, p.reply_to, p.message, on_start=on_start)
            else:
                sent = await cli.send_text(cid, p.message, on_start=on_start)
        except BaseException as exc:
            if key is not None:
                self._send_failed(key, exc, started=started)
            raise
        finally:
            if key is not None:
                self._sending.discard(key)
        self._journal_sent(cid, key, sent.message_id, p.message, p.reply_to)
        return s.SendResult(message_id=sent.message_id)

    def _journal_sent(
        self, cid: str, key: str | None, message_id: str, text: str, reply_to: str | None
    ) -> None:
        """Journal ``message_sent`` and, in the same transaction, settle ``key``."""
        settle = json.dumps({"messageId": message_id})
        self.instance.journal.append(
            [
                event(
                    "message_sent",
                    cid,
                    messageId=message_id,
                    content=text,
                    replyTo=reply_to,
                    idempotencyKey=key,
                )
            ],
            seen=[(message_id, "own")],
            writes=() if key is None else (SettleKey(key, message_id, settle),),
        )

    async def react(self, ctx: CallContext, p: s.ReactParams) -> s.ReactResult:
        cid = self._bound_id()
        cli = self.instance.cli
        done = await cli.send_reaction(cid, p.message_id, p.emoji, remove=p.remove)
        return s.ReactResult(
            message_id=done.message_id,
            reference_message_id=done.reference_message_id,
            action="removed" if done.action == "remove" else "added",
            emoji=done.emoji,
        )

    # --- idempotency keys (state: in_flight | done; see convosd.idempotency) ------------

    def _key_result(self, key: str) -> str | None:
        store = self.instance.store
        row = store.keys.get(key)
        if row is None:
            return None
        state, intent_at, body = row
        if self.clock() - intent_at > IDEMPOTENCY_TTL_S:
            store.keys.forget(key)
            return None
        if state == "done":
            return str(json.loads(body)["messageId"])
        self._reconcile_if_due(key)
        raise errors.Busy(
            "a send with this idempotencyKey is in flight or its outcome is not known yet; "
            "repeat it later with the same key",
            retry_after_s=KEY_BUSY_RETRY_S,
        )

    def _send_failed(self, key: str, exc: BaseException, *, started: bool) -> None:
        """The rule of convosd.idempotency: release the key only when the CLI provably did
        not send; otherwise keep it in flight and reconcile it."""
        if not started or isinstance(exc, _NOT_SENT):
            self.instance.store.keys.forget(key)
            return
        log.warning(
            "send_outcome_unknown",
            error=getattr(exc, "kind", type(exc).__name__),
            hint="the key stays in flight until the own messages settle it",
        )
        if not isinstance(exc, asyncio.CancelledError):
            # (Cancelled: shutting down or the request went away; the next start or the
            # next repeat of the key reconciles it.)
            self.instance.spawn_task(self.reconcile_keys(only=key), "reconcile-key")

    def _reconcile_if_due(self, key: str) -> None:
        """A repeat found ``key`` in flight: reconcile it again unless its send is still
        running, a reconciliation is under way or one ran moments ago."""
        if key in self._sending or key in self._reconciling:
            return
        now = time.monotonic()
        if now - self._reconciled_at.get(key, -RECONCILE_EVERY_S) < RECONCILE_EVERY_S:
            return
        self._reconciled_at[key] = now
        self.instance.spawn_task(self.reconcile_keys(only=key), "reconcile-key")

    def _clear_keys(self) -> None:
        self.instance.store.keys.clear()

    async def reconcile_keys(self, only: str | None = None) -> None:
        """Settle keys left in flight (at start, after a send with an unknown outcome, or
        when a repeat finds one) from the conversation's own messages; see
        :func:`convosd.idempotency.reconcile`. A settled key journals its ``message_sent``."""
        store = self.instance.store
        store.keys.expire(self.clock() - IDEMPOTENCY_TTL_S)
        names = {
            row[0]
            for row in store.keys.in_flight()
            if (only is None or row[0] == only)
            and row[0] not in self._sending
            and row[0] not in self._reconciling
        }
        if not names:
            return
        binding = self.instance.binding
        own = self.instance.own_inbox_id
        if binding is None or own is None:
            log.info("idempotency_reconcile_deferred", keys=len(names), reason="not bound")
            return
        cid = binding.conversation_id
        self._reconciling |= names
        now = time.monotonic()
        for name in names:
            self._reconciled_at[name] = now
        try:
            pending = [PendingKey.from_row(*row) for row in store.keys.in_flight()]
            since = min(k.intent_at for k in pending if k.key in names) - SKEW_S
            try:
                messages, complete = await self._messages_since(cid, since)
            except errors.ConvosdError as exc:
                log.warning("idempotency_reconcile_failed", error=exc.message, keys=len(names))
                return  # stay in flight: repeats get BUSY and try again
            # Read again: sends may have finished or started while the CLI ran.
            pending = [PendingKey.from_row(*row) for row in store.keys.in_flight()]
            # Ids already reported as some send's result (a key's, or a send without one)
            # cannot be this send's.
            settled = store.keys.settled_by([m.id for m in messages])
            settled |= self.instance.journal.sent_message_ids(since)
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
            self.instance.store.keys.forget(key.key)
            self._reconciled_at.pop(key.key, None)
        elif verdict.outcome is Outcome.SENT and verdict.message_id is not None:
            try:
                self._journal_sent(cid, key.key, verdict.message_id, key.message, key.reply_to)
            except StoreError as exc:
                log.warning("idempotency_settle_failed", error=str(exc))
                return
            self._reconciled_at.pop(key.key, None)

    async def _messages_since(self, cid: str, since: float) -> tuple[list[CliMessage], bool]:
        """The conversation's messages sent after ``since`` (epoch seconds), paged; the flag
        says whether the listing is complete."""
        cli = self.instance.cli
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

    # --- events -------------------------------------------------------------------------

    def _check_after(self, after: int) -> None:
        journal = self.instance.journal
        if after < journal.first_seq - 1:
            raise errors.EventsExpired(
                journal.first_seq,
                f"events after {after} are no longer in the journal; it starts at "
                f"{journal.first_seq}",
            )
        if after > journal.last_seq:
            raise errors.InvalidParams(
                f"after ({after}) is beyond the journal's lastSeq ({journal.last_seq})"
            )

    async def subscribe(self, ctx: CallContext, p: s.SubscribeParams) -> s.SubscribeResult:
        journal = self.instance.journal
        after = journal.last_seq if p.after is None else p.after
        self._check_after(after)
        types = frozenset(p.types) if p.types else None
        connection = ctx.connection
        sub = self.hub.create(connection, after, types)
        connection.subscriptions[sub.id] = sub
        ctx.after_response.append(lambda: self.hub.start(sub))
        position = journal.position
        return s.SubscribeResult(
            subscription=sub.id,
            journal_id=position.journal_id,
            first_seq=position.first_seq,
            last_seq=position.last_seq,
        )

    async def unsubscribe(self, ctx: CallContext, p: s.UnsubscribeParams) -> s.OkResult:
        sub = ctx.connection.subscriptions.get(p.subscription)
        if sub is None:
            raise errors.NotFound(f"No subscription {p.subscription} on this connection")
        self.hub.end(sub, None)
        return s.OkResult(ok=True)

    async def read(self, ctx: CallContext, p: s.ReadParams) -> s.ReadResult:
        journal = self.instance.journal
        self._check_after(p.after)
        events = journal.read(p.after, p.limit, frozenset(p.types) if p.types else None)
        position = journal.position
        return s.ReadResult(
            events=[e.as_dict() for e in events],
            journal_id=position.journal_id,
            first_seq=position.first_seq,
            last_seq=position.last_seq,
        )

    # --- pairing ------------------------------------------------------------------------

    async def pairing_list(self, ctx: CallContext, _p: s.NoParams) -> dict[str, Any]:
        return {"requests": self.instance.sender_policy.list_requests()}

    async def pairing_approve(
        self, ctx: CallContext, p: s.PairingCodeParams
    ) -> s.PairingApproveResult:
        sender, released = self.instance.sender_policy.approve(p.code)
        return s.PairingApproveResult(sender_inbox_id=sender, released=released)

    async def pairing_deny(self, ctx: CallContext, p: s.PairingCodeParams) -> s.PairingDenyResult:
        return s.PairingDenyResult(sender_inbox_id=self.instance.sender_policy.deny(p.code))

    # --- reset --------------------------------------------------------------------------

    async def reset(self, ctx: CallContext, _p: s.ConfirmParams) -> s.ResetResult:
        async with self._binding_lock:
            instance = self.instance
            await self.pending.cancel()
            if instance.binding is not None:
                await instance.unbind(reason="reset")
            await instance.cli.reset()
            home = instance.paths.convos_home
            _remove_tree(home / "db")
            (home / "identity.json").unlink(missing_ok=True)
            with instance.store.transaction():
                instance.store.keys.clear()
                instance.store.seen_ids.clear()
            instance.journal.reset()
            instance.sender_policy.clear(counts=True)
            instance.store.meta.set("owner_conversation_id", None)
            instance.recorded_owner = None
            instance.store.meta.set("owner_identity_id", None)
            self.hub.end_all("reset")
            instance.forget_after_reset()
        return s.ResetResult(clean=True)

    # --- the method table ---------------------------------------------------------------

    def methods(self) -> dict[str, MethodSpec]:
        m = MethodSpec
        specs = [
            m(
                "status",
                s.NoParams,
                s.StatusResult,
                self.status,
                "The daemon's state.",
                always=True,
            ),
            m(
                "health",
                s.NoParams,
                s.HealthResult,
                self.health,
                "ok, degraded or down.",
                always=True,
            ),
            m(
                "conversation.create",
                s.CreateParams,
                s.CreateResult,
                self.create,
                "Create a conversation and bind to it.",
                admin=True,
            ),
            m(
                "conversation.join",
                s.JoinParams,
                s.JoinResult,
                self.join,
                "Join a conversation by invite; pending until the creator accepts.",
                admin=True,
            ),
            m(
                "conversation.cancelJoin",
                s.NoParams,
                s.CancelJoinResult,
                self.cancel_join,
                "Forget a pending join.",
                admin=True,
            ),
            m(
                "conversation.info",
                s.NoParams,
                s.InfoResult,
                self.info,
                "The bound conversation: name, members, locked.",
            ),
            m(
                "conversation.invite",
                s.InviteParams,
                s.InviteResult,
                self.invite,
                "A new invite to the bound conversation.",
            ),
            m(
                "conversation.rename",
                s.RenameParams,
                s.RenameResult,
                self.rename,
                "Rename the bound conversation.",
            ),
            m(
                "conversation.lock",
                s.LockParams,
                s.LockResult,
                self.lock,
                "Lock or unlock (both rotate the invite tag).",
                admin=True,
            ),
            m(
                "conversation.explode",
                s.ConfirmParams,
                s.ExplodeResult,
                self.explode,
                "Remove every other member and unbind (creator only).",
                admin=True,
            ),
            m(
                "profile.update",
                s.ProfileUpdateParams,
                s.OkResult,
                self.profile_update,
                "Update the instance's profile in the conversation.",
            ),
            m(
                "message.send",
                s.SendParams,
                s.SendResult,
                self.send,
                "Send a text (or a reply with replyTo).",
            ),
            m(
                "message.react",
                s.ReactParams,
                s.ReactResult,
                self.react,
                "Add or remove a reaction.",
            ),
            m(
                "events.subscribe",
                s.SubscribeParams,
                s.SubscribeResult,
                self.subscribe,
                "Replay after a seq, then live notifications.",
                always=False,
            ),
            m(
                "events.unsubscribe",
                s.UnsubscribeParams,
                s.OkResult,
                self.unsubscribe,
                "End a subscription of this connection.",
            ),
            m("events.read", s.ReadParams, s.ReadResult, self.read, "Read the journal."),
            m(
                "pairing.list",
                s.NoParams,
                s.PairingListResult,
                self.pairing_list,
                "Pending pairing requests.",
                admin=True,
            ),
            m(
                "pairing.approve",
                s.PairingCodeParams,
                s.PairingApproveResult,
                self.pairing_approve,
                "Approve a sender; release their held messages in order.",
                admin=True,
            ),
            m(
                "pairing.deny",
                s.PairingCodeParams,
                s.PairingDenyResult,
                self.pairing_deny,
                "Deny a sender; drop their held messages.",
                admin=True,
            ),
            m(
                "daemon.reset",
                s.ConfirmParams,
                s.ResetResult,
                self.reset,
                "Wipe identity, binding, journal and keys.",
                admin=True,
            ),
        ]
        table = {spec.name: spec for spec in specs}
        table["rpc.discover"] = MethodSpec(
            "rpc.discover",
            s.NoParams,
            None,
            self._discover,
            "This OpenRPC document.",
            always=True,
        )
        self._table = table
        return table

    async def _discover(self, ctx: CallContext, _p: s.NoParams) -> dict[str, Any]:
        from convosd.rpc.openrpc import document

        return document(self._table, version=__version__)


def _remove_tree(path: Any) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
