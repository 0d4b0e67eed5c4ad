"""The long-lived commands hosted by the warm worker (``cliHost = "single"``).

With ``cliHost = "separate"`` the stream (``conversation stream <id>``) and the join-request
watcher (``conversations process-join-requests --watch``) are processes of their own, started
from a :class:`~convosd.cli.runner.SpawnSpec`. With ``"single"`` they are *roles* of the warm
worker (:mod:`convosd.cli.warm`): commands that run in the worker beside the short ones, whose
output comes back on the worker's channel. A :class:`RoleSpec` starts one and gives back a
:class:`RoleProcess`, which looks to the supervisor (:mod:`convosd.supervisor.child`) like the
process it replaces: a pid (the worker's), a stdout and a stderr to read, an exit code to
wait for. Signals are not sent to the worker: :meth:`RoleProcess.signal` asks the worker to
stop the role (what SIGINT or SIGTERM did to the process: the CLI's stream iterator ends and
the command returns), and SIGKILL, for a role that did not stop in time, restarts the
worker (a role whose end does not come after that either is ended by the supervisor after
its grace, as a killed process ends). Once the role has ended, signals do nothing: the
worker, and the other role, go on.

A role the worker cannot host (no worker for this CLI, or the worker does not start) runs as
the separate process it would have been; a worker that fails meanwhile makes the start fail
with :class:`~convosd.errors.CliUnavailable`, and the supervisor tries again after its backoff.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Protocol

from convosd.cli.argv import Invocation
from convosd.cli.runner import SpawnSpec

#: a role's stdout is read like a child's pipe (a line may be up to the supervisor's limit)
_READER_LIMIT = 2**20


class RoleProcess:
    """One role running in the worker, seen as a process."""

    def __init__(
        self,
        pid: int,
        *,
        stop: Callable[[], None],
        kill: Callable[[], None],
    ) -> None:
        self.pid = pid
        self.stdout: asyncio.StreamReader | None = asyncio.StreamReader(limit=_READER_LIMIT)
        self.stderr: asyncio.StreamReader | None = asyncio.StreamReader(limit=_READER_LIMIT)
        self.returncode: int | None = None
        self._stop = stop
        self._kill = kill
        self._stopping = False
        self._ended = asyncio.Event()

    # --- fed by the transport -------------------------------------------------------------

    def feed_stdout(self, data: bytes) -> None:
        if self.returncode is None and self.stdout is not None:
            self.stdout.feed_data(data)

    def feed_stderr(self, data: bytes) -> None:
        if self.returncode is None and self.stderr is not None:
            self.stderr.feed_data(data)

    def finish(self, code: int) -> None:
        """The role ended with ``code`` (its own end, or its worker's)."""
        if self.returncode is not None:
            return
        self.returncode = code
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.feed_eof()
        self._ended.set()

    # --- what the supervisor does with a process -----------------------------------------

    async def wait(self) -> int:
        await self._ended.wait()
        assert self.returncode is not None
        return self.returncode

    def signal(self, sig: signal.Signals) -> None:
        """SIGKILL: the role would not stop, restart the worker; any other: stop the role."""
        if self.returncode is not None:
            return  # ended: the worker is not this role's to signal any more
        if sig == signal.SIGKILL:
            self._kill()
        elif not self._stopping:
            self._stopping = True
            self._stop()


#: what starts a role: the invocation → the role, or None when the worker cannot host it
RoleStarter = Callable[[Invocation], Awaitable[RoleProcess | None]]


class Spawnable(Protocol):
    """What the supervisor starts: a :class:`SpawnSpec` or a :class:`RoleSpec`."""

    async def spawn(
        self, *, pdeathsig: bool = False
    ) -> asyncio.subprocess.Process | RoleProcess: ...


class RoleSpec:
    """Start ``invocation`` as a role of the worker; as its own process when it cannot be."""

    def __init__(self, start: RoleStarter, invocation: Invocation, fallback: SpawnSpec) -> None:
        self.start = start
        self.invocation = invocation
        self.fallback = fallback

    async def spawn(self, *, pdeathsig: bool = False) -> asyncio.subprocess.Process | RoleProcess:
        role = await self.start(self.invocation)
        if role is not None:
            return role
        return await self.fallback.spawn(pdeathsig=pdeathsig)
