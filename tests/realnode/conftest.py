"""The real-CLI tier: convosd on the real ``convos`` CLI against the local XMTP node.

One node per session, in one private network namespace (:mod:`tests.xmtpnode.netns`); the
daemon runs in the test's event loop like in ``tests.rpc_harness`` and starts every CLI child
through ``nsenter`` into that namespace (its ``cli`` setting is the argv prefix), so the
daemon, its worker, stream and watcher, the peers' CLIs and the node all share one loopback.
Where no namespace can be made, or the CLI is not installed, every test here is SKIPPED with
the reason (``-ra`` prints it in the summary).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from convosd.client import Client
from convosd.config import Paths, Settings, load_settings
from convosd.daemon import Daemon
from convosd.systemd import Notifier
from tests.conftest import CLI_HOST
from tests.helpers import eventually_async
from tests.xmtpnode.harness import CLI_BIN, CLI_ENV_PASSTHROUGH, LocalNode, Peer, pinned_node
from tests.xmtpnode.netns import Namespace, open_namespace

#: Waits on the real network: generous (a loaded 2-core machine; the CLI's join polls
#: welcomes every 2 s), and always on a condition.
WAIT_S = 300.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.realnode)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def namespace() -> Iterator[Namespace]:
    if not (CLI_BIN.is_file() and pinned_node().is_file()):
        pytest.skip("real-node tier: the convos CLI or its Node 22 is not installed: make setup")
    made = open_namespace()
    if isinstance(made, str):
        pytest.skip(f"real-node tier: {made}")
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="session")
def xmtp_node(
    namespace: Namespace, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalNode]:
    node = LocalNode(namespace, tmp_path_factory.mktemp("xmtpnode"))
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def peer(xmtp_node: LocalNode, tmp_path: Path) -> Peer:
    return Peer(xmtp_node, tmp_path / "peer", "peer")


def real_settings(node: LocalNode, transport: str, **overrides: Any) -> Settings:
    nsenter = shutil.which(node.enter[0]) or node.enter[0]
    convos = {"env": "local", "dm_policy": "open", **overrides.pop("convos", {})}
    daemon = {
        "cli": (nsenter, *node.enter[1:], str(pinned_node()), str(CLI_BIN)),
        "cli_env_passthrough": CLI_ENV_PASSTHROUGH,
        "cli_transport": transport,
        # CONVOSD_TEST_CLI_HOST: the stream and the watcher as roles of the worker, or not
        "cli_host": CLI_HOST,
        "backfill_interval_s": 2.0,
        # the node's asset store is https://localhost:4443: local, so refused unless trusted
        "attachment_trusted_hosts": ("localhost",),
        "shutdown_grace_s": 5.0,
        **overrides,
    }
    base = load_settings({}, environ={})
    return base.model_copy(
        update={
            "convos": base.convos.model_copy(update=convos),
            "daemon": base.daemon.model_copy(update=daemon),
        }
    )


class RealDaemon:
    def __init__(self, daemon: Daemon, task: asyncio.Task[int], socket: Path) -> None:
        self.daemon = daemon
        self.task = task
        self.socket = socket

    async def client(self) -> Client:
        return await Client.connect(self.socket)

    async def stop(self) -> int:
        self.daemon.shutdown.set()
        return await asyncio.wait_for(self.task, WAIT_S)


@asynccontextmanager
async def real_daemon(
    node: LocalNode, state: Path, transport: str, **overrides: Any
) -> AsyncIterator[RealDaemon]:
    """A daemon on the real CLI and the node, in this loop; stopped (children and all) after."""
    settings = real_settings(node, transport, **overrides)
    socket = state.parent / f"{state.name}.sock"
    paths = Paths(socket=socket, state_dir=state, convos_home=state / "convos")
    daemon = Daemon(
        settings,
        paths,
        notifier=Notifier({}),
        environ={"PATH": "/usr/local/bin:/usr/bin:/bin", **node.cli_env()},
    )
    task = asyncio.create_task(daemon.run())
    ready = asyncio.create_task(daemon.ready.wait())
    await asyncio.wait({task, ready}, timeout=WAIT_S, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if task.done():
        raise RuntimeError(f"daemon exited at start: {task.result()}")
    running = RealDaemon(daemon, task, socket)
    try:
        yield running
    finally:
        if not task.done():
            await running.stop()


async def journal(client: Client, types: list[str] | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"after": 0, "limit": 1000}
    if types:
        params["types"] = types
    return list((await client.call("events.read", params))["events"])


async def wait_events(
    client: Client, predicate: Any, what: str, within_s: float = WAIT_S
) -> list[dict[str, Any]]:
    """The journal once ``predicate(events)`` holds; fails the test with ``what`` otherwise."""
    seen: list[dict[str, Any]] = []

    async def check() -> bool:
        seen[:] = await journal(client)
        return bool(predicate(seen))

    if not await eventually_async(check, within_s=within_s, pause_s=0.5):
        tail = [(e["type"], e.get("content")) for e in seen[-15:]]
        pytest.fail(f"waited {within_s:.0f}s for {what}; journal tail: {tail}")
    return seen
