"""What one instance's CLI needs on disk, and where: :class:`CliSetup`.

The CLI runs with the configured executable, XMTP environment (``--env``) and CLI home
(``CONVOS_HOME``); its processes get a ``HOME`` under the state dir, and an env file
(``--env-file``) that the CLI requires although the daemon passes a clean environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from convosd.cli.argv import Env


@dataclass(frozen=True, slots=True)
class CliSetup:
    """Everything needed to run the CLI for one instance."""

    executable: tuple[str, ...]
    env: Env
    convos_home: Path
    state_dir: Path
    passthrough: tuple[str, ...]

    @property
    def env_file(self) -> Path:
        return self.state_dir / "cli.env"

    @property
    def process_home(self) -> Path:
        return self.state_dir / "home"

    def prepare(self) -> None:
        """Create the directories and the env file the CLI needs (it fails without it)."""
        for directory in (self.state_dir, self.process_home, self.convos_home):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.env_file.exists():
            fd = os.open(self.env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(
                    "# Written by convosd. The daemon passes --env and a clean environment;\n"
                    "# this file only exists because the CLI requires its --env-file.\n"
                )
