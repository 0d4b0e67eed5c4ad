"""The state of one supervised child (``status.children``, docs/API.md). Pure: no I/O, no clock.

    stopped ──start──▶ starting ──first line/ready──▶ running
       ▲                  │  │                          │
       │                  │  └────────exit────────┐     │ exit
       │                  ▼                       ▼     ▼
       └──────stop─── (any) ◀──retry── backoff ◀──── exit (restartable)
                                                  fatal ◀── exit (not restartable)

``starting`` means spawned and not yet producing; a child is ``running`` once it printed a
line or stayed up for the readiness delay. Every transition records ``since``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from convosd.timefmt import iso


class ChildState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    FATAL = "fatal"


@dataclass(frozen=True, slots=True)
class ExitStatus:
    code: int | None
    signal: int | None

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        if returncode < 0:
            return cls(code=None, signal=-returncode)
        return cls(code=returncode, signal=None)

    def as_dict(self) -> dict[str, int | None]:
        return {"code": self.code, "signal": self.signal}


class IllegalTransition(RuntimeError):
    pass


_ALLOWED: dict[ChildState, frozenset[ChildState]] = {
    ChildState.STOPPED: frozenset({ChildState.STARTING}),
    ChildState.STARTING: frozenset(
        {ChildState.RUNNING, ChildState.BACKOFF, ChildState.FATAL, ChildState.STOPPED}
    ),
    ChildState.RUNNING: frozenset({ChildState.BACKOFF, ChildState.FATAL, ChildState.STOPPED}),
    ChildState.BACKOFF: frozenset({ChildState.STARTING, ChildState.STOPPED, ChildState.FATAL}),
    ChildState.FATAL: frozenset({ChildState.STOPPED, ChildState.STARTING}),
}


@dataclass
class ChildStatus:
    """What ``status.children.<name>`` reports."""

    state: ChildState
    since: datetime
    pid: int | None = None
    restarts: int = 0
    last_exit: ExitStatus | None = None
    last_error: str | None = None
    next_retry_at: datetime | None = None

    def _move(self, to: ChildState, now: datetime) -> None:
        if to not in _ALLOWED[self.state]:
            raise IllegalTransition(f"{self.state} -> {to}")
        self.state = to
        self.since = now

    def started(self, pid: int, now: datetime) -> None:
        if self.state in (ChildState.BACKOFF, ChildState.FATAL):
            self.restarts += 1
        self._move(ChildState.STARTING, now)
        self.pid = pid
        self.next_retry_at = None

    def became_ready(self, now: datetime) -> None:
        if self.state is ChildState.STARTING:
            self._move(ChildState.RUNNING, now)

    def exited(
        self, status: ExitStatus, error: str | None, now: datetime, retry_at: datetime | None
    ) -> None:
        """``retry_at`` None means the exit is fatal: no restart."""
        self.last_exit = status
        if error:
            self.last_error = error
        self.pid = None
        if retry_at is None:
            self._move(ChildState.FATAL, now)
            self.next_retry_at = None
        else:
            self._move(ChildState.BACKOFF, now)
            self.next_retry_at = retry_at

    def spawn_failed(self, error: str, now: datetime, retry_at: datetime | None) -> None:
        """A start attempt that got no process (the CLI is missing or refused)."""
        if self.state is not ChildState.STARTING:
            if self.state in (ChildState.BACKOFF, ChildState.FATAL):
                self.restarts += 1
            self._move(ChildState.STARTING, now)
        self.last_error = error
        self.pid = None
        if retry_at is None:
            self._move(ChildState.FATAL, now)
        else:
            self._move(ChildState.BACKOFF, now)
        self.next_retry_at = retry_at

    def stopped(self, now: datetime) -> None:
        if self.state is not ChildState.STOPPED:
            self._move(ChildState.STOPPED, now)
        self.pid = None
        self.next_retry_at = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": str(self.state),
            "pid": self.pid,
            "restarts": self.restarts,
            "since": iso(self.since),
            "lastExit": self.last_exit.as_dict() if self.last_exit else None,
            "lastError": self.last_error,
            "nextRetryAt": iso(self.next_retry_at),
        }
