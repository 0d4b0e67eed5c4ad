"""The Makefile's test targets: `make unit` runs both passes (warm, then one-shot) and fails
when either failed, so a failure on warm never hides one on one-shot."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import WAIT_S

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _unit(tmp_path: Path, exit_codes: dict[str, int]) -> tuple[int, list[str]]:
    """`make unit` with a stand-in pytest that records each pass (its transport and
    arguments) and exits with ``exit_codes[transport]``; set-up is not remade (``-o``)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "passes.log"
    pytest_stub = venv / "bin" / "pytest"
    pytest_stub.write_text(
        "#!/bin/sh\n"
        'transport="${CONVOSD_TEST_CLI_TRANSPORT:-warm}"\n'
        'echo "$transport $*" >> "$PASSES_LOG"\n'
        'case "$transport" in\n'
        f"  warm) exit {exit_codes['warm']} ;;\n"
        f"  *) exit {exit_codes['oneshot']} ;;\n"
        "esac\n"
    )
    pytest_stub.chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    environ.pop("CONVOSD_TEST_CLI_TRANSPORT", None)
    result = subprocess.run(
        ["make", "-C", str(REPO), "-o", "setup", "-o", "test-tools", "unit", f"VENV={venv}"],
        env={**environ, "PASSES_LOG": str(log)},
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    passes = log.read_text().splitlines() if log.exists() else []
    return result.returncode, passes


@pytest.mark.parametrize(
    ("warm", "oneshot", "fails"),
    [(0, 0, False), (1, 0, True), (0, 1, True), (1, 1, True), (5, 0, True)],
)
def test_make_unit_runs_both_passes_and_fails_if_either_failed(
    tmp_path: Path, warm: int, oneshot: int, fails: bool
) -> None:
    code, passes = _unit(tmp_path, {"warm": warm, "oneshot": oneshot})
    assert [p.split()[0] for p in passes] == ["warm", "oneshot"]
    oneshot_files = passes[1].split()[1:]
    assert oneshot_files and all((REPO / f).is_file() for f in oneshot_files)
    assert (code != 0) is fails
