"""Start-up helpers: a usable state dir, and the CLI set-up of this instance."""

from __future__ import annotations

import os
from pathlib import Path

from convosd import errors
from convosd.cli import CliSetup
from convosd.config import Paths, Settings


def prepare_state_dir(path: Path) -> None:
    """Create the state dir with mode 0700, or fail with a clear ConfigError."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_uid == os.getuid():
            os.chmod(path, 0o700)
    except OSError as exc:
        raise errors.ConfigError(f"state dir {path} cannot be created: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise errors.ConfigError(f"state dir {path} is not writable")


def cli_setup(settings: Settings, paths: Paths) -> CliSetup:
    return CliSetup(
        executable=settings.daemon.cli,
        env=settings.convos.env,
        convos_home=paths.convos_home,
        state_dir=paths.state_dir,
        passthrough=settings.daemon.cli_env_passthrough,
    )
