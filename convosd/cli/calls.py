"""One instance's way to its CLI: the single queue, and the commands run in their turn.

:class:`CliCalls` owns the instance's queue (:mod:`convosd.cli.queue`) and the transport
below it (:mod:`convosd.cli.transport`; the one-shot :class:`~convosd.cli.runner.CliRunner`
unless another is given). A command runs only inside a turn of the queue: :meth:`CliCalls.in_turn`
hands the call a :class:`CommandRunner`, which exists for no one else, so nothing reaches the
CLI around the queue. The runner refuses a command while the CLI home is not the daemon's to
open, turns a failed exit into its :mod:`convosd.errors` exception, keeps whether the network
answered, and reads the output as a model (:mod:`convosd.cli.parse`).

:class:`CliCalls` also holds what the instance does with its CLI as a whole: refuse every
call, restart or close the transport, report it, and start the long-lived commands (a role
of the warm worker, :mod:`convosd.cli.roles`, or a process of their own). The operations, one
method per command, are the adapter's (:class:`~convosd.cli.adapter.ConvosCli`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, TypeAdapter

from convosd import errors
from convosd.cli.argv import REPEATABLE_COMMANDS, ArgvBuilder, Invocation
from convosd.cli.output import classify, lock_met_before_work, not_run_again
from convosd.cli.parse import json_document, listed, validated
from convosd.cli.queue import CliQueue
from convosd.cli.roles import RoleSpec
from convosd.cli.runner import CliResult, CliRunner, SpawnSpec, child_environment
from convosd.cli.setup import CliSetup
from convosd.cli.transport import CliTransport, TransportFactory
from convosd.cli.upload import provider_configured
from convosd.cli.versions import installed_bindings_version

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

#: Commands that cannot succeed without the XMTP network (they publish, or sync by their
#: nature): a success says the network is reachable again. A command run with ``--sync``
#: counts too. Others (``--version``, ``identity list``, local reads) succeed offline.
NETWORK_COMMANDS = frozenset(
    {
        "identity:info",
        "conversations:create",
        "conversations:join",
        "conversations:process-join-requests",
        "conversation:send-text",
        "conversation:send-reply",
        "conversation:send-attachment",
        "conversation:send-reaction",
        "conversation:send-typing-indicator",
        "conversation:send-read-receipt",
        "conversation:lock",
        "conversation:explode",
        "conversation:update-name",
        "conversation:update-description",
        "conversation:update-profile",
        "conversation:remove-members",
    }
)


class CommandRunner:
    """Runs the commands of one instance on its transport, inside a turn of its queue."""

    def __init__(self, transport: CliTransport, *, timeout_s: float) -> None:
        self.transport = transport
        self.timeout_s = timeout_s
        #: while set, nothing but ``--version`` runs (see :meth:`CliCalls.refuse`)
        self.refused: str | None = None
        #: why the last command that needed the network could not reach it (None: the last
        #: one did, or none failed yet): for health while no child watches the network
        self.network_problem: str | None = None

    def admit(self, invocation: Invocation) -> None:
        if self.refused is not None and invocation.command != "--version":
            raise errors.CliUnavailable(self.refused)

    async def result(self, invocation: Invocation, timeout_s: float | None = None) -> CliResult:
        """Run ``invocation``: its result when it exits 0, else the error its exit means."""
        self.admit(invocation)
        result = await self.transport.run(invocation, timeout_s=timeout_s or self.timeout_s)
        if result.exit_code != 0:
            error = classify(invocation.command, result.exit_code, result.stderr)
            if isinstance(error, errors.NetworkUnavailable):
                self.network_problem = (
                    f"unreachable: convos {invocation.command.replace(':', ' ')} failed: "
                    f"{error.message}"
                )
            if (
                isinstance(error, errors.CliLocked)
                and invocation.command not in REPEATABLE_COMMANDS
                and not lock_met_before_work(invocation.command, error)
            ):
                # The queue retries a lock error; only a command that changes nothing, or
                # one that met the lock before its work, may run again. The CLI may meet
                # ``database is locked`` after its work (a send that went out): unknown.
                raise not_run_again(
                    invocation.command, "the CLI met a lock while it ran (data.error)", error
                )
            raise error
        if invocation.command in NETWORK_COMMANDS or "--sync" in invocation.argv:
            self.network_problem = None
        return result

    async def json(self, invocation: Invocation, timeout_s: float | None = None) -> Any:
        result = await self.result(invocation, timeout_s)
        return json_document(invocation, result.stdout)

    async def model(
        self, invocation: Invocation, model: type[M], timeout_s: float | None = None
    ) -> M:
        value = await self.json(invocation, timeout_s)
        result: M = validated(invocation, model, value)
        return result

    async def list(self, invocation: Invocation, adapter: TypeAdapter[Any]) -> Any:
        return listed(invocation, adapter, await self.json(invocation))


class CliCalls:
    """One instance's CLI: its queue and transport, and what is done with them as a whole.

    ``timeout_s`` bounds one command, and how long a call is retried while the CLI's
    database stays locked (then BUSY). ``transport`` builds what runs the commands from
    the one-shot runner (default: the one-shot runner itself, one process per command).
    """

    def __init__(
        self,
        setup: CliSetup,
        *,
        timeout_s: float = 60.0,
        environ: Mapping[str, str] | None = None,
        transport: TransportFactory | None = None,
        host: Literal["single", "separate"] = "single",
    ) -> None:
        self.setup = setup
        #: where the long-lived commands run: roles of the warm worker, or their own processes
        self.host = host
        self.timeout_s = timeout_s
        self.argv = ArgvBuilder(env=setup.env, env_file=setup.env_file)
        env = child_environment(
            env=setup.env,
            convos_home=setup.convos_home,
            process_home=setup.process_home,
            passthrough=setup.passthrough,
            parent=os.environ if environ is None else environ,
        )
        self._environment = env  # read for its variable names only (upload provider)
        # Long-lived commands are processes whatever the transport: this builds their specs.
        self._processes = CliRunner(setup.executable, env, setup.state_dir)
        self._transport: CliTransport = (
            self._processes if transport is None else transport(self._processes)
        )
        self._runner = CommandRunner(self._transport, timeout_s=timeout_s)
        self._queue = CliQueue(timeout_s=timeout_s)

    async def in_turn(self, call: Callable[[CommandRunner], Awaitable[T]], *, what: str) -> T:
        """Run ``call`` with the runner when every earlier call has finished (a call that
        meets the CLI's database locked is run again, :mod:`convosd.cli.queue`)."""
        return await self._queue.run(functools.partial(call, self._runner), what=what)

    @property
    def network_problem(self) -> str | None:
        """Why the last command that needed the network could not reach it (None: the last
        one did, or none failed yet): for health while no child watches the network."""
        return self._runner.network_problem

    def refuse_all(self, reason: str) -> None:
        """Every call from now on, queued ones too, fails with NOT_READY (``reason``): the
        state dir is gone, and a CLI process would create a new identity at its path."""
        self._queue.refused = reason

    async def aclose(self) -> None:
        await self._transport.aclose()  # shutdown

    def transport_status(self) -> dict[str, Any]:
        """What runs the commands (``status``): the transport, its worker if it has one
        (state, pid, restarts, fallbacks to one-shot), and the ``database is locked``
        retries of the queue."""
        describe = getattr(self._transport, "describe", None)
        return {
            "transport": getattr(self._transport, "name", "oneshot"),
            "worker": describe() if describe is not None else None,
            "lockedRetries": self._queue.locked_retries,
        }

    def restart_transport(self, reason: str) -> None:
        """A transport that keeps the CLI loaded starts afresh before the next command
        (after ``daemon.reset``, or when the CLI home's identity changed)."""
        invalidate = getattr(self._transport, "invalidate", None)
        if invalidate is not None:
            invalidate(reason)

    @property
    def waiting(self) -> int:
        """Calls waiting for their turn in the queue (not counting the one running)."""
        return self._queue.waiting

    @property
    def finished(self) -> int:
        """Calls that have finished so far (only they change the CLI home)."""
        return self._queue.finished

    def refuse(self, reason: str | None) -> None:
        """While ``reason`` is set, nothing but ``--version`` runs: no command may open a CLI
        home that a newer CLI or newer bindings already migrated (forward-only)."""
        self._runner.refused = reason

    def bindings_version(self) -> str | None:
        """The version of the XMTP bindings the configured CLI loads (None: not found)."""
        return installed_bindings_version(self.setup.executable)

    def upload_provider_configured(self) -> bool:
        """Whether ``send-attachment`` would find an upload provider (its environment or
        its env file sets ``CONVOS_UPLOAD_PROVIDER`` or ``CONVOS_API_KEY``)."""
        return provider_configured(self._environment, self.setup.env_file)

    def long_lived(self, invocation: Invocation) -> SpawnSpec | RoleSpec:
        """How to start a long-lived command: a role of the warm worker with ``cliHost =
        "single"`` (:mod:`convosd.cli.roles`), else its own process."""
        self._runner.admit(invocation)
        spec = self._processes.spec(invocation)
        start_role = getattr(self._transport, "start_role", None)
        if self.host == "single" and start_role is not None:
            return RoleSpec(start_role, invocation, spec)
        return spec

    def stream_spec(self, conversation_id: str) -> SpawnSpec | RoleSpec:
        return self.long_lived(self.argv.stream(conversation_id))

    def join_requests_spec(self, conversation_id: str) -> SpawnSpec | RoleSpec:
        return self.long_lived(self.argv.process_join_requests_watch(conversation_id))
