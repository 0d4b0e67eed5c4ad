"""Health as docs/PROTOCOL.md defines it: a pure function of the daemon's facts."""

from __future__ import annotations

from convosd.health import HealthInputs, evaluate
from convosd.supervisor.state import ChildState

RUNNING = {"stream": ChildState.RUNNING, "joinRequests": ChildState.RUNNING}


def test_unbound_with_a_working_cli_is_ok() -> None:
    status, checks = evaluate(HealthInputs(cli_working=True))
    assert status == "ok"
    assert set(checks.values()) == {"ok"}


def test_bound_with_both_children_running_is_ok() -> None:
    assert evaluate(HealthInputs(cli_working=True, bound=True, children=RUNNING))[0] == "ok"


def test_child_in_backoff_is_degraded_and_says_why() -> None:
    children = {**RUNNING, "stream": ChildState.BACKOFF}
    status, checks = evaluate(
        HealthInputs(
            cli_working=True, bound=True, children=children, child_errors={"stream": "exit 1"}
        )
    )
    assert status == "degraded"
    assert checks["stream"] == "backoff: exit 1"


def test_binding_mismatch_is_degraded() -> None:
    status, checks = evaluate(HealthInputs(cli_working=True, binding_mismatch="owner differs"))
    assert (status, checks["binding"]) == ("degraded", "owner differs")


def test_down_conditions() -> None:
    for inputs in (
        HealthInputs(cli_working=False, cli_problem="binding"),
        HealthInputs(cli_working=True, cli_version_problem="0.11.0 refused"),
        HealthInputs(cli_working=True, state_problem="read-only"),
        HealthInputs(cli_working=True, journal_problem="disk full"),
        HealthInputs(cli_working=True, env_mismatch="dev vs production"),
        HealthInputs(cli_working=True, identity_mismatch="x"),
        HealthInputs(
            cli_working=True, bound=True, children={**RUNNING, "joinRequests": ChildState.FATAL}
        ),
    ):
        assert evaluate(inputs)[0] == "down", inputs


def test_down_beats_degraded() -> None:
    status, _ = evaluate(
        HealthInputs(
            cli_working=False,
            binding_mismatch="x",
            bound=True,
            children={"stream": ChildState.BACKOFF},
        )
    )
    assert status == "down"


def test_no_cli_means_no_trusted_version() -> None:
    status, checks = evaluate(
        HealthInputs(cli_working=False, cli_problem="not found", cli_version_known=False)
    )
    assert status == "down" and checks["cliVersion"].startswith("unknown")
    # the version answered but the identity probe failed: the version itself is fine
    _, checks = evaluate(HealthInputs(cli_working=False, cli_problem="binding"))
    assert checks["cliVersion"] == "ok"
