"""Running the convos CLI: the process boundary, and the only code here that does I/O.

:class:`CliRunner` starts one-shot commands in their own process group with a clean
environment and umask 077, captures their output within fixed bounds, and kills the whole
group on timeout or cancellation. :class:`SpawnSpec` is what the supervisor needs to start
a long-lived command the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fnmatch
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from convosd import errors
from convosd.cli.argv import REPEATABLE_COMMANDS, Env, Invocation
from convosd.cli.redact import redact_text

#: stdout of one one-shot command (``messages --limit 200`` of large messages fits).
STDOUT_LIMIT = 64 * 1024 * 1024
#: stderr is only read for the error block: its tail is kept.
STDERR_LIMIT = 256 * 1024
#: after SIGTERM to the group, how long before SIGKILL.
KILL_GRACE_S = 2.0
_READ_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class CliResult:
    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float


def child_environment(
    *,
    env: Env,
    convos_home: Path,
    process_home: Path,
    passthrough: Sequence[str],
    parent: Mapping[str, str],
) -> dict[str, str]:
    """The clean environment (README, How convosd runs the CLI), never the daemon's own."""
    result = {
        "PATH": parent.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": parent.get("LANG", "C.UTF-8"),
        "HOME": str(process_home),
        "CONVOS_HOME": str(convos_home),
        "CONVOS_ENV": env,
        "CONVOS_SKIP_NEW_VERSION_CHECK": "true",
        "OCLIF_COLUMNS": "10000",
        "NO_COLOR": "1",
    }
    for pattern in passthrough:
        if pattern.endswith("*"):
            for name, value in parent.items():
                if fnmatch.fnmatchcase(name, pattern) and name not in result:
                    result[name] = value
        elif pattern in parent and pattern not in result:
            result[pattern] = parent[pattern]
    return result


def _load_libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - not Linux
        return None


_LIBC = _load_libc()
_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:  # pragma: no cover - runs in the child after fork
    os.umask(0o077)


