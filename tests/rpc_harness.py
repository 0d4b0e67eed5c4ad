"""A daemon on the CLI double, in the test's event loop, with clients on its socket."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from convosd.cli import ConvosCli
from convosd.client import Client
from convosd.config import Paths, Settings, load_settings
from convosd.conversation.joins import JoinTiming
from convosd.daemon import Daemon
from convosd.systemd import Notifier
from tests.conftest import CLI_HOST, CLI_TRANSPORT, fake_setup
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S


def settings_for(net: FakeNetwork, **overrides: Any) -> Settings:
    convos = {"env": "dev", **overrides.pop("convos", {})}
    daemon = {
        "cli": (sys.executable, net.executable),
        "cli_env_passthrough": ("FAKECONVOS_*",),
        "cli_transport": CLI_TRANSPORT,
        "cli_host": CLI_HOST,
        "backfill_interval_s": 0.5,
        "shutdown_grace_s": 2.0,
        **overrides,
    }
    base = load_settings({}, environ={})
    return base.model_copy(
        update={
            "convos": base.convos.model_copy(update=convos),
            "daemon": base.daemon.model_copy(update=daemon),
        }
    )


class RunningDaemon:
    def __init__(self, daemon: Daemon, task: asyncio.Task[int], socket: Path) -> None:
        self.daemon = daemon
        self.task = task
        self.socket = socket

    @property
    def instance(self) -> Any:
        return self.daemon.instance

    async def client(self) -> Client:
        return await Client.connect(self.socket)

    async def stop(self) -> int:
        self.daemon.shutdown.set()
        return await asyncio.wait_for(self.task, WAIT_S)


@asynccontextmanager
async def running_daemon(
    net: FakeNetwork,
    state: Path,
    *,
    notifier: Notifier | None = None,
    extra_environ: dict[str, str] | None = None,
    config_path: Path | None = None,
    **overrides: Any,
) -> AsyncIterator[RunningDaemon]:
    """``extra_environ``: more of the daemon's environment (what cliEnvPassthrough may pass);
    ``config_path``: the config file the daemon says it was started with."""
    settings = settings_for(net, **overrides)
    if config_path is not None:
        settings = settings.model_copy(update={"config_path": config_path})
    socket = state.parent / f"{state.name}.sock"
    paths = Paths(socket=socket, state_dir=state, convos_home=state / "convos")
    daemon = Daemon(
        settings,
        paths,
        notifier=notifier or Notifier({}),
        join_timing=JoinTiming(poll_min_s=0.2, poll_max_s=0.5, resend_s=600),
        environ={
            "PATH": "/usr/bin:/bin",
            "FAKECONVOS_NETWORK": str(net.path),
            **(extra_environ or {}),
        },
    )
    task = asyncio.create_task(daemon.run())
    ready = asyncio.create_task(daemon.ready.wait())
    await asyncio.wait({task, ready}, timeout=WAIT_S, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if task.done():
        raise RuntimeError(f"daemon exited at start: {task.result()}")
    running = RunningDaemon(daemon, task, socket)
    try:
        yield running
    finally:
        if not task.done():
            await running.stop()


def member_cli(net: FakeNetwork, state: Path) -> ConvosCli:
    setup = fake_setup(net, state)
    setup.prepare()
    return ConvosCli(setup, environ={"PATH": "/usr/bin:/bin", "FAKECONVOS_NETWORK": str(net.path)})
