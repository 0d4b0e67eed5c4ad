"""Which warm worker a CLI has: the argv that starts it, or the reason there is none.

The warm transport (:mod:`convosd.cli.warm`) runs the CLI's commands in one long-lived
worker. For the npm package that is ``worker.mjs`` beside this module, run by the same Node
as the CLI; a CLI other than the npm package (a test double) may ship its own worker, an
executable named ``<cli>-worker`` beside it that speaks the same protocol
(:mod:`convosd.cli.worker_protocol`). A CLI with neither runs every command one-shot.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from convosd.cli.versions import CLI_PACKAGE

WORKER_SCRIPT = Path(__file__).with_name("worker.mjs")


def worker_command(
    executable: Sequence[str], node_flags: Sequence[str] = ()
) -> tuple[str, ...] | str:
    """The worker argv prefix for the CLI started by ``executable`` (the channel's fd and the
    CLI's script are appended), or the reason there is none.

    The npm package's ``bin/run.js`` gets ``worker.mjs`` run by the same Node: the words
    before the script (``node``), else the script's ``#!`` line, then ``node_flags`` (Node's
    own options, ``cliWorkerNodeFlags``). Any other CLI script gets its companion
    ``<script>-worker`` if there is one, run by the same words before it (without
    ``node_flags``: it need not be Node).
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
            return (*interpreter, *node_flags, str(WORKER_SCRIPT))
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


def script_of(executable: Sequence[str]) -> str:
    """The CLI's own script: the last word that names a file."""
    for word in reversed(executable):
        path = shutil.which(word) if os.sep not in word else word
        if path is not None and os.path.isfile(path):
            return os.path.realpath(path)
    return executable[-1]
