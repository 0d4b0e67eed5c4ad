"""Issue 25 item 13: an unbound daemon that cannot reach the network said ``ok``. Unbound,
no child watches the network, so the last command that needed it speaks for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from convosd import errors
from convosd.client import ConvosdClient
from convosd.health import HealthInputs, evaluate
from convosd.supervisor.state import ChildState
from tests.fakeconvos.network import FakeNetwork
from tests.rpc_harness import running_daemon

RUNNING = {"stream": ChildState.RUNNING, "joinRequests": ChildState.RUNNING}
PROBLEM = "unreachable: convos conversations create failed: The XMTP network is unreachable"


def test_unbound_after_a_failed_network_call_is_degraded_and_says_why() -> None:
    status, checks = evaluate(HealthInputs(cli_working=True, network_problem=PROBLEM))
    assert (status, checks["network"]) == ("degraded", PROBLEM)
    status, checks = evaluate(HealthInputs(cli_working=True))
    assert (status, checks["network"]) == ("ok", "ok")


def test_bound_the_children_speak_for_the_network() -> None:
    inputs = HealthInputs(cli_working=True, network_problem=PROBLEM, bound=True, children=RUNNING)
    status, checks = evaluate(inputs)
    assert status == "ok" and "network" not in checks


async def test_health_reports_the_unreachable_network_and_recovers(
    net: FakeNetwork, tmp_path: Path
) -> None:
    async with running_daemon(net, tmp_path / "d") as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            assert (await client.health()).status == "ok"
            net.add_fault("unreachable", command="conversations create", count=1)
            with pytest.raises(errors.NetworkUnavailable):
                await client.create(name="Offline")
            health = await client.health()
            assert health.status == "degraded"
            assert health.checks["network"].startswith("unreachable: convos conversations create")
            # it stays so until a command that needs the network succeeds
            assert (await client.status()).conversation_id is None
            assert (await client.health()).status == "degraded"
            await client.create(name="Online")  # the network answers again
            await client.reset()  # unbound again: the check is back, and ok
            health = await client.health()
            assert (health.status, health.checks["network"]) == ("ok", "ok")
