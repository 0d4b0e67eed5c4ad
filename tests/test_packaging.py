"""Issue 25 item 13: the add-ons install from the repository as the README says.

The wheel is built from a copy of the sources (so nothing is written into the checkout),
without build isolation (the dev venv has setuptools and wheel: offline), and installed
with ``--no-deps`` into a fresh venv that borrows the dev venv's third-party packages
through a ``.pth`` line (only a path: the dev venv's editable convosd is not active
there). Every console script then has to start from the wheel and print its help.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = (
    "convosd",
    "convosctl",
    "convosd-mcp",
    "convosd-webhook",
    "convosd-gateway",
    "convosd-echo-agent",
)
TIMEOUT_S = 300  # a generous bound for a build or an install on a busy 2-core machine


def run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{argv}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
@pytest.mark.timeout(4 * TIMEOUT_S)
def test_the_wheel_holds_the_add_ons_and_their_commands_start(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("convosd", "contrib"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    dist = tmp_path / "dist"
    run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--disable-pip-version-check", "-w", dist, ".", cwd=source,
    )  # fmt: skip
    (wheel,) = dist.glob("convosd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "contrib/socket_path.py",
        "contrib/mcp/__main__.py",
        "contrib/webhook/__main__.py",
        "contrib/gateway/__main__.py",
        "contrib/echo_agent/echo_agent.py",
        "convosd/cli/worker.mjs",
    ):
        assert module in names, module
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(
        run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
        ).strip()
    )
    run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
        "--no-index", "--disable-pip-version-check", wheel, cwd=tmp_path,
    )  # fmt: skip
    # the third-party packages (pydantic, mcp, ...) from the dev venv, as a path only
    (site / "dev-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    where = run(
        python, "-c", "import contrib, convosd; print(contrib.__file__, convosd.__file__)",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert all(Path(f).is_relative_to(site) for f in where.split()), where
    for script in SCRIPTS:
        path = venv / "bin" / script
        assert path.exists(), script
        shown = run(path, "--help", cwd=tmp_path, env=env)
        assert shown.startswith("usage:"), (script, shown)


def test_the_echo_agent_starts_as_its_readme_says() -> None:
    """contrib/echo_agent/README.md: ``.venv/bin/python contrib/echo_agent/echo_agent.py``
    from the checkout (it used to fail: No module named 'contrib')."""
    readme = (REPO / "contrib" / "echo_agent" / "README.md").read_text()
    assert ".venv/bin/python contrib/echo_agent/echo_agent.py \\" in readme
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    shown = run(
        REPO / ".venv" / "bin" / "python", "contrib/echo_agent/echo_agent.py", "--help",
        cwd=REPO, env=env,
    )  # fmt: skip
    assert shown.startswith("usage: echo_agent")
    shown = run(REPO / ".venv" / "bin" / "convosd-echo-agent", "--help", cwd=REPO, env=env)
    assert "--state-file" in shown


def test_the_readme_tour_snippet_sets_tour_dir_before_using_it(tmp_path: Path) -> None:
    """The step-by-step tour in the README used ``$TOUR_DIR`` without setting it: pasted into
    a shell, the network went to ``/net`` and the state to ``/state``. Its lines up to the
    daemon's start, run in a shell without TOUR_DIR, must set up paths under the default."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("What it does on the double, step by step")
    snippet = readme[start:].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = snippet.splitlines()
    first_use = next(i for i, line in enumerate(lines) if "TOUR_DIR" in line)
    assert lines[first_use].startswith("TOUR_DIR=${TOUR_DIR:-"), lines[first_use]
    setup = "\n".join(line for line in lines if line.startswith(("TOUR_DIR=", "export ")))
    uid = os.getuid()
    default = f"/tmp/convosd-tour-{uid}"
    script = f'{setup}\necho "$FAKECONVOS_NETWORK|$CONVOSD_SOCKET|$(command -v convosctl)"'
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    shown = run("bash", "-c", script, cwd=REPO, env=env).strip()
    network, socket, ctl = shown.split("|")
    assert network == f"{default}/net" and socket == f"{default}/convosd.sock"
    assert ctl == str(REPO / ".venv" / "bin" / "convosctl")
