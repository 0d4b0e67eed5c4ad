"""Waiting to be added (docs/PROTOCOL.md, Methods: Being added).

The Convos apps add an agent with a plain ``addMembers`` of its inbox id; the agent sees the
group's welcome and attaches. An unbound instance waits for that: it makes its identity if
the CLI home has none (``identity create``, then ``identity info``, which registers the
inbox), persists ``{kind: "awaitAdd", from, inboxId, startedAt, until, refused}`` in the
pending row (so ``pending`` is true, create and join are refused, ``cancelJoin`` ends it and a
restart resumes it), and polls ``conversations list --sync`` every ``awaitAddPollS``.

For each group that is new to it, the adder is the sender of the first ``group_updated``
message the instance can read there (the commit that added it: the CLI shows it as
``Somebody added Somebody``). An adder in the allowed list (``from``, else ``allowFrom``)
binds the instance (``conversation_bound {how: "added", by}``); the first such add wins.
Anyone else's add is refused: its consent is set to denied (``update-consent ... denied``,
after which ``conversations list`` no longer shows it), it is counted (``status.addsRefused``)
and logged. It ends with ``join_failed`` when ``until`` passes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from convosd import errors
from convosd.conversation.instance import Instance
from convosd.events import event

#: the pending row's ``kind`` while the instance waits to be added (a join's row has none)
AWAIT_KIND = "awaitAdd"
#: a group whose adder could not be read yet is looked at again this many polls, then left
ADDER_ATTEMPTS = 5
#: after failed polls the wait grows to at most this (the network is down, the CLI fails)
FAILED_POLL_MAX_S = 60.0


def is_await(record: dict[str, Any] | None) -> bool:
    return record is not None and record.get("kind") == AWAIT_KIND


@dataclass(frozen=True)
class AddTiming:
    poll_s: float = 2.0


class AwaitAdd:
    """Runs the background watch of one persisted wait to be added."""

    def __init__(
        self,
        instance: Instance,
        timing: AddTiming,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.instance = instance
        self.timing = timing
        self.clock = clock
        self.task: asyncio.Task[None] | None = None
        self.log = structlog.get_logger("convosd.add")
        #: groups whose adder was not found yet, and how often it was looked for
        self._unread: dict[str, int] = {}
        #: polls so far (each one ``conversations list --sync``)
        self.polls = 0

    # --- the record ---------------------------------------------------------------------

    @property
    def record(self) -> dict[str, Any] | None:
        record = self.instance.store.pending_join()
        return record if is_await(record) else None

    def allowed(self, record: dict[str, Any]) -> frozenset[str]:
        """Who may add the instance: the wait's ``from``, else ``allowFrom`` (read now)."""
        chosen = record.get("from")
        if chosen:
            return frozenset(chosen)
        return frozenset(self.instance.settings.convos.allow_from)

    async def ensure_identity(self, profile_name: str | None) -> str:
        """The instance's inbox id; makes the identity first if the CLI home has none."""
        instance = self.instance
        if instance.home.identity_inbox_id is not None:
            return instance.home.identity_inbox_id
        if not (instance.paths.convos_home / "identity.json").exists():
            created = await instance.cli.identity_create(profile_name=profile_name)
            self.log.info("identity_created", identity_id=created.id)
        info = await instance.cli.identity_info()
        instance.home.identity_inbox_id = info.properties.inbox_id
        instance.home.identity_id = info.properties.id
        instance.changed()
        return info.properties.inbox_id

    async def begin(
        self,
        *,
        allowed_from: list[str] | None,
        timeout_s: float | None,
        profile_name: str | None,
        identity_now: bool = True,
    ) -> dict[str, Any]:
        """Persist the wait and start watching. With ``identity_now`` the identity is made
        (and its inbox id known) before anything is persisted, so a failure leaves nothing
        behind; without it (the configuration's wait, at start) the watch makes it."""
        inbox = await self.ensure_identity(profile_name) if identity_now else None
        # a watch that bound the last time may still be starting that binding's children
        # (which its unbinding has closed since): it must not keep the new wait from starting
        await self._end_task()
        now = self.clock()
        record: dict[str, Any] = {
            "kind": AWAIT_KIND,
            "from": list(allowed_from) if allowed_from else None,
            "inboxId": inbox,
            "profileName": profile_name,
            "startedAt": now,
            "until": now + timeout_s if timeout_s is not None else None,
            "refused": [],
        }
        self.instance.store.set_pending_join(record)
        self.log.info(
            "awaiting_add",
            inbox_id=inbox,
            allowed=sorted(self.allowed(record)),
            until=record["until"],
        )
        self.start()
        self.instance.changed()
        return record

    def start(self) -> None:
        if self.record is not None and (self.task is None or self.task.done()):
            self.task = self.instance.spawn_task(self._run(), "await-add")

    async def cancel(self) -> bool:
        """Forget the wait; True if there was one."""
        had = self.record is not None
        if had:
            self.instance.store.set_pending_join(None)
        await self._end_task()
        return had

    async def stop(self) -> None:
        """Shutdown: stop watching; the record stays persisted."""
        await self._end_task()

    async def _end_task(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            if task is not asyncio.current_task():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # --- the watch ----------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            record = self.record
            if record is None:
                return
            if record.get("until") is not None and self.clock() >= record["until"]:
                self._give_up("not added by an allowed inbox before timeoutS")
                return
            try:
                if await self.check_once():
                    return
                failures = 0
            except errors.ConvosdError as exc:
                failures += 1
                self.log.warning("await_add_poll_failed", error=exc.message, kind=exc.kind)
            poll = self.timing.poll_s
            await asyncio.sleep(min(FAILED_POLL_MAX_S, poll * 2**failures) if failures else poll)

    async def check_once(self) -> bool:
        """One look at the groups; binds and returns True when an allowed add is found."""
        record = self.record
        if record is None:
            return True
        instance = self.instance
        own = record.get("inboxId") or instance.home.identity_inbox_id
        if own is None:
            own = await self.ensure_identity(record.get("profileName"))
        if record.get("inboxId") != own:
            record["inboxId"] = own
            instance.store.set_pending_join(record)
            instance.changed()
        self.polls += 1
        listed = await instance.cli.list_conversations(sync=True)
        skip = set(record.get("refused") or ()) | instance.history.past_conversation_ids()
        allowed = self.allowed(record)
        found: list[tuple[int, str, str]] = []  # (added at in ns, conversation id, adder)
        for candidate in listed:
            conversation_id = candidate.conversation_id
            if conversation_id in skip or not candidate.is_active:
                continue
            if candidate.kind not in (None, "group"):
                continue
            if self._unread.get(conversation_id, 0) >= ADDER_ATTEMPTS:
                continue
            adder = await self._adder(conversation_id, own)
            if adder is None:
                self._unread[conversation_id] = self._unread.get(conversation_id, 0) + 1
                if self._unread[conversation_id] >= ADDER_ATTEMPTS:
                    self.log.warning("add_adder_unknown", conversation_id=conversation_id)
                continue
            by, added_at = adder
            if by in allowed:
                found.append((added_at, conversation_id, by))
            else:
                await self._refuse(conversation_id, by)
        if not found:
            return False
        added_at, conversation_id, by = min(found)
        if self.record is None:  # cancelled meanwhile
            return True
        info = await instance.cli.info(conversation_id)
        self.log.info("added", conversation_id=conversation_id, by=by, added_at=added_at)
        await instance.bind(
            conversation_id,
            inbox_id=own,
            how="added",
            creator_inbox_id=info.conversation.creator_inbox_id,
            by=by,
        )
        return True

    async def _adder(self, conversation_id: str, own: str) -> tuple[str, int] | None:
        """Who added the instance to the group, and when: the first ``group_updated`` of
        someone else that the instance can read (it reads nothing from before its add)."""
        messages = await self.instance.cli.messages(conversation_id, sync=True, limit=20)
        for message in messages:
            if message.content_type.type_id != "group_updated":
                continue
            if message.sender_inbox_id and message.sender_inbox_id != own:
                return message.sender_inbox_id, message.sent_at_ns
        return None

    async def _refuse(self, conversation_id: str, by: str) -> None:
        """An add by someone not allowed: consent denied, counted once, logged."""
        instance = self.instance
        record = self.record
        if record is None:
            return
        record["refused"] = [*record.get("refused", []), conversation_id]
        with instance.store.transaction():
            instance.store.set_pending_join(record)
            instance.history.count_refused_add()
        try:
            await instance.cli.update_consent(conversation_id, "denied")
        except errors.ConvosdError as exc:
            self.log.error(
                "add_refused_consent_failed",
                conversation_id=conversation_id,
                by=by,
                error=exc.message,
            )
        else:
            self.log.warning("add_refused", conversation_id=conversation_id, by=by)
        instance.changed()

    def _give_up(self, reason: str) -> None:
        self.instance.store.set_pending_join(None)
        self.instance.journal.append([event("join_failed", None, reason=reason)])
        self.log.warning("await_add_failed", reason=reason)
        self.instance.changed()
