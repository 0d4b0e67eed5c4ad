"""The daemon's lifecycle: lock, store, instance, server, readiness, graceful shutdown.

Start: the single-instance lock, the store and journal, the CLI probe, the binding resumed
(children spawned, never waiting on the network), the socket listening, then ``READY=1``.
Stop (SIGTERM/SIGINT): stop accepting; in-flight requests get ``shutdownGraceS``, then
NOT_READY and their CLI processes are killed; subscriptions end with ``reason: shutdown``;
children stopped; a pending join stays persisted; exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping

import structlog

from convosd.cli import ConvosCli
from convosd.cli.warm import transport_factory
from convosd.config import Paths, Settings
from convosd.conversation.instance import Instance
from convosd.conversation.joins import JoinTiming
from convosd.errors import ConfigError
from convosd.preflight import cli_setup, prepare_cli, prepare_state_dir
from convosd.rpc.dispatch import Dispatcher
from convosd.rpc.limits import ServerLimits
from convosd.rpc.peers import AccessPolicy
from convosd.rpc.server import RpcServer
from convosd.rpc.subscriptions import SubscriptionHub
from convosd.service import ConvosService
from convosd.storage.journal import Journal
from convosd.storage.lock import InstanceLock, StateDirInUse
from convosd.storage.store import Store, StoreError
from convosd.systemd import Notifier

log = structlog.get_logger("convosd")
EXIT_OK = 0
EXIT_FAILED = 1
#: how often the daemon checks that its state dir is still the one it opened
STATE_WATCH_S = 1.0


class Daemon:
    def __init__(
        self,
        settings: Settings,
        paths: Paths,
        *,
        notifier: Notifier | None = None,
        join_timing: JoinTiming | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.paths = paths
        self.notifier = notifier or Notifier()
        self.join_timing = join_timing or JoinTiming(
            poll_min_s=settings.daemon.join_poll_min_s,
            poll_max_s=settings.daemon.join_poll_max_s,
            resend_s=settings.daemon.join_resend_s,
        )
        self.environ = environ
        self.shutdown = asyncio.Event()
        self.ready = asyncio.Event()
        self.phase = "starting"
        self.instance: Instance | None = None
        self.server: RpcServer | None = None
        self.service: ConvosService | None = None

    def not_ready(self) -> str | None:
        if self.phase == "starting":
            return "the daemon is starting"
        if self.phase == "stopping":
            return "the daemon is shutting down"
        if not self.settings.convos.enabled:
            return "the Convos channel is disabled (enabled = false)"
        if self.instance is not None:
            return self.instance.store.vanished()
        return None

    def _status_text(self) -> str:
        instance = self.instance
        if instance is None:
            return self.phase
        gone = instance.store.vanished()
        if gone is not None:
            return gone
        binding = instance.binding
        if binding is None:
            pending = instance.store.has_pending_join
            return "unbound, join pending" if pending else "unbound"
        states = ", ".join(
            f"{name} {child.status.state}" for name, child in instance.children.items()
        )
        return f"bound to {binding.conversation_id}: {states}"

    def _state_changed(self) -> None:
        self.notifier.status(self._status_text())

    async def run(self) -> int:
        try:
            prepare_state_dir(self.paths.state_dir)
            lock = InstanceLock(self.paths.state_dir)
            lock.acquire()
        except StateDirInUse as exc:
            log.error("state_dir_in_use", error=str(exc))
            return EXIT_FAILED
        except ConfigError as exc:
            log.error("state_dir_unusable", error=str(exc))
            return EXIT_FAILED
        try:
            return await self._run_locked(lock)
        finally:
            lock.release()

    async def _run_locked(self, lock: InstanceLock) -> int:
        settings, paths = self.settings, self.paths
        daemon = settings.daemon
        try:
            store = Store.open(paths.state_dir)
        except StoreError as exc:
            log.error("store_unusable", error=str(exc))
            return EXIT_FAILED
        try:
            journal = Journal(
                store,
                max_events=daemon.journal_max_events,
                max_age_s=daemon.journal_max_age_days * 86400,
            )
            setup = cli_setup(settings, paths)
            try:
                prepare_cli(setup)
            except ConfigError as exc:
                log.error("cli_home_unusable", error=str(exc))
                return EXIT_FAILED
            cli = ConvosCli(
                setup,
                timeout_s=daemon.cli_timeout_s,
                environ=self.environ,
                transport=transport_factory(
                    daemon.cli_transport,
                    node_flags=daemon.cli_worker_node_flags,
                    malloc_arena_max=daemon.cli_worker_malloc_arena_max,
                ),
                host=daemon.cli_host,
            )
            instance = Instance(settings, paths, store=store, journal=journal, cli=cli)
            self.instance = instance
            hub = SubscriptionHub(
                journal,
                queue_limit=daemon.subscriber_queue,
                stall_timeout_s=daemon.output_stall_timeout_s,
                max_per_connection=daemon.max_subscriptions_per_connection,
                max_total=daemon.max_subscriptions,
            )
            service = ConvosService(instance, hub, join_timing=self.join_timing)
            self.service = service
            dispatcher = Dispatcher(service.methods(), not_ready=self.not_ready)
            uid = os.getuid()
            server = RpcServer(
                path=paths.socket,
                dispatcher=dispatcher,
                hub=hub,
                access=AccessPolicy(
                    daemon_uid=uid,
                    allow_uids=frozenset(daemon.allow_uids),
                    allow_gids=frozenset(daemon.allow_gids),
                    admin_uids=frozenset(daemon.admin_uids),
                    admin_gids=frozenset(daemon.admin_gids),
                ),
                limits=ServerLimits(
                    frame_limit=daemon.frame_limit_bytes,
                    max_connections=daemon.max_connections,
                    max_in_flight=daemon.max_in_flight_per_connection,
                    admin_reserved=daemon.admin_reserved_connections,
                    max_output_bytes=daemon.max_output_bytes_per_connection,
                    output_stall_timeout_s=daemon.output_stall_timeout_s,
                    idle_timeout_s=daemon.idle_timeout_s,
                ),
                socket_group=daemon.socket_group,
                own_socket_dir=paths.own_socket_dir,
                shutdown_grace_s=daemon.shutdown_grace_s,
            )
            self.server = server
            instance.on_state_change = self._state_changed
            instance.load_binding()
            service.clean_outbox()
            try:
                await server.start()
            except (ConfigError, OSError) as exc:
                log.error("socket_unusable", socket=str(paths.socket), error=str(exc))
                return EXIT_FAILED
            if settings.convos.enabled:
                await instance.start()
                await service.start_waits()
                instance.spawn_task(service.reconcile_keys(), "reconcile-keys")
            else:
                await instance.home.probe()
            if instance.home.cli_working is False:
                self._warn_cli(instance.home.cli_problem)
            self.phase = "serving"
            self.ready.set()
            self.notifier.ready(self._status_text())
            log.info("ready", socket=str(paths.socket), status=self._status_text())
            watchdog = asyncio.create_task(self._watchdog(), name="watchdog")
            watch = asyncio.create_task(self._watch_state_dir(store, lock), name="state-watch")
            await self.shutdown.wait()
            watchdog.cancel()
            watch.cancel()
            await self._stop(server, service, instance)
            return EXIT_OK
        finally:
            store.close()

    def _warn_cli(self, problem: str | None) -> None:
        """Serving without a usable CLI is allowed (health says down): say it at start too."""
        log.warning(
            "cli_not_usable",
            problem=problem,
            cli=" ".join(self.settings.daemon.cli),
            fix=(
                "point the `cli` setting ([daemon] cli in the config file) or CONVOSD_CLI at the "
                'convos CLI, a path or an argv such as "node /opt/convos/bin/run.js"'
            ),
        )

    async def _stop(self, server: RpcServer, service: ConvosService, instance: Instance) -> None:
        log.info("stopping")
        self.phase = "stopping"
        self.notifier.stopping()
        await server.close(self.settings.daemon.shutdown_grace_s)
        await service.pending.stop()
        await service.adds.stop()
        await instance.close()
        log.info("stopped")

    async def _watch_state_dir(self, store: Store, lock: InstanceLock) -> None:
        """A state dir deleted (or replaced) under a running daemon: say so once (health is
        ``down``, requests get NOT_READY, writes are refused, no CLI process runs any more),
        and take its path again so a second daemon started on it is refused instead of
        running beside this one."""
        reported = False
        while True:
            await asyncio.sleep(STATE_WATCH_S)
            problem = store.vanished()
            if problem is None:
                reported = False
                continue
            if not reported:
                reported = True
                log.error("state_dir_gone", state_dir=str(self.paths.state_dir), error=problem)
                if self.instance is not None:
                    await self.instance.state_dir_gone(problem)
                if not lock.reclaim():
                    log.error("state_dir_taken", state_dir=str(self.paths.state_dir))
            else:
                lock.reclaim()  # deleted again since: take it again

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval_s
        if interval is None:
            return
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.shutdown.set)


async def serve(settings: Settings, paths: Paths) -> int:
    daemon = Daemon(settings, paths)
    daemon.install_signal_handlers()
    return await daemon.run()
