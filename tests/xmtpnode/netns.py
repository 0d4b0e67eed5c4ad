"""A private network namespace per run: the node's ports are fixed, so two runs on one machine
would otherwise meet on the same localhost:5556.

A holder process (``unshare -n`` as root, ``unshare -rn`` otherwise) brings ``lo`` up and waits
on its stdin; every process of the run (the node, the daemon's CLI children, a peer's CLI) is
started through :attr:`Namespace.enter` (``nsenter`` into the holder's namespace: it execs, so
the pid, the process group and passed fds stay the command's own). The holder exits when its
stdin closes: when this process closes it or dies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass

READY = "netns-ready"


@dataclass
class Namespace:
    holder: subprocess.Popen[str]
    enter: tuple[str, ...]

    def close(self) -> None:
        if self.holder.stdin is not None:
            with contextlib.suppress(OSError):
                self.holder.stdin.close()
        try:
            self.holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.holder.kill()
            self.holder.wait()
        for pipe in (self.holder.stdout, self.holder.stderr):
            if pipe is not None:
                pipe.close()


def open_namespace() -> Namespace | str:
    """A new namespace, or the reason none can be made here."""
    missing = [tool for tool in ("unshare", "nsenter", "ip") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found (util-linux and iproute2 are needed)"
    root = os.geteuid() == 0
    unshare = ["unshare", "-n"] if root else ["unshare", "-rn"]
    holder = subprocess.Popen(
        [*unshare, "sh", "-c", f"ip link set lo up && echo {READY} && read -r _"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert holder.stdout is not None
    line = holder.stdout.readline().strip()
    if line != READY:
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait()
        error = (holder.stderr.read() if holder.stderr else "").strip().splitlines()
        for pipe in (holder.stdout, holder.stderr):
            if pipe is not None:
                pipe.close()
        how = " ".join(unshare)
        return f"no private network namespace ({how}): {error[-1] if error else 'failed'}"
    pid = str(holder.pid)
    if root:
        enter: tuple[str, ...] = ("nsenter", f"--net=/proc/{pid}/ns/net")
    else:
        enter = ("nsenter", "-t", pid, "-U", "-n", "--preserve-credentials")
    return Namespace(holder, enter)
