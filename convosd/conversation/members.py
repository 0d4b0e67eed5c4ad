"""The members of one bound conversation, as last read, and their comings and goings.

:class:`Members` reads the members (``members``): their diff is journaled as
``member_joined`` and ``member_left`` (a departure once, by its durable mark, across
restarts and ``member.remove`` too), the super admins are the owners' part the policy needs,
and our own inbox missing from the list ends the binding (exploded or removed). A read that
answers once the conversation is ending journals nothing. It is a part of the
:class:`~convosd.conversation.bound.BoundConversation`, created and dropped with it; the
bound conversation schedules its reads in its task scope.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from convosd import errors
from convosd.cli import ConvosCli
from convosd.cli.models import PermissionLevel
from convosd.cli.streams import is_explode_notice, is_scheduled_explode
from convosd.conversation.expiry import GoneHook
from convosd.conversation.names import SenderNames
from convosd.events import NewEvent, event
from convosd.storage.journal import Journal
from convosd.storage.store import Store
from convosd.storage.work import MarkDeparted
from convosd.tasks import TaskScope


class Members:
    def __init__(
        self,
        conversation_id: str,
        *,
        cli: ConvosCli,
        store: Store,
        journal: Journal,
        tasks: TaskScope,
        names: SenderNames,
        own_inbox_id: Callable[[], str | None],
        ending: Callable[[], bool],
        on_changed: Callable[[], None],
        on_gone: GoneHook,
    ) -> None:
        self.conversation_id = conversation_id
        self.cli = cli
        self.store = store
        self.journal = journal
        #: the bound conversation's scope: closed, nothing here reads any more
        self.tasks = tasks
        self.names = names
        self.own_inbox_id = own_inbox_id
        #: the conversation is ending: a read that answers now journals nothing after it
        self.ending = ending
        self.on_changed = on_changed
        self.on_gone = on_gone
        #: the members at the last read (None before the first one)
        self.inboxes: set[str] | None = None
        self.super_admins: set[str] = set()

    def removed(self, inbox_id: str) -> None:
        """member.remove removed ``inbox_id``: journal ``member_left`` unless the members
        diff already did (the durable mark decides, across restarts too)."""
        cid = self.conversation_id
        if self.inboxes is not None:
            self.inboxes.discard(inbox_id)
        if inbox_id in self.store.departed(cid):
            return
        self.journal.append(
            [event("member_left", cid, inboxId=inbox_id)],
            writes=[MarkDeparted(cid, inbox_id)],
        )

    async def refresh(self, *, initial: bool = False) -> None:
        """Members (→ member_joined/left), super admins (→ owners), profiles (→ names)."""
        if self.tasks.closed:
            return
        cid = self.conversation_id
        try:
            members = await self.cli.members(cid)
        except errors.ConversationNotFound:
            # Never a member, or gone from this install: only an inactive group in the list
            # means "removed"; otherwise the children's fatal state reports the problem.
            listed = await self.cli.list_conversations(sync=True, include_inactive=True)
            if any(c.conversation_id == cid and not c.is_active for c in listed):
                await self.on_gone(None, "removed")
            return
        if self.tasks.closed or self.ending():
            return  # the answer came after the end: nothing is journaled after it
        current = {m.inbox_id for m in members}
        self.super_admins = {
            m.inbox_id for m in members if m.permission_level is PermissionLevel.SUPER_ADMIN
        }
        own = self.own_inbox_id()
        if own is not None and current and own not in current:
            by, reason = await self._why_gone(cid)
            await self.on_gone(by, reason)
            return
        previous = self.inboxes
        self.inboxes = current
        departed = self.store.departed(cid)
        # A member again: a later departure is journaled again.
        writes = [MarkDeparted(cid, inbox, departed=False) for inbox in sorted(current & departed)]
        changes: list[NewEvent] = []
        if previous is not None and not initial:
            changes += [
                event("member_joined", cid, inboxId=inbox) for inbox in sorted(current - previous)
            ]
            for inbox in sorted(previous - current - departed):  # member.remove may have
                changes.append(event("member_left", cid, inboxId=inbox))
                writes.append(MarkDeparted(cid, inbox))
        if changes or writes:
            self.journal.append(changes, writes=writes)
        joined = previous is not None and bool(current - previous)
        if initial or joined or time.monotonic() - self.names.read_at > 1.0:
            with contextlib.suppress(errors.ConvosdError):
                await self.names.refresh()
        self.on_changed()

    async def _why_gone(self, cid: str) -> tuple[str | None, str]:
        """An explode sends ExplodeSettings before it removes the members: find it."""
        try:
            recent = await self.cli.messages(cid, sync=False, limit=50, direction="descending")
        except errors.ConvosdError:
            return None, "removed"
        for message in recent:
            if is_explode_notice(message) and not is_scheduled_explode(message):
                return message.sender_inbox_id, "exploded"
        return None, "removed"
