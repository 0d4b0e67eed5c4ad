"""The warm transport: one long-lived worker runs the CLI's commands in-process.

A one-shot command starts Node, loads the CLI and its native binding, and exits; the worker
(``worker.mjs`` beside this module, run by the same Node as the CLI) loads the CLI's oclif
configuration once and runs each command in-process, giving back its exit code, stdout and
stderr exactly as the one-shot process would (docs/PERFORMANCE.md has the figures).

The channel is an inherited socketpair end (never stdin, which the CLI's parser reads):
frames of a 4-byte big-endian length and a JSON object, each request and answer carrying an
id. The worker has the one-shot's argv prefix (Node), environment and working directory; the
CLI reads its environment at load, so a worker is bound to one environment for its life.

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
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import struct
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from convosd import errors
from convosd.backoff import Backoff, BackoffPolicy
from convosd.cli.argv import REPEATABLE_COMMANDS, Invocation
from convosd.cli.output import not_run_again
from convosd.cli.redact import redact_text
from convosd.cli.roles import RoleProcess
from convosd.cli.runner import (
    KILL_GRACE_S,
    CliResult,
    CliRunner,
    long_lived_child_setup,
    stop_process_group,
)
from convosd.cli.transport import TransportFactory
from convosd.cli.versions import CLI_PACKAGE, installed_bindings_version
from convosd.timefmt import iso

WORKER_SCRIPT = Path(__file__).with_name("worker.mjs")
#: how long a new worker may take to load the CLI and say it is ready
READY_TIMEOUT_S = 30.0
#: what the worker prints outside a command is read and dropped (its tail kept, never logged)
_STRAY_TAIL = 4096
_HEADER = struct.Struct(">I")

log = structlog.get_logger("convosd.cli.warm")


class ProtocolError(Exception):
    """The worker broke the protocol, crashed, or did not start: restart it, and run the
    command one-shot unless the worker had it (``delivered``) and it is not repeatable."""

    delivered = False


def worker_command(executable: Sequence[str]) -> tuple[str, ...] | str:
    """The worker argv prefix for the CLI started by ``executable`` (the channel's fd and the
    CLI's script are appended), or the reason there is none.

    The npm package's ``bin/run.js`` gets ``worker.mjs`` run by the same Node: the words
    before the script (``node``), else the script's ``#!`` line. Any other CLI script gets
    its companion ``<script>-worker`` if there is one, run by the same words before it.
    """
    words = list(executable)
    for index in range(len(words) - 1, -1, -1):
        word = words[index]
        path = shutil.which(word) if os.sep not in word else word
        if path is None or not os.path.isfile(path):
            continue
        real = os.path.realpath(path)
        prefix = tuple(words[:index])
        if _in_cli_package(real):
            interpreter = prefix or _shebang(real)
            if not interpreter:
                return f"{word} has no #! line naming the Node that runs it"
            return (*interpreter, str(WORKER_SCRIPT))
        companion = path + "-worker"
        if os.access(companion, os.X_OK):
            return (*prefix, companion)
        return f"{word} is not the {CLI_PACKAGE} package and has no {word}-worker beside it"
    return f"{' '.join(words)} was not found"


def _in_cli_package(path: str) -> bool:
    for directory in Path(path).parents:
        manifest = directory / "package.json"
        if manifest.is_file():
            try:
                return bool(json.loads(manifest.read_text("utf-8")).get("name") == CLI_PACKAGE)
            except (OSError, ValueError):
                return False
    return False


def _shebang(path: str) -> tuple[str, ...]:
    try:
        with open(path, "rb") as handle:
            first = handle.readline(256)
    except OSError:
        return ()
    if not first.startswith(b"#!"):
        return ()
    return tuple(first[2:].decode("utf-8", "replace").split())


def _script_of(executable: Sequence[str]) -> str:
    """The CLI's own script: the last word that names a file."""
    for word in reversed(executable):
        path = shutil.which(word) if os.sep not in word else word
        if path is not None and os.path.isfile(path):
            return os.path.realpath(path)
    return executable[-1]


class _Worker:
    """One running worker: the process, the channel, and its stderr tail.

    Once the worker said it is ready, one task (the *pump*) reads every frame: the answer to
    a request goes to the call that waits for it (``answers``, by id), a role's output to
    that role (``roles``, by the id of the request that started it). When the channel ends
    or breaks, every waiting call fails with the problem and every role ends with the
    worker's exit status."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.process = process
        self.reader = reader
        self.writer = writer
        self.stray = bytearray()
        self.started = time.monotonic()
        #: whether the worker's ready frame says it hosts roles
        self.hosts_roles = False
        self.answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.roles: dict[int, RoleProcess] = {}
        #: why the channel ended or broke (None while it works)
        self.broken: str | None = None
        self.pump: asyncio.Task[None] | None = None
        self.drains = [
            asyncio.ensure_future(self._drain(process.stdout)),
            asyncio.ensure_future(self._drain(process.stderr)),
        ]

    async def _drain(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(65536):
            self.stray += chunk
            del self.stray[:-_STRAY_TAIL]

    def end_roles(self, code: int) -> None:
        roles, self.roles = self.roles, {}
        for role in roles.values():
            role.finish(code)

    async def stop(self, grace_s: float) -> int:
        self.writer.close()
        code = await stop_process_group(self.process, grace_s=grace_s)
        if self.pump is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self.pump), 1.0)
            self.pump.cancel()
        self.end_roles(code)
        for drain in self.drains:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(drain, 1.0)
        return code


class WarmTransport:
    """The :class:`~convosd.cli.transport.CliTransport` that runs commands in a worker."""

    name = "warm"

    def __init__(
        self,
        oneshot: CliRunner,
        *,
        policy: BackoffPolicy | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
    ) -> None:
        self.oneshot = oneshot
        self.ready_timeout_s = ready_timeout_s
        self.backoff = Backoff(policy or BackoffPolicy(initial_s=1.0, cap_s=60.0))
        command = worker_command(oneshot.executable)
        self._command = command if isinstance(command, tuple) else None
        self._script = _script_of(oneshot.executable)
        self._unavailable = command if isinstance(command, str) else None
        self._worker: _Worker | None = None
        self._ids = itertools.count(1)
        self._retry_at = 0.0
        self._stale: str | None = None
        self._fingerprint: tuple[str, str | None] | None = None
        self._closed = False
        #: one worker at a time is started (a command and a role may ask at once)
        self._lock = asyncio.Lock()
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

    async def _ready_worker(self) -> _Worker:
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

    async def _spawn(self) -> _Worker:
        assert self._command is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            argv = (*self._command, str(theirs.fileno()), self._script)
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=dict(self.oneshot.env),
                    cwd=self.oneshot.cwd,
                    start_new_session=True,
                    pass_fds=(theirs.fileno(),),
                    preexec_fn=long_lived_child_setup,
                )
            except OSError as exc:
                ours.close()
                raise ProtocolError(f"the worker cannot be started: {exc.strerror}") from None
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours, limit=2**16)
        worker = _Worker(process, reader, writer)
        self._worker = worker
        try:
            hello = await asyncio.wait_for(self._read(worker), self.ready_timeout_s)
        except TimeoutError:
            raise ProtocolError(f"the worker did not start in {self.ready_timeout_s:g} s") from None
        except asyncio.CancelledError:  # a half-started worker would answer with its hello
            await asyncio.shield(asyncio.ensure_future(self._stop_worker()))
            raise
        if hello.get("id") != 0 or hello.get("ready") is not True:
            raise ProtocolError("the worker's first frame is not its ready frame")
        worker.hosts_roles = hello.get("roles") is True
        worker.pump = asyncio.ensure_future(self._pump(worker))
        self.since = time.time()
        self._spawns += 1
        log.info("cli_worker_started", pid=process.pid)
        return worker

    def _frame_limit(self) -> int:
        # base64 of both outputs, plus the JSON around them
        return (self.oneshot.stdout_limit + self.oneshot.stderr_limit) * 4 // 3 + 65536

    async def _read(self, worker: _Worker) -> dict[str, Any]:
        try:
            header = await worker.reader.readexactly(_HEADER.size)
            (length,) = _HEADER.unpack(header)
            if length > self._frame_limit():
                raise ProtocolError(f"the worker sent a frame of {length} bytes (over the limit)")
            body = await worker.reader.readexactly(length)
        except asyncio.IncompleteReadError:
            await asyncio.sleep(0)  # let the exit status arrive
            code = worker.process.returncode
            # What the worker printed outside a command is not quoted: it may be anything
            # the CLI printed, message text included.
            raise ProtocolError(
                "the worker closed its channel" + (f" (exit {code})" if code is not None else "")
            ) from None
        except (ConnectionError, OSError) as exc:
            raise ProtocolError(f"the worker's channel failed: {exc}") from None
        try:
            message = json.loads(body)
        except ValueError:
            raise ProtocolError("the worker sent a frame that is not JSON") from None
        if not isinstance(message, dict):
            raise ProtocolError("the worker sent a frame that is not an object")
        return message

    async def _pump(self, worker: _Worker) -> None:
        """Read the worker's frames until its channel ends (see :class:`_Worker`)."""
        try:
            while True:
                message = await self._read(worker)
                role_id = message.get("role")
                if "id" not in message and isinstance(role_id, int):
                    self._role_frame(worker, role_id, message)
                    continue
                waiting = worker.answers.pop(message.get("id"), None)  # type: ignore[arg-type]
                if waiting is None:
                    expected = ", ".join(str(i) for i in sorted(worker.answers)) or "none"
                    raise ProtocolError(
                        f"the worker answered id {message.get('id')!r}, not {expected}"
                    )
                if not waiting.done():
                    waiting.set_result(message)
        except ProtocolError as exc:
            problem = str(exc)
        except asyncio.CancelledError:
            problem = "the worker was stopped"
        worker.broken = problem
        answers, worker.answers = worker.answers, {}
        for waiting in answers.values():
            if not waiting.done():
                waiting.set_exception(ProtocolError(problem))
        if worker.roles:
            if worker.process.returncode is None:
                # The channel broke under live roles: nothing reads them any more.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(worker.process.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.process.wait(), KILL_GRACE_S)
            code = worker.process.returncode
            log.warning("cli_worker_roles_ended", problem=problem, roles=len(worker.roles))
            worker.end_roles(code if code is not None else -signal.SIGKILL)

    def _role_frame(self, worker: _Worker, role_id: int, message: dict[str, Any]) -> None:
        role = worker.roles.get(role_id)
        if role is None:
            return  # a role stopped on our side (its last lines): nobody reads it
        try:
            if "stdout" in message:
                role.feed_stdout(base64.b64decode(message["stdout"], validate=True))
            if "stderr" in message:
                role.feed_stderr(base64.b64decode(message["stderr"], validate=True))
            if "exit" in message:
                del worker.roles[role_id]
                role.finish(int(message["exit"]))
        except (TypeError, ValueError):
            raise ProtocolError("the worker sent a role frame it cannot have meant") from None

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
        role_id = next(self._ids)
        role = RoleProcess(
            worker.process.pid,
            stop=lambda: self._stop_role(worker, role_id),
            kill=lambda: self._kill_for_role(worker),
        )
        worker.roles[role_id] = role
        request = {
            "id": role_id,
            "start": list(invocation.argv),
            "stderrLimit": self.oneshot.stderr_limit,
        }
        try:
            answer = await asyncio.wait_for(self._request(worker, request), self.ready_timeout_s)
            if answer.get("started") is not True:
                raise ProtocolError("the worker did not start the role")
        except (ProtocolError, TimeoutError) as exc:
            worker.roles.pop(role_id, None)
            problem = str(exc) or "the worker did not answer"
            raise errors.CliUnavailable(
                f"the CLI worker failed to start the role: {problem}"
            ) from None
        self.roles_started += 1
        return role

    async def _request(self, worker: _Worker, request: dict[str, Any]) -> dict[str, Any]:
        """Write ``request`` and wait for its answer (the pump hands it over)."""
        if worker.broken is not None:
            raise ProtocolError(worker.broken)
        waiting: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        worker.answers[int(request["id"])] = waiting
        body = json.dumps(request).encode("utf-8")
        try:
            worker.writer.write(_HEADER.pack(len(body)) + body)
            await worker.writer.drain()
        except (ConnectionError, OSError) as exc:
            worker.answers.pop(int(request["id"]), None)
            raise ProtocolError(f"the worker's channel failed: {exc}") from None
        try:
            return await waiting
        except ProtocolError as exc:
            exc.delivered = True  # the whole request was written: the worker may be running it
            raise

    def _stop_role(self, worker: _Worker, role_id: int) -> None:
        """Ask the worker to end the role (it answers, then the role's exit frame comes)."""
        if worker.broken is not None or role_id not in worker.roles:
            return
        request = {"id": next(self._ids), "stop": role_id}
        task = asyncio.ensure_future(self._request(worker, request))
        task.add_done_callback(_ignore_result)

    def _kill_for_role(self, worker: _Worker) -> None:
        """A role would not stop: the worker is restarted (its other role with it)."""
        if self._worker is worker:
            log.warning("cli_worker_restart", reason="a role did not stop")
            task = asyncio.ensure_future(self._stop_worker())
            task.add_done_callback(_ignore_result)

    async def _abandon(
        self, worker: _Worker, call: asyncio.Future[dict[str, Any]], left_s: float, name: str
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
        self, worker: _Worker, invocation: Invocation, timeout_s: float, started: float
    ) -> CliResult:
        request_id = next(self._ids)
        request = {
            "id": request_id,
            "argv": list(invocation.argv),
            "stdoutLimit": self.oneshot.stdout_limit,
            "stderrLimit": self.oneshot.stderr_limit,
        }
        name = "convos " + invocation.command.replace(":", " ")
        remaining = max(0.0, timeout_s - (time.monotonic() - started))
        call = asyncio.ensure_future(self._request(worker, request))
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
            abandoned.add_done_callback(_ignore_result)
            raise
        try:
            if answer.get("id") != request_id:
                raise ProtocolError(
                    f"the worker answered id {answer.get('id')!r}, not {request_id}"
                )
            try:
                exit_code = int(answer["exitCode"])
                stdout = base64.b64decode(answer["stdout"], validate=True)
                stderr = base64.b64decode(answer["stderr"], validate=True)
            except (KeyError, TypeError, ValueError):
                raise ProtocolError(
                    "the worker's answer lacks exitCode, stdout or stderr"
                ) from None
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


def _ignore_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a failed stop request is the pump's to report


def transport_factory(kind: str) -> TransportFactory | None:
    """``cliTransport`` → the adapter's ``transport=`` factory (None: the one-shot runner)."""
    if kind == "oneshot":
        return None
    return WarmTransport
