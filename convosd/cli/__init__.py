"""The boundary to the ``convos`` CLI: argv (argv.py), output parsing (output.py, and
streams.py for the long-lived commands), output models (models.py), the transport interface
(transport.py) and its one-shot process implementation (runner.py), the single queue
(queue.py), the redaction of attachment key material from everything the CLI prints
(redact.py), the version checks (versions.py), what an instance's CLI needs on disk
(setup.py), the queue with the commands run in their turn (calls.py), the output read as
models (parse.py) and the operations (adapter.py), which own the queue."""

from convosd.cli.adapter import ConvosCli
from convosd.cli.argv import ArgvBuilder, Invocation
from convosd.cli.runner import CliResult, CliRunner, SpawnSpec
from convosd.cli.setup import CliSetup
from convosd.cli.transport import CliTransport, TransportFactory
from convosd.cli.versions import check_bindings, check_version

__all__ = [
    "ArgvBuilder",
    "CliResult",
    "CliRunner",
    "CliSetup",
    "CliTransport",
    "ConvosCli",
    "Invocation",
    "SpawnSpec",
    "TransportFactory",
    "check_bindings",
    "check_version",
]
