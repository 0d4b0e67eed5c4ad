"""The README's offline tour (scripts/tour.sh) works, works again, and fails fast."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import WAIT_S
from tests.xmtpnode.netns import open_namespace

REPO = Path(__file__).resolve().parent.parent
TOUR = REPO / "scripts" / "tour.sh"


#: The tour is a script of about fifteen steps, each a process start (convosd, convosctl,
#: the CLI double): at load 20 it once took more than one WAIT_S.
TOUR_S = 3 * WAIT_S


async def tour(tmp_path: Path, **env: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(TOUR),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
        env={**os.environ, "TOUR_DIR": str(tmp_path / "tour"), **env},
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), TOUR_S)
    finally:
        if proc.returncode is None:
            # Nothing of a tour that ran out of time outlives the test (its daemon included:
            # a process left running failed a later test with "subprocess is still running").
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.mark.timeout(2 * TOUR_S + WAIT_S)
async def test_the_tour_runs_and_runs_again(tmp_path: Path) -> None:
    """On the CLI double (forced: what the tour falls back to where no namespace can be made)."""
    for attempt in (1, 2):
        code, out = await tour(tmp_path, TOUR_CLI="double")
        assert code == 0, f"run {attempt}:\n{out}"
        assert "hi agent, it's Bob" in out  # the agent saw the second member's message
        assert "Bob sees: hello Bob" in out and "tour done on the CLI double" in out
    assert not (tmp_path / "tour" / "convosd.pid").exists()


@pytest.mark.timeout(TOUR_S + WAIT_S)
async def test_the_tour_runs_the_real_cli_where_a_namespace_can_be_made(tmp_path: Path) -> None:
    """The real convos CLI against the local XMTP node, the daemon and Bob both real; where no
    private network namespace can be made, the tour says it falls back to the double."""
    made = await asyncio.to_thread(open_namespace)
    if not isinstance(made, str):
        await asyncio.to_thread(made.close)
    code, out = await tour(tmp_path)
    assert code == 0, out
    assert "hi agent, it's Bob" in out and "Bob sees: hello Bob" in out
    if isinstance(made, str):
        assert "falling back to the CLI double" in out and "tour done on the CLI double" in out
    else:
        assert "start convosd on the real convos CLI (--env local)" in out, out
        assert "tour done on the REAL convos CLI and the local XMTP node" in out, out
        assert '"senderName": "Bob"' in out  # Bob's profile, decrypted by the daemon's CLI
    assert not (tmp_path / "tour" / "convosd.pid").exists()


async def test_the_tour_fails_fast_when_the_daemon_cannot_start(tmp_path: Path) -> None:
    started = time.monotonic()
    code, out = await tour(tmp_path, CONVOSD_MAX_MESSAGE_BYTES="999999999")
    assert code != 0 and "convosd exited at start" in out
    assert "maxMessageBytes" in out  # the daemon's own reason is shown
    assert time.monotonic() - started < 20
