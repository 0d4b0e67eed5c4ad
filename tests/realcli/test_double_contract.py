"""The CLI double (tests/fakeconvos) against the real CLI: same version, same commands, and
the same flags and arguments for each, read from the real ``convos schema``."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from typing import Any

import pytest

from tests.fakeconvos.network import EXECUTABLE
from tests.realcli.conftest import CLI_VERSION, RealCli, result

pytestmark = pytest.mark.realcli

#: commands of the double that are oclif plugins or ``schema`` itself: not in the listing.
NOT_LISTED = {"autocomplete", "autocomplete:create", "autocomplete:script", "help", "schema"}


def _double_commands() -> dict[str, Any]:
    """``fc_spec.COMMANDS`` (the double's modules import each other as top-level modules)."""
    spec = importlib.util.spec_from_file_location("fc_spec", EXECUTABLE.with_name("fc_spec.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    commands: dict[str, Any] = module.COMMANDS
    return commands


def _schema(realcli: RealCli, *command: str) -> dict[str, Any]:
    run = result(realcli.submit(realcli.workspace("schema"), ["schema", *command]))
    assert run.exit_code == 0, run.describe()
    value: dict[str, Any] = json.loads(run.stdout)
    return value


def test_double_version_is_the_pinned_cli(realcli: RealCli) -> None:
    assert _schema(realcli)["version"] == CLI_VERSION
    double = subprocess.run(
        [sys.executable, str(EXECUTABLE), "--version"], capture_output=True, text=True, check=True
    )
    assert double.stdout.startswith(f"@xmtp/convos-cli/{CLI_VERSION} linux-x64 node-v22.")


def test_double_commands_flags_and_args_match_real_schema(realcli: RealCli) -> None:
    listing = _schema(realcli)
    common = set(listing["commonFlags"])
    ids = [c["id"] for c in listing["commands"]]
    double = _double_commands()
    assert set(ids) == set(double) - NOT_LISTED
    futures = {cid: realcli.submit(realcli.workspace("schema"), ["schema", cid]) for cid in ids}
    differences = {}
    for cid, future in futures.items():
        run = result(future)
        assert run.exit_code == 0, run.describe()
        real = json.loads(run.stdout)
        fake = double[cid]
        real_flags = set(real.get("flags", {})) - common
        fake_flags = set(fake["flags"]) - common
        real_args = list(real.get("args", {}))
        fake_args = [a["name"] for a in fake["args"]]
        if (real_flags, real_args) != (fake_flags, fake_args):
            differences[cid] = {
                "only real": sorted(real_flags - fake_flags),
                "only double": sorted(fake_flags - real_flags),
                "args": (real_args, fake_args),
            }
    assert differences == {}
