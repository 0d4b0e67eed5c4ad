"""The transport: how one command of the CLI is run, below the adapter and its queue.

The adapter (:mod:`convosd.cli.adapter`) builds the argv, queues the call and parses the
output; a transport only runs one :class:`~convosd.cli.argv.Invocation` to completion and
gives back its exit code, stdout and stderr, exactly as a one-shot ``convos`` process would.
Everything above it is the same whichever transport runs the commands: the one-shot
:class:`~convosd.cli.runner.CliRunner`, or the warm worker of :mod:`convosd.cli.warm`
(``cliTransport`` in ``[daemon]``).

Like httpx's ``BaseTransport.handle_request``, the interface is one method, and failures are
mapped at the edge: a transport raises only :mod:`convosd.errors` exceptions
(``CliUnavailable`` when it cannot run the command, ``CliTimeout``, ``CliFailed`` for output
over its bounds); a non-zero exit is a result, not an exception (the adapter classifies it).
Calls reach a transport one at a time, through the adapter's queue. The long-lived commands
(``conversation stream``, the join-request watcher) are separate processes whatever the
transport: the adapter hands their :class:`~convosd.cli.runner.SpawnSpec` to the supervisor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from convosd.cli.argv import Invocation
from convosd.cli.runner import CliResult, CliRunner


class CliTransport(Protocol):
    async def run(self, invocation: Invocation, *, timeout_s: float) -> CliResult:
        """Run ``invocation`` to completion within ``timeout_s``; stdout and stderr redacted."""
        ...

    async def aclose(self) -> None:
        """Release what the transport holds (a worker process, say); called at shutdown."""
        ...


#: Builds a transport from the one-shot runner of the same CLI installation: its
#: executable, clean environment and working directory, and a fallback that always works.
TransportFactory = Callable[[CliRunner], CliTransport]
