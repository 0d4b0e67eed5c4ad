"""Health (docs/PROTOCOL.md, Health): a pure function of what the daemon knows. Never waits.

ok        unbound with a working CLI, or bound with both children running
degraded  a child in backoff (or still starting), a config/binding mismatch, a backfill
          that could not read its whole window, unbound after the last command that
          needed the network could not reach it
down      a fatal child, no working CLI, a refused CLI version, an unwritable state dir
          or journal, an env mismatch
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from convosd.supervisor.state import ChildState

HealthStatus = Literal["ok", "degraded", "down"]
_RANK = {"ok": 0, "degraded": 1, "down": 2}


@dataclass(frozen=True)
class HealthInputs:
    cli_working: bool | None  # None: not probed yet
    cli_problem: str | None = None
    cli_version_problem: str | None = None
    #: ``convos --version`` answered at least once: with no CLI there is no version to trust
    cli_version_known: bool = True
    state_problem: str | None = None
    journal_problem: str | None = None
    backfill_problem: str | None = None
    env_mismatch: str | None = None
    binding_mismatch: str | None = None
    identity_mismatch: str | None = None
    #: why the last CLI command that needed the network failed to reach it (None: it did)
    network_problem: str | None = None
    bound: bool = False
    children: dict[str, ChildState] = field(default_factory=dict)
    child_errors: dict[str, str | None] = field(default_factory=dict)
    enabled: bool = True


def evaluate(inputs: HealthInputs) -> tuple[HealthStatus, dict[str, str]]:
    checks: dict[str, str] = {}
    status: HealthStatus = "ok"

    def mark(name: str, problem: str | None, level: HealthStatus) -> None:
        nonlocal status
        if problem is None:
            checks[name] = "ok"
            return
        checks[name] = problem
        if _RANK[level] > _RANK[status]:
            status = level

    if inputs.cli_working is None:
        mark("cli", "not probed yet", "degraded")
    else:
        mark("cli", None if inputs.cli_working else (inputs.cli_problem or "not working"), "down")
    version_problem = inputs.cli_version_problem
    if version_problem is None and inputs.cli_working is False and not inputs.cli_version_known:
        version_problem = "unknown: the CLI did not run"
    mark("cliVersion", version_problem, "down")
    mark("stateDir", inputs.state_problem, "down")
    mark("journal", inputs.journal_problem, "down")
    mark("env", inputs.env_mismatch, "down")
    mark("identity", inputs.identity_mismatch, "down")
    mark("binding", inputs.binding_mismatch, "degraded")
    if inputs.bound:
        mark("backfill", inputs.backfill_problem, "degraded")
    else:
        # bound, the stream child speaks for the network; unbound, only the commands do
        mark("network", inputs.network_problem, "degraded")
    if not inputs.enabled:
        checks["enabled"] = "disabled by configuration"
    if inputs.bound:
        for name, state in inputs.children.items():
            if state is ChildState.RUNNING:
                mark(name, None, "ok")
            elif state is ChildState.FATAL:
                mark(
                    name, f"fatal: {inputs.child_errors.get(name) or 'stopped restarting'}", "down"
                )
            elif state is ChildState.STOPPED:
                mark(name, "stopped", "down")
            else:
                error = inputs.child_errors.get(name)
                mark(name, f"{state}{': ' + error if error else ''}", "degraded")
    return status, checks
