"""Shared test helpers: waiting on conditions with a bound, never a bare sleep.

How long a test waits is :data:`WAIT_S`, one generous bound for everything that must happen
(a condition, a subprocess, a CLI call, an answer), scaled by ``CONVOSD_TEST_PATIENCE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from convosd.conversation.instance import Instance


def _patience() -> float:
    raw = os.environ.get("CONVOSD_TEST_PATIENCE", "1")
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise RuntimeError(f"CONVOSD_TEST_PATIENCE={raw!r}: a positive number (1 = default)")
    return value


#: How much slower than usual the tests allow the machine to be. The bounds below already
#: fit a busy 2-core machine (load average 20, a second suite beside it, where a CLI
#: double's process takes seconds to start); ``CONVOSD_TEST_PATIENCE=3`` triples them, and
#: the per-test timeout with them (tests/conftest.py).
PATIENCE = _patience()
#: How long a test waits for something that must happen: a condition, a subprocess, a CLI
#: call, an answer. Generous, since the wait ends as soon as it happens; a test that needs
#: something to be fast is a benchmark (bench/). The per-test timeout (pyproject.toml,
#: 300 s) stays well above it, so a wait that fails says what it waited for.
WAIT_S = 60.0 * PATIENCE


async def eventually(predicate: Callable[[], bool], within_s: float = WAIT_S) -> bool:
    """Poll ``predicate`` (a condition outside this process: a file, /proc) until true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not predicate():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def eventually_async(
    check: Callable[[], Awaitable[bool]], within_s: float = WAIT_S, pause_s: float = 0.02
) -> bool:
    """Poll an async ``check`` (a CLI call, an RPC) until true, bounded in time, not in calls:
    how many calls fit in a second depends on the CLI transport (warm or one-shot)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await check():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(pause_s)
    return True


def eventually_sync(predicate: Callable[[], bool], within_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def process_gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie counts as gone: it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        # gone before the open, or reaped between the open and the read (ESRCH)
        return True


def cli_command_processes(words: tuple[str, ...], mark: str) -> list[int]:
    """The live processes running the CLI double's command ``words`` (``("conversation",
    "stream")``) with an argument containing ``mark`` (a conversation id): a separate child,
    or a role of the warm worker (the double runs each role as a process of its own)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().decode("utf-8", "replace").split("\0")
        except OSError:
            continue
        at = next((i for i in range(len(argv)) if tuple(argv[i : i + len(words)]) == words), None)
        if (
            at is not None
            and any(mark in arg for arg in argv[at:])
            and not process_gone(int(entry))
        ):
            found.append(int(entry))
    return found


def examples(default: int) -> int:
    """Hypothesis examples per fuzz test; ``FUZZ_EXAMPLES=N`` runs the long fuzz."""
    return int(os.environ.get("FUZZ_EXAMPLES", default))


def member_count(instance: Instance) -> int:
    """Members the bound conversation's view knows (0 unbound or before the first refresh)."""
    conversation = instance.conversation
    if conversation is None or conversation.members.inboxes is None:
        return 0
    return len(conversation.members.inboxes)


def backfills(instance: Instance) -> int:
    """Backfills the bound conversation's ingest completed (0 when unbound)."""
    conversation = instance.conversation
    if conversation is None or conversation.ingest is None:
        return 0
    return conversation.ingest.stats.backfills


def admitted(instance: Instance) -> set[str]:
    """Inboxes our own join-request watcher accepted in the bound conversation."""
    conversation = instance.conversation
    return set(conversation.admitted) if conversation is not None else set()


class Ticker:
    """Counts loop turns while it runs and the longest time between two of them (how long
    the event loop was blocked), without sleeping."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.ticks = 0
        self.max_gap = 0.0
        self.last = time.perf_counter()
        self.running = True
        self.loop.call_soon(self.tick)

    def tick(self) -> None:
        now = time.perf_counter()
        self.max_gap = max(self.max_gap, now - self.last)
        self.last = now
        self.ticks += 1
        if self.running:
            self.loop.call_soon(self.tick)


#: tests that need another uid's files or processes (chown to 65534, setuid children)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (another uid's files)")


def system_python() -> str | None:
    """A python3 another uid can run (not this venv's, under root's home)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


async def network_messages(net: Any, home: Any, cid: str) -> list[dict[str, Any]]:
    """Every message of conversation ``cid`` as the network holds it, oldest first, read
    with the identity in ``home`` through the CLI double."""
    listed = await asyncio.to_thread(
        net.run_json,
        home,
        "conversation",
        "messages",
        cid,
        "--env",
        "dev",
        "--limit",
        "10000",
        "--direction",
        "ascending",
    )
    return [] if isinstance(listed, dict) else list(listed)


def open_sockets() -> set[str]:
    """This process's open sockets (``socket:[inode]``): a test compares them before and after
    to show it left none behind."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:"):
                found.add(target)
    return found
