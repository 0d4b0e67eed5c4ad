"""Start-up helpers: a usable state dir, and the CLI set-up of this instance."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from convosd import errors
from convosd.cli import CliSetup
from convosd.config import Paths, Settings


def prepare_state_dir(path: Path) -> None:
    """Create the state dir with mode 0700, or fail with a clear ConfigError.

    An existing one must be ours: owned by the daemon's uid and not writable by group or
    others (whoever can write in it can rewrite ``cli.env`` or the CLI home and so inject
    environment or keys into the CLI). It is then made 0700.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise errors.ConfigError(f"state dir {path} cannot be created: {exc.strerror}") from None
    require_private(path, "state dir")
    try:
        os.chmod(path, 0o700)
    except OSError as exc:
        raise errors.ConfigError(f"state dir {path} cannot be made 0700: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise errors.ConfigError(f"state dir {path} is not writable")


def require_private(path: Path, what: str) -> None:
    """Refuse ``path`` unless the daemon's uid owns it and neither group nor others may
    write to it (a symlink is judged by what it points to)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise errors.ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None
    uid = os.getuid()
    if info.st_uid != uid:
        raise errors.ConfigError(
            f"{what} {path} is owned by uid {info.st_uid}, not by the daemon's uid {uid}: "
            f"its owner could change what the CLI runs with. Use a {what} of your own "
            f"(or chown it to uid {uid} if you trust its contents)"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise errors.ConfigError(
            f"{what} {path} is writable by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}): run chmod go-w on it after checking "
            "its contents"
        )


def prepare_cli(setup: CliSetup) -> None:
    """Create the CLI's directories and env file; refuse any of them that is not ours."""
    try:
        setup.prepare()
    except OSError as exc:
        raise errors.ConfigError(
            f"the CLI home or env file cannot be created: {exc.strerror} ({exc.filename})"
        ) from None
    require_private(setup.convos_home, "CLI home")
    require_private(setup.process_home, "CLI process home")
    require_private(setup.env_file, "CLI env file")


def cli_setup(settings: Settings, paths: Paths) -> CliSetup:
    return CliSetup(
        executable=settings.daemon.cli,
        env=settings.convos.env,
        convos_home=paths.convos_home,
        state_dir=paths.state_dir,
        passthrough=settings.daemon.cli_env_passthrough,
    )
