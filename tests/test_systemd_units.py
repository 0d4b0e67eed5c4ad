"""The files in systemd/: `systemd-analyze verify` says nothing, `systemd-analyze security`
rates each unit at most 2.0, sysusers/tmpfiles parse, the example config loads.

systemd-analyze comes with Debian's systemd package (`make setup` installs it when missing);
without it these tests fail, they never skip. verify only warns (exit 0) on unknown keys and
many bad values in systemd 252, so any output at all fails. verify does not look up User= or
Group= on this host: the convosd user need not exist here, and no message is tolerated.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from convosd.config import load_settings
from convosd.conversation.instance import Instance
from tests.helpers import WAIT_S

SYSTEMD_DIR = Path(__file__).resolve().parent.parent / "systemd"
# The repo's own entry point stands in for /opt/convosd/.venv/bin/convosd: verify fails on an
# ExecStart= that is not an executable file on this host. Not resolved: .venv/bin/python is a
# symlink out of the venv.
CONVOSD = Path(sys.executable).parent / "convosd"
INSTALLED_CONVOSD = "/opt/convosd/.venv/bin/convosd"

# unit file -> (the name verified and rated, its ExecStart= as shipped)
UNITS = {
    "convosd.service": (
        "convosd.service",
        f"{INSTALLED_CONVOSD} --config /etc/convosd/convosd.toml",
    ),
    # A template is checked as an instance: systemd-analyze instantiates <dir>/convosd@demo.service
    # from <dir>/convosd@.service (checked: %i then expands to "demo" in ExecStart=).
    "convosd@.service": (
        "convosd@demo.service",
        f"{INSTALLED_CONVOSD} --config /etc/convosd/%i.toml",
    ),
}
MAX_EXPOSURE = 2.0
EXPOSURE_LINE = re.compile(r"Overall exposure level for (\S+): (\d+(?:\.\d+)?) ")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install Debian's systemd package (`make setup` does)")
    return path


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYSTEMD_")}
    env |= {"SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "cat", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=WAIT_S, check=False
    )


def staged(unit: str, directory: Path) -> Path:
    """Copy ``unit`` into ``directory`` with ExecStart= pointing at this repo's convosd."""
    _, exec_start = UNITS[unit]
    text = (SYSTEMD_DIR / unit).read_text()
    shipped = f"ExecStart={exec_start}\n"
    assert text.count(shipped) == 1, f"{unit}: expected exactly one line {shipped!r}"
    assert CONVOSD.is_file() and os.access(CONVOSD, os.X_OK), f"{CONVOSD} is not executable"
    target = directory / unit
    target.write_text(text.replace(shipped, f"ExecStart={CONVOSD} {exec_start.split(' ', 1)[1]}\n"))
    return directory / UNITS[unit][0]


