"""The warm worker SIGKILLed while a member writes 1,000 messages/s (``cliHost = "single"``).

Used by ``tests/test_worker_kill.py`` (a short run in the default suite, a long one on demand)
and ``bench/worker_kill.py`` (the counts printed). A daemon on the CLI double, in the caller's
event loop, with the stream and the join-request watcher as roles of its warm worker, bound to a
conversation with one member. A separate process (``WRITER``) sends ``messages`` texts as that
member at ``rate`` per second straight into the double's network, as another client would.
Meanwhile the worker's process group (the worker and the roles the double runs as its children)
is SIGKILLed ``kills`` times, as a crash, at even steps of the burst (leaving a step after the
last kill, so the resumed stream has lines to carry); each kill waits until the one before it
has resumed (both roles running in a new worker). The burst goes on past ``messages`` until the
last kill has resumed and 500 more were sent (on a loaded machine the resume may come late). A
reader follows the journal (``events.read``) as it grows. Counted: messages sent and the rate
reached, journaled (distinct), duplicates, lost, out of order (journaled after a later message
of the same sender: there is one sender), and per kill: how many messages were sent by then, how
long until both roles ran in a new worker (*resume*), and how long until the journal held every
message sent before the kill (*caught up*: the backfill's work); and how many lines the stream
read after the last resume (*live after resume*: the resumed stream role carried them, not only
the backfill).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convosd.client import Client
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, admitted, eventually, eventually_async, process_gone
from tests.rpc_harness import member_cli, running_daemon

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "burst "
#: the writer says how far it is every this many messages
PROGRESS_EVERY = 50
#: the burst goes on until the stream has resumed and this many more messages were sent
LIVE_AFTER = 500
#: kills a few seconds apart are a crash loop to the roles' backoff (0.5 s doubling, reset
#: after 30 s up), which settles at its cap (60 s, +20 % jitter): a resume may take that long
RESUME_WAIT_S = WAIT_S + 72.0
WRITER = """
import os, sys, time
sys.path.insert(0, {root!r})
from tests.fakeconvos.fc_store import CT_TEXT, Store
store = Store({net!r}, "dev")
n, rate, every, hold = {n}, {rate}, {every}, {hold!r}
start = time.monotonic()
i = 0
# n messages, and on while the hold file is there (at most 10 n)
while i < n or (os.path.exists(hold) and i < 10 * n):
    due = start + i / rate
    pause = due - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    store.send({conv!r}, {inbox!r}, CT_TEXT, {{"text": {prefix!r} + str(i)}})
    i += 1
    if i % every == 0:
        print("sent", i, flush=True)
