"""The warm transport gives what the one-shot gives: the real CLI, offline, both transports.

Every argv the contract tests run or build end to end (the error contract's specs, the argv
contract's builder cases, env cases and end-to-end cases, its raw argv controls, and the
hostile values of the invite, whose command fails before the network) is run
through the one-shot runner (one ``node bin/run.js`` per command) and through the warm
transport (one worker for a whole sequence), in the same order, each side in its own
workspace. Exit code, stdout and stderr must be identical once what is inherently variable
is normalised: the workspace paths (``<ws>``), and the identity a network command leaves
behind in each home (its random id and address, its creation time), which ``identity list``
prints afterwards. ``--version`` runs one-shot on both (the warm transport's rule).

The other hostile values (text, names, emoji, slugs) are argv the parser contract reads:
here they would repeat the network or slug failure of their builder case, at 0.4 to 2.5 s of
one-shot each (the one-shot side is what this test spends its time on).

The sequences run in a few pairs at once (each pair: a one-shot workspace and a warm one
with the same environment), so the test takes about as long as its slowest sequence.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from convosd.cli.argv import ArgvBuilder, Invocation, UnsafeText
from convosd.cli.runner import CliResult, CliRunner
from convosd.cli.warm import WarmTransport
from tests.helpers import WAIT_S
from tests.realcli import test_argv_contract as argv_contract
from tests.realcli import test_errors_contract as errors_contract
from tests.realcli.conftest import CLI_BIN, RealCli, Workspace

pytestmark = pytest.mark.realcli

#: pairs of sequences run at once
PARALLEL = 8
#: hostile values are run for these fields (their commands fail before the network)
OFFLINE_FIELDS = ("inspect_invite.invite",)


@dataclass(frozen=True)
class Case:
    name: str
    columns: str | None  # OCLIF_COLUMNS; None: unset (oclif wraps at 80)
    build: object  # Callable[[Workspace], Invocation]

    def invocation(self, ws: Workspace) -> Invocation:
        build = self.build
        assert callable(build)
        result = build(ws)
        assert isinstance(result, Invocation)
        return result


def _builder(ws: Workspace) -> ArgvBuilder:
    return ArgvBuilder(env="dev", env_file=ws.env_file)


def _cases() -> list[Case]:
    cases: list[Case] = []
    for name, spec in errors_contract.SPECS.items():
        cases.append(
            Case(
                f"errors:{name}",
                spec.columns,
                lambda ws, spec=spec: Invocation(spec.command, tuple(spec.argv(ws))),
            )
        )
    for case_id, build, _, _ in argv_contract.BUILDER_CASES:
        cases.append(Case(f"builder:{case_id}", "10000", lambda ws, b=build: b(_builder(ws))))
    cases.extend(
        Case(
            f"env:{env}",
            "10000",
            lambda ws, env=env: ArgvBuilder(env=env, env_file=ws.env_file).identity_list(),  # type: ignore[arg-type]
        )
        for env in argv_contract.ENV_CASES
    )
    for name, build in argv_contract.E2E.items():
        cases.append(Case(f"e2e:{name}", "10000", lambda ws, b=build: b(_builder(ws))))
    for name, (command, argv) in argv_contract.RAW_CASES.items():
        cases.append(
            Case(f"raw:{name}", "10000", lambda ws, c=command, a=argv: Invocation(c, tuple(a)))
        )
    probe = ArgvBuilder(env="dev", env_file=argv_contract.Path("/x.env"))
    for field in OFFLINE_FIELDS:
        build_field = argv_contract.FIELDS[field][0]
        for vid, value in argv_contract.HOSTILE.items():
            try:
                build_field(probe, value)
            except UnsafeText:
                continue  # refused before any process: nothing to compare
            cases.append(
                Case(
                    f"hostile:{field}:{vid}",
                    "10000",
                    lambda ws, f=build_field, v=value: f(_builder(ws), v),
                )
            )
    return cases


def _runner(realcli: RealCli, ws: Workspace, columns: str | None) -> CliRunner:
    return CliRunner((realcli.node, str(CLI_BIN)), ws.env(OCLIF_COLUMNS=columns), ws.root)


#: what differs between two runs of the same command in two homes: the random identity a
#: network command leaves behind (its id and address) and the time it was created
_VARIABLE = (
    (re.compile(r'"id": "[0-9a-f]{32}"'), '"id": "<identity id>"'),
    (re.compile(r"0x[0-9a-fA-F]{40}"), "<address>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"), "<time>"),
)


def _normalised(result: CliResult, ws: Workspace) -> tuple[int, str, str]:
    texts = []
    for text in (result.stdout, result.stderr):
        text = text.replace(str(ws.root), "<ws>")
        for pattern, replacement in _VARIABLE:
            text = pattern.sub(replacement, text)
        texts.append(text)
    return result.exit_code, texts[0], texts[1]


async def _sequence(
    realcli: RealCli, cases: Sequence[Case], columns: str | None, index: int
) -> tuple[list[str], dict[str, int]]:
    one_ws = realcli.workspace(f"oneshot-{index}")
    warm_ws = realcli.workspace(f"warm-{index}")
    oneshot = _runner(realcli, one_ws, columns)
    warm = WarmTransport(_runner(realcli, warm_ws, columns))
    differences: list[str] = []
    try:
        for case in cases:
            one_inv, warm_inv = case.invocation(one_ws), case.invocation(warm_ws)
            one, hot = await asyncio.gather(
                oneshot.run(one_inv, timeout_s=WAIT_S), warm.run(warm_inv, timeout_s=WAIT_S)
            )
            expected, got = _normalised(one, one_ws), _normalised(hot, warm_ws)
            if expected != got:
                differences.append(f"{case.name}: one-shot {expected!r}\nwarm {got!r}")
        return differences, {
            "commands": warm.commands,
            "oneshot": sum(1 for c in cases if c.invocation(warm_ws).command == "--version"),
            "fallbacks": warm.fallbacks,
            "restarts": warm.restarts,
        }
    finally:
        await warm.aclose()


@pytest.mark.parametrize("part", ["contract-1", "contract-2", "contract-3", "hostile"])
async def test_every_contract_argv_gives_the_same_result_on_both_transports(
    realcli: RealCli, part: str
) -> None:
    every = _cases()
    if part == "hostile":
        cases = [c for c in every if c.name.startswith("hostile:")]
    else:
        others = [c for c in every if not c.name.startswith("hostile:")]
        cases = others[int(part[-1]) - 1 :: 3]
    assert len(cases) > 25
    groups: dict[str | None, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.columns, []).append(case)
    sequences: list[tuple[str | None, list[Case]]] = []
    for columns, members in groups.items():
        share = max(1, PARALLEL * len(members) // len(cases))
        sequences += [(columns, members[i::share]) for i in range(share)]
    outcomes = await asyncio.gather(
        *(
            _sequence(realcli, members, columns, index)
            for index, (columns, members) in enumerate(sequences)
        )
    )
    differences = [d for found, _ in outcomes for d in found]
    assert not differences, "\n\n".join(differences)
    # The workers ran them, not one-shot fallbacks: none crashed or broke the protocol.
    stats = [s for _, s in outcomes]
    assert sum(s["commands"] for s in stats) + sum(s["oneshot"] for s in stats) == len(cases)
    assert sum(s["fallbacks"] for s in stats) == 0 and sum(s["restarts"] for s in stats) == 0
