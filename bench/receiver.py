"""The test HTTP receiver the webhook benches POST to, in a process of its own.

A bench passes a receiver *script* (Python source) to :class:`Receiver`, which runs it with
``python -c`` from the repository's root. The script imports :func:`read_request` and
:func:`serve` from here and keeps only what is its own: how it answers each request and
what it reports. :func:`serve` prints the port it listens on (the first line the bench
reads), waits for SIGTERM, then prints the script's report as one JSON line (the last).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[dict[str, str], bytes]:
    """One HTTP/1.1 request: its headers (names in lower case) and its body."""
    head = await reader.readuntil(b"\r\n\r\n")
    headers = {}
    for line in head.decode().split("\r\n")[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return headers, body


def serve(
    handle: Handler, report: Callable[[], Any], stopping: asyncio.Event | None = None
) -> None:
    """Serve ``handle`` on a free loopback port until SIGTERM, then print ``report()``.
    ``stopping`` (made in the script, for handlers that stream) is set on SIGTERM."""

    async def main() -> None:
        stop = stopping if stopping is not None else asyncio.Event()
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        server.close()
        print(json.dumps(report()), flush=True)

    asyncio.run(main())


class Receiver:
    """A receiver script run in its own process, and its URL."""

    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, *args], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def stop(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """SIGTERM, then the script's report."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=timeout_s)
        report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return report
