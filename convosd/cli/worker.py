"""One running warm worker: its process, the traffic on its channel, the roles it hosts.

:meth:`Worker.start` starts the process with its end of the channel (the frames of
:mod:`convosd.cli.worker_protocol`) and :meth:`Worker.handshake` waits for its ready frame.
Then one task (the *pump*) reads every frame: the answer to a request goes to the call that
waits for it (by id), a role's output to that role (:class:`~convosd.cli.roles.RoleProcess`,
by the id of the request that started it). When the channel ends or breaks, every waiting
call fails with the problem and every role ends with the worker's exit status.

When to start, restart or give up on a worker, and what a command does meanwhile, is the
transport's (:mod:`convosd.cli.warm`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import structlog

from convosd import errors
from convosd.cli.roles import RoleProcess
from convosd.cli.runner import KILL_GRACE_S, CliRunner, long_lived_child_setup, stop_process_group
from convosd.cli.worker_protocol import (
    ProtocolError,
    encode,
    frame_limit,
    is_ready,
    read_frame,
    role_request,
    stop_request,
)

#: what the worker prints outside a command is read and dropped (its tail kept, never logged)
_STRAY_TAIL = 4096

#: stops of half-started workers still running after their start was cancelled again
_STOPPING: set[asyncio.Future[int]] = set()

log = structlog.get_logger("convosd.cli.worker")


class Worker:
    """One running worker: the process, the channel, and its stderr tail."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        limit: int,
        ids: Iterator[int],
    ) -> None:
        self.process = process
        self.reader = reader
        self.writer = writer
        #: the largest frame the worker may send
        self.limit = limit
        #: the ids of requests (the transport's: one sequence across its workers)
        self.ids = ids
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

    @classmethod
    async def start(
        cls,
        command: Sequence[str],
        script: str,
        runner: CliRunner,
        ids: Iterator[int],
        env_defaults: Mapping[str, str] | None = None,
    ) -> Worker:
        """Start the worker ``command`` for the CLI ``script``, with the one-shot runner's
        environment (plus ``env_defaults`` it does not set itself), working directory and
        output limits (not ready yet: see :meth:`handshake`)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        process: asyncio.subprocess.Process | None = None
        try:
            try:
                argv = (*command, str(theirs.fileno()), script)
                try:
                    process = await asyncio.create_subprocess_exec(
                        *argv,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.PIPE,
                        env={**(env_defaults or {}), **runner.env},
                        cwd=runner.cwd,
                        start_new_session=True,
                        pass_fds=(theirs.fileno(),),
                        preexec_fn=long_lived_child_setup,
                    )
                except OSError as exc:
                    raise ProtocolError(f"the worker cannot be started: {exc.strerror}") from None
            finally:
                theirs.close()
            reader, writer = await asyncio.open_connection(sock=ours, limit=2**16)
        except BaseException:
            # Failed, or cancelled (a backfill's read that ends at shutdown, while it was
            # starting a worker), before a Worker owns them: nothing else would close our end
            # of the channel or stop the process. The stop runs to its end even when this
            # start is cancelled again meanwhile.
            ours.close()
            if process is not None:
                stopping = asyncio.ensure_future(
                    stop_process_group(process, first=signal.SIGKILL, grace_s=KILL_GRACE_S)
                )
                _STOPPING.add(stopping)
                stopping.add_done_callback(_STOPPING.discard)
                stopping.add_done_callback(ignore_result)
                await asyncio.shield(stopping)
            raise
        assert process is not None
        limit = frame_limit(runner.stdout_limit, runner.stderr_limit)
        return cls(process, reader, writer, limit=limit, ids=ids)

    async def handshake(self, timeout_s: float) -> None:
        """Wait for the ready frame, then start the pump."""
        try:
            hello = await asyncio.wait_for(self.read(), timeout_s)
        except TimeoutError:
            raise ProtocolError(f"the worker did not start in {timeout_s:g} s") from None
        if not is_ready(hello):
            raise ProtocolError("the worker's first frame is not its ready frame")
        self.hosts_roles = hello.get("roles") is True
        self.pump = asyncio.ensure_future(self._pump())

    async def _drain(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(65536):
            self.stray += chunk
            del self.stray[:-_STRAY_TAIL]

    # --- the channel ----------------------------------------------------------------------

    async def read(self) -> dict[str, Any]:
        try:
            return await read_frame(self.reader, self.limit)
        except asyncio.IncompleteReadError:
            await asyncio.sleep(0)  # let the exit status arrive
            code = self.process.returncode
            # What the worker printed outside a command is not quoted: it may be anything
            # the CLI printed, message text included.
            raise ProtocolError(
                "the worker closed its channel" + (f" (exit {code})" if code is not None else "")
            ) from None
        except (ConnectionError, OSError) as exc:
            raise ProtocolError(f"the worker's channel failed: {exc}") from None

    async def request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Write ``request`` and wait for its answer (the pump hands it over)."""
        if self.broken is not None:
            raise ProtocolError(self.broken)
        waiting: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.answers[int(request["id"])] = waiting
        try:
            self.writer.write(encode(request))
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            self.answers.pop(int(request["id"]), None)
            raise ProtocolError(f"the worker's channel failed: {exc}") from None
        try:
            return await waiting
        except ProtocolError as exc:
            exc.delivered = True  # the whole request was written: the worker may be running it
            raise

    async def _pump(self) -> None:
        """Read the worker's frames until its channel ends (see the module's docstring)."""
        try:
            while True:
                message = await self.read()
                role_id = message.get("role")
                if "id" not in message and isinstance(role_id, int):
                    self._role_frame(role_id, message)
                    continue
                waiting = self.answers.pop(message.get("id"), None)  # type: ignore[arg-type]
                if waiting is None:
                    expected = ", ".join(str(i) for i in sorted(self.answers)) or "none"
                    raise ProtocolError(
                        f"the worker answered id {message.get('id')!r}, not {expected}"
                    )
                if not waiting.done():
                    waiting.set_result(message)
        except ProtocolError as exc:
            problem = str(exc)
        except asyncio.CancelledError:
            problem = "the worker was stopped"
        self.broken = problem
        answers, self.answers = self.answers, {}
        for waiting in answers.values():
            if not waiting.done():
                waiting.set_exception(ProtocolError(problem))
        if self.roles:
            if self.process.returncode is None:
                # The channel broke under live roles: nothing reads them any more.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), KILL_GRACE_S)
            code = self.process.returncode
            log.warning("cli_worker_roles_ended", problem=problem, roles=len(self.roles))
            self.end_roles(code if code is not None else -signal.SIGKILL)

    # --- roles (cliHost = "single") ------------------------------------------------------

    def _role_frame(self, role_id: int, message: dict[str, Any]) -> None:
        role = self.roles.get(role_id)
        if role is None:
            return  # a role stopped on our side (its last lines): nobody reads it
        try:
            if "stdout" in message:
                role.feed_stdout(base64.b64decode(message["stdout"], validate=True))
            if "stderr" in message:
                role.feed_stderr(base64.b64decode(message["stderr"], validate=True))
            if "exit" in message:
                del self.roles[role_id]
                role.finish(int(message["exit"]))
        except (TypeError, ValueError):
            raise ProtocolError("the worker sent a role frame it cannot have meant") from None

    async def host_role(
        self,
        argv: Sequence[str],
        *,
        stderr_limit: int,
        timeout_s: float,
        kill: Callable[[], None],
    ) -> RoleProcess:
        """Start ``argv`` as a role of this worker; ``kill`` is what SIGKILL to the role
        does (it would not stop). A worker that fails under the start raises
        CliUnavailable (the supervisor tries again after its backoff)."""
        role_id = next(self.ids)
        role = RoleProcess(self.process.pid, stop=lambda: self._stop_role(role_id), kill=kill)
        self.roles[role_id] = role
        request = role_request(role_id, argv, stderr_limit=stderr_limit)
        try:
            answer = await asyncio.wait_for(self.request(request), timeout_s)
            if answer.get("started") is not True:
                raise ProtocolError("the worker did not start the role")
        except (ProtocolError, TimeoutError) as exc:
            self.roles.pop(role_id, None)
            problem = str(exc) or "the worker did not answer"
            raise errors.CliUnavailable(
                f"the CLI worker failed to start the role: {problem}"
            ) from None
        return role

    def _stop_role(self, role_id: int) -> None:
        """Ask the worker to end the role (it answers, then the role's exit frame comes)."""
        if self.broken is not None or role_id not in self.roles:
            return
        task = asyncio.ensure_future(self.request(stop_request(next(self.ids), role_id)))
        task.add_done_callback(ignore_result)

    def end_roles(self, code: int) -> None:
        roles, self.roles = self.roles, {}
        for role in roles.values():
            role.finish(code)

    # --- the end --------------------------------------------------------------------------

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


def ignore_result(task: asyncio.Future[Any]) -> None:
    """A done callback for a task nobody awaits: its exception is retrieved, not logged."""
    if not task.cancelled():
        task.exception()  # retrieved: a failed stop request is the pump's to report
