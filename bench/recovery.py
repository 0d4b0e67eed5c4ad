"""Recovery after SIGKILL of the stream child, against the CLI double.

    .venv/bin/python -m bench.recovery [--kills 5]

A member keeps sending; the stream child is SIGKILLed; measured per kill: time until the
restart is issued (a new pid; the initial backoff is 0.5 s +-20 %), and time until the next
event is journaled (the restarted stream's backfill recovers what was sent meanwhile).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog
import uvloop

from convosd.cli import CliSetup, ConvosCli
from convosd.config import Paths, load_settings
from convosd.conversation.bound import STREAM
from convosd.conversation.instance import Instance
from convosd.storage.journal import Journal
from convosd.storage.store import Store
from convosd.supervisor.state import ChildState
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import member_count


def adapter(net: FakeNetwork, state: Path) -> ConvosCli:
    setup = CliSetup(
        (sys.executable, net.executable), "dev", state / "convos", state, ("FAKECONVOS_*",)
    )
    setup.prepare()
    return ConvosCli(setup, environ={"PATH": "/usr/bin:/bin", "FAKECONVOS_NETWORK": str(net.path)})


async def wait_until(predicate: object, step: float = 0.002, limit: float = 30.0) -> None:
    deadline = time.perf_counter() + limit
    while not predicate():  # type: ignore[operator]
        if time.perf_counter() > deadline:
            raise TimeoutError
        await asyncio.sleep(step)


async def run(kills: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        net = FakeNetwork(root / "net")
        state = root / "me"
        cli = adapter(net, state)
        base = load_settings({}, environ={})
        settings = base.model_copy(update={"convos": base.convos.model_copy(update={"env": "dev"})})
        store = Store.open(state)
        paths = Paths(socket=state / "s", state_dir=state, convos_home=state / "convos")
        me = Instance(settings, paths, store=store, journal=Journal(store), cli=cli)
        created = await cli.create(name="bench")
        await me.start()
        await me.bind(created.conversation_id, inbox_id=created.inbox_id, how="created")
        bob = adapter(net, root / "bob")
        await bob.join(created.invite.slug, no_wait=True)
        await wait_until(lambda: member_count(me) == 2)
        stop = asyncio.Event()

        async def sender() -> None:
            i = 0
            while not stop.is_set():
                await bob.send_text(created.conversation_id, f"m{i}")
                i += 1

        task = asyncio.create_task(sender())
        restart, next_event = [], []
        stream = me.children[STREAM]
        for _ in range(kills):
            await wait_until(lambda: stream.status.state is ChildState.RUNNING)
            await wait_until(lambda: me.journal.last_seq > 0)
            old, seq = stream.pid, me.journal.last_seq
            assert old is not None
            t0 = time.perf_counter()
            os.killpg(old, signal.SIGKILL)
            await wait_until(lambda o=old: stream.pid not in (None, o))
            restart.append(time.perf_counter() - t0)
            seq = me.journal.last_seq
            await wait_until(lambda s=seq: me.journal.last_seq > s)
            next_event.append(time.perf_counter() - t0)
            stream.backoff.reset()  # each kill measures the first restart, not a loop
        stop.set()
        await task
        await me.close()
        store.close()
        return restart, next_event


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    restart, next_event = uvloop.run(run(args.kills))
    print(f"SIGKILL of the stream child, {args.kills} times (initial backoff 0.5 s +-20 %)")
    for name, values in (("restart issued", restart), ("next event journaled", next_event)):
        print(
            f"{name:<22} median {statistics.median(values) * 1000:7.0f} ms"
            f"   max {max(values) * 1000:7.0f} ms"
        )


if __name__ == "__main__":
    main()