def long_lived_child_setup() -> None:  # pragma: no cover - runs in the child after fork
    os.umask(0o077)
    # If the daemon dies (even by SIGKILL) the kernel kills this child. Its own children
    # are not covered: the daemon also records the process group and reaps it at start.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class SpawnSpec:
    """How to start one CLI process: argv, environment, working directory."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path

    async def spawn(self, *, pdeathsig: bool = False) -> asyncio.subprocess.Process:
        """Start it in its own process group (session), stdout and stderr piped.

        ``pdeathsig``: the child gets SIGKILL when the daemon dies (long-lived children).
        """
        try:
            return await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=dict(self.env),
                cwd=self.cwd,
                start_new_session=True,
                # Only a syscall or two, safe after fork.
                preexec_fn=long_lived_child_setup if pdeathsig else _child_setup,
                limit=2**20,
            )
        except FileNotFoundError:
            if not self.cwd.is_dir():
                # exec reports a missing working directory as ENOENT too
                raise errors.CliUnavailable(
                    f"The CLI's working directory {self.cwd} (the state dir) is gone: it was "
                    "deleted while the daemon ran. Stop the daemon, restore the state dir, "
                    "then start the daemon"
                ) from None
            raise errors.CliUnavailable(
                f"The convos CLI was not found: {self.argv[0]}", exit_code=127
            ) from None
        except PermissionError:
            raise errors.CliUnavailable(
                f"The convos CLI is not executable: {self.argv[0]}", exit_code=126
            ) from None
        except OSError as exc:
            raise errors.CliUnavailable(
                f"The convos CLI cannot be started: {exc.strerror}"
            ) from None


def signal_group(pid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to the process group led by ``pid``; False if it is already gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - the group was recycled by another user
        return False
    return True


async def stop_process_group(
    process: asyncio.subprocess.Process,
    *,
    first: signal.Signals = signal.SIGTERM,
    grace_s: float = KILL_GRACE_S,
) -> int:
    """Signal the child's whole group, wait ``grace_s``, then SIGKILL the group.

    Returns the exit status. The group is SIGKILLed once more at the end so that no
    grandchild the first signal left behind survives.
    """
    if process.returncode is None:
        signal_group(process.pid, first)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), grace_s)
        except TimeoutError:
            signal_group(process.pid, signal.SIGKILL)
    signal_group(process.pid, signal.SIGKILL)
    return await process.wait()


#: clean-ups still running after their call was cancelled (a strong reference each)
_CLEANUPS: set[asyncio.Future[None]] = set()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


@dataclass
class _Capture:
    limit: int
    keep_tail: bool
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    overflowed: bool = False

    def add(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > self.limit:
            if not self.keep_tail:
                self.overflowed = True
                return
            joined = b"".join(self.chunks)[-self.limit :]
            self.chunks = [joined]
            self.size = len(joined)

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", errors="replace")


async def _pump(
    stream: asyncio.StreamReader | None, capture: _Capture, overflow: asyncio.Event
) -> None:
    """Read to EOF. Past the limit, keep reading (so the pipe drains and closes) but drop."""
    if stream is None:
        return
    while chunk := await stream.read(_READ_CHUNK):
        if capture.overflowed:
            continue
        capture.add(chunk)
        if capture.overflowed:
            overflow.set()


#: what a process ended by its own crash dies of (a native fault in the binding, V8's fatal
#: error): not a signal convosd or an operator sends
CRASH_SIGNALS = frozenset(
    {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP}
)


def crashed(exit_code: int) -> signal.Signals | None:
    """The crash signal a process with ``exit_code`` (asyncio's ``-signal``) died of."""
    if exit_code >= 0:
        return None
    try:
        sig = signal.Signals(-exit_code)
    except ValueError:
        return None
    return sig if sig in CRASH_SIGNALS else None


class CliRunner:
    """Runs one-shot commands of one CLI installation for one instance. A command that
    changes nothing (:data:`~convosd.cli.argv.REPEATABLE_COMMANDS`) whose process crashed
    (:data:`CRASH_SIGNALS`) is run once more within its timeout, as the warm transport
    runs one again whose worker crashed; any other may have done its work before the crash
    and is never run twice."""

    def __init__(
        self,
        executable: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        *,
        stdout_limit: int = STDOUT_LIMIT,
        stderr_limit: int = STDERR_LIMIT,
        kill_grace_s: float = KILL_GRACE_S,
    ) -> None:
        self.executable = tuple(executable)
        self.env = dict(env)
        self.cwd = cwd
        self.stdout_limit = stdout_limit
        self.stderr_limit = stderr_limit
        self.kill_grace_s = kill_grace_s
        #: commands run again because their process crashed
        self.crash_reruns = 0

    async def aclose(self) -> None:
        """Nothing to release: every command was its own process (the transport interface,
        :class:`convosd.cli.transport.CliTransport`)."""

    async def _clean_up(
        self, process: asyncio.subprocess.Process, pumps: asyncio.Future[Any]
    ) -> None:
        if process.returncode is None:
            await stop_process_group(process, grace_s=self.kill_grace_s)
        else:
            # The leader exited; a grandchild left in its group must not outlive it.
            signal_group(process.pid, signal.SIGKILL)
        if not pumps.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pumps, self.kill_grace_s)

    def spec(self, invocation: Invocation) -> SpawnSpec:
        return SpawnSpec(argv=(*self.executable, *invocation.argv), env=self.env, cwd=self.cwd)

    async def run(self, invocation: Invocation, *, timeout_s: float) -> CliResult:
        """Run to completion. Raises CliUnavailable (cannot start), CliTimeout, CliFailed
        (output over the limit); a non-zero exit is returned, not raised."""
        started = time.monotonic()
        result = await self._run_once(invocation, timeout_s=timeout_s)
        sig = crashed(result.exit_code)
        remaining = timeout_s - (time.monotonic() - started)
        if sig is None or invocation.command not in REPEATABLE_COMMANDS or remaining <= 0:
            return result
        self.crash_reruns += 1
        structlog.get_logger("convosd.cli").warning(
            "cli_crashed_rerun", command=invocation.command, signal=sig.name
        )
        return await self._run_once(invocation, timeout_s=remaining)

    async def _run_once(self, invocation: Invocation, *, timeout_s: float) -> CliResult:
        started = time.monotonic()
        name = "convos " + invocation.command.replace(":", " ")
        # A one-shot whose daemon died has nobody to report to: it dies too (PDEATHSIG),
        # before the next start reconciles what it may have done.
        process = await self.spec(invocation).spawn(pdeathsig=True)
        out = _Capture(self.stdout_limit, keep_tail=False)
        err = _Capture(self.stderr_limit, keep_tail=True)
        overflow = asyncio.Event()
        pumps = asyncio.gather(
            _pump(process.stdout, out, overflow), _pump(process.stderr, err, overflow)
        )
        pumps.add_done_callback(_retrieve)  # never "exception was never retrieved"
        overflowed = asyncio.ensure_future(overflow.wait())
        try:
            waitables: set[asyncio.Future[Any]] = {pumps, overflowed}
            done, _ = await asyncio.wait(
                waitables, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if overflow.is_set():
                raise errors.CliFailed(
                    f"{name} printed more than {self.stdout_limit} bytes; "
                    "its process group was killed"
                )
            if not done:
                raise errors.CliTimeout(
                    f"{name} did not finish in {timeout_s:g} s; its process group was killed"
                )
            remaining = max(0.1, timeout_s - (time.monotonic() - started))
            try:
                exit_code = await asyncio.wait_for(asyncio.shield(process.wait()), remaining)
            except TimeoutError:
                raise errors.CliTimeout(
                    f"{name} closed its output but did not exit; its process group was killed"
                ) from None
        finally:
            overflowed.cancel()
            # The clean-up runs to its end even when this call is cancelled again while it
            # waits (a shutdown cancelling what a disconnect already cancelled): otherwise a
            # child that ignores SIGTERM would never get its SIGKILL.
            cleanup = asyncio.ensure_future(self._clean_up(process, pumps))
            _CLEANUPS.add(cleanup)
            cleanup.add_done_callback(_CLEANUPS.discard)
            await asyncio.shield(cleanup)
        # Nothing the CLI printed reaches a parser, an error or a log unredacted.
        return CliResult(
            command=invocation.command,
            exit_code=exit_code,
            stdout=redact_text(out.text()),
            stderr=redact_text(err.text()),
            duration_s=time.monotonic() - started,
        )
