"""A live conversation: conversation.typing, message.markRead, member.remove and
conversation.update.

Typing indicators and read receipts are silent signals: neither is journaled and neither
counts against ``sendRatePerS``. member.remove is an admin method; the instance's own rights
are read with ``conversation members`` and checked before ``remove-members`` runs.
"""

from __future__ import annotations

from typing import Protocol

from convosd import errors
from convosd.api.guards import BindingView, bound_id, own_inbox
from convosd.cli import ConvosCli
from convosd.cli.models import PermissionLevel
from convosd.rpc import schemas as s
from convosd.rpc.dispatch import CallContext


class LiveHost(BindingView, Protocol):
    """What these methods use of the instance besides the binding."""

    def member_removed(self, inbox_id: str) -> None: ...


class LiveApi:
    def __init__(self, host: LiveHost, cli: ConvosCli) -> None:
        self.host = host
        self.cli = cli

    async def typing(self, ctx: CallContext, p: s.TypingParams) -> s.OkResult:
        cid = bound_id(self.host)
        await self.cli.typing(cid, stop=not p.typing)
        return s.OkResult(ok=True)

    async def mark_read(self, ctx: CallContext, _p: s.NoParams) -> s.OkResult:
        cid = bound_id(self.host)
        await self.cli.read_receipt(cid)
        return s.OkResult(ok=True)

    async def remove(self, ctx: CallContext, p: s.RemoveMemberParams) -> s.RemoveMemberResult:
        cid = bound_id(self.host)
        own = own_inbox(self.host).lower()
        target = p.inbox_id.lower()
        if target == own:
            raise errors.InvalidParams(
                "inboxId is the instance itself: it cannot remove itself "
                "(conversation.explode ends the conversation)"
            )
        members = {m.inbox_id.lower(): m for m in await self.cli.members(cid)}
        me = members.get(own)
        if me is None or me.permission_level < PermissionLevel.ADMIN:
            raise errors.PermissionDenied(
                "Removing members needs the instance to be an admin or super admin of the "
                "conversation"
            )
        member = members.get(target)
        if member is None:
            raise errors.InvalidParams(
                f"inboxId {p.inbox_id} is not a member of the conversation "
                "(conversation.info lists the members)"
            )
        if (
            member.permission_level is PermissionLevel.SUPER_ADMIN
            and me.permission_level is not PermissionLevel.SUPER_ADMIN
        ):
            raise errors.PermissionDenied("Only a super admin can remove a super admin")
        await self.cli.remove_members(cid, [member.inbox_id])
        self.host.member_removed(member.inbox_id)
        return s.RemoveMemberResult(removed=[member.inbox_id])

    async def update(self, ctx: CallContext, p: s.UpdateParams) -> s.UpdateResult:
        cid = bound_id(self.host)
        name = description = None
        if p.name is not None:
            name = (await self.cli.update_name(cid, p.name)).name
        if p.description is not None:
            description = (await self.cli.update_description(cid, p.description)).description
        if name is None or description is None:
            current = (await self.cli.info(cid)).conversation
            name = current.name if name is None else name
            description = current.description if description is None else description
        return s.UpdateResult(name=name, description=description)