print("done", i, time.monotonic() - start, flush=True)
"""


@dataclass
class Kill:
    #: messages the writer had sent when the worker was killed
    at_sent: int
    worker_pid: int
    #: kill → both roles running in a new worker
    resume_s: float | None = None
    #: kill → every message sent before the kill journaled
    caught_up_s: float | None = None
    #: lines the stream had read when it resumed, and messages sent by then
    lines: int = 0
    resumed_at_sent: int = 0


@dataclass
class KillRun:
    sent: int = 0
    send_s: float = 0.0
    journaled: int = 0
    duplicates: int = 0
    lost: int = 0
    out_of_order: int = 0
    #: the first messages journaled after a later one (what the count is made of)
    late: list[int] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    #: last message sent → every message journaled (or the wait given up)
    settle_s: float = 0.0
    worker_restarts: int = 0
    #: commands run one-shot (no worker to take them)
    one_shot_fallbacks: int = 0
    #: lines the stream read after the last kill's resume
    live_after_resume: int = 0
    role_restarts: dict[str, int] = field(default_factory=dict)
    #: the machine's load average (1 min) at the start and the end
    load: tuple[float, float] = (0.0, 0.0)
    catching_up: list[asyncio.Task[None]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "send_rate_per_s": round(self.sent / self.send_s) if self.send_s else None,
            "journaled": self.journaled,
            "duplicates": self.duplicates,
            "lost": self.lost,
            "out_of_order": self.out_of_order,
            "late": self.late,
            "kills": len(self.kills),
            "kills_at_sent": [k.at_sent for k in self.kills],
            "resume_s": [_round(k.resume_s) for k in self.kills],
            "resumed_at_sent": [k.resumed_at_sent for k in self.kills],
            "caught_up_s": [_round(k.caught_up_s) for k in self.kills],
            "settle_s": round(self.settle_s, 2),
            "live_after_resume": self.live_after_resume,
            "worker_restarts": self.worker_restarts,
            "one_shot_fallbacks": self.one_shot_fallbacks,
            "role_restarts": self.role_restarts,
            "load_average": self.load,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def load_average() -> float:
    return round(os.getloadavg()[0], 1)


def stream_lines(instance: Any) -> int:
    """Lines the bound conversation's stream has read (its ingest's count)."""
    conversation = instance.conversation
    if conversation is None or conversation.ingest is None:
        return 0
    return int(conversation.ingest.stats.lines)


class JournalFollower:
    """Reads the journal's ``message`` events as they are written, in seq order."""

    def __init__(self, client: Client, after: int) -> None:
        self.client = client
        self.after = after
        self.order: list[int] = []  # the burst's indexes, in journal order
        self.have: set[int] = set()
        self.changed = asyncio.Event()

    async def follow(self) -> None:
        while True:
            page = await self.client.call(
                "events.read", {"after": self.after, "limit": 1000, "types": ["message"]}
            )
            events = page["events"]
            for event in events:
                content = event.get("content")
                if isinstance(content, str) and content.startswith(PREFIX):
                    index = int(content[len(PREFIX) :])
                    self.order.append(index)
                    self.have.add(index)
            if events:
                self.after = events[-1]["seq"]
                self.changed.set()
            else:
                await asyncio.sleep(0.02)

    def holds_first(self, count: int) -> bool:
        """Every message of index < ``count`` is journaled."""
        return all(i in self.have for i in range(count))


async def _roles_in_new_worker(client: Client, old: int) -> bool:
    status = await client.call("status")
    worker = (status["cli"]["worker"] or {}).get("pid")
    return worker not in (None, old) and all(
        c["state"] == "running" and c["pid"] == worker for c in status["children"].values()
    )


