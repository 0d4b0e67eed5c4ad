"""Forward-only: a CLI home used by a newer CLI or newer bindings is refused, never opened.

The CLI home carries no version marker of its own (``identity.json`` has none and the XMTP
database is encrypted with the identity's key), so the daemon records the CLI and bindings
versions that used it in its state store and compares them at every probe.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from convosd import errors
from convosd.cli import check_bindings, check_version
from convosd.cli.models import CliVersion
from convosd.cli.versions import installed_bindings_version, keeps_unknown_app_data, semver_key
from convosd.client import Client
from tests.fakeconvos.network import FakeNetwork
from tests.rpc_harness import running_daemon

REPO = Path(__file__).resolve().parents[1]
NEW = "1.11.0-nightly.20260726.b649d1a"
OLD = "1.11.0-nightly.20260522.3d3b1e2"


def test_semver_precedence() -> None:
    ordered = ["1.10.0", OLD, NEW, "1.11.0", "1.11.1-dev.2", "1.11.1-dev.10", "1.11.1", "2.0.0"]
    keys = [semver_key(v) for v in ordered]
    assert None not in keys
    assert sorted(ordered, key=lambda v: semver_key(v) or ((0, 0, 0), (0, ()))) == ordered
    assert semver_key("garbage") is None


def test_version_and_bindings_rules() -> None:
    def v(text: str) -> CliVersion:
        return CliVersion.parse(f"@xmtp/convos-cli/{text} linux-x64 node-v22.23.3")

    check_version(v("0.10.15"), last_used="0.10.2")
    check_bindings(NEW, OLD)
    check_bindings(None, NEW)  # unknown now: cannot compare
    check_bindings(OLD, None)  # nothing recorded yet
    with pytest.raises(errors.CliUnavailable) as info:
        check_version(v("0.10.2"), last_used="0.10.15")
    assert "older than 0.10.15" in info.value.message
    assert "not opened" in info.value.message and "restore the state dir" in info.value.message
    with pytest.raises(errors.CliUnavailable) as info:
        check_bindings(OLD, NEW)
    assert f"@xmtp/node-bindings {OLD} of the configured CLI is older than {NEW}" in (
        info.value.message
    )
    assert "forward-only" in info.value.message


def fake_cli_package(root: Path, bindings: str, argv_log: Path) -> Path:
    """An npm-like layout whose ``bin/run.js`` runs the double and logs its argv."""
    cli = root / "node_modules" / "@xmtp" / "convos-cli"
    (cli / "bin").mkdir(parents=True)
    (cli / "package.json").write_text(json.dumps({"name": "@xmtp/convos-cli"}))
    set_bindings(root, bindings)
    run = cli / "bin" / "run.js"
    fake = REPO / "tests" / "fakeconvos" / "convos"
    run.write_text(
        "import os, sys\n"
        f"with open({str(argv_log)!r}, 'a') as log:\n"
        "    log.write(' '.join(sys.argv[1:2]) + '\\n')\n"
        f"os.execv(sys.executable, [sys.executable, {str(fake)!r}, *sys.argv[1:]])\n"
    )
    return run


def set_bindings(root: Path, version: str) -> None:
    bindings = root / "node_modules" / "@xmtp" / "node-bindings"
    bindings.mkdir(parents=True, exist_ok=True)
    (bindings / "package.json").write_text(json.dumps({"version": version}))


def test_bindings_found_the_way_node_resolves_them(tmp_path: Path) -> None:
    run = fake_cli_package(tmp_path / "pkg", NEW, tmp_path / "argv.log")
    assert installed_bindings_version((sys.executable, str(run))) == NEW
    link = tmp_path / "bin" / "convos"
    link.parent.mkdir()
    link.symlink_to(run)
    assert installed_bindings_version((str(link),)) == NEW
    assert installed_bindings_version((sys.executable, str(REPO / "tests" / "x.py"))) is None


def test_the_repository_pin_reports_its_bindings() -> None:
    cli = REPO / "node_modules" / "@xmtp" / "convos-cli" / "bin" / "run.js"
    if not cli.is_file():
        pytest.skip("node_modules not installed: run make setup")
    assert installed_bindings_version(("node", str(cli))) == NEW


def test_an_unpatched_cli_that_drops_app_data_is_told_apart(tmp_path: Path) -> None:
    run = fake_cli_package(tmp_path / "pkg", NEW, tmp_path / "argv.log")
    package = run.parent.parent
    manifest = json.loads((package / "package.json").read_text())
    (package / "package.json").write_text(json.dumps({**manifest, "version": "0.10.15"}))
    metadata = package / "dist" / "utils" / "metadata.js"
    metadata.parent.mkdir(parents=True)
    metadata.write_text("export function serializeAppData() {}\n")
    assert keeps_unknown_app_data((sys.executable, str(run))) is False
    metadata.write_text('const UNKNOWN_FIELDS = Symbol.for("convos-cli.appData.unknownFields");\n')
    assert keeps_unknown_app_data((sys.executable, str(run))) is True
    (package / "package.json").write_text(json.dumps({**manifest, "version": "0.10.22"}))
    assert keeps_unknown_app_data((sys.executable, str(run))) is None
    assert keeps_unknown_app_data((sys.executable, str(REPO / "tests" / "x.py"))) is None


def test_the_repository_cli_is_patched_to_keep_app_data() -> None:
    cli = REPO / "node_modules" / "@xmtp" / "convos-cli" / "bin" / "run.js"
    if not cli.is_file():
        pytest.skip("node_modules not installed: run make setup")
    assert keeps_unknown_app_data(("node", str(cli))) is True


async def test_home_used_by_newer_bindings_is_refused_and_never_opened(
    net: FakeNetwork, tmp_path: Path
) -> None:
    argv_log = tmp_path / "argv.log"
    run = fake_cli_package(tmp_path / "pkg", NEW, argv_log)
    cli = (sys.executable, str(run))
    state = tmp_path / "d"
    async with running_daemon(net, state, cli=cli) as daemon:
        async with await Client.connect(daemon.socket) as client:
            await client.call("conversation.create", {"name": "Team"})
            assert (await client.call("health"))["checks"]["cliVersion"] == "ok"
    # The operator goes back to older bindings: the home they migrated must not be opened.
    set_bindings(tmp_path / "pkg", OLD)
    argv_log.write_text("")
    async with running_daemon(net, state, cli=cli) as daemon:
        async with await Client.connect(daemon.socket) as client:
            health = await client.call("health")
            with pytest.raises(errors.ConvosdError) as info:
                await client.call("message.send", {"message": "hi"})
            status = await client.call("status")
    assert health["status"] == "down"
    problem = health["checks"]["cliVersion"]
    assert f"{OLD} of the configured CLI is older than {NEW}" in problem
    assert "not opened" in problem and "restore the state dir" in problem
    assert info.value.message == problem
    assert status["children"]["stream"]["state"] != "running"
    assert status["children"]["stream"]["lastError"] == problem
    assert set(argv_log.read_text().split()) == {"--version"}
