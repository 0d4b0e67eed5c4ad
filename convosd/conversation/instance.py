"""One convosd instance: what outlives a binding, and the binding it currently has.

"One instance = one conversation". :class:`Instance` probes the CLI, knows the identity of
the CLI home, holds the store, the journal and the sender policy, and owns its periodic tasks
(CLI probe, journal trim) in one :class:`~convosd.tasks.TaskScope`. It resumes a saved binding
at start, attaches to ``ownerConversationId`` when unbound, binds after create/join, and
unbinds on explode, reset or removal. Everything that exists only while bound (both children,
ingest, backfill, watcher handling, member/owner/name views, the pairing notice) lives in the
current :class:`~convosd.conversation.bound.BoundConversation`, which bind creates and
:meth:`Instance.unbind` closes. It computes ``status`` and ``health`` from what it knows;
nothing here waits on the network to answer them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

import structlog

from convosd import __version__, errors, reaper
from convosd.attachments.store import AttachmentStore
from convosd.cli import ConvosCli, check_bindings, check_version
from convosd.cli.models import CliVersion
from convosd.cli.versions import keeps_unknown_app_data
from convosd.config import Paths, Settings
from convosd.conversation.bound import STREAM, WATCHER, BoundConversation
from convosd.conversation.hook import PolicyHook
from convosd.conversation.pairing import SenderPolicy
from convosd.events import event
from convosd.groups import resolve_group
from convosd.health import HealthInputs, HealthStatus, evaluate
from convosd.storage.journal import Journal
from convosd.storage.store import Binding, Store, StoreError
from convosd.supervisor.child import SupervisedChild
from convosd.supervisor.state import ChildState
from convosd.tasks import TaskScope
from convosd.timefmt import iso

PROBE_INTERVAL_S = 60.0
PROFILE_REFRESH_S = 300.0
TRIM_INTERVAL_S = 3600.0
#: how many earlier conversations of the identity are remembered (see past_conversation_ids)
PAST_CONVERSATIONS_KEPT = 100


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
        self.cli_version: CliVersion | None = None
        self.cli_working: bool | None = None
        self.cli_problem: str | None = None
        self.cli_version_problem: str | None = None
        self.env_mismatch: str | None = None
        self.binding_mismatch: str | None = None
        self.identity_mismatch: str | None = None
        self.identity_id: str | None = None
        self.identity_inbox_id: str | None = None
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
        #: (CLI calls finished, home has an identity or a database) at the last look
        self._home_seen: tuple[int, bool] | None = None
        #: ``adds_refused`` as saved (kept here: ``status`` shows it on every call, and
        #: only this instance changes it)
        self._adds_refused = int(store.meta.get("adds_refused") or 0)

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
        if keeps_unknown_app_data(self.settings.daemon.cli) is False:
            self.log.warning(
                "cli_drops_app_metadata",
                cli=" ".join(self.settings.daemon.cli),
                problem="this convos CLI rewrites a group's appData without the fields it does "
                "not know (lock, unlock, explode --scheduled, a profile image): the apps' "
                "metadata is lost",
                fix="apply the repository's patch: python3 scripts/patch_cli.py --root "
                "<the directory holding its node_modules> (make setup does it for the "
                "repository's own CLI)",
            )
        # no CLI process of ours runs yet: a lock left by one the last daemon stopped goes
        await self.cli.clear_identity_lock(unless=lambda: False)
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
        if self.conversation is not None:
            await self.conversation.close()
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
            self.changed()
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
            self.changed()
            return False
        self.cli_version_problem = None
        self.cli.refuse(None)
        try:
            identities = await self.cli.identity_list()
        except errors.ConvosdError as exc:
            self.cli_working = False
            self.cli_problem = exc.message
            self.changed()
            return False
        self.cli_working = True
        self.cli_problem = None
        self.store.meta.set("cli_version", version.version)
        if bindings is not None:
            self.store.meta.set("cli_bindings_version", bindings)
        identity_id = identities[0].id if identities else None
        if identity_id != self.identity_id and self.identity_id is not None:
            self.cli.restart_transport("the CLI home's identity changed")
        self.identity_id = identity_id
        inbox = identities[0].inbox_id if identities else None
        self.identity_inbox_id = inbox if inbox and len(inbox) == 64 else None
        wanted = self.settings.convos.identity_id
        if wanted is not None and self.identity_id is not None and wanted != self.identity_id:
            self.identity_mismatch = (
                f"identityId {wanted} does not match the CLI home's identity {self.identity_id}"
            )
        else:
            self.identity_mismatch = None
        self.changed()
        return True

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            await self.probe_cli()

    async def _trim_loop(self) -> None:
        while True:
            await asyncio.sleep(TRIM_INTERVAL_S)
            try:
                await self.apply_retention()
            except StoreError as exc:
                self.log.error("journal_trim_failed", error=str(exc))

    async def apply_retention(self) -> int:
        """Trim the journal (age, count; in chunks, the loop runs between them) and remove
        the downloaded attachments whose message is no longer in it. Returns how many
        events went."""
        removed = await self.journal.trim_in_steps()
        if removed:
            self.log.info("journal_trimmed", removed=removed, first_seq=self.journal.first_seq)
        stored = self.attachments.message_ids()
        if stored:
            kept = self.journal.journaled_messages(stored)
            gone = self.attachments.prune(lambda message_id: message_id in kept)
            if gone:
                self.log.info("attachments_trimmed", removed=gone)
        return removed

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
        return self.identity_inbox_id

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
                self.store.meta.set("owner_identity_id", self.identity_id)
                self.store.meta.set("pending_as_owner", None)
        self.env_mismatch = None
        self.binding_mismatch = None
        self.journal.append([event("conversation_bound", conversation_id, how=how, by=by)])
        self.log.info("bound", conversation_id=conversation_id, how=how, by=by)
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
        inbox = binding.inbox_id or self.identity_inbox_id
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
            self._remember_past(binding.conversation_id)
        self.store.clear_binding()
        self.log.info("unbound", reason=reason, conversation_id=binding and binding.conversation_id)
        self.changed()
        if conversation is not None:
            # Its children are stopped: a lock one of them left would hold up the next
            # identity write (create, join, reset) for up to 30 s. Through the queue, so no
            # command of ours runs meanwhile; skipped if a new binding's children run by then.
            with contextlib.suppress(errors.NotReady):  # the state dir is gone: no CLI
                await self.cli.clear_identity_lock(unless=lambda: self.conversation is not None)

    def past_conversation_ids(self) -> set[str]:
        """The conversations this identity was bound to before (a wait to be added never
        binds to one of them again: the instance may still be a member)."""
        raw = self.store.meta.get("past_conversation_ids")
        return set(json.loads(raw)) if raw else set()

    def _remember_past(self, conversation_id: str) -> None:
        past = list(json.loads(self.store.meta.get("past_conversation_ids") or "[]"))
        if conversation_id not in past:
            past = [*past, conversation_id][-PAST_CONVERSATIONS_KEPT:]
            self.store.meta.set("past_conversation_ids", json.dumps(past))

    @property
    def adds_refused(self) -> int:
        """Adds by inboxes not allowed to add the instance, refused so far (this identity)."""
        return self._adds_refused

    def count_refused_add(self) -> None:
        self.store.meta.set("adds_refused", str(self._adds_refused + 1))
        self._adds_refused += 1

    def forget_after_reset(self) -> None:
        """``daemon.reset`` wiped the CLI home and the state: drop every check it made
        obsolete at once (health right after the reset reflects the clean state). A binding
        saved for another env (never loaded, so never unbound) goes too."""
        self.store.clear_binding()
        # they belonged to the identity the reset removed
        self.store.meta.set("past_conversation_ids", None)
        self.store.meta.set("adds_refused", None)
        self._adds_refused = 0
        self.env_mismatch = None
        self.binding_mismatch = None
        self.identity_mismatch = None  # the identity it compared is gone
        self.identity_id = None
        self.identity_inbox_id = None
        self._home_seen = None  # the reset removed the home's files after its CLI call
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
            self.conversation.member_removed(inbox_id)

    def explosion_scheduled(self, when: datetime, by: str | None) -> None:
        """conversation.explode scheduled the explosion: arm the timer now (our own
        group_updated is never journaled, so no check would follow it)."""
        if self.conversation is not None:
            self.conversation.set_expiry(when, by)

    @property
    def expires_at(self) -> str | None:
        conversation = self.conversation
        return iso(conversation.expires_at) if conversation is not None else None

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
            owners |= conversation.super_admins
            if binding.creator_inbox_id:
                owners.add(binding.creator_inbox_id)  # a super admin, known at once
            owners.discard(self.own_inbox_id or "")
        return sorted(owners)

    def clean(self) -> bool:
        if self.binding is not None or self.store.has_pending_join:
            return False
        return not self._home_used()

    def _home_used(self) -> bool:
        """Whether the CLI home has an identity or a database. Only a CLI call (or a reset)
        creates or removes them: looked at again only after one, not per ``status``."""
        finished = self.cli.finished
        if self._home_seen is None or self._home_seen[0] != finished:
            home = self.paths.convos_home
            used = (home / "identity.json").exists() or (home / "db").exists()
            self._home_seen = (finished, used)
        return self._home_seen[1]

    @property
    def children(self) -> dict[str, SupervisedChild]:
        """The bound conversation's running children (none when unbound)."""
        return dict(self.conversation.children) if self.conversation is not None else {}

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
        children = self.children
        return {
            name: (children[name].describe() if name in children else dict(stopped))
            for name in (STREAM, WATCHER)
        }

    def health_inputs(self) -> HealthInputs:
        ingest = self.conversation.ingest if self.conversation is not None else None
        journal_problem = None
        if ingest is not None and not ingest.healthy:
            journal_problem = ingest.last_error or "journal write failed"
        backfill_problem = ingest.backfill_problem if ingest is not None else None
        children = self.children
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
            network_problem=self.cli.network_problem,
            bound=self.binding is not None,
            children={name: c.status.state for name, c in children.items()},
            child_errors={name: c.status.last_error for name, c in children.items()},
            enabled=self.settings.convos.enabled,
        )

    def health(self) -> tuple[HealthStatus, dict[str, str]]:
        return evaluate(self.health_inputs())

    def status(
        self, *, subscribers: int = 0, policy: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        binding = self.binding
        pending = self.store.has_pending_join
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
            "cli": self.cli.transport_status(),
            "journal": self.journal.position.as_dict(),
            "subscribers": subscribers,
            "policy": policy or self.sender_policy.counts(),
            "expiresAt": self.expires_at,
            "awaitingAdd": self._awaiting_add(),
            "addsRefused": self.adds_refused,
        }

    def _awaiting_add(self) -> dict[str, Any] | None:
        """The wait to be added (``conversation.awaitAdd``), or None."""
        record = self.store.pending_join()
        if record is None or record.get("kind") != "awaitAdd":
            return None
        chosen = record.get("from")
        return {
            "inboxId": record.get("inboxId") or self.identity_inbox_id,
            "from": sorted(chosen) if chosen else sorted(self.settings.convos.allow_from),
            "since": iso(record["startedAt"]),
            "until": iso(record["until"]) if record.get("until") is not None else None,
            "refused": len(record.get("refused") or ()),
        }

    def running_children(self) -> bool:
        return all(c.status.state is ChildState.RUNNING for c in self.children.values())


def _writable(path: Any) -> bool:
    return bool(os.access(path, os.W_OK | os.X_OK))


def _group_id(group: str | None) -> int | None:
    """The gid of ``socketGroup`` (already checked when the socket was set up)."""
    if group is None:
        return None
    try:
        return resolve_group(group)
    except errors.ConfigError:
        return None  # the socket's setup refuses it and stops the daemon