def service_section(unit: str) -> dict[str, list[str]]:
    """The [Service] settings of a shipped unit: each key with its values in order (a key may
    repeat, e.g. SystemCallFilter=). The units use no line continuations."""
    settings: dict[str, list[str]] = {}
    section = None
    for line in (SYSTEMD_DIR / unit).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_verify_is_silent(unit: str, tmp_path: Path) -> None:
    path = staged(unit, tmp_path)
    result = run(tool("systemd-analyze"), "verify", str(path), cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), (
        f"systemd-analyze verify {path.name}: exit {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_verify_would_report_a_bad_key(unit: str, tmp_path: Path) -> None:
    """The check above can fail: the staged copy is really parsed (template included)."""
    path = staged(unit, tmp_path)
    template = tmp_path / unit
    template.write_text(template.read_text().replace("[Service]\n", "[Service]\nNoSuchKey=1\n"))
    result = run(tool("systemd-analyze"), "verify", str(path), cwd=tmp_path)
    assert "Unknown key 'NoSuchKey'" in result.stderr


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_security_exposure_at_most_2(unit: str, tmp_path: Path) -> None:
    path = staged(unit, tmp_path)
    threshold = str(round(MAX_EXPOSURE * 10))  # systemd counts exposure in tenths
    result = run(
        tool("systemd-analyze"),
        "security",
        "--offline=yes",
        f"--threshold={threshold}",
        "--no-pager",
        str(path),
        cwd=tmp_path,
    )
    found = EXPOSURE_LINE.findall(result.stdout)
    assert found, f"no exposure line in:\n{result.stdout}\n{result.stderr}"
    assert len(found) == 1 and found[0][0] == path.name, found
    exposure = float(found[0][1])
    assert exposure <= MAX_EXPOSURE, f"{path.name}: exposure {exposure}\n{result.stdout}"
    assert result.returncode == 0, result.stderr


def test_both_units_run_under_the_same_settings() -> None:
    """The template differs from convosd.service only in its per-instance paths."""
    single = service_section("convosd.service")
    template = service_section("convosd@.service")
    per_instance = {"ExecStart", "EnvironmentFile", "RuntimeDirectory", "StateDirectory"}
    assert {k: v for k, v in single.items() if k not in per_instance} == {
        k: v for k, v in template.items() if k not in per_instance
    }
    assert template["RuntimeDirectory"] == ["convosd/%i"]
    assert template["StateDirectory"] == ["convosd/%i"]
    assert template["EnvironmentFile"] == [
        "-/etc/convosd/convosd.env",
        "-/etc/convosd/%i.env",
    ]


def test_service_settings_the_daemon_relies_on() -> None:
    s = service_section("convosd.service")
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    # convosd stops its children itself; SIGKILL for all only after TimeoutStopSec.
    assert s["KillMode"] == ["mixed"]
    # V8's JIT needs writable+executable memory.
    assert "MemoryDenyWriteExecute" not in s
    # The children reach the XMTP network.
    assert s["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    # A stop takes shutdownGraceS for in-flight requests, up to 3 s to flush and close the
    # connections, then the children's stop grace (they stop together); 5 s to spare.
    grace = load_settings({}, environ={}).daemon.shutdown_grace_s
    child_stop = inspect.signature(Instance).parameters["stop_grace_s"].default
    assert float(s["TimeoutStopSec"][0]) >= grace + 3 + child_stop + 5


def entries(path: Path) -> dict[str, list[str]]:
    """/etc/passwd or /etc/group: name -> fields."""
    return {line.split(":")[0]: line.split(":") for line in path.read_text().splitlines()}


def sysusers(root: Path) -> subprocess.CompletedProcess[str]:
    """Apply convosd.sysusers.conf to an empty root (as a first boot would)."""
    (root / "etc").mkdir()
    conf = SYSTEMD_DIR / "convosd.sysusers.conf"
    return run(tool("systemd-sysusers"), f"--root={root}", str(conf), cwd=root)


def test_sysusers_creates_the_convosd_user(tmp_path: Path) -> None:
    result = sysusers(tmp_path)
    assert result.returncode == 0, result.stderr
    # systemd-sysusers reports each account it creates on stderr; nothing else may appear.
    for line in result.stderr.splitlines():
        assert line.startswith(("Creating group 'convosd' ", "Creating user 'convosd' ")), line
    users = entries(tmp_path / "etc/passwd")
    groups = entries(tmp_path / "etc/group")
    assert set(users) == {"convosd"} and set(groups) == {"convosd"}
    _, _, uid, gid, _, home, shell = users["convosd"]
    assert gid == groups["convosd"][2] and int(uid) < 1000
    assert (home, shell) == ("/", "/usr/sbin/nologin")


def test_tmpfiles_parses_against_the_sysusers_accounts(tmp_path: Path) -> None:
    assert sysusers(tmp_path).returncode == 0
    conf = SYSTEMD_DIR / "convosd.tmpfiles.conf"
    # --clean reads every line and resolves its user and group in the root's /etc/passwd but
    # changes nothing (no line has an age), so it needs no privileges.
    result = run(tool("systemd-tmpfiles"), f"--root={tmp_path}", "--clean", str(conf), cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    lines = {
        tuple(line.split())
        for line in conf.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert lines == {
        ("d", "/etc/convosd", "0755", "root", "root", "-"),
        ("d", "/run/convosd", "0750", "convosd", "convosd", "-"),
        ("d", "/var/lib/convosd", "0700", "convosd", "convosd", "-"),
    }


def test_example_config_loads() -> None:
    settings = load_settings({"config": str(SYSTEMD_DIR / "convosd.toml.example")}, environ={})
    daemon = settings.daemon
    assert daemon.socket_group == "convosd"
    assert daemon.socket is None and daemon.state_dir is None  # the units' directories
    assert daemon.cli == (
        "/opt/convosd/node_modules/.bin/node",
        "/opt/convosd/node_modules/@xmtp/convos-cli/bin/run.js",
    )
