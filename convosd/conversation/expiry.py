"""The scheduled explosion of one bound conversation, and the timer that ends the binding.

:class:`ScheduledExplosion` reads ``explode-status`` (at start, after each ``group_updated``
and at every backfill, coalesced by the bound conversation), remembers when the conversation
explodes and who scheduled it, and arms a timer that ends the binding when that time passes.
It is a part of the :class:`~convosd.conversation.bound.BoundConversation`, created and
dropped with it; its timer runs in the bound conversation's task scope.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

import structlog

from convosd import errors
from convosd.cli import ConvosCli
from convosd.tasks import TaskScope

#: ``(by, reason)``: the conversation is gone (explode, removal or expiry seen by the bound
#: conversation or one of its parts)
GoneHook = Callable[[str | None, str], Coroutine[Any, Any, None]]


class ScheduledExplosion:
    def __init__(
        self,
        conversation_id: str,
        *,
        cli: ConvosCli,
        tasks: TaskScope,
        on_changed: Callable[[], None],
        on_gone: GoneHook,
    ) -> None:
        self.conversation_id = conversation_id
        self.cli = cli
        #: the bound conversation's scope: closed, nothing here reads or arms any more
        self.tasks = tasks
        self.on_changed = on_changed
        self.on_gone = on_gone
        self.log = structlog.get_logger("convosd.bound")
        #: the scheduled explosion (``explode-status``), and who scheduled it
        self.expires_at: datetime | None = None
        self.expires_by: str | None = None
        self._expiry_timer: asyncio.Task[None] | None = None

    async def check(self) -> None:
        """Read the scheduled explosion with ``explode-status``; end the binding when it has
        passed, else arm the timer to its time."""
        if self.tasks.closed:
            return
        try:
            status = await self.cli.explode_status(self.conversation_id)
        except errors.ConvosdError as exc:
            self.log.warning("explode_status_failed", error=exc.message)
            return
        latest = status.most_recent
        if latest is not None and latest.immediate:
            # An explosion now: the explode notice or the removal ends the binding as
            # "exploded"; its expiresAt is not a schedule.
            return
        self.set(
            status.effective_expires_at, latest.sender_inbox_id if latest is not None else None
        )

    def set(self, when: datetime | None, by: str | None) -> None:
        """Remember the scheduled explosion and (re)arm the timer that ends the binding."""
        if self.tasks.closed:
            return
        changed = (when, by) != (self.expires_at, self.expires_by)
        self.expires_at, self.expires_by = when, by
        if changed or self._expiry_timer is None or self._expiry_timer.done():
            if self._expiry_timer is not None:
                self._expiry_timer.cancel()
                self._expiry_timer = None
            if when is not None:
                self._expiry_timer = self.tasks.spawn(self._expire_at(when, by), "expiry-timer")
        if changed:
            self.log.info("explosion_scheduled", expires_at=when and when.isoformat(), by=by)
            self.on_changed()

    async def _expire_at(self, when: datetime, by: str | None) -> None:
        # Sleeps in steps: the wall clock may move while the monotonic clock sleeps.
        delay = when.timestamp() - time.time()
        while delay > 0:
            await asyncio.sleep(min(delay, 60.0))
            delay = when.timestamp() - time.time()
        self._expiry_timer = None  # this task now ends the binding: nothing cancels it
        await self.on_gone(by, "expired")
