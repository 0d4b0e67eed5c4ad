"""The container example (contrib/k8s) and the skill doc (contrib/skills) agree with the code.

No container engine and no YAML parser here: the Dockerfile's instructions and the key
lines of deployment.yaml are read as text, and what can be run is run (the probe commands
in sh, the config through convosd's own loader).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from convosd.config import load_settings
from convosd.ctl.parser import build_parser
from tests.helpers import WAIT_S

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "contrib" / "k8s"
LIVENESS = ["sh", "-c", "convosctl health >/dev/null; test $? -le 1"]


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined."""
    text = (K8S / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions():
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value.replace("$PATH", env.get("PATH", "$PATH"))
    return env


def one(word: str) -> str:
    (value,) = [rest for w, rest in instructions() if w == word]
    return value


def deployment_lines() -> list[str]:
    return (K8S / "deployment.yaml").read_text().splitlines()


def block(name: str) -> list[str]:
    """The lines nested under the first ``name:`` key (by indentation)."""
    lines = deployment_lines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{name}:"))
    indent = len(lines[start]) - len(lines[start].lstrip())
    nested = []
    for line in lines[start + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        nested.append(line)
    return nested


def probe_command(name: str) -> list[str]:
    (line,) = [line for line in block(name) if line.strip().startswith("command:")]
    command: list[str] = json.loads(line.split("command:", 1)[1])
    return command


def pairs(name: str, key: str) -> dict[str, str]:
    """``- name: N`` items under ``name`` whose next line is ``key: V``, as {N: V}."""
    lines = block(name)
    found = {}
    for i, line in enumerate(lines):
        match = re.match(r"\s*- name: (\S+)$", line)
        if match and i + 1 < len(lines) and lines[i + 1].strip().startswith(f"{key}:"):
            found[match.group(1)] = lines[i + 1].split(f"{key}:", 1)[1].strip()
    return found


def container_env() -> dict[str, str]:
    return pairs("env", "value")


def test_dockerfile_base_user_and_entrypoint() -> None:
    assert one("FROM") == "debian:12-slim"
    run = " ".join(rest for word, rest in instructions() if word == "RUN")
    assert "python3 python3-venv" in run
    # Debian's npm only installs: Node 22 is the lock file's node-linux-<arch>, checked, and
    # the system's Node is gone before the probe runs the CLI.
    assert "install -y --no-install-recommends nodejs npm" in run
    assert "node_modules/.bin/node --version | grep -q '^v22\\.'" in run
    assert run.index("apt-get purge -y --auto-remove nodejs npm") < run.index("identity list")
    # the steps of `make setup`, and the CLI probe the README describes
    assert "pip install --quiet -c constraints.txt ." in run
    assert "npm ci" in run and "identity list --json" in run
    for word, rest in instructions():
        if word == "COPY":
            for source in rest.split()[:-1]:
                assert (REPO / source).exists(), source
    assert one("USER") == "10001:10001"
    assert "--uid 10001" in run
    assert json.loads(one("ENTRYPOINT")) == ["/usr/bin/tini", "--"]
    assert json.loads(one("CMD")) == ["convosd"]
    healthcheck = one("HEALTHCHECK")
    assert json.loads(healthcheck.split("CMD", 1)[1]) == LIVENESS


def test_the_cli_path_is_the_pinned_one() -> None:
    env = image_env()
    node, script = shlex.split(env["CONVOSD_CLI"])
    assert node == "/opt/convosd/node_modules/.bin/node"
    workdir = one("WORKDIR")
    makefile = (REPO / "Makefile").read_text()
    pinned = re.search(r"^CONVOS\s*:=\s*(\S+)", makefile, re.M)
    assert pinned is not None
    assert script == f"{workdir}/{pinned.group(1)}"
    assert env["PATH"].startswith(f"{workdir}/.venv/bin:")


def test_volume_mount_is_the_state_dir() -> None:
    env = image_env()
    (volume,) = json.loads(one("VOLUME"))
    state_dir = env["CONVOSD_STATE_DIR"]
    # a subdirectory of the volume: convosd creates it and owns it (it chmods it to 0700)
    assert Path(state_dir).parent == Path(volume)
    mounts = pairs("volumeMounts", "mountPath")
    assert mounts["state"] == volume
    assert pairs("volumes", "persistentVolumeClaim") == {"state": ""}
    assert "claimName: convosd-alice-state" in "\n".join(block("volumes"))
    deployed = container_env()
    assert deployed["CONVOSD_STATE_DIR"] == state_dir
    assert deployed["CONVOSD_SOCKET"] == env["CONVOSD_SOCKET"]
    assert mounts["run"] == str(Path(env["CONVOSD_SOCKET"]).parent)


def test_deployment_shape() -> None:
    lines = [line.split("#", 1)[0].rstrip() for line in deployment_lines()]
    assert "kind: Deployment" in lines and "kind: PersistentVolumeClaim" in lines
    assert "  replicas: 1" in lines
    assert "    type: Recreate" in lines
    security = "\n".join(block("securityContext"))
    user = one("USER").split(":")[0]
    assert f"runAsUser: {user}" in security and "runAsNonRoot: true" in security
    assert f"fsGroup: {user}" in security


def test_probe_commands() -> None:
    assert probe_command("startupProbe") == LIVENESS
    assert probe_command("livenessProbe") == LIVENESS
    assert probe_command("readinessProbe") == ["convosctl", "health"]


@pytest.mark.parametrize(
    ("health_exit", "live", "ready"), [(0, 0, 0), (1, 0, 1), (2, 1, 2), (3, 1, 3)]
)
def test_probes_pass_and_fail_on_the_right_exit_codes(
    tmp_path: Path, health_exit: int, live: int, ready: int
) -> None:
    """Run the probe commands with a ``convosctl`` that exits like ``health`` would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "convosctl"
    fake.write_text(f'#!/bin/sh\n[ "$1" = health ] || exit 9\necho "{{}}"\nexit {health_exit}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for name, expected in (("livenessProbe", live), ("readinessProbe", ready)):
        done = subprocess.run(probe_command(name), env=env, capture_output=True, timeout=WAIT_S)
        assert done.returncode == expected, name


def test_liveness_fails_when_the_daemon_is_unreachable(tmp_path: Path) -> None:
    """The real convosctl: no daemon on the socket → exit 3 → the liveness probe fails."""
    venv_bin = str(REPO / ".venv" / "bin")
    env = {
        **os.environ,
        "PATH": f"{venv_bin}:{os.environ['PATH']}",
        "CONVOSD_SOCKET": str(tmp_path / "none.sock"),
    }
    assert subprocess.run(LIVENESS, env=env, capture_output=True, timeout=WAIT_S).returncode == 1


def test_configmap_and_image_env_load(tmp_path: Path) -> None:
    lines = block("config.toml")
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    config = tmp_path / "config.toml"
    config.write_text("\n".join(line[indent:] for line in lines) + "\n")
    env = {k: v for k, v in image_env().items() if k.startswith("CONVOSD_")}
    env.update(container_env())
    env["CONVOSD_CONFIG"] = str(config)
    assert container_env()["CONVOSD_CONFIG"] == "/etc/convosd/config.toml"
    settings = load_settings({}, environ=env)
    assert settings.convos.env == "production" and settings.convos.dm_policy == "pairing"
    assert settings.daemon.state_dir == Path("/var/lib/convosd/state")
    assert settings.daemon.log_format == "json"
    assert settings.daemon.cli == tuple(shlex.split(env["CONVOSD_CLI"]))
    assert "CONVOS_API_KEY" in settings.daemon.cli_env_passthrough


def test_skill_doc_front_matter_and_commands() -> None:
    text = (REPO / "contrib" / "skills" / "convosctl.md").read_text()
    front = text.split("---\n")[1]
    assert re.search(r"^name: convosctl$", front, re.M)
    assert re.search(r"^description: \S", front, re.M)
    assert re.search(r"^read_when:\n  - \S", front, re.M)
    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    assert commands.choices is not None
    for command in commands.choices:
        assert f"convosctl {command}" in text or f"`{command}`" in text, command
    for kind in ("BUSY", "retryAfterS", "NOT_BOUND", "ALREADY_BOUND", "EVENTS_EXPIRED"):
        assert kind in text
    assert "convosctl pairing approve CODE" in text and "pairing_requested" in text
