"""One convosd instance: its binding, its two long-lived children and its inbound pipeline.

"One instance = one conversation". :class:`Instance` resumes a saved binding at start,
attaches to ``ownerConversationId`` when unbound, binds after create/join, and unbinds on
explode, reset or removal. While bound it keeps ``conversation stream`` and
``conversations process-join-requests --watch`` running, backfills the recent window at every
stream (re)start and every ``backfillIntervalS``, and keeps the member, owner and profile
views the events need. It computes ``status`` and ``health`` from what it knows; nothing here
waits on the network to answer them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog

from convosd import __version__, errors, reaper
from convosd.cli import ConvosCli, check_bindings, check_version
from convosd.cli.models import CliMessage, CliVersion, PermissionLevel
from convosd.cli.runner import signal_group
from convosd.cli.streams import (
    JoinAccepted,
    WatcherError,
    WatcherStreamEnded,
    is_explode_notice,
    parse_watcher_line,
)
from convosd.config import Paths, Settings
from convosd.events import NewEvent, event
from convosd.health import HealthInputs, HealthStatus, evaluate
from convosd.ingest import Ingest, PolicyHook
from convosd.pairing import SenderPolicy
from convosd.storage.journal import Journal
from convosd.storage.store import Binding, Store, StoreError
from convosd.supervisor.child import SupervisedChild
from convosd.supervisor.state import ChildState
from convosd.tasks import TaskScope

PROBE_INTERVAL_S = 60.0
PROFILE_REFRESH_S = 300.0
TRIM_INTERVAL_S = 3600.0
STREAM = "stream"
WATCHER = "joinRequests"


class Instance:
    def __init__(
        self,
        settings: Settings,
        paths: Paths,
        *,
        store: Store,
        journal: Journal,
        cli: ConvosCli,
        policy: PolicyHook | None = None,
        stop_grace_s: float = 5.0,
    ) -> None:
        self.settings = settings
        self.paths = paths
        self.store = store
        self.journal = journal
        self.cli = cli
        self._policy_override = policy
        self.stop_grace_s = stop_grace_s
        self.log = structlog.get_logger("convosd.instance")
        self.started_monotonic = time.monotonic()
        self.binding: Binding | None = None
        self.children: dict[str, SupervisedChild] = {}
        self.ingest: Ingest | None = None
        self.names: dict[str, str | None] = {}
        self.members: set[str] | None = None
        self.super_admins: set[str] = set()
        self.cli_version: CliVersion | None = None
        self.cli_working: bool | None = None
        self.cli_problem: str | None = None
        self.cli_version_problem: str | None = None
        self.env_mismatch: str | None = None
        self.binding_mismatch: str | None = None
        self.identity_mismatch: str | None = None
        self.identity_id: str | None = None
        self.identity_inbox_id: str | None = None
        self.admitted: set[str] = set()  # inboxes accepted by our own join-request child
        self.on_state_change: Callable[[], None] = lambda: None
        #: tasks that live as long as the instance (the bound conversation has its own)
        self.tasks = TaskScope("instance")
        self._backfill_loop_task: asyncio.Task[None] | None = None
        self.sender_policy = SenderPolicy(
            store,
            journal,
            policy=settings.convos.dm_policy,
            owners=lambda: frozenset(self.owner_inbox_ids),
            conversation_id=lambda: self.binding.conversation_id if self.binding else None,
            sender_name=lambda inbox: self.names.get(inbox),
            on_request=self._post_pairing_notice,
        )
        #: the owner channel recorded by onboarding (convosctl setup), cached for status
        self.recorded_owner = store.meta.get("owner_conversation_id")
        self._refresh_pending: dict[str, asyncio.Task[None]] = {}
        self._refresh_again: set[str] = set()
        self._profiles_at = 0.0
        self._closing = False
        self._unbinding = False

    # --- lifecycle ----------------------------------------------------------------------

    def load_binding(self) -> None:
        """Read the saved binding (before the socket listens, so ``status`` is truthful
        from the first answer); :meth:`start` resumes it."""
        binding = self.store.binding()
        if binding is not None and binding.env == self.settings.convos.env:
            self.binding = binding

    async def start(self) -> None:
        """Reap leftovers, check the CLI, then resume, attach or stay unbound."""
        self._reap_leftovers()
        await self.probe_cli()
        binding = self.store.binding()
        wanted_env = self.settings.convos.env
        owner = self.settings.convos.owner_conversation_id
        if binding is not None:
            if binding.env != wanted_env:
                self.env_mismatch = (
                    f"the saved binding is for env {binding.env}, the configuration says "
                    f"{wanted_env}: not resumed"
                )
                self.log.error("binding_env_mismatch", saved=binding.env, configured=wanted_env)
            else:
                if owner is not None and owner != binding.conversation_id:
                    self.binding_mismatch = (
                        f"bound to {binding.conversation_id}; ownerConversationId "
                        f"{owner} is ignored (the saved binding wins)"
                    )
                await self._activate(binding, announce=False)
        elif owner is not None and self.store.pending_join() is None:
            await self._attach(owner)
        self.tasks.spawn(self._probe_loop(), "probe-loop")
        self.tasks.spawn(self._trim_loop(), "trim-loop")

    async def close(self) -> None:
        """Stop the children and every background task (shutdown)."""
        self._closing = True
        await self._stop_children()
        await self.tasks.close()
        await self.cli.aclose()

    def spawn_task(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A background task of the instance's scope (named, referenced, failure logged)."""
        return self.tasks.spawn(coro, name)

    # --- the CLI ------------------------------------------------------------------------

    async def probe_cli(self) -> bool:
        """``--version`` (0.10.x, no downgrade of the CLI or its bindings) and ``identity
        list`` (it loads the binding).

        The CLI home records no version of its own (``identity.json`` has none; the XMTP
        database is encrypted), so the state store keeps the CLI and bindings versions that
        last used it. A refused version is never run against the home: the adapter refuses
        every command but ``--version`` until a later probe passes."""
        bindings = self.cli.bindings_version()
        try:
            version = await self.cli.version()
        except errors.ConvosdError as exc:
            self.cli_working = False
            self.cli_problem = exc.message
            self._changed()
            return False
        self.cli_version = version
        try:
            check_version(version, self.store.meta.get("cli_version"))
            check_bindings(bindings, self.store.meta.get("cli_bindings_version"))
        except errors.CliUnavailable as exc:
            if exc.message != self.cli_version_problem:
                self.log.error("cli_version_refused", problem=exc.message)
            self.cli_version_problem = exc.message
            self.cli.refuse(exc.message)
            self.cli_working = False
            self._changed()
            return False
        self.cli_version_problem = None
        self.cli.refuse(None)
        try:
            identities = await self.cli.identity_list()
        except errors.ConvosdError as exc:
            self.cli_working = False
            self.cli_problem = exc.message
            self._changed()
            return False
        self.cli_working = True
        self.cli_problem = None
        self.store.meta.set("cli_version", version.version)
        if bindings is not None:
            self.store.meta.set("cli_bindings_version", bindings)
        self.identity_id = identities[0].id if identities else None
        inbox = identities[0].inbox_id if identities else None
        self.identity_inbox_id = inbox if inbox and len(inbox) == 64 else None
        wanted = self.settings.convos.identity_id
        if wanted is not None and self.identity_id is not None and wanted != self.identity_id:
            self.identity_mismatch = (
                f"identityId {wanted} does not match the CLI home's identity {self.identity_id}"
            )
        else:
            self.identity_mismatch = None
        self._changed()
        return True

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            await self.probe_cli()

    async def _trim_loop(self) -> None:
        while True:
            await asyncio.sleep(TRIM_INTERVAL_S)
            try:
                removed = self.journal.trim()
            except StoreError as exc:
                self.log.error("journal_trim_failed", error=str(exc))
                continue
            if removed:
                self.log.info("journal_trimmed", removed=removed, first_seq=self.journal.first_seq)

    # --- binding ------------------------------------------------------------------------

    @property
    def bound(self) -> bool:
        return self.binding is not None

    @property
    def own_inbox_id(self) -> str | None:
        if self.binding is not None and self.binding.inbox_id:
            return self.binding.inbox_id
        return self.identity_inbox_id

    async def bind(
        self,
        conversation_id: str,
        *,
        inbox_id: str | None,
        how: str,
        creator_inbox_id: str | None = None,
        invite_tag: str | None = None,
    ) -> Binding:
        """Record the binding, journal ``conversation_bound`` and start the children."""
        if self.binding is not None:
            raise errors.AlreadyBound()
        binding = Binding(
            conversation_id=conversation_id,
            inbox_id=inbox_id,
            env=self.settings.convos.env,
            how=how,
            creator_inbox_id=creator_inbox_id,
            invite_tag=invite_tag,
            bound_at=time.time(),
        )
        with self.store.transaction():
            self.store.set_binding(binding)  # replaces a binding saved for another env
            self.store.set_pending_join(None)
            if self.store.meta.get("pending_as_owner"):
                # Onboarding (convosctl setup): the owner channel is recorded in the state
                # dir, never in the config file.
                self.store.meta.set("owner_conversation_id", conversation_id)
                self.recorded_owner = conversation_id
                self.store.meta.set("owner_identity_id", self.identity_id)
                self.store.meta.set("pending_as_owner", None)
        self.env_mismatch = None
        self.binding_mismatch = None
        self.journal.append([event("conversation_bound", conversation_id, how=how)])
        self.log.info("bound", conversation_id=conversation_id, how=how)
        await self._activate(binding, announce=True)
        return binding

    async def _attach(self, conversation_id: str) -> None:
        """Bind to ``ownerConversationId`` at start. The inbox id comes from the CLI home."""
        if self.identity_inbox_id is None:
            self.binding_mismatch = (
                f"cannot attach to {conversation_id}: the CLI home has no registered identity"
            )
            self.log.error("attach_failed", conversation_id=conversation_id)
            return
        await self.bind(conversation_id, inbox_id=self.identity_inbox_id, how="attached")

    async def _activate(self, binding: Binding, *, announce: bool) -> None:
        self.binding = binding
        inbox = binding.inbox_id or self.identity_inbox_id
        if inbox is None:
            # No message event may be journaled before the own inbox id is known.
            self.binding_mismatch = "the instance's inbox id is unknown: inbound paused"
            self._changed()
            return
        self.ingest = Ingest(
            journal=self.journal,
            conversation_id=binding.conversation_id,
            own_inbox_id=inbox,
            bound_at=binding.bound_at,
            policy=self._policy_override or self.sender_policy,
            on_write_failed=self.sender_policy.reload,
            sender_name=self._sender_name,
            on_group_updated=lambda _m: self._schedule_refresh(),
            on_special=self._on_special,
            backfill_window_s=self.settings.daemon.backfill_window_s,
        )
        cli = self.cli
        cid = binding.conversation_id
        self.children[STREAM] = SupervisedChild(
            STREAM,
            lambda: cli.stream_spec(cid),
            self.ingest.on_stream_lines,
            stop_signal=signal.SIGTERM,
            stop_grace_s=self.stop_grace_s,
            on_state=lambda _c: self._changed(),
            on_spawn=self._on_spawn,
            on_exit=self._on_child_exit,
        )
        self.children[WATCHER] = SupervisedChild(
            WATCHER,
            lambda: cli.join_requests_spec(cid),
            self._on_watcher_lines,
            stop_signal=signal.SIGINT,  # the watcher handles SIGINT only
            stop_grace_s=self.stop_grace_s,
            on_state=lambda _c: self._changed(),
            on_spawn=self._on_spawn,
            on_exit=self._on_child_exit,
        )
        if announce and binding.how == "created":
            # A new conversation has one member: whoever shows up in the first refresh joined.
            self.members = {inbox}
        # Owners first (the queue is FIFO): the policy needs the super admins.
        self._schedule_refresh(initial=self.members is None)
        for child in self.children.values():
            child.start()
        # READY=1 means "the children were spawned": wait for the spawn, never the network.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(c.spawned.wait() for c in self.children.values())), 10.0
            )
        self._backfill_loop_task = self.tasks.spawn(self._backfill_loop(), "backfill-loop")
        self._changed()

    async def unbind(self, *, reason: str) -> None:
        """Stop the children and forget the binding (explode, removal, reset)."""
        binding = self.binding
        await self._stop_children()
        if self._backfill_loop_task is not None:
            self._backfill_loop_task.cancel()
            self._backfill_loop_task = None
        self.binding = None
        self.ingest = None
        self.members = None
        self.super_admins = set()
        self.admitted.clear()
        self.binding_mismatch = None  # it described the binding that is gone
        self.store.clear_binding()
        self.log.info("unbound", reason=reason, conversation_id=binding and binding.conversation_id)
        self._changed()

    def forget_after_reset(self) -> None:
        """``daemon.reset`` wiped the CLI home and the state: drop every check it made
        obsolete at once (health right after the reset reflects the clean state). A binding
        saved for another env (never loaded, so never unbound) goes too."""
        self.store.clear_binding()
        self.env_mismatch = None
        self.binding_mismatch = None
        self.identity_mismatch = None  # the identity it compared is gone
        self.identity_id = None
        self.identity_inbox_id = None
        self.log.info("reset_done")
        self._changed()

    async def state_dir_gone(self, problem: str) -> None:
        """The state dir was deleted under us: run no CLI process any more (one started now
        would create a new identity in whatever is at the path), stop the children."""
        self.cli.refuse_all(problem)
        await self._stop_children()
        self._changed()

    async def _stop_children(self) -> None:
        children = list(self.children.values())
        self.children = {}
        await asyncio.gather(*(child.stop() for child in children), return_exceptions=True)

    def _reap_leftovers(self) -> None:
        for name, pgid, ticks in self.store.recorded_children():
            killed = reaper.reap(pgid, ticks)
            if killed:
                self.log.warning("reaped_leftover_child", child=name, pgid=pgid, pids=killed)
            self.store.forget_child(name)

    def _on_spawn(self, child: SupervisedChild, pid: int) -> None:
        ticks = reaper.start_ticks(pid)
        if ticks is not None:
            with contextlib.suppress(StoreError, Exception):
                self.store.record_child(child.name, pid, ticks)
        if child.name == STREAM:
            # Every stream (re)start may follow a gap: re-read the recent window.
            self.spawn_task(self.backfill(), "backfill-on-start")

    def _on_child_exit(self, child: SupervisedChild) -> None:
        with contextlib.suppress(StoreError, Exception):
            self.store.forget_child(child.name)

    # --- inbound ------------------------------------------------------------------------

    async def backfill(self) -> int:
        ingest, binding = self.ingest, self.binding
        if ingest is None or binding is None:
            return 0
        cid = binding.conversation_id

        async def page(after_ns: int, before_ns: int | None, limit: int) -> list[CliMessage]:
            return await self.cli.messages(
                cid, sent_after_ns=after_ns, sent_before_ns=before_ns, limit=limit
            )

        return await ingest.backfill(page)

    async def _backfill_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.daemon.backfill_interval_s)
            with contextlib.suppress(errors.ConvosdError):
                await self.backfill()

    def _on_watcher_lines(self, lines: Sequence[bytes]) -> None:
        for line in lines:
            item = parse_watcher_line(line)
            if isinstance(item, JoinAccepted):
                # Its own conversation's only (an event naming none is ours). An acceptance
                # is printed just before the member is added: if adding fails, the approval
                # is harmless (the sender is not a member and cannot write).
                if item.conversation_id in (None, self.binding and self.binding.conversation_id):
                    self._admit(item.joiner_inbox_id)
            elif isinstance(item, WatcherStreamEnded):
                self.log.warning("watcher_stream_ended", reason=item.reason)
                child = self.children.get(WATCHER)
                if child is not None and child.pid is not None:
                    # It idles after stream_ended: make it exit, the supervisor restarts it.
                    signal_group(child.pid, signal.SIGINT)
            elif isinstance(item, WatcherError):
                self.log.info(
                    "watcher_error", has_message_id=item.has_message_id, error=item.message
                )

    def _post_pairing_notice(self, request: Any) -> None:
        binding = self.binding
        if binding is None:
            return
        text = (
            f"Pairing request {request.code}: your messages are held until the owner "
            f"approves (convosctl pairing approve {request.code})."
        )
        cid = binding.conversation_id
        self.spawn_task(
            self.cli.send_text(cid, text),
            "pairing-notice",
        )

    def _admit(self, joiner: str) -> None:
        """Our watcher accepted ``joiner`` through our invite: approved at admission when the
        policy is ``pairing`` (the sender policy decides)."""
        if joiner not in self.admitted:
            self.admitted.add(joiner)
            self.sender_policy.admit(joiner)
        self._schedule_refresh()

    def _sender_name(self, inbox_id: str) -> str | None:
        if inbox_id not in self.names:
            self.names[inbox_id] = None
            self._schedule_refresh(members=False)
        return self.names.get(inbox_id)

    def _on_special(self, message: CliMessage) -> None:
        if is_explode_notice(message) and self.binding is not None:
            self.spawn_task(
                self.conversation_gone(by=message.sender_inbox_id, reason="exploded"),
                "conversation-exploded",
            )

    def _schedule_refresh(self, *, members: bool = True, initial: bool = False) -> None:
        """Coalesce refreshes: one runs at a time; one asked for meanwhile runs after it."""
        key = "members" if members else "profiles"
        pending = self._refresh_pending.get(key)
        if pending is not None and not pending.done():
            self._refresh_again.add(key)
            return
        self._refresh_pending[key] = self.spawn_task(
            self._refresh_loop(key, initial), f"refresh-{key}"
        )

    async def _refresh_loop(self, key: str, initial: bool) -> None:
        while True:
            self._refresh_again.discard(key)
            if key == "members":
                await self.refresh_views(initial=initial)
            else:
                await self.refresh_profiles()
            initial = False
            if key not in self._refresh_again or self.binding is None:
                return

    async def refresh_profiles(self) -> None:
        binding = self.binding
        if binding is None:
            return
        profiles = await self.cli.profiles(binding.conversation_id)
        for profile in profiles.profiles:
            self.names[profile.inbox_id] = profile.name
        self._profiles_at = time.monotonic()

    async def refresh_views(self, *, initial: bool = False) -> None:
        """Members (→ member_joined/left), super admins (→ owners), profiles (→ names)."""
        binding = self.binding
        if binding is None:
            return
        cid = binding.conversation_id
        try:
            members = await self.cli.members(cid)
        except errors.ConversationNotFound:
            # Never a member, or gone from this install: only an inactive group in the list
            # means "removed"; otherwise the children's fatal state reports the problem.
            listed = await self.cli.list_conversations(sync=True, include_inactive=True)
            if any(c.conversation_id == cid and not c.is_active for c in listed):
                await self.conversation_gone(by=None, reason="removed")
            return
        current = {m.inbox_id for m in members}
        self.super_admins = {
            m.inbox_id for m in members if m.permission_level is PermissionLevel.SUPER_ADMIN
        }
        own = self.own_inbox_id
        if own is not None and current and own not in current:
            by, reason = await self._why_gone(cid)
            await self.conversation_gone(by=by, reason=reason)
            return
        previous = self.members
        self.members = current
        if previous is not None and not initial:
            changes: list[NewEvent] = [
                event("member_joined", cid, inboxId=inbox) for inbox in sorted(current - previous)
            ]
            changes += [
                event("member_left", cid, inboxId=inbox) for inbox in sorted(previous - current)
            ]
            if changes:
                self.journal.append(changes)
        if initial or time.monotonic() - self._profiles_at > 1.0:
            with contextlib.suppress(errors.ConvosdError):
                await self.refresh_profiles()
        self._changed()

    async def _why_gone(self, cid: str) -> tuple[str | None, str]:
        """An explode sends ExplodeSettings before it removes the members: find it."""
        try:
            recent = await self.cli.messages(cid, sync=False, limit=50, direction="descending")
        except errors.ConvosdError:
            return None, "removed"
        for message in recent:
            if is_explode_notice(message):
                return message.sender_inbox_id, "exploded"
        return None, "removed"

    async def conversation_gone(self, *, by: str | None, reason: str) -> None:
        """Removal, explode or expiry by others: journal it and unbind."""
        binding = self.binding
        if binding is None or self._unbinding:
            return
        self._unbinding = True
        try:
            self.journal.append(
                [event("conversation_exploded", binding.conversation_id, by=by, reason=reason)]
            )
            await self.unbind(reason=reason)
            self.sender_policy.clear()
        finally:
            self._unbinding = False

    # --- reporting ----------------------------------------------------------------------

    def _changed(self) -> None:
        with contextlib.suppress(Exception):
            self.on_state_change()

    @property
    def owner_inbox_ids(self) -> list[str]:
        if self.binding is None:
            return []
        owners = set(self.settings.convos.allow_from)
        if self.binding.how in ("joined", "attached"):
            owners |= self.super_admins
            if self.binding.creator_inbox_id:
                owners.add(self.binding.creator_inbox_id)  # a super admin, known at once
            owners.discard(self.own_inbox_id or "")
        return sorted(owners)

    def clean(self) -> bool:
        if self.binding is not None or self.store.pending_join() is not None:
            return False
        home = self.paths.convos_home
        return not (home / "identity.json").exists() and not (home / "db").exists()

    def child_status(self) -> dict[str, dict[str, Any]]:
        stopped = {
            "state": "stopped",
            "pid": None,
            "restarts": 0,
            "since": None,
            "lastExit": None,
            "lastError": None,
            "nextRetryAt": None,
        }
        return {
            name: (self.children[name].describe() if name in self.children else dict(stopped))
            for name in (STREAM, WATCHER)
        }

    def health_inputs(self) -> HealthInputs:
        ingest = self.ingest
        journal_problem = None
        if ingest is not None and not ingest.healthy:
            journal_problem = ingest.last_error or "journal write failed"
        backfill_problem = ingest.backfill_problem if ingest is not None else None
        state_problem = self.store.vanished()
        if state_problem is None and not _writable(self.paths.state_dir):
            state_problem = f"state dir {self.paths.state_dir} is not writable"
        return HealthInputs(
            cli_working=self.cli_working,
            cli_problem=self.cli_problem,
            cli_version_problem=self.cli_version_problem,
            cli_version_known=self.cli_version is not None,
            state_problem=state_problem,
            journal_problem=journal_problem,
            backfill_problem=backfill_problem,
            env_mismatch=self.env_mismatch,
            binding_mismatch=self.binding_mismatch,
            identity_mismatch=self.identity_mismatch,
            bound=self.binding is not None,
            children={name: c.status.state for name, c in self.children.items()},
            child_errors={name: c.status.last_error for name, c in self.children.items()},
            enabled=self.settings.convos.enabled,
        )

    def health(self) -> tuple[HealthStatus, dict[str, str]]:
        return evaluate(self.health_inputs())

    def status(
        self, *, subscribers: int = 0, policy: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        binding = self.binding
        pending = self.store.pending_join() is not None
        return {
            "version": __version__,
            "cliVersion": self.cli_version.version if self.cli_version else None,
            "env": self.settings.convos.env,
            "uptimeS": round(time.monotonic() - self.started_monotonic, 3),
            "conversationId": binding.conversation_id if binding else None,
            "inboxId": self.own_inbox_id,
            "identityId": self.identity_id,
            "ownerConversationId": self.settings.convos.owner_conversation_id
            or self.recorded_owner,
            "ownerInboxIds": self.owner_inbox_ids,
            "pending": pending,
            "clean": self.clean(),
            "dmPolicy": self.settings.convos.dm_policy,
            "children": self.child_status(),
            "journal": self.journal.position.as_dict(),
            "subscribers": subscribers,
            "policy": policy or self.sender_policy.counts(),
        }

    def running_children(self) -> bool:
        return all(c.status.state is ChildState.RUNNING for c in self.children.values())


def _writable(path: Any) -> bool:
    return bool(os.access(path, os.W_OK | os.X_OK))
