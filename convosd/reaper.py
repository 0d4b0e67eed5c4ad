"""Leftover children after a daemon crash (even SIGKILL), found and killed at the next start.

Each long-lived child's process group and its leader's start time (clock ticks since boot,
``/proc/<pid>/stat`` field 22) are recorded when it starts. At start-up every process whose
process group is a recorded one and that started no earlier than the recorded leader is
killed: the start time guards against a recycled pid.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

PROC = Path("/proc")


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    head, _, rest = raw.rpartition(")")
    if not head:
        return None
    return rest.split()


def start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    # rest[0] is field 3 (state); field 22 (starttime) is rest[19].
    return int(fields[19]) if fields and len(fields) > 19 else None


def group_members(pgid: int, not_before_ticks: int) -> list[int]:
    """Live processes in group ``pgid`` that started at or after ``not_before_ticks``."""
    members = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry.name)
        if not fields or len(fields) <= 19:
            continue
        state, pgrp, started = fields[0], int(fields[2]), int(fields[19])
        if pgrp == pgid and started >= not_before_ticks and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def reap(pgid: int, recorded_start_ticks: int) -> list[int]:
    """Kill what is left of a recorded child group; returns the pids signalled."""
    killed = []
    for pid in group_members(pgid, recorded_start_ticks):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        killed.append(pid)
    return killed
