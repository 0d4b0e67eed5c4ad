"""Shared fixtures: the fake convos network and CLI adapters wired to it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from convosd.cli import CliSetup, ConvosCli
from tests.fakeconvos.network import FakeNetwork

CliFactory = Callable[..., ConvosCli]


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
def make_cli(net: FakeNetwork, tmp_path: Path) -> CliFactory:
    """``make_cli("alice")``: an adapter for a fresh instance home on the fake network."""

    def factory(name: str = "me", *, timeout_s: float = 20.0, env: str = "dev") -> ConvosCli:
        setup = fake_setup(net, tmp_path / name, env)
        setup.prepare()
        environ = {"PATH": "/usr/bin:/bin", "FAKECONVOS_NETWORK": str(net.path)}
        return ConvosCli(setup, timeout_s=timeout_s, environ=environ)

    return factory