async def burst_with_kills(root: Path, *, messages: int, rate: float, kills: int) -> KillRun:
    """Run the burst in ``root`` (a fresh directory) with ``kills`` worker kills."""
    run = KillRun(load=(load_average(), 0.0))
    net = FakeNetwork(root / "net")
    hold = root / "hold"
    hold.touch()
    async with running_daemon(
        net,
        root / "me",
        convos={"dm_policy": "open"},
        cli_transport="warm",
        cli_host="single",
        backfill_interval_s=60.0,  # the default: resuming is the on-start backfill's work
    ) as daemon:
        client = await daemon.client()
        writer: asyncio.subprocess.Process | None = None
        following: asyncio.Task[None] | None = None
        try:
            created = await client.call("conversation.create", {"name": "Burst"})
            member_state = root / "member"
            await member_cli(net, member_state).join(created["inviteSlug"], no_wait=True)
            if not await eventually(lambda: bool(admitted(daemon.instance))):
                raise AssertionError("the watcher role never admitted the member")
            status = await client.call("status")
            worker = status["cli"]["worker"]["pid"]
            if worker is None or status["children"]["stream"]["pid"] != worker:
                raise AssertionError(f"the stream is not a role of the worker: {status}")
            # the burst's messages are new ones: follow from the journal's end
            last = await client.call("events.read", {"after": 0, "limit": 1})
            follower = JournalFollower(client, int(last["lastSeq"] or 0))
            following = asyncio.create_task(follower.follow())
            script = WRITER.format(
                root=str(ROOT),
                net=str(net.path),
                conv=created["conversationId"],
                inbox=net.inbox_id(member_state / "convos"),
                n=messages,
                rate=rate,
                every=PROGRESS_EVERY,
                prefix=PREFIX,
                hold=str(hold),
            )
            writer = await asyncio.create_subprocess_exec(
                sys.executable, "-c", script, stdout=subprocess.PIPE, start_new_session=True
            )
            assert writer.stdout is not None
            steps = [messages * (k + 1) // (kills + 2) for k in range(kills)]
            killing: asyncio.Task[None] | None = None
            while line := await writer.stdout.readline():
                word, count, *rest = line.decode().split()
                run.sent = int(count)
                if word == "done":
                    run.send_s = float(rest[0])
                    break
                if steps and run.sent >= steps[0] and (killing is None or killing.done()):
                    steps.pop(0)
                    if killing is not None:
                        await killing  # raises what the kill before it found
                    killing = asyncio.create_task(
                        _kill(client, follower, run, lambda: stream_lines(daemon.instance))
                    )
                elif not steps and hold.exists() and _resumed(killing, run):
                    hold.unlink()  # the last kill resumed under traffic: the burst may end
            sent_at = time.monotonic()
            if await writer.wait() != 0:
                raise AssertionError(f"the writer exited with {writer.returncode}")
            if killing is not None:
                await killing
            await eventually_async(
                lambda: _quiet(follower, run.sent), within_s=max(WAIT_S, run.sent / 200)
            )
            run.settle_s = time.monotonic() - sent_at
            await asyncio.gather(*run.catching_up)
            if run.kills:
                run.live_after_resume = stream_lines(daemon.instance) - run.kills[-1].lines
            status = await client.call("status")
            run.worker_restarts = status["cli"]["worker"]["restarts"]
            run.one_shot_fallbacks = status["cli"]["worker"]["fallbacks"]
            run.role_restarts = {n: c["restarts"] for n, c in status["children"].items()}
        finally:
            for task in run.catching_up:
                task.cancel()
            if following is not None:
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await following
            if writer is not None and writer.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(writer.pid, signal.SIGKILL)
                await writer.wait()
            await client.close()
    order = follower.order
    run.journaled = len(follower.have)
    run.duplicates = len(order) - run.journaled
    run.lost = run.sent - len(follower.have & set(range(run.sent)))
    highest = -1
    for index in order:
        if index < highest:
            run.out_of_order += 1
            if len(run.late) < 20:
                run.late.append(index)
        highest = max(highest, index)
    run.load = (run.load[0], load_average())
    return run


async def _quiet(follower: JournalFollower, messages: int) -> bool:
    """Every message journaled (then one more read: a duplicate would come with it)."""
    if len(follower.have) < messages:
        return False
    follower.changed.clear()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(follower.changed.wait(), 0.5)
    return True


def _resumed(killing: asyncio.Task[None] | None, run: KillRun) -> bool:
    """The last kill resumed (or failed) and LIVE_AFTER messages were sent since."""
    if killing is None:
        return True
    if not killing.done():
        return False
    if killing.exception() is not None:
        return True
    return run.sent >= run.kills[-1].resumed_at_sent + LIVE_AFTER


async def _kill(
    client: Client, follower: JournalFollower, run: KillRun, lines: Callable[[], int]
) -> None:
    """SIGKILL the worker's process group, then time its resume and the catch-up."""
    worker = (await client.call("status"))["cli"]["worker"]["pid"]
    if worker is None:
        raise AssertionError("no worker to kill")
    kill = Kill(at_sent=run.sent, worker_pid=worker)
    run.kills.append(kill)
    killed = time.monotonic()
    os.killpg(worker, signal.SIGKILL)  # a crash: the worker and every role it hosts
    if not await eventually(lambda: process_gone(worker)):
        raise AssertionError(f"the worker {worker} outlived its SIGKILL")
    if not await eventually_async(lambda: _roles_in_new_worker(client, worker), RESUME_WAIT_S):
        raise AssertionError("the roles did not resume in a new worker")
    kill.resume_s = time.monotonic() - killed
    kill.lines = lines()
    kill.resumed_at_sent = run.sent
    # the catch-up is timed on the side: the next kill waits for the resume only
    run.catching_up.append(asyncio.create_task(_caught_up(follower, kill, killed)))


async def _caught_up(follower: JournalFollower, kill: Kill, killed: float) -> None:
    async def check() -> bool:
        return follower.holds_first(kill.at_sent)

    if await eventually_async(check):
        kill.caught_up_s = time.monotonic() - killed
