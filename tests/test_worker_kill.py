"""Issue 21's proof on the CLI double: a worker SIGKILL during 1,000 inbound messages/s loses and
duplicates nothing (``cliHost = "single"``: the stream and the join-request watcher are roles of
the warm worker, and a crash takes both; tests/worker_kill.py says how it runs).

The default run is short: 6,000 messages at 1,000/s, the worker's process group SIGKILLed once,
a third of the way in (the resumed stream then carries the rest live). ``WORKER_KILL_MESSAGES``
and ``WORKER_KILL_KILLS`` make it longer (for example 60,000 and 5: a kill every 8.6 s of a 60 s
burst); the test's own timeout grows with the burst. ``.venv/bin/python -m bench.worker_kill``
prints the same counts.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.worker_kill import burst_with_kills

MESSAGES = int(os.environ.get("WORKER_KILL_MESSAGES", "6000"))
KILLS = int(os.environ.get("WORKER_KILL_KILLS", "1"))
RATE = 1000.0


@pytest.mark.timeout(300 + 3 * MESSAGES / RATE)
async def test_a_worker_killed_during_a_1000_per_s_burst_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    run = await burst_with_kills(tmp_path, messages=MESSAGES, rate=RATE, kills=KILLS)
    summary = run.summary()
    print(summary)  # the counts, for -s
    assert run.sent >= MESSAGES, summary
    assert len(run.kills) == KILLS, summary
    # each kill came mid-burst, and the burst went on after each resume
    assert all(kill.resumed_at_sent < run.sent for kill in run.kills), summary
    assert run.lost == 0, summary
    assert run.duplicates == 0, summary
    assert run.out_of_order == 0, summary
    assert run.journaled == run.sent, summary
    assert run.worker_restarts >= KILLS, summary
    # the resumed stream role carried lines, not only the backfill
    assert run.live_after_resume > 0, summary
