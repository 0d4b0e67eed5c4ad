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
from convosd.instance import Instance
from convosd.joins import JoinTiming, PendingJoin
from convosd.outbox import Outbox, refused_locations
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hub = hub
        self.pending = PendingJoin(instance, join_timing or JoinTiming())
        keys = instance.store.keys
        self.status = StatusApi(instance, hub)
        self.binding = BindingApi(instance, hub, self.pending, clock=clock)
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
