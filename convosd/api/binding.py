"""What binds and unbinds: conversation.create/join/awaitAdd/cancelJoin, daemon.reset.

They hold one lock, so two of them never interleave; create, join and awaitAdd refuse while
bound or while a join is pending (ALREADY_BOUND); the pending row holds either a pending join
or a wait to be added, and cancelJoin ends either.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from typing import Any

from convosd import errors
from convosd.api.guards import not_bound_or_pending
from convosd.cli.models import JoinJoined
from convosd.conversation.adds import AwaitAdd, is_await
from convosd.conversation.instance import Instance
from convosd.conversation.invites import extract_slug
from convosd.conversation.joins import PendingJoin
from convosd.rpc import schemas as s
from convosd.rpc.dispatch import CallContext
from convosd.rpc.subscriptions import SubscriptionHub
from convosd.timefmt import iso


class BindingApi:
    def __init__(
        self,
        instance: Instance,
        hub: SubscriptionHub,
        pending: PendingJoin,
        adds: AwaitAdd,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.instance = instance
        self.hub = hub
        self.pending = pending
        self.adds = adds
        self.clock = clock
        self.join_retry_max_s = instance.settings.daemon.join_retry_max_s
        self._binding_lock = asyncio.Lock()

    async def create(self, ctx: CallContext, p: s.CreateParams) -> s.CreateResult:
        async with self._binding_lock:
            not_bound_or_pending(self.instance, self.instance.store.pending_join)
            cli = self.instance.cli
            created = await cli.create(
                name=p.name,
                profile_name=p.profile_name,
                description=p.description,
                image_url=p.image_url,
                permissions=p.permissions,
            )
            self.instance.home.identity_inbox_id = created.inbox_id
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
            not_bound_or_pending(self.instance, self.instance.store.pending_join)
            cli = self.instance.cli
            info = await cli.inspect_invite(slug)
            if not info.signature_valid:
                raise errors.InviteInvalid("Invalid invite signature")
            if info.invite_expired:
                raise errors.InviteExpired("Invite has expired")
            if info.conversation_expired:
                raise errors.InviteExpired("Conversation has expired")
            own = self.instance.home.identity_inbox_id
            if own is not None and info.creator_inbox_id == own:
                raise errors.InviteInvalid("This is the instance's own invite")
            known = await cli.list_conversations(sync=False, include_inactive=True)
            result = await cli.join(slug, profile_name=p.profile_name, timeout_s=p.timeout_s)
            if result.inbox_id:
                self.instance.home.identity_inbox_id = result.inbox_id
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
            retry_until = now + self.join_retry_max_s
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

    async def await_add(self, ctx: CallContext, p: s.AwaitAddParams) -> s.AwaitAddResult:
        """Wait to be added by one of ``from`` (else ``allowFrom``): makes the identity if
        there is none and answers at once with its inbox id; the watch binds later
        (``conversation_bound {how: "added", by}``). A second call while the instance waits
        answers that wait as it is."""
        async with self._binding_lock:
            instance = self.instance
            if instance.binding is not None:
                raise errors.AlreadyBound()
            record = instance.store.pending_join()
            if record is not None and not is_await(record):
                raise errors.AlreadyBound.join_pending()
            if record is None:
                allowed = p.from_ or list(instance.settings.convos.allow_from)
                if not allowed:
                    raise errors.InvalidParams(
                        "nobody may add the instance: pass from (inbox ids) or set allowFrom",
                        data={"errors": [{"param": "from", "problem": "missing"}]},
                    )
                timeout_s = p.timeout_s if p.timeout_s is not None else self.join_retry_max_s
                record = await self.adds.begin(
                    allowed_from=p.from_, timeout_s=timeout_s, profile_name=p.profile_name
                )
        until = record.get("until")
        return s.AwaitAddResult(
            status="awaiting_add",
            inbox_id=record.get("inboxId") or instance.home.identity_inbox_id or "",
            from_=sorted(self.adds.allowed(record)),
            until=iso(until) if until is not None else None,
        )

    async def cancel_join(self, ctx: CallContext, _p: s.NoParams) -> s.CancelJoinResult:
        if self.instance.store.pending_join() is None:
            raise errors.NotFound("No pending join to cancel")
        await self.adds.cancel()
        await self.pending.cancel()
        self.instance.store.meta.set("pending_as_owner", None)
        self.instance.changed()
        return s.CancelJoinResult(cancelled=True)

    async def reset(self, ctx: CallContext, _p: s.ConfirmParams) -> s.ResetResult:
        async with self._binding_lock:
            instance = self.instance
            await self.adds.cancel()
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
            instance.attachments.remove_all()
            instance.sender_policy.clear(counts=True)
            instance.store.meta.set("owner_conversation_id", None)
            instance.recorded_owner = None
            instance.store.meta.set("owner_identity_id", None)
            self.hub.end_all("reset")
            instance.forget_after_reset()
        return s.ResetResult(clean=True)


def _remove_tree(path: Any) -> None:
    shutil.rmtree(path, ignore_errors=True)
