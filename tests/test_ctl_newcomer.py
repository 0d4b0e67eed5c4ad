"""Issue 25 item 13, convosctl as a newcomer meets it: ``events`` reads to the end (or says
how to read on), and an error is readable without ``--json``."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from convosd.client import ConvosdClient
from tests.fakeconvos.network import FakeNetwork
from tests.rpc_harness import running_daemon

SENT = 150  # more than events.read's default page (100), which convosctl used to stop at


async def convosctl(socket: Path, *args: str) -> tuple[int, str, str]:
    """convosctl as a script runs it: stdout a pipe (so JSON lines), no --json."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "convosd.ctl",
        "--socket",
        str(socket),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def seqs(out: str) -> list[int]:
    return [json.loads(line)["seq"] for line in out.splitlines() if line.strip()]


async def test_events_reads_every_event_or_says_how_to_read_on(
    net: FakeNetwork, tmp_path: Path
) -> None:
    async with running_daemon(net, tmp_path / "d", send_rate_per_s=10_000.0) as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            await client.create(name="Many")
            started = time.monotonic()
            for i in range(SENT):
                await client.send(f"m{i}")
            last = (await client.read_events(after=0, limit=1)).last_seq
            assert last > SENT, time.monotonic() - started
        code, out, err = await convosctl(daemon.socket, "events", "--after", "0")
        assert code == 0, err
        assert seqs(out) == list(range(1, last + 1))
        assert err == ""
        code, out, err = await convosctl(daemon.socket, "events", "--after", "5", "--limit", "40")
        assert code == 0 and seqs(out) == list(range(6, 46))
        assert f"more events after #45 (the journal ends at #{last})" in err
        assert "convosctl events --after 45" in err
        # that command reads on from there, to the end
        code, out, _ = await convosctl(daemon.socket, "events", "--after", "45")
        assert seqs(out) == list(range(46, last + 1))
        code, out, err = await convosctl(daemon.socket, "events", "--limit", "0")
        assert code == 2 and "must be at least 1" in err


async def test_an_error_without_json_is_readable(net: FakeNetwork, tmp_path: Path) -> None:
    """stdout is a pipe, as in a script, and no --json: stderr is for a person (the kind, the
    message, the param at fault, the next step), not a JSON object."""
    async with running_daemon(net, tmp_path / "d") as daemon:
        code, _, err = await convosctl(
            daemon.socket, "call", "events.read", '{"after": -1, "limit": 5}'
        )
        assert code == 1
        lines = err.splitlines()
        assert not err.lstrip().startswith("{"), err
        assert lines[0] == "error: Invalid params (INVALID_PARAMS)"
        assert any(line.startswith("  after: ") for line in lines), err
        assert any(line.startswith("next: Fix the params") for line in lines), err
        # NOT_BOUND: the next step in convosctl's own terms
        code, _, err = await convosctl(daemon.socket, "send", "hi")
        assert code == 1 and err.startswith("error: ") and "(NOT_BOUND)" in err.splitlines()[0]
        assert "next: bind this instance first: `convosctl create [NAME]`" in err
        # with --json: the JSON object, as before
        code, _, err = await convosctl(daemon.socket, "--json", "send", "hi")
        assert code == 1 and json.loads(err)["data"]["kind"] == "NOT_BOUND"
