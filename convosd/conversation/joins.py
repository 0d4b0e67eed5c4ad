"""The pending join (docs/PROTOCOL.md, Methods: Joining).

Each ``join`` sends a new request and waits for a group that was not there before. When the
creator has not accepted in time, the daemon persists ``{slug, tag, creatorInboxId,
knownConversationIds}`` and polls ``conversations list --sync`` with backoff (15 s growing to
120 s, jittered), binding to the first group not in ``knownConversationIds`` whose members
include the creator. It re-sends the request (``join --no-wait``) at most every 30 min and
gives up after ``joinRetryMaxS`` (``join_failed``). The record survives restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from typing import Any

import structlog

from convosd import errors
from convosd.conversation.instance import Instance
from convosd.events import event


@dataclass(frozen=True)
class JoinTiming:
    poll_min_s: float = 15.0
    poll_max_s: float = 120.0
    resend_s: float = 1800.0
    jitter: float = 0.2


class PendingJoin:
    """Runs the background retry of one persisted pending join."""

    def __init__(
        self, instance: Instance, timing: JoinTiming, *, rng: random.Random | None = None
    ) -> None:
        self.instance = instance
        self.timing = timing
        self.rng = rng or random.Random()
        self.task: asyncio.Task[None] | None = None
        self.log = structlog.get_logger("convosd.join")
        self.polls = 0

    @property
    def record(self) -> dict[str, Any] | None:
        record = self.instance.store.pending_join()
        # the pending row may hold a wait to be added instead (convosd.conversation.adds)
        return None if record is None or record.get("kind") is not None else record

    def start(self) -> None:
        if self.record is not None and (self.task is None or self.task.done()):
            # The instance's scope owns it (failure logged, cancelled at shutdown); the
            # handle lets a cancel or a stop end it earlier.
            self.task = self.instance.spawn_task(self._run(), "pending-join")

    async def cancel(self) -> bool:
        """Forget the pending join; True if there was one."""
        had = self.record is not None
        if had:
            self.instance.store.set_pending_join(None)
        if self.task is not None:
            self.task.cancel()
            if self.task is not asyncio.current_task():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self.task
            self.task = None
        return had

    async def stop(self) -> None:
        """Shutdown: stop polling; the record stays persisted."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
            self.task = None

    def _delay(self) -> float:
        base = min(self.timing.poll_max_s, self.timing.poll_min_s * (1.5**self.polls))
        return base * (1 + self.timing.jitter * (2 * self.rng.random() - 1))

    async def _run(self) -> None:
        while True:
            record = self.record
            if record is None:
                return
            if time.time() >= record["retryUntil"]:
                await self._give_up(record, "no acceptance before joinRetryMaxS")
                return
            await asyncio.sleep(self._delay())
            self.polls += 1
            try:
                if await self.check_once():
                    return
                record = self.record
                if (
                    record is not None
                    and time.time() - record["lastRequestAt"] >= self.timing.resend_s
                ):
                    await self._resend(record)
            except errors.InviteExpired as exc:
                await self._give_up(record or {}, f"invite expired: {exc.message}")
                return
            except errors.InviteInvalid as exc:
                await self._give_up(record or {}, f"invite invalid: {exc.message}")
                return
            except errors.ConvosdError as exc:
                self.log.warning("pending_join_poll_failed", error=exc.message, kind=exc.kind)

    async def check_once(self) -> bool:
        """One look for the new group; binds and returns True when found."""
        record = self.record
        if record is None:
            return True
        instance = self.instance
        listed = await instance.cli.list_conversations(sync=True)
        known = set(record["knownConversationIds"])
        creator = record["creatorInboxId"]
        for candidate in listed:
            if candidate.conversation_id in known or not candidate.is_active:
                continue
            members = await instance.cli.members(candidate.conversation_id)
            if any(m.inbox_id == creator for m in members):
                self.log.info("pending_join_accepted", conversation_id=candidate.conversation_id)
                await instance.bind(
                    candidate.conversation_id,
                    inbox_id=record.get("inboxId") or instance.home.identity_inbox_id,
                    how="joined",
                    creator_inbox_id=creator,
                    invite_tag=record.get("tag"),
                )
                return True
        return False

    async def _resend(self, record: dict[str, Any]) -> None:
        instance = self.instance
        await instance.cli.join(
            record["slug"], profile_name=record.get("profileName"), no_wait=True
        )
        record["lastRequestAt"] = time.time()
        instance.store.set_pending_join(record)
        self.log.info("pending_join_resent")

    async def _give_up(self, record: dict[str, Any], reason: str) -> None:
        self.instance.store.set_pending_join(None)
        self.instance.journal.append([event("join_failed", None, reason=reason)])
        self.log.warning("pending_join_failed", reason=reason, tag=record.get("tag"))
