"""The boundary to the ``convos`` CLI: argv (argv.py), output parsing (output.py), output
models (models.py), process running (runner.py), the redaction of attachment key material
from everything the CLI prints (redact.py) and the operations (adapter.py)."""

from convosd.cli.adapter import CliSetup, ConvosCli, check_bindings, check_version
from convosd.cli.argv import ArgvBuilder, Invocation
from convosd.cli.runner import CliResult, CliRunner, SpawnSpec

__all__ = [
    "ArgvBuilder",
    "CliResult",
    "CliRunner",
    "CliSetup",
    "ConvosCli",
    "Invocation",
    "SpawnSpec",
    "check_bindings",
    "check_version",
]
