"""One convosd instance: what outlives a binding, and the binding it currently has.

"One instance = one conversation". :class:`Instance` holds the store, the journal, the
sender policy, the CLI and its home as last probed
(:class:`~convosd.conversation.cli_home.CliHome`), what the identity remembers across
bindings (:class:`~convosd.conversation.history.IdentityHistory`) and the journal's
retention (:class:`~convosd.conversation.retention.Retention`), and owns their periodic
tasks (CLI probe, journal trim) in one :class:`~convosd.tasks.TaskScope`. It resumes a saved
binding at start, attaches to ``ownerConversationId`` when unbound, binds after create/join,
and unbinds on explode, reset or removal. Everything that exists only while bound (both
children, ingest, backfill, watcher handling, the members, owners and names, the scheduled
explosion, the pairing notice) lives in the current
:class:`~convosd.conversation.bound.BoundConversation`, which bind creates and
:meth:`Instance.unbind` closes. ``status`` and ``health`` are computed from what it knows by
:mod:`convosd.conversation.report`; nothing here waits on the network to answer them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

import structlog

from convosd import errors, reaper
from convosd.attachments.store import AttachmentStore
from convosd.cli import ConvosCli
from convosd.config import Paths, Settings
from convosd.conversation.bound import BoundConversation
from convosd.conversation.cli_home import CliHome
from convosd.conversation.history import IdentityHistory
from convosd.conversation.hook import PolicyHook
from convosd.conversation.pairing import SenderPolicy
from convosd.conversation.retention import Retention
from convosd.events import event
from convosd.groups import resolve_group
from convosd.storage.journal import Journal
from convosd.storage.store import Binding, Store
from convosd.supervisor.child import SupervisedChild
from convosd.supervisor.state import ChildState
from convosd.tasks import TaskScope
from convosd.timefmt import iso


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
        #: the current binding and all that lives only while it does; None when unbound
        self.conversation: BoundConversation | None = None
        #: the CLI's version and whether it works, the home's identity (the last probe)
        self.home = CliHome(settings, paths, store=store, cli=cli, on_changed=self.changed)
        self.env_mismatch: str | None = None
        self.binding_mismatch: str | None = None
        self.on_state_change: Callable[[], None] = lambda: None
        #: tasks that live as long as the instance (the bound conversation has its own)
        self.tasks = TaskScope("instance")
        self.sender_policy = SenderPolicy(
            store,
            journal,
            policy=settings.convos.dm_policy,
            owners=lambda: frozenset(self.owner_inbox_ids),
            conversation_id=lambda: self.binding.conversation_id if self.binding else None,
            sender_name=self.known_name,
            on_request=self._post_pairing_notice,
        )
        #: the owner channel recorded by onboarding (convosctl setup), cached for status
        self.recorded_owner = store.meta.get("owner_conversation_id")
        #: set while :meth:`conversation_gone` ends the binding
        self._ending: asyncio.Event | None = None
        #: downloaded attachments (attachment.download); they go with retention, explode
        #: and reset
        self.attachments = AttachmentStore(
            paths.state_dir, gid=_group_id(settings.daemon.socket_group)
        )
        #: the conversations this identity was bound to before, the adds it refused
        self.history = IdentityHistory(store)
        #: the journal trimmed, and the downloaded attachments with it
        self.retention = Retention(journal, self.attachments)

    # --- lifecycle ----------------------------------------------------------------------

    def load_binding(self) -> None:
        """Read the saved binding (before the socket listens, so ``status`` is truthful
        from the first answer); :meth:`start` resumes it."""
        binding = self.store.binding()
        if binding is not None and binding.env == self.settings.convos.env:
            self.conversation = self._conversation(binding)

    async def start(self) -> None:
        """Reap leftovers, check the CLI, then resume, attach or stay unbound."""
        self._reap_leftovers()
        self.home.warn_if_app_metadata_dropped()
        # no CLI process of ours runs yet: a lock left by one the last daemon stopped goes
        await self.cli.clear_identity_lock(unless=lambda: False)
        await self.home.probe()
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
        self.tasks.spawn(self.home.probe_loop(), "probe-loop")
        self.tasks.spawn(self.retention.loop(), "trim-loop")

    async def close(self) -> None:
        """Stop the children and every background task (shutdown)."""
        if self.conversation is not None:
            await self.conversation.close()
        await self.tasks.close()
        await self.cli.aclose()

    def spawn_task(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A background task of the instance's scope (named, referenced, failure logged)."""
        return self.tasks.spawn(coro, name)

    # --- binding ------------------------------------------------------------------------

    @property
    def binding(self) -> Binding | None:
        return self.conversation.binding if self.conversation is not None else None

    @property
    def bound(self) -> bool:
        return self.conversation is not None

    @property
    def own_inbox_id(self) -> str | None:
        if self.binding is not None and self.binding.inbox_id:
            return self.binding.inbox_id
        return self.home.identity_inbox_id

    async def bind(
        self,
        conversation_id: str,
        *,
        inbox_id: str | None,
        how: str,
        creator_inbox_id: str | None = None,
        invite_tag: str | None = None,
        by: str | None = None,
    ) -> Binding:
        """Record the binding, journal ``conversation_bound`` and start the children.
        ``by``: who added the instance (``how: "added"``)."""
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
                self.store.meta.set("owner_identity_id", self.home.identity_id)
                self.store.meta.set("pending_as_owner", None)
        self.env_mismatch = None
        self.binding_mismatch = None
        self.journal.append([event("conversation_bound", conversation_id, how=how, by=by)])
        self.log.info("bound", conversation_id=conversation_id, how=how, by=by)
        await self._activate(binding, announce=True)
        return binding

    async def _attach(self, conversation_id: str) -> None:
        """Bind to ``ownerConversationId`` at start. The inbox id comes from the CLI home."""
        inbox = self.home.identity_inbox_id
        if inbox is None:
            self.binding_mismatch = (
                f"cannot attach to {conversation_id}: the CLI home has no registered identity"
            )
            self.log.error("attach_failed", conversation_id=conversation_id)
            return
        await self.bind(conversation_id, inbox_id=inbox, how="attached")

    def _conversation(self, binding: Binding) -> BoundConversation:
        return BoundConversation(
            binding,
            settings=self.settings,
            store=self.store,
            journal=self.journal,
            cli=self.cli,
            sender_policy=self.sender_policy,
            policy=self._policy_override,
            own_inbox_id=lambda: self.own_inbox_id,
            on_changed=self.changed,
            on_gone=lambda by, reason: self.conversation_gone(by=by, reason=reason),
            stop_grace_s=self.stop_grace_s,
        )

    async def _activate(self, binding: Binding, *, announce: bool) -> None:
        if self.conversation is None or self.conversation.binding != binding:
            self.conversation = self._conversation(binding)
        inbox = binding.inbox_id or self.home.identity_inbox_id
        if inbox is None:
            # No message event may be journaled before the own inbox id is known.
            self.binding_mismatch = "the instance's inbox id is unknown: inbound paused"
            self.changed()
            return
        await self.conversation.start(inbox, announce=announce)
        self.changed()

    async def unbind(self, *, reason: str) -> None:
        """Stop the children and forget the binding (explode, removal, reset)."""
        conversation = self.conversation
        binding = conversation.binding if conversation is not None else None
        if conversation is not None:
            # Its children, its tasks and its views go with it; the instance reads as bound
            # until they are gone, so nobody sees "unbound" while a child still runs.
            await conversation.close()
        self.conversation = None
        self.binding_mismatch = None  # it described the binding that is gone
        if binding is not None:
            self.history.remember_past(binding.conversation_id)
        self.store.clear_binding()
        self.log.info("unbound", reason=reason, conversation_id=binding and binding.conversation_id)
        self.changed()
        if conversation is not None:
            # Its children are stopped: a lock one of them left would hold up the next
            # identity write (create, join, reset) for up to 30 s. Through the queue, so no
            # command of ours runs meanwhile; skipped if a new binding's children run by then.
            with contextlib.suppress(errors.NotReady):  # the state dir is gone: no CLI
                await self.cli.clear_identity_lock(unless=lambda: self.conversation is not None)

    def forget_after_reset(self) -> None:
        """``daemon.reset`` wiped the CLI home and the state: drop every check it made
        obsolete at once (health right after the reset reflects the clean state). A binding
        saved for another env (never loaded, so never unbound) goes too."""
        self.store.clear_binding()
        self.history.forget()  # it belonged to the identity the reset removed
        self.env_mismatch = None
        self.binding_mismatch = None
        self.home.forget_identity()
        self.cli.restart_transport("daemon.reset")
        self.log.info("reset_done")
        self.changed()

    async def state_dir_gone(self, problem: str) -> None:
        """The state dir was deleted under us: run no CLI process any more (one started now
        would create a new identity in whatever is at the path), stop the children."""
        self.cli.refuse_all(problem)
        if self.conversation is not None:
            await self.conversation.stop_children()
        self.changed()

    def _reap_leftovers(self) -> None:
        for name, pgid, ticks in self.store.recorded_children():
            killed = reaper.reap(pgid, ticks)
            if killed:
                self.log.warning("reaped_leftover_child", child=name, pgid=pgid, pids=killed)
            self.store.forget_child(name)

    # --- inbound ------------------------------------------------------------------------

    async def backfill(self) -> int:
        """Re-read the recent window now (0 when unbound)."""
        conversation = self.conversation
        return await conversation.backfill() if conversation is not None else 0

    def _post_pairing_notice(self, request: Any) -> None:
        if self.conversation is not None:
            self.conversation.post_pairing_notice(request)

    def known_name(self, inbox_id: str) -> str | None:
        """The profile name last seen for ``inbox_id`` in the bound conversation."""
        conversation = self.conversation
        return conversation.names.get(inbox_id) if conversation is not None else None

    async def conversation_gone(self, *, by: str | None, reason: str) -> None:
        """The conversation ended (our own explode, or explode, removal or expiry by
        others): journal ``conversation_exploded`` once, unbind, forget the sender state.
        A second caller while it runs waits for the first one instead of journaling again."""
        if self._ending is not None:
            await self._ending.wait()
            return
        binding = self.binding
        if binding is None:
            return
        self._ending = asyncio.Event()
        if self.conversation is not None:
            self.conversation.ending = True  # its last event is conversation_exploded
        try:
            self.journal.append(
                [event("conversation_exploded", binding.conversation_id, by=by, reason=reason)]
            )
            await self.unbind(reason=reason)
            self.sender_policy.clear()
            if reason != "removed":  # an explosion (now or scheduled) destroys its files too
                self.attachments.remove_all()
        finally:
            self._ending.set()
            self._ending = None

    def member_removed(self, inbox_id: str) -> None:
        """member.remove removed ``inbox_id`` (``member_left`` is journaled once)."""
        if self.conversation is not None:
            self.conversation.members.removed(inbox_id)

    def explosion_scheduled(self, when: datetime, by: str | None) -> None:
        """conversation.explode scheduled the explosion: arm the timer now (our own
        group_updated is never journaled, so no check would follow it)."""
        if self.conversation is not None:
            self.conversation.expiry.set(when, by)

    @property
    def expires_at(self) -> str | None:
        conversation = self.conversation
        return iso(conversation.expiry.expires_at) if conversation is not None else None

    # --- reporting ----------------------------------------------------------------------

    def changed(self) -> None:
        """Tell the daemon the status changed (systemd status line, health)."""
        with contextlib.suppress(Exception):
            self.on_state_change()

    @property
    def owner_inbox_ids(self) -> list[str]:
        conversation = self.conversation
        if conversation is None:
            return []
        binding = conversation.binding
        owners = set(self.settings.convos.allow_from)
        if binding.how in ("joined", "attached", "added"):
            owners |= conversation.members.super_admins
            if binding.creator_inbox_id:
                owners.add(binding.creator_inbox_id)  # a super admin, known at once
            owners.discard(self.own_inbox_id or "")
        return sorted(owners)

    @property
    def children(self) -> dict[str, SupervisedChild]:
        """The bound conversation's running children (none when unbound)."""
        return dict(self.conversation.children) if self.conversation is not None else {}

    def running_children(self) -> bool:
        return all(c.status.state is ChildState.RUNNING for c in self.children.values())


def _group_id(group: str | None) -> int | None:
    """The gid of ``socketGroup`` (already checked when the socket was set up)."""
    if group is None:
        return None
    try:
        return resolve_group(group)
    except errors.ConfigError:
        return None  # the socket's setup refuses it and stops the daemon
