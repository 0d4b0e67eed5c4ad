"""A newcomer's first minutes: help texts, warnings at start, finding the daemon, errors
that say what to do next."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from convosd.config import ENV_KEYS

REPO = Path(__file__).resolve().parent.parent


async def run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_convosd_help_lists_environment_and_defaults() -> None:
    code, out, _ = await run(sys.executable, "-m", "convosd", "--help")
    assert code == 0
    for var in [*ENV_KEYS, "CONVOSD_CONFIG"]:
        assert var in out, var
    assert "[daemon] logLevel (default: info)" in out
    assert "[daemon] cliTimeoutS (default: 60)" in out
    assert "/tmp/convosd-$UID/convosd.sock" in out and "~/.local/state/convosd" in out


async def test_unknown_convosd_variable_is_warned_about_at_start(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CONVOSD_DMPOLICY": "open",  # misspelt: CONVOSD_DM_POLICY
        "CONVOSD_CLI": str(tmp_path / "no-convos"),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "convosd",
        "--no-uvloop",
        "--log-format",
        "json",
        "--state-dir",
        str(tmp_path / "state"),
        "--socket",
        str(tmp_path / "d.sock"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None
    seen: list[dict[str, object]] = []
    try:
        while not any(e.get("event") == "ready" for e in seen):
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, f"convosd exited before ready: {seen}"
            seen.append(json.loads(line))
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    warned = [e for e in seen if e.get("event") == "unknown_environment_variable"]
    assert warned and warned[0]["variable"] == "CONVOSD_DMPOLICY"
    assert warned[0]["nearest"] == "CONVOSD_DM_POLICY" and warned[0]["level"] == "warning"
