"""What exists only while the instance is bound to its conversation.

A :class:`BoundConversation` is created when the instance binds (or resumes a saved binding)
and closed when it unbinds, whatever the reason (explode, removal, reset, shutdown). It owns
the two long-lived children (``conversation stream`` and ``conversations
process-join-requests --watch``), the ingest pipeline, the backfill loop, the watcher handling
and the pairing notice, and its parts: the members and owners
(:class:`~convosd.conversation.members.Members`), the senders' names
(:class:`~convosd.conversation.names.SenderNames`) and the scheduled explosion
(:class:`~convosd.conversation.expiry.ScheduledExplosion`: read with ``explode-status`` at
start, after each ``group_updated`` and at every backfill; a timer ends the binding when it
passes). Its parts are created with it and every task they run is in its one
:class:`~convosd.tasks.TaskScope`, where it also coalesces their reads. Closing it stops the
children and ends those tasks, so nothing of a binding survives it: dropping the object drops
its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog

from convosd import errors, reaper
from convosd.backoff import BackoffPolicy
from convosd.cli import ConvosCli
from convosd.cli.models import CliMessage
from convosd.cli.streams import (
    JoinAccepted,
    WatcherError,
    WatcherStreamEnded,
    is_explode_notice,
    is_scheduled_explode,
    parse_watcher_line,
)
from convosd.config import Settings
from convosd.conversation.expiry import GoneHook, ScheduledExplosion
from convosd.conversation.hook import PolicyHook
from convosd.conversation.ingest import Ingest
from convosd.conversation.members import Members
from convosd.conversation.names import SenderNames
from convosd.conversation.pairing import SenderPolicy
from convosd.storage.journal import Journal
from convosd.storage.store import Binding, Store, StoreError
from convosd.supervisor.child import SupervisedChild
from convosd.tasks import TaskScope

STREAM = "stream"
WATCHER = "joinRequests"
#: a members/profiles/expiry read that failed is tried again after these delays
REFRESH_RETRY = BackoffPolicy(initial_s=1.0, factor=2.0, cap_s=30.0, jitter=0.2)


class BoundConversation:
    def __init__(
        self,
        binding: Binding,
        *,
        settings: Settings,
        store: Store,
        journal: Journal,
        cli: ConvosCli,
        sender_policy: SenderPolicy,
        policy: PolicyHook | None,
        own_inbox_id: Callable[[], str | None],
        on_changed: Callable[[], None],
        on_gone: GoneHook,
        stop_grace_s: float,
    ) -> None:
        self.binding = binding
        self.settings = settings
        self.store = store
        self.journal = journal
        self.cli = cli
        self.sender_policy = sender_policy
        self.policy = policy
        self.own_inbox_id = own_inbox_id
        self.on_changed = on_changed
        self.on_gone = on_gone
        self.stop_grace_s = stop_grace_s
        self.log = structlog.get_logger("convosd.bound")
        self.tasks = TaskScope(f"bound:{binding.conversation_id}")
        self.children: dict[str, SupervisedChild] = {}
        self.ingest: Ingest | None = None
        #: the senders' names, and the stream's lines held for a first writer's
        self.names = SenderNames(
            binding.conversation_id,
            cli=cli,
            tasks=self.tasks,
            own_inbox_id=own_inbox_id,
            ask_refresh=lambda: self.schedule_refresh(members=False),
            deliver=self._to_ingest,
        )
        self.admitted: set[str] = set()  # inboxes accepted by our own join-request child
        self._refresh_pending: dict[str, asyncio.Task[None]] = {}
        self._refresh_again: set[str] = set()
        self._rng = random.Random()
        #: the conversation is ending (conversation_exploded journaled or about to be):
        #: a members read that answers now journals nothing after it
        self.ending = False
        #: the members as last read, their diff journaled; the super admins
        self.members = Members(
            binding.conversation_id,
            cli=cli,
            store=store,
            journal=journal,
            tasks=self.tasks,
            names=self.names,
            own_inbox_id=own_inbox_id,
            ending=lambda: self.ending,
            on_changed=on_changed,
            on_gone=on_gone,
        )
        #: the scheduled explosion, and the timer that ends the binding when it passes
        self.expiry = ScheduledExplosion(
            binding.conversation_id,
            cli=cli,
            tasks=self.tasks,
            on_changed=on_changed,
            on_gone=on_gone,
        )

    @property
    def conversation_id(self) -> str:
        return self.binding.conversation_id

    @property
    def closed(self) -> bool:
        return self.tasks.closed

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, inbox: str, *, announce: bool) -> None:
        """Build the pipeline, start both children and the backfill loop. Returns when the
        children were spawned (READY=1 means that), never waiting on the network."""
        binding = self.binding
        self.ingest = Ingest(
            journal=self.journal,
            conversation_id=binding.conversation_id,
            own_inbox_id=inbox,
            bound_at=binding.bound_at,
            policy=self.policy or self.sender_policy,
            on_write_failed=self.sender_policy.reload,
            sender_name=self.names.sender_name,
            on_group_updated=lambda _m: self._group_updated(),
            on_special=self._on_special,
            on_catch_up=lambda: self._spawn(self.backfill(catch_up=True), "backfill-catch-up"),
            backfill_window_s=self.settings.daemon.backfill_window_s,
        )
        cli = self.cli
        cid = binding.conversation_id
        self.children[STREAM] = SupervisedChild(
            STREAM,
            lambda: cli.stream_spec(cid),
            self.names.on_stream_lines,
            stop_signal=signal.SIGTERM,
            stop_grace_s=self.stop_grace_s,
            on_state=lambda _c: self.on_changed(),
            on_spawn=self._on_spawn,
            on_exit=self._on_child_exit,
        )
        self.children[WATCHER] = SupervisedChild(
            WATCHER,
            lambda: cli.join_requests_spec(cid),
            self._on_watcher_lines,
            stop_signal=signal.SIGINT,  # the watcher handles SIGINT only
            stop_grace_s=self.stop_grace_s,
            on_state=lambda _c: self.on_changed(),
            on_spawn=self._on_spawn,
            on_exit=self._on_child_exit,
        )
        if announce and binding.how == "created":
            # A new conversation has one member: whoever shows up in the first refresh joined.
            self.members.inboxes = {inbox}
        # Owners first (the queue is FIFO): the policy needs the super admins.
        self.schedule_refresh(initial=self.members.inboxes is None)
        self.schedule_expiry_check()
        for child in self.children.values():
            child.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(c.spawned.wait() for c in self.children.values())), 10.0
            )
        self.tasks.spawn(self._backfill_loop(), "backfill-loop")

    async def stop_children(self) -> None:
        children = list(self.children.values())
        self.children = {}
        await asyncio.gather(*(child.stop() for child in children), return_exceptions=True)

    async def close(self) -> None:
        """Stop the children and end every task of this binding."""
        self.ending = True
        await self.stop_children()
        await self.tasks.close()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        if self.tasks.closed:
            coro.close()  # the binding is gone: nothing of it starts any more
            return
        self.tasks.spawn(coro, name)

    def _on_spawn(self, child: SupervisedChild, pid: int) -> None:
        ticks = reaper.start_ticks(pid)
        if ticks is not None:
            with contextlib.suppress(StoreError, Exception):
                self.store.record_child(child.name, pid, ticks)
        if child.name == STREAM:
            # Every stream (re)start may follow a gap: re-read the recent window. Its
            # lines are held from now on, until a backfill has read past the first one
            # (the stream listens some time after its start, and says nothing when it does).
            if self.ingest is not None:
                self.ingest.stream_started()
            self._spawn(self.backfill(), "backfill-on-start")

    def _on_child_exit(self, child: SupervisedChild) -> None:
        with contextlib.suppress(StoreError, Exception):
            self.store.forget_child(child.name)

    # --- inbound ------------------------------------------------------------------------

    async def backfill(self, *, catch_up: bool = False) -> int:
        ingest = self.ingest
        if ingest is None or self.closed:
            return 0
        cid = self.binding.conversation_id

        async def page(after_ns: int, before_ns: int | None, limit: int) -> list[CliMessage]:
            messages = await self.cli.messages(
                cid, sent_after_ns=after_ns, sent_before_ns=before_ns, limit=limit
            )
            await self.names.before_backfill_page(messages)
            return messages

        try:
            return await ingest.backfill(page, catch_up=catch_up)
        finally:
            self.schedule_expiry_check()

    async def _backfill_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.daemon.backfill_interval_s)
            with contextlib.suppress(errors.ConvosdError):
                await self.backfill()

    def _on_watcher_lines(self, lines: Sequence[bytes]) -> None:
        for line in lines:
            item = parse_watcher_line(line)
            if isinstance(item, JoinAccepted):
                # Its own conversation's only (an event naming none is ours). The CLI
                # prints an acceptance once its addMembers returned; the add is also seen as
                # our own group_updated, which reads the members again (member_joined).
                if item.conversation_id in (None, self.binding.conversation_id):
                    self._admit(item.joiner_inbox_id, item.profile_name)
            elif isinstance(item, WatcherStreamEnded):
                self.log.warning("watcher_stream_ended", reason=item.reason)
                child = self.children.get(WATCHER)
                if child is not None:
                    # It idles after stream_ended: make it exit, the supervisor restarts it.
                    child.interrupt()
            elif isinstance(item, WatcherError):
                self.log.info(
                    "watcher_error", has_message_id=item.has_message_id, error=item.message
                )

    def post_pairing_notice(self, request: Any) -> None:
        text = (
            f"Pairing request {request.code}: your messages are held until the owner "
            f"approves (convosctl pairing approve {request.code})."
        )
        self._spawn(self.cli.send_text(self.binding.conversation_id, text), "pairing-notice")

    def _admit(self, joiner: str, name: str | None = None) -> None:
        """Our watcher accepted ``joiner`` through our invite: approved at admission when the
        policy is ``pairing`` (the sender policy decides). ``name``, from the join request's
        profile, is the joiner's name from now on (:meth:`SenderNames.joined`)."""
        self.names.joined(joiner, name)
        if joiner not in self.admitted:
            self.admitted.add(joiner)
            self.sender_policy.admit(joiner)
        self.schedule_refresh()

    def _to_ingest(self, lines: Sequence[bytes]) -> None:
        if self.ingest is not None:
            self.ingest.on_stream_lines(lines)

    def _on_special(self, message: CliMessage) -> None:
        if is_scheduled_explode(message):
            self.schedule_expiry_check()  # a time to remember, not an explosion now
        elif is_explode_notice(message):
            self._spawn(self.on_gone(message.sender_inbox_id, "exploded"), "conversation-exploded")

    def _group_updated(self) -> None:
        self.schedule_refresh()
        self.schedule_expiry_check()

    # --- its parts' reads, coalesced --------------------------------------------------

    def schedule_expiry_check(self) -> None:
        """Read ``explode-status`` soon (coalesced like the views)."""
        self._schedule("expiry", initial=False)

    def schedule_refresh(self, *, members: bool = True, initial: bool = False) -> None:
        """Coalesce refreshes: one runs at a time; one asked for meanwhile runs after it."""
        self._schedule("members" if members else "profiles", initial=initial)

    def _schedule(self, key: str, *, initial: bool) -> None:
        pending = self._refresh_pending.get(key)
        if pending is not None and not pending.done():
            self._refresh_again.add(key)
            return
        if self.tasks.closed:
            return
        self._refresh_pending[key] = self.tasks.spawn(
            self._refresh_loop(key, initial), f"refresh-{key}"
        )

    async def _refresh_loop(self, key: str, initial: bool) -> None:
        failures = 0
        while True:
            self._refresh_again.discard(key)
            try:
                if key == "members":
                    await self.members.refresh(initial=initial)
                elif key == "expiry":
                    await self.expiry.check()
                else:
                    await self.names.refresh()
            except errors.ConvosdError as exc:
                # A view that could not be read is read again until it is: member_joined
                # and member_left, the owners and the names come from it, and nothing else
                # may ask for it again (our own watcher's add is seen once).
                failures += 1
                delay = REFRESH_RETRY.delay(failures, self._rng)
                self.log.warning(
                    "view_refresh_failed",
                    view=key,
                    error=type(exc).__name__,
                    attempt=failures,
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
                if self.closed:
                    return
                continue
            failures = 0
            initial = False
            if key not in self._refresh_again or self.closed:
                return
