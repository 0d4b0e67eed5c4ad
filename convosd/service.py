"""The JSON-RPC service: builds the method groups of :mod:`convosd.api` on one instance,
each with only what it uses, and their method table (docs/API.md, docs/PROTOCOL.md)."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from convosd.api.binding import BindingApi
from convosd.api.conversation import ConversationApi
from convosd.api.downloads import DownloadsApi
from convosd.api.events import EventsApi
from convosd.api.live import LiveApi
from convosd.api.messages import MessagesApi
from convosd.api.pairing import PairingApi
from convosd.api.status import StatusApi
from convosd.api.table import method_table
from convosd.attachments.guard import refused_locations
from convosd.attachments.outbox import Outbox
from convosd.conversation.adds import AddTiming, AwaitAdd
from convosd.conversation.instance import Instance
from convosd.conversation.joins import JoinTiming, PendingJoin
from convosd.ratelimit import TokenBucket
from convosd.rpc.dispatch import MethodSpec
from convosd.rpc.subscriptions import SubscriptionHub

log = structlog.get_logger("convosd.service")


class ConvosService:
    def __init__(
        self,
        instance: Instance,
        hub: SubscriptionHub,
        *,
        join_timing: JoinTiming | None = None,
        add_timing: AddTiming | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hub = hub
        self.instance = instance
        self.pending = PendingJoin(instance, join_timing or JoinTiming())
        self.adds = AwaitAdd(
            instance,
            add_timing or AddTiming(poll_s=instance.settings.daemon.await_add_poll_s),
            clock=clock,
        )
        keys = instance.store.keys
        self.status = StatusApi(instance, hub)
        self.binding = BindingApi(instance, hub, self.pending, self.adds, clock=clock)
        self.conversation = ConversationApi(instance, instance.cli, instance.journal, keys)
        paths = instance.paths
        outbox = Outbox(
            paths.state_dir / "outbox",
            instance.settings.daemon.max_attachment_bytes,
            refused_locations(paths.state_dir, paths.convos_home, instance.settings.config_path),
        )
        self.messages = MessagesApi(
            instance, instance.cli, instance.journal, keys, instance.settings, outbox, clock=clock
        )
        self.events = EventsApi(instance.journal, hub)
        self.pairing = PairingApi(instance.sender_policy)
        self.live = LiveApi(instance, instance.cli)
        self.downloads = DownloadsApi(
            instance,
            instance.cli,
            instance.journal,
            max_file_bytes=instance.settings.daemon.max_attachment_bytes,
            max_store_bytes=instance.settings.daemon.max_attachment_store_bytes,
            trusted_hosts=instance.settings.daemon.attachment_trusted_hosts,
        )

    def clean_outbox(self) -> None:
        """Remove attachment copies a crash left behind (at start, before serving)."""
        left = self.messages.outbox.clean()
        if left:
            log.warning("outbox_leftovers_removed", count=left)

    async def start_waits(self) -> None:
        """At start: resume a pending join or a wait to be added; with ``awaitAdd``
        configured, an instance that is unbound, waits for nothing and has no
        ``ownerConversationId`` starts waiting (its watch makes the identity if needed)."""
        instance = self.instance
        self.pending.start()
        self.adds.start()
        convos = instance.settings.convos
        if (
            convos.await_add
            and instance.binding is None
            and instance.store.pending_join() is None
            and convos.owner_conversation_id is None
            and instance.env_mismatch is None
        ):
            await self.adds.begin(
                allowed_from=None, timeout_s=None, profile_name=None, identity_now=False
            )

    @property
    def bucket(self) -> TokenBucket:
        """The rate limit of message.send."""
        return self.messages.bucket

    async def reconcile_keys(self, only: str | None = None) -> None:
        await self.messages.reconcile_keys(only)

    def methods(self) -> dict[str, MethodSpec]:
        return method_table(
            status=self.status,
            binding=self.binding,
            conversation=self.conversation,
            messages=self.messages,
            events=self.events,
            pairing=self.pairing,
            live=self.live,
            downloads=self.downloads,
        )
