"""Shared fixtures: the fake convos network and CLI adapters wired to it.

``CONVOSD_TEST_CLI_TRANSPORT`` (``warm``, the default, or ``oneshot``) chooses how the CLI
double runs under every adapter and daemon the tests build: its worker mode or one process
per command. It is the one seam: the fixtures below, ``tests.rpc_harness`` and the
subprocess daemons read :data:`CLI_TRANSPORT`. ``CONVOSD_TEST_CLI_HOST`` (``single``, the
default, or ``separate``) is ``cliHost`` the same way (:data:`CLI_HOST`): where the stream and
the join-request watcher run, the real-CLI tier (tests/realnode) included.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from convosd.cli import CliSetup, ConvosCli
from convosd.cli.transport import TransportFactory
from convosd.cli.warm import transport_factory
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import PATIENCE, WAIT_S

CliFactory = Callable[..., ConvosCli]

#: Hypothesis' two clocks are off for the whole suite: its 200 ms deadline per example and
#: its too_slow health check (data generation over 1 s of wall time) measure the machine's
#: load, not the code; under load the latter failed TestLastJson (4 inputs in 1.03 s). A
#: test's own ``suppress_health_check`` replaces this list, so it names too_slow again.
settings.register_profile(
    "convosd", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("convosd")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``CONVOSD_TEST_PATIENCE`` scales each test's timeout (its own marker's or
    pyproject's) as it scales ``WAIT_S`` (tests/helpers.py)."""
    if PATIENCE == 1:
        return
    default = float(config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        if marker is not None:
            base = float(marker.args[0] if marker.args else marker.kwargs.get("timeout", 0))
        else:
            base = default
        if base > 0:
            item.add_marker(pytest.mark.timeout(base * PATIENCE))


CLI_TRANSPORT = os.environ.get("CONVOSD_TEST_CLI_TRANSPORT", "warm")
if CLI_TRANSPORT not in ("warm", "oneshot"):
    raise RuntimeError(f"CONVOSD_TEST_CLI_TRANSPORT={CLI_TRANSPORT!r}: use warm or oneshot")


CLI_HOST = os.environ.get("CONVOSD_TEST_CLI_HOST", "single")
if CLI_HOST not in ("single", "separate"):
    raise RuntimeError(f"CONVOSD_TEST_CLI_HOST={CLI_HOST!r}: use single or separate")


def cli_transport() -> TransportFactory | None:
    """The ``transport=`` of every adapter the tests build (see the module's docstring)."""
    return transport_factory(CLI_TRANSPORT)


@pytest.fixture
def net(tmp_path: Path) -> FakeNetwork:
    return FakeNetwork(tmp_path / "net")


def fake_setup(net: FakeNetwork, state_dir: Path, env: str = "dev") -> CliSetup:
    return CliSetup(
        executable=(sys.executable, net.executable),
        env=env,  # type: ignore[arg-type]
        convos_home=state_dir / "convos",
        state_dir=state_dir,
        passthrough=("FAKECONVOS_*",),
    )


@pytest.fixture
async def make_cli(net: FakeNetwork, tmp_path: Path) -> AsyncIterator[CliFactory]:
    """``make_cli("alice")``: an adapter for a fresh instance home on the fake network
    (closed at the end of the test: a warm transport's worker goes with it)."""
    made: list[ConvosCli] = []

    def factory(name: str = "me", *, timeout_s: float = WAIT_S, env: str = "dev") -> ConvosCli:
        setup = fake_setup(net, tmp_path / name, env)
        setup.prepare()
        environ = {"PATH": "/usr/bin:/bin", "FAKECONVOS_NETWORK": str(net.path)}
        cli = ConvosCli(
            setup,
            timeout_s=timeout_s,
            environ=environ,
            transport=cli_transport(),
            host=CLI_HOST,  # type: ignore[arg-type]
        )
        made.append(cli)
        return cli

    yield factory
    for cli in made:
        await cli.aclose()
