"""One supervised long-lived CLI child: spawn, read, restart with backoff, stop.

The child runs in its own process group (and gets SIGKILL if the daemon dies, through
PR_SET_PDEATHSIG). Its stdout is split into lines with a hard limit, redacted
(:mod:`convosd.cli.redact`) and handed over in batches, one batch per read; its redacted
stderr tail feeds ``lastError`` and the fatal check. Every
exit is followed by a restart after a backoff delay, except the fatal ones (the CLI says the
conversation or the identity does not exist), which stop in ``fatal``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from convosd import errors
from convosd.backoff import Backoff
from convosd.cli.output import child_error_summary, is_fatal_child_error
from convosd.cli.redact import redact_line, redact_text
from convosd.cli.roles import RoleProcess, Spawnable
from convosd.cli.runner import signal_group
from convosd.framing import OVERSIZE, Frame, LineSplitter
from convosd.supervisor.state import ChildState, ChildStatus, ExitStatus

#: at least 1 MiB: a message line of the largest size the CLI can print fits.
LINE_LIMIT = 4 * 1024 * 1024
READ_CHUNK = 256 * 1024
STDERR_TAIL_LINES = 40
#: a child that printed nothing is "running" once it stayed up this long.
READY_AFTER_S = 1.0

LineBatchHandler = Callable[[Sequence[bytes]], None]
Clock = Callable[[], datetime]
ChildProcess = asyncio.subprocess.Process | RoleProcess


def signal_child(process: ChildProcess, sig: signal.Signals) -> None:
    """``sig`` to the child's process group; to a role of the worker, what it means there
    (:meth:`~convosd.cli.roles.RoleProcess.signal`: never a signal to the worker)."""
    if isinstance(process, RoleProcess):
        process.signal(sig)
    else:
        signal_group(process.pid, sig)


def utcnow() -> datetime:
    return datetime.now(UTC)


class SupervisedChild:
    """Keeps one long-lived command running until :meth:`stop`."""

    def __init__(
        self,
        name: str,
        spec: Callable[[], Spawnable],
        on_lines: LineBatchHandler,
        *,
        backoff: Backoff | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        stop_grace_s: float = 5.0,
        on_state: Callable[[SupervisedChild], None] | None = None,
        on_spawn: Callable[[SupervisedChild, int], None] | None = None,
        on_exit: Callable[[SupervisedChild], None] | None = None,
        clock: Clock = utcnow,
        line_limit: int = LINE_LIMIT,
    ) -> None:
        self.name = name
        self.spec = spec
        self.on_lines = on_lines
        self.backoff = backoff or Backoff()
        self.stop_signal = stop_signal
        self.stop_grace_s = stop_grace_s
        self.on_state = on_state
        self.on_spawn = on_spawn
        self.on_exit = on_exit
        self.clock = clock
        self.line_limit = line_limit
        self.status = ChildStatus(state=ChildState.STOPPED, since=clock())
        self.bad_lines = 0
        self.lines = 0
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self.log = structlog.get_logger("convosd.child").bind(child=name)
        self._task: asyncio.Task[None] | None = None
        self._process: ChildProcess | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self.spawned = asyncio.Event()  # the first spawn attempt is over (pid or failure)
        self._last_bad_log = 0.0

    # --- control ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def pid(self) -> int | None:
        return self.status.pid

    def interrupt(self) -> None:
        """Send the running child its stop signal: it exits, and is started again after its
        backoff (the watcher idles after its stream ended instead of exiting)."""
        process = self._process
        if process is not None and process.returncode is None:
            signal_child(process, self.stop_signal)

    def start(self) -> None:
        if self.running:
            return
        self._stopping = False
        self.backoff.reset()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"child-{self.name}")

    async def stop(self) -> None:
        """Stop the child (its stop signal, then SIGKILL to its group) and the loop."""
        self._stopping = True
        self._wake.set()
        process = self._process
        if process is not None and process.returncode is None:
            signal_child(process, self.stop_signal)
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), self.stop_grace_s)
            except TimeoutError:
                self.log.warning("child_stop_timeout", grace_s=self.stop_grace_s)
        if process is not None:
            signal_child(process, signal.SIGKILL)
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        self._process = None
        self.status.stopped(self.clock())
        self._notify()

    # --- the loop -----------------------------------------------------------------------

    def _notify(self) -> None:
        if self.on_state is not None:
            self.on_state(self)

    async def _run(self) -> None:
        while not self._stopping:
            started = asyncio.get_running_loop().time()
            try:
                process = await self.spec().spawn(pdeathsig=True)
            except errors.CliUnavailable as exc:
                self._after_failure(0.0, None, exc.message)
                self.spawned.set()
                await self._wait_backoff()
                continue
            self._process = process
            self.stderr_tail.clear()
            self.status.started(process.pid, self.clock())
            self._notify()
            if self.on_spawn is not None:
                self.on_spawn(self, process.pid)
            self.spawned.set()
            self.log.info("child_started", pid=process.pid, restarts=self.status.restarts)
            ready = asyncio.get_running_loop().call_later(READY_AFTER_S, self._mark_ready)
            try:
                await asyncio.gather(self._read_stdout(process), self._read_stderr(process))
                returncode = await process.wait()
            finally:
                ready.cancel()
                if process.returncode is None:
                    signal_child(process, signal.SIGKILL)
                    await self._killed(process)
                # A grandchild must not outlive its leader (a role that ended: nothing).
                signal_child(process, signal.SIGKILL)
                self._process = None
            if self.on_exit is not None:
                self.on_exit(self)
            if self._stopping:
                return
            uptime = asyncio.get_running_loop().time() - started
            status = ExitStatus.from_returncode(returncode)
            self._after_failure(uptime, status, self._error_summary())
            if self.status.state is ChildState.FATAL:
                return
            await self._wait_backoff()

    async def _killed(self, process: ChildProcess) -> None:
        """Wait for the end of ``process``, just sent SIGKILL. A process's comes; a role's
        comes when its worker is restarted, which is the transport's to do: one that has
        not come after the grace is ended here (as SIGKILL would have), or this child's
        stop, and the unbind waiting for it, would wait for ever."""
        if not isinstance(process, RoleProcess):
            await process.wait()
            return
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), self.stop_grace_s)
        except TimeoutError:
            self.log.warning("role_kill_timeout", grace_s=self.stop_grace_s)
            process.finish(-signal.SIGKILL)

    def _after_failure(self, uptime: float, status: ExitStatus | None, error: str | None) -> None:
        fatal = error is not None and is_fatal_child_error(error)
        now = self.clock()
        if fatal:
            retry_at = None
        else:
            delay = self.backoff.on_exit(uptime)
            retry_at = now + timedelta(seconds=delay)
        if status is None:
            self.status.spawn_failed(error or "spawn failed", now, retry_at)
        else:
            self.status.exited(status, error, now, retry_at)
        self._notify()
        self.log.warning(
            "child_exited" if status else "child_spawn_failed",
            exit=status.as_dict() if status else None,
            uptime_s=round(uptime, 3),
            state=str(self.status.state),
            retry_in_s=None if retry_at is None else round((retry_at - now).total_seconds(), 3),
            error=error,
        )

    async def _wait_backoff(self) -> None:
        retry_at = self.status.next_retry_at
        if retry_at is None:
            return
        delay = max(0.0, (retry_at - self.clock()).total_seconds())
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    def _mark_ready(self) -> None:
        if self.status.state is ChildState.STARTING:
            self.status.became_ready(self.clock())
            self._notify()

    def _error_summary(self) -> str | None:
        return child_error_summary("\n".join(self.stderr_tail))

    async def _read_stdout(self, process: ChildProcess) -> None:
        stream = process.stdout
        if stream is None:
            return
        splitter = LineSplitter(self.line_limit)
        while chunk := await stream.read(READ_CHUNK):
            self._deliver(splitter.feed(chunk))
        self._deliver(splitter.finish())

    def _deliver(self, frames: list[Frame]) -> None:
        if not frames:
            return
        lines: list[bytes] = []
        for frame in frames:
            if frame is OVERSIZE:
                self.count_bad_line("over the line limit", None)
            else:
                assert isinstance(frame, bytes)
                lines.append(redact_line(frame))
        if not lines:
            return
        self.lines += len(lines)
        self._mark_ready()
        try:
            self.on_lines(lines)
        except Exception:
            # The handler owns its errors; a bug there must not kill the reader.
            self.log.exception("line_handler_failed", lines=len(lines))

    def count_bad_line(self, reason: str, line: bytes | None) -> None:
        """Counted always; logged at most once a second (a garbage flood stays cheap)."""
        self.bad_lines += 1
        now = asyncio.get_running_loop().time()
        if now - self._last_bad_log >= 1.0:
            self._last_bad_log = now
            self.log.warning(
                "child_bad_line",
                reason=reason,
                bad_lines=self.bad_lines,
                size=None if line is None else len(line),
            )

    async def _read_stderr(self, process: ChildProcess) -> None:
        stream = process.stderr
        if stream is None:
            return
        splitter = LineSplitter(64 * 1024)
        while chunk := await stream.read(64 * 1024):
            for frame in splitter.feed(chunk):
                if isinstance(frame, bytes):
                    self.stderr_tail.append(redact_text(frame.decode("utf-8", errors="replace")))
        for frame in splitter.finish():
            if isinstance(frame, bytes):
                self.stderr_tail.append(redact_text(frame.decode("utf-8", errors="replace")))

    def describe(self) -> dict[str, Any]:
        return self.status.as_dict()
