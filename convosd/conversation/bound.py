"""What exists only while the instance is bound to its conversation.

A :class:`BoundConversation` is created when the instance binds (or resumes a saved binding)
and closed when it unbinds, whatever the reason (explode, removal, reset, shutdown). It owns
the two long-lived children (``conversation stream`` and ``conversations
process-join-requests --watch``), the ingest pipeline, the backfill loop, the watcher handling,
the member, owner and profile views, the pairing notice and the scheduled explosion (read
with ``explode-status`` at start, after each ``group_updated`` and at every backfill; a timer
ends the binding when it passes), with every task they run in one
:class:`~convosd.tasks.TaskScope`. Closing it stops the children and ends those tasks, so
nothing of a binding survives it: dropping the object drops its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import datetime
from typing import Any

import structlog

from convosd import errors, reaper
from convosd.backoff import BackoffPolicy
from convosd.cli import ConvosCli
from convosd.cli.models import CliMessage, PermissionLevel
from convosd.cli.streams import (
    JoinAccepted,
    WatcherError,
    WatcherStreamEnded,
    is_explode_notice,
    is_scheduled_explode,
    parse_watcher_line,
    stream_line_sender,
)
from convosd.config import Settings
from convosd.conversation.hook import PolicyHook
from convosd.conversation.ingest import Ingest
from convosd.conversation.pairing import SenderPolicy
from convosd.events import NewEvent, event
from convosd.storage.journal import Journal
from convosd.storage.store import Binding, Store, StoreError
from convosd.storage.work import MarkDeparted
from convosd.supervisor.child import SupervisedChild
from convosd.tasks import TaskScope

STREAM = "stream"
WATCHER = "joinRequests"
#: how long the stream's lines wait for the name of a sender's first message
NAMES_WAIT_S = 5.0
#: lines held meanwhile, at most; past that they go on (in order) without waiting
HELD_LINES_MAX = 10_000
#: how often a sender whose profile had no name is looked up again
NAMELESS_RETRY_S = 5.0
#: a members/profiles/expiry read that failed is tried again after these delays
REFRESH_RETRY = BackoffPolicy(initial_s=1.0, factor=2.0, cap_s=30.0, jitter=0.2)

#: ``(by, reason)``: the conversation is gone (explode or removal seen by this object)
GoneHook = Callable[[str | None, str], Coroutine[Any, Any, None]]


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
        self.names: dict[str, str | None] = {}
        self.members: set[str] | None = None
        self.super_admins: set[str] = set()
        self.admitted: set[str] = set()  # inboxes accepted by our own join-request child
        self._refresh_pending: dict[str, asyncio.Task[None]] = {}
        self._refresh_again: set[str] = set()
        self._rng = random.Random()
        #: the conversation is ending (conversation_exploded journaled or about to be):
        #: a members read that answers now journals nothing after it
        self.ending = False
        self._profiles_at = 0.0
        #: the names joiners gave in their join requests (our watcher reports them): what
        #: they are called until a profile message of theirs says otherwise
        self.join_names: dict[str, str] = {}
        #: when a sender whose profile had no name was last looked up again
        self._nameless_at: dict[str, float] = {}
        #: senders whose first message (since this binding started) the stream delivered
        self._writers: set[str] = set()
        #: a lookup of names for a first message, and the stream lines held behind it
        self._names_lookup: asyncio.Task[None] | None = None
        self._held_lines: list[bytes] = []
        #: the scheduled explosion (``explode-status``), and who scheduled it
        self.expires_at: datetime | None = None
        self.expires_by: str | None = None
        self._expiry_timer: asyncio.Task[None] | None = None

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
            sender_name=self.sender_name,
            on_group_updated=lambda _m: self._group_updated(),
            on_special=self._on_special,
            backfill_window_s=self.settings.daemon.backfill_window_s,
        )
        cli = self.cli
        cid = binding.conversation_id
        self.children[STREAM] = SupervisedChild(
            STREAM,
            lambda: cli.stream_spec(cid),
            self._on_stream_lines,
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
            self.members = {inbox}
        # Owners first (the queue is FIFO): the policy needs the super admins.
        self.schedule_refresh(initial=self.members is None)
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
            # Every stream (re)start may follow a gap: re-read the recent window.
            self._spawn(self.backfill(), "backfill-on-start")

    def _on_child_exit(self, child: SupervisedChild) -> None:
        with contextlib.suppress(StoreError, Exception):
            self.store.forget_child(child.name)

    # --- inbound ------------------------------------------------------------------------

    async def backfill(self) -> int:
        ingest = self.ingest
        if ingest is None or self.closed:
            return 0
        cid = self.binding.conversation_id

        async def page(after_ns: int, before_ns: int | None, limit: int) -> list[CliMessage]:
            messages = await self.cli.messages(
                cid, sent_after_ns=after_ns, sent_before_ns=before_ns, limit=limit
            )
            # a first message the backfill reads before the stream: named like the stream's
            if self._nameless_first_writer(m.sender_inbox_id for m in messages):
                with contextlib.suppress(TimeoutError, errors.ConvosdError):
                    await asyncio.wait_for(self.refresh_profiles(), NAMES_WAIT_S)
            elif self._names_lookup is not None:
                # The stream holds a first message for its sender's name, and this page
                # (read meanwhile) may hold the same message: it waits for the same lookup,
                # or it would be journaled first, without the name.
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(self._names_lookup), NAMES_WAIT_S)
            return messages

        try:
            return await ingest.backfill(page)
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
        profile, is the joiner's name from now on: known before the joiner can write (the
        CLI's ProfileSnapshot is built from profile messages, which a joiner sends only
        after it is in, and never with ``join --no-wait``)."""
        if name:
            self.join_names[joiner] = name
            self.names[joiner] = name
        if joiner not in self.admitted:
            self.admitted.add(joiner)
            self.sender_policy.admit(joiner)
        self.schedule_refresh()

    def sender_name(self, inbox_id: str) -> str | None:
        """The profile name of ``inbox_id``. An unknown one, or one whose profile had no name
        (at most every NAMELESS_RETRY_S: a profile message may have come since), is looked
        up in the background for later messages."""
        if inbox_id not in self.names:
            self.names[inbox_id] = None
            self.schedule_refresh(members=False)
        elif self.names[inbox_id] is None:
            now = time.monotonic()
            if now - self._nameless_at.get(inbox_id, 0.0) >= NAMELESS_RETRY_S:
                self._nameless_at[inbox_id] = now
                self.schedule_refresh(members=False)
        return self.names.get(inbox_id)

    # --- a sender's name before their first message ------------------------------------

    def _on_stream_lines(self, lines: Sequence[bytes]) -> None:
        """The stream's lines to the ingest, in order. The first message of a sender whose
        name is not known waits (with every line after it, at most NAMES_WAIT_S) for one
        ``profiles`` read: a joiner's profile message comes before their first text, so
        that message carries the name the CLI knows by then. Once per sender."""
        if self._names_lookup is not None and len(self._held_lines) < HELD_LINES_MAX:
            self._held_lines.extend(lines)
            return
        self._release_held()
        senders = (stream_line_sender(line) for line in lines)
        if self._names_lookup is None and self._nameless_first_writer(senders):
            self._held_lines.extend(lines)
            self._names_lookup = self.tasks.spawn(self._look_up_names(), "names-lookup")
            return
        if self.ingest is not None:
            self.ingest.on_stream_lines(lines)

    def _nameless_first_writer(self, senders: Iterable[str | None]) -> bool:
        """Whether one of ``senders`` writes for the first time with no name known (each
        counts once)."""
        own = self.own_inbox_id()
        found = False
        for sender in senders:
            if sender is None or sender == own or sender in self._writers:
                continue
            self._writers.add(sender)
            found = found or self.names.get(sender) is None
        return found and not self.closed

    async def _look_up_names(self) -> None:
        try:
            with contextlib.suppress(TimeoutError, errors.ConvosdError):
                await asyncio.wait_for(self.refresh_profiles(), NAMES_WAIT_S)
        finally:
            self._names_lookup = None
            if not self.closed:  # closing: the next start's backfill reads them again
                self._release_held()

    def _release_held(self) -> None:
        held, self._held_lines = self._held_lines, []
        if held and self.ingest is not None:
            self.ingest.on_stream_lines(held)

    def _on_special(self, message: CliMessage) -> None:
        if is_scheduled_explode(message):
            self.schedule_expiry_check()  # a time to remember, not an explosion now
        elif is_explode_notice(message):
            self._spawn(self.on_gone(message.sender_inbox_id, "exploded"), "conversation-exploded")

    def _group_updated(self) -> None:
        self.schedule_refresh()
        self.schedule_expiry_check()

    # --- the scheduled explosion --------------------------------------------------------

    def schedule_expiry_check(self) -> None:
        """Read ``explode-status`` soon (coalesced like the views)."""
        self._schedule("expiry", initial=False)

    async def check_expiry(self) -> None:
        """Read the scheduled explosion with ``explode-status``; end the binding when it has
        passed, else arm the timer to its time."""
        if self.closed:
            return
        try:
            status = await self.cli.explode_status(self.binding.conversation_id)
        except errors.ConvosdError as exc:
            self.log.warning("explode_status_failed", error=exc.message)
            return
        latest = status.most_recent
        if latest is not None and latest.immediate:
            # An explosion now: the explode notice or the removal ends the binding as
            # "exploded"; its expiresAt is not a schedule.
            return
        self.set_expiry(
            status.effective_expires_at, latest.sender_inbox_id if latest is not None else None
        )

    def set_expiry(self, when: datetime | None, by: str | None) -> None:
        """Remember the scheduled explosion and (re)arm the timer that ends the binding."""
        if self.closed:
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

    # --- members ------------------------------------------------------------------------

    def member_removed(self, inbox_id: str) -> None:
        """member.remove removed ``inbox_id``: journal ``member_left`` unless the members
        diff already did (the durable mark decides, across restarts too)."""
        cid = self.binding.conversation_id
        if self.members is not None:
            self.members.discard(inbox_id)
        if inbox_id in self.store.departed(cid):
            return
        self.journal.append(
            [event("member_left", cid, inboxId=inbox_id)],
            writes=[MarkDeparted(cid, inbox_id)],
        )

    # --- views --------------------------------------------------------------------------

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
                    await self.refresh_views(initial=initial)
                elif key == "expiry":
                    await self.check_expiry()
                else:
                    await self.refresh_profiles()
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

    async def refresh_profiles(self) -> None:
        if self.closed:
            return
        profiles = await self.cli.profiles(self.binding.conversation_id)
        for profile in profiles.profiles:
            # no profile message yet: the name from the join request, if we admitted them
            self.names[profile.inbox_id] = (
                profile.name if profile.has_profile else self.join_names.get(profile.inbox_id)
            )
        self._profiles_at = time.monotonic()

    async def refresh_views(self, *, initial: bool = False) -> None:
        """Members (→ member_joined/left), super admins (→ owners), profiles (→ names)."""
        if self.closed:
            return
        cid = self.binding.conversation_id
        try:
            members = await self.cli.members(cid)
        except errors.ConversationNotFound:
            # Never a member, or gone from this install: only an inactive group in the list
            # means "removed"; otherwise the children's fatal state reports the problem.
            listed = await self.cli.list_conversations(sync=True, include_inactive=True)
            if any(c.conversation_id == cid and not c.is_active for c in listed):
                await self.on_gone(None, "removed")
            return
        if self.closed or self.ending:
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
        previous = self.members
        self.members = current
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
        if initial or joined or time.monotonic() - self._profiles_at > 1.0:
            with contextlib.suppress(errors.ConvosdError):
                await self.refresh_profiles()
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
