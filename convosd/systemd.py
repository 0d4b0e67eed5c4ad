"""systemd readiness and watchdog (Type=notify), hand-written: one datagram per message.

``READY=1`` once the socket listens and, if bound, the children were spawned; ``STATUS=`` on
state changes; ``WATCHDOG=1`` from the event loop at half of ``WATCHDOG_USEC`` (a blocked loop
misses its pings and systemd restarts the daemon); ``STOPPING=1`` at shutdown. Without
``NOTIFY_SOCKET`` every call is a no-op.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        path = environ.get("NOTIFY_SOCKET") or None
        if path is not None and path.startswith("@"):
            path = "\0" + path[1:]
        self.address = path
        self.watchdog_s: float | None = None
        usec = environ.get("WATCHDOG_USEC")
        pid = environ.get("WATCHDOG_PID")
        if usec and usec.isdigit() and (pid is None or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1_000_000
        self.sent: list[str] = []
        self.last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        if self.address is None:
            return False
        message = "\n".join(lines)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode())
        except OSError:
            return False
        self.sent.append(message)
        return True

    def ready(self, status: str) -> bool:
        self.last_status = status
        return self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        if status == self.last_status:
            return False
        self.last_status = status
        return self.notify(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1", "STATUS=stopping")

    @property
    def watchdog_interval_s(self) -> float | None:
        return None if self.watchdog_s is None else self.watchdog_s / 2
