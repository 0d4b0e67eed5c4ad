"""The bound conversation: conversation.info/invite/rename/lock/explode, profile.update.

Rights are checked before the CLI is called (lock/unlock need super admin, explode needs the
creator), because the CLI rotates the tag or sends the explode notice before it fails.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Protocol

from convosd import errors
from convosd.api.guards import BindingView, bound_id, own_inbox
from convosd.cli import ConvosCli
from convosd.cli.models import PermissionLevel
from convosd.events import event
from convosd.rpc import schemas as s
from convosd.rpc.dispatch import CallContext
from convosd.storage.journal import Journal
from convosd.storage.keys import IdempotencyKeys
from convosd.timefmt import iso, parse_rfc3339


class BoundHost(BindingView, Protocol):
    """What these methods use of the instance besides the binding."""

    def known_name(self, inbox_id: str) -> str | None: ...

    async def conversation_gone(self, *, by: str | None, reason: str) -> None: ...

    def explosion_scheduled(self, when: datetime, by: str | None) -> None: ...


class ConversationApi:
    def __init__(
        self, host: BoundHost, cli: ConvosCli, journal: Journal, keys: IdempotencyKeys
    ) -> None:
        self.host = host
        self.cli = cli
        self.journal = journal
        self.keys = keys

    async def info(self, ctx: CallContext, _p: s.NoParams) -> s.InfoResult:
        cid = bound_id(self.host)
        cli = self.cli
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
                name=names.get(m.inbox_id) or self.host.known_name(m.inbox_id),
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
        cid = bound_id(self.host)
        cli = self.cli
        permissions = await cli.permissions(cid)
        if permissions.locked:
            raise errors.Locked("The conversation is locked: unlock it before inviting")
        made = await cli.invite(cid, expires_in_s=p.expires_in_s, single_use=p.single_use)
        return s.InviteResult(
            invite_url=made.url, invite_slug=made.slug, expires_at=made.expires_at
        )

    async def rename(self, ctx: CallContext, p: s.RenameParams) -> s.RenameResult:
        cid = bound_id(self.host)
        done = await self.cli.update_name(cid, p.name)
        return s.RenameResult(name=done.name)

    async def lock(self, ctx: CallContext, p: s.LockParams) -> s.LockResult:
        cid = bound_id(self.host)
        cli = self.cli
        permissions = await cli.permissions(cid)
        if own_inbox(self.host) not in permissions.super_admins:
            raise errors.PermissionDenied("Locking and unlocking need super-admin rights")
        # The CLI rotates the tag in the group's metadata from its local copy without a sync:
        # bring that copy up to date first, or what another member wrote last is lost.
        await cli.sync_conversation(cid)
        await cli.lock(cid, unlock=p.unlock)
        locked = not p.unlock
        self.journal.append([event("conversation_locked", cid, locked=locked)])
        return s.LockResult(locked=locked)

    async def explode(self, ctx: CallContext, p: s.ExplodeParams) -> dict[str, Any]:
        cid = bound_id(self.host)
        when = None if p.at is None else parse_rfc3339(p.at)  # the schema checked the form
        if when is not None and when.timestamp() <= time.time():
            raise errors.InvalidParams(
                f"at ({p.at}) is not in the future: give a later RFC 3339 time, or leave it "
                "out to explode now"
            )
        cli = self.cli
        info = await cli.info(cid)
        own = own_inbox(self.host)
        if info.conversation.creator_inbox_id != own:
            raise errors.PermissionDenied("Only the conversation's creator can explode it")
        if when is not None:
            await cli.sync_conversation(cid)  # as for lock: the metadata is read locally
            await cli.explode_scheduled(cid, iso(when))
            self.host.explosion_scheduled(when, own)
            result = s.ExplodeResult(exploded=False, scheduled_at=iso(when))
        else:
            done = await cli.explode(cid)
            await self.host.conversation_gone(by=own, reason="exploded")
            self.keys.clear()
            result = s.ExplodeResult(exploded=True, members_removed=done.members_removed)
        # One of two shapes: the other shape's fields are left out, not null.
        return result.model_dump(by_alias=True, mode="json", exclude_none=True)

    async def profile_update(self, ctx: CallContext, p: s.ProfileUpdateParams) -> s.OkResult:
        cid = bound_id(self.host)
        await self.cli.update_profile(cid, name=p.name, image=p.image_url)
        return s.OkResult(ok=True)
