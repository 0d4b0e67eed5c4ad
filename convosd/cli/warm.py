"""The warm transport: one long-lived worker runs the CLI's commands in-process.

A one-shot command starts Node, loads the CLI and its native binding, and exits; the worker
(``worker.mjs`` beside this module, run by the same Node as the CLI; found by
:mod:`convosd.cli.worker_command`) loads the CLI's oclif configuration once and runs each
command in-process, giving back its exit code, stdout and stderr exactly as the one-shot
process would (docs/PERFORMANCE.md has the figures).

The channel is an inherited socketpair end (never stdin, which the CLI's parser reads):
frames of a 4-byte big-endian length and a JSON object, each request and answer carrying an
id (:mod:`convosd.cli.worker_protocol`; one running worker and its traffic:
:mod:`convosd.cli.worker`). The worker has the one-shot's argv prefix (Node), environment and
working directory; the CLI reads its environment at load, so a worker is bound to one
environment for its life. This module decides when a worker runs a command, when it is
started again, and what a command does meanwhile.

Failures, by kind:

- a command that runs past its timeout: the worker's process group is killed (SIGTERM, then
  SIGKILL) and :class:`~convosd.errors.CliTimeout` raised, like a one-shot; the next command
  starts a new worker;
- a call cancelled while its command runs: the worker is killed, as a one-shot would be;
- the worker crashing, not starting, or breaking the protocol (a frame over the size limit,
  a wrong id, not JSON): that command runs one-shot instead (a *fallback*), and the worker is
  started again after a backoff (:mod:`convosd.backoff`); meanwhile commands run
  one-shot, unless a role (``cliHost = "single"``) has started a new worker, which they then
  use. A crash in the middle of a command runs it again one-shot only if it is in
  :data:`~convosd.cli.argv.REPEATABLE_COMMANDS`; any other may have done its work (sent,
  created, joined...), so :class:`~convosd.errors.CliFailed` says it was not run again;
- ``convos --version`` always runs one-shot: it is how the daemon notices a CLI upgraded in
  place, after which the worker (still holding the old code) is restarted.

``invalidate`` restarts the worker before the next command (after ``daemon.reset`` or an
identity change). A CLI other than the npm package (a test double) may ship its own worker,
an executable named ``<cli>-worker`` beside it that speaks the same protocol; a CLI with
neither runs every command one-shot, and ``describe`` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from convosd import errors
from convosd.backoff import Backoff, BackoffPolicy
from convosd.cli.argv import REPEATABLE_COMMANDS, Invocation
from convosd.cli.output import not_run_again
from convosd.cli.redact import redact_text
from convosd.cli.roles import RoleProcess
from convosd.cli.runner import KILL_GRACE_S, CliResult, CliRunner
from convosd.cli.transport import TransportFactory
from convosd.cli.versions import installed_bindings_version
from convosd.cli.worker import Worker, ignore_result
from convosd.cli.worker_command import script_of, worker_command
from convosd.cli.worker_protocol import ProtocolError, command_answer, command_request
from convosd.timefmt import iso

#: how long a new worker may take to load the CLI and say it is ready
READY_TIMEOUT_S = 30.0

log = structlog.get_logger("convosd.cli.warm")


class WarmTransport:
    """The :class:`~convosd.cli.transport.CliTransport` that runs commands in a worker."""

    name = "warm"

    def __init__(
        self,
        oneshot: CliRunner,
        *,
        policy: BackoffPolicy | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        node_flags: Sequence[str] = (),
        env_defaults: Mapping[str, str] | None = None,
    ) -> None:
        self.oneshot = oneshot
        self.ready_timeout_s = ready_timeout_s
        self.backoff = Backoff(policy or BackoffPolicy(initial_s=1.0, cap_s=60.0))
        command = worker_command(oneshot.executable, node_flags)
        #: variables the worker gets unless its environment sets them (cliWorkerMallocArenaMax)
        self._env_defaults = dict(env_defaults or {})
        self._command = command if isinstance(command, tuple) else None
        self._script = script_of(oneshot.executable)
        self._unavailable = command if isinstance(command, str) else None
        self._worker: Worker | None = None
        self._ids = itertools.count(1)
        self._retry_at = 0.0
        self._stale: str | None = None
        self._fingerprint: tuple[str, str | None] | None = None
        self._closed = False
        #: one worker at a time is started (a command and a role may ask at once)
        self._lock = asyncio.Lock()
        #: workers being restarted for a role that did not stop (aclose waits for them)
        self._restarts: set[asyncio.Future[None]] = set()
        self._spawns = 0
        self.fallbacks = 0
        self.commands = 0
        #: roles started in a worker (``cliHost = "single"``)
        self.roles_started = 0
        #: the worker's heap after its last command, when it says (bench/warm.py)
        self.heap_used: int | None = None
        self.last_error: str | None = self._unavailable
        self.since: float | None = None

    # --- reporting ------------------------------------------------------------------------

    @property
    def restarts(self) -> int:
        """Workers started after the first one (after a failure, a timeout, a restart)."""
        return max(0, self._spawns - 1)

    @property
    def state(self) -> str:
        if self._unavailable is not None:
            return "unavailable"
        if self._worker is not None and self._worker.process.returncode is None:
            return "running"
        if time.monotonic() < self._retry_at:
            return "backoff"
        return "stopped"

    def describe(self) -> dict[str, Any]:
        worker = self._worker
        retry_in = self._retry_at - time.monotonic()
        running = worker is not None and worker.process.returncode is None
        return {
            "state": self.state,
            "pid": worker.process.pid if running and worker is not None else None,
            "restarts": self.restarts,
            "fallbacks": self.fallbacks,
            "commands": self.commands,
            "since": iso(self.since) if running else None,
            "lastError": self.last_error,
            "nextRetryAt": iso(time.time() + retry_in) if retry_in > 0 else None,
        }

    def invalidate(self, reason: str) -> None:
        """Start a new worker before the next command (``reason`` is logged)."""
        if self._worker is not None:
            self._stale = reason

    # --- the transport --------------------------------------------------------------------

    async def aclose(self) -> None:
        self._closed = True
        await self._stop_worker()
        # a worker stopped for a role that did not stop: its channel and its process are
        # closed before the daemon goes on (the loop may end next)
        if self._restarts:
            await asyncio.gather(*self._restarts, return_exceptions=True)

    async def run(self, invocation: Invocation, *, timeout_s: float) -> CliResult:
        if invocation.command == "--version":
            return await self._version(invocation, timeout_s)
        if self._command is None or self._closed:
            return await self.oneshot.run(invocation, timeout_s=timeout_s)
        if time.monotonic() < self._retry_at and not self._worker_up():
            # The worker failed: one-shot until it is due, unless the roles have started a
            # new one meanwhile (their own backoff is shorter). A one-shot command beside a
            # worker hosting roles would be a second XMTP client over their database.
            self.fallbacks += 1
            return await self.oneshot.run(invocation, timeout_s=timeout_s)
        started = time.monotonic()
        try:
            worker = await self._ready_worker()
            return await self._call(worker, invocation, timeout_s, started)
        except ProtocolError as exc:
            if self._closed:  # the worker was stopped under the call: shutting down
                raise errors.NotReady("the daemon is shutting down") from None
            await self._failed(str(exc))
            if exc.delivered and invocation.command not in REPEATABLE_COMMANDS:
                # The worker had the command when it failed: it may have sent (created,
                # joined...) already. A second run could do it twice; the caller decides
                # (a keyed send reconciles against the conversation).
                raise not_run_again(
                    invocation.command, f"the CLI worker failed while running it ({exc})"
                ) from None
            self.fallbacks += 1
            remaining = max(0.1, timeout_s - (time.monotonic() - started))
            return await self.oneshot.run(invocation, timeout_s=remaining)

    def _worker_up(self) -> bool:
        """A worker runs and may take commands (one the roles started, say)."""
        worker = self._worker
        return (
            worker is not None
            and worker.process.returncode is None
            and worker.broken is None
            and self._stale is None
        )

    async def _version(self, invocation: Invocation, timeout_s: float) -> CliResult:
        result = await self.oneshot.run(invocation, timeout_s=timeout_s)
        if result.exit_code == 0:
            fingerprint = (result.stdout, installed_bindings_version(self.oneshot.executable))
            if self._fingerprint is not None and fingerprint != self._fingerprint:
                self.invalidate("the CLI or its bindings changed")
            self._fingerprint = fingerprint
        return result

    async def _ready_worker(self) -> Worker:
        async with self._lock:
            worker = self._worker
            if worker is not None and self._stale is not None:
                log.info("cli_worker_restart", reason=self._stale)
                self._stale = None
                await self._stop_worker()
                worker = None
            if worker is not None and worker.process.returncode is not None:
                raise ProtocolError(f"the worker exited with {worker.process.returncode}")
            if worker is not None and worker.broken is not None:
                raise ProtocolError(worker.broken)
            if worker is None:
                worker = await self._spawn()
            return worker

    async def _spawn(self) -> Worker:
        assert self._command is not None
        worker = await Worker.start(
            self._command, self._script, self.oneshot, self._ids, self._env_defaults
        )
        self._worker = worker
        try:
            await worker.handshake(self.ready_timeout_s)
        except asyncio.CancelledError:  # a half-started worker would answer with its hello
            await asyncio.shield(asyncio.ensure_future(self._stop_worker()))
            raise
        self.since = time.time()
        self._spawns += 1
        log.info("cli_worker_started", pid=worker.process.pid)
        return worker

    # --- roles (cliHost = "single") ------------------------------------------------------

    async def start_role(self, invocation: Invocation) -> RoleProcess | None:
        """Start ``invocation`` (a long-lived command) as a role of the worker; None when
        this worker cannot host it (then it runs as its own process). A worker that failed
        is replaced first; one that fails under the start raises CliUnavailable (the
        supervisor tries again after its backoff)."""
        if self._command is None or self._closed:
            return None
        async with self._lock:
            worker = self._worker
            if worker is not None and (
                self._stale is not None
                or worker.process.returncode is not None
                or worker.broken is not None
            ):
                log.info("cli_worker_restart", reason=self._stale or "it failed")
                self._stale = None
                await self._stop_worker()
                worker = None
            if worker is None:
                try:
                    worker = await self._spawn()
                except ProtocolError as exc:
                    await self._failed(str(exc))
                    log.warning("cli_role_separate", command=invocation.command, problem=str(exc))
                    return None
        if not worker.hosts_roles:
            return None
        role = await worker.host_role(
            invocation.argv,
            stderr_limit=self.oneshot.stderr_limit,
            timeout_s=self.ready_timeout_s,
            kill=lambda: self._kill_for_role(worker),
        )
        self.roles_started += 1
        return role

    def _kill_for_role(self, worker: Worker) -> None:
        """A role would not stop: the worker is restarted (its other role with it)."""
        if self._worker is worker:
            log.warning("cli_worker_restart", reason="a role did not stop")
            task = asyncio.ensure_future(self._stop_worker())
            self._restarts.add(task)
            task.add_done_callback(self._restarts.discard)
            task.add_done_callback(ignore_result)

    async def _abandon(
        self, worker: Worker, call: asyncio.Future[dict[str, Any]], left_s: float, name: str
    ) -> None:
        """A cancelled call's command: its answer is dropped when it comes; the worker is
        stopped if it does not come before the command's own deadline."""
        try:
            await asyncio.wait_for(call, left_s)
        except TimeoutError:
            if self._worker is worker:
                log.warning("cli_worker_restart", reason=f"{name} abandoned and not finished")
                await self._stop_worker()
        except (ProtocolError, asyncio.CancelledError):
            pass  # the worker went away meanwhile

    async def _call(
        self, worker: Worker, invocation: Invocation, timeout_s: float, started: float
    ) -> CliResult:
        request_id = next(self._ids)
        request = command_request(
            request_id,
            invocation.argv,
            stdout_limit=self.oneshot.stdout_limit,
            stderr_limit=self.oneshot.stderr_limit,
        )
        name = "convos " + invocation.command.replace(":", " ")
        remaining = max(0.0, timeout_s - (time.monotonic() - started))
        call = asyncio.ensure_future(worker.request(request))
        try:
            answer = await asyncio.wait_for(asyncio.shield(call), remaining)
        except TimeoutError:
            call.cancel()
            await self._stop_worker()
            raise errors.CliTimeout(
                f"{name} did not finish in {timeout_s:g} s; its process group was killed"
            ) from None
        except asyncio.CancelledError:
            # The caller went away (a binding that ends cancels its backfill). The worker
            # runs its commands one at a time and answers each by id: the command may
            # finish there within its own deadline, its answer dropped, and the worker (with
            # the roles it hosts) goes on; past that deadline the worker is stopped.
            left = max(0.0, timeout_s - (time.monotonic() - started))
            abandoned = asyncio.ensure_future(self._abandon(worker, call, left, name))
            abandoned.add_done_callback(ignore_result)
            raise
        try:
            exit_code, stdout, stderr = command_answer(answer, request_id)
        except ProtocolError as exc:
            exc.delivered = True
            raise
        if answer.get("overflow"):
            raise errors.CliFailed(
                f"{name} printed more than {self.oneshot.stdout_limit} bytes; "
                "its output was dropped"
            )
        self.commands += 1
        heap = answer.get("heapUsed")
        self.heap_used = heap if isinstance(heap, int) else None
        self.backoff.reset()
        return CliResult(
            command=invocation.command,
            exit_code=exit_code,
            stdout=redact_text(stdout.decode("utf-8", errors="replace")),
            stderr=redact_text(stderr.decode("utf-8", errors="replace")),
            duration_s=time.monotonic() - started,
        )

    async def _failed(self, problem: str) -> None:
        """The worker failed: stop it, and run one-shot until its backoff has passed."""
        uptime = time.monotonic() - self._worker.started if self._worker is not None else 0.0
        await self._stop_worker()
        delay = self.backoff.on_exit(uptime)
        self._retry_at = time.monotonic() + delay
        self.last_error = problem
        log.warning("cli_worker_failed", problem=problem, retry_in_s=round(delay, 3))

    async def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):
                await worker.stop(min(KILL_GRACE_S, self.oneshot.kill_grace_s))


def transport_factory(
    kind: str, node_flags: Sequence[str] = (), malloc_arena_max: int = 0
) -> TransportFactory | None:
    """``cliTransport`` → the adapter's ``transport=`` factory (None: the one-shot runner);
    ``node_flags`` (``cliWorkerNodeFlags``) start the npm package's worker, and
    ``malloc_arena_max`` (``cliWorkerMallocArenaMax``, 0: glibc's default) is the worker's
    ``MALLOC_ARENA_MAX`` unless its environment (``cliEnvPassthrough``) sets one."""
    if kind == "oneshot":
        return None
    env = {"MALLOC_ARENA_MAX": str(malloc_arena_max)} if malloc_arena_max > 0 else {}
    return functools.partial(WarmTransport, node_flags=tuple(node_flags), env_defaults=env)
