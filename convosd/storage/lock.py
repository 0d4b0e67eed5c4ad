"""The single-instance lock: one daemon per state dir."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from convosd.errors import ConfigError

LOCK_NAME = "convosd.lock"


class StateDirInUse(ConfigError):
    """Another daemon holds the state dir's lock."""


class InstanceLock:
    """The single-instance flock on ``<state dir>/convosd.lock``; the file holds the pid."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StateDirInUse(f"state dir in use by pid {holder}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def reclaim(self) -> bool:
        """The lock file was deleted (with the state dir) while we hold it: take the path
        again, so that a second daemon started on it is refused rather than sharing it.
        Creates the state dir (0700) if it is gone. False if another process holds it."""
        if self._fd is None:
            return False
        try:
            held = os.fstat(self._fd)
            current = os.stat(self.path)
            if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                return True
        except FileNotFoundError:
            pass
        old = self._fd
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.acquire()
        except (OSError, StateDirInUse):
            self._fd = old
            return False
        os.close(old)
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
