"""Test helper for the fake ``convos`` double (stdlib only).

    net = FakeNetwork(tmp_path / "net")
    alice = net.create_identity_home(tmp_path)
    out = net.run(alice, "conversations", "create", "--name", "G", "--json")

Every home gets its own identity; all homes that share ``net`` talk to each other.
See README.md beside this file for the fault switches and what the double does.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

EXECUTABLE = Path(__file__).with_name("convos")


class FakeNetwork:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.executable = str(EXECUTABLE)

    # ─── running the double ───

    def env(self, home: str | os.PathLike[str], **extra: str) -> dict[str, str]:
        """The environment a caller should give the double for ``home``."""
        env = {
            "FAKECONVOS_NETWORK": str(self.path),
            "CONVOS_HOME": str(home),
            "HOME": str(Path(home).parent),
            "PATH": _path(),
            "CONVOS_SKIP_NEW_VERSION_CHECK": "true",
            "OCLIF_COLUMNS": "80",
        }
        env.update(extra)
        return env

    def run(
        self,
        home: str | os.PathLike[str],
        *argv: str,
        timeout: float = 10,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.executable, *argv],
            env={**self.env(home), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def run_json(self, home: str | os.PathLike[str], *argv: str, timeout: float = 10) -> Any:
        """Run with --json, require exit 0, return the last JSON document on stdout."""
        args = list(argv)
        args.insert(args.index("--") if "--" in args else len(args), "--json")
        result = self.run(home, *args, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(
                f"convos {' '.join(argv)} failed ({result.returncode}):\n{result.stderr}"
            )
        text = result.stdout
        index = max(text.rfind("\n{"), text.rfind("\n["))
        return json.loads(text[index + 1 :])

    def spawn(
        self, home: str | os.PathLike[str], *argv: str, **kwargs: Any
    ) -> subprocess.Popen[str]:
        """Start a long-lived command in its own process group (kill with ``stop``)."""
        return subprocess.Popen(
            [self.executable, *argv],
            env=self.env(home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            **kwargs,
        )

    @staticmethod
    def stop(process: subprocess.Popen[str], sig: int = 9) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()

    def create_identity_home(self, tmpdir: str | os.PathLike[str], name: str | None = None) -> Path:
        """A fresh CONVOS_HOME with an identity in it (``identity create``)."""
        home = Path(tmpdir) / (name or f"home-{uuid.uuid4().hex[:8]}") / ".convos"
        home.parent.mkdir(parents=True, exist_ok=True)
        result = self.run(home, "identity", "create", "--json")
        if result.returncode != 0:
            raise AssertionError(result.stderr)
        return home

    # ─── fault switches ───

    @property
    def faults_file(self) -> Path:
        return self.path / "faults.json"

    def _edit_faults(self, edit: Any) -> list[dict[str, Any]]:
        with open(self.path / "faults.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                faults = json.loads(self.faults_file.read_text())
            except (OSError, ValueError):
                faults = []
            faults = edit(faults)
            tmp = self.path / f"faults.json.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(faults))
            os.replace(tmp, self.faults_file)
            return list(faults)

    def add_fault(
        self,
        kind: str,
        *,
        command: str | None = None,
        home: str | os.PathLike[str] | None = None,
        count: int | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        fault = {
            "id": uuid.uuid4().hex,
            "kind": kind,
            "command": command,
            "home": str(home) if home is not None else None,
            "count": count,
            **params,
        }
        self._edit_faults(lambda faults: [*faults, fault])
        return fault

    def faults(self) -> list[dict[str, Any]]:
        try:
            return list(json.loads(self.faults_file.read_text()))
        except (OSError, ValueError):
            return []

    def clear_faults(self) -> None:
        self._edit_faults(lambda _faults: [])

    # ─── observing the network ───

    def streams(self, env: str = "dev") -> list[dict[str, Any]]:
        """Live listeners: ``conversation stream`` and ``process-join-requests --watch``."""
        path = self.path / f"{env}.sqlite3"
        if not path.exists():
            return []
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute("SELECT * FROM streams")]
        return [r for r in rows if _alive(r["pid"])]

    def wait_for_stream(self, pid: int, within_s: float = 10.0, env: str = "dev") -> bool:
        """True once process ``pid`` is listening (its stream started), False on timeout."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if any(r["pid"] == pid for r in self.streams(env)):
                return True
            time.sleep(0.01)
        return False


def _path() -> str:
    """$PATH with this interpreter's directory first, so ``env python3`` skips version shims."""
    path = os.environ.get("PATH", "/usr/bin:/bin")
    here = os.path.dirname(sys.executable)
    if os.access(os.path.join(here, "python3"), os.X_OK):
        return os.pathsep.join([here, path])
    return path


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False
