"""The double's worker mode: convosd's warm-transport protocol, commands run in-process.

    convos-worker <fd> [<cli script>]

Like the real CLI's worker (convosd/cli/worker.mjs): frames on the inherited fd ``<fd>`` (a
4-byte big-endian length, then a JSON object); at start ``{"id": 0, "ready": true, "pid"}``;
per request ``{"id", "argv", "stdoutLimit", "stderrLimit"}`` one answer ``{"id", "exitCode",
"stdout", "stderr", "overflow"}`` (outputs base64), each exactly what a one-shot ``convos
<argv>`` prints and exits with. Between commands the process is put back as it was (the
environment, which ``--env-file`` loads into, the working directory, the output counters).
Faults fire inside the worker as they would in a one-shot process: ``hang`` hangs the worker
(the daemon's timeout kills it), ``crash_after_lines`` ends it.

Roles (``cliHost = "single"``), the same protocol as the real worker's: ``{"id", "start":
[argv...]}`` is answered ``{"id", "started": true}``, then the role's output comes as ``{"role":
id, "stdout"|"stderr": base64}`` and its end as ``{"role": id, "exit": code}``; ``{"id",
"stop": role id}`` is answered ``{"id", "stopping": bool}`` and ends the role. The double runs
each role as a process of its own (``convos <argv>``, in the worker's process group, killed
with the worker), relayed on the channel: a worker killed or timed out ends its roles, as
the real one's. A thread reads the requests, so a role starts or stops while a command runs.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import io
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import traceback
from typing import Any

import fc_main

_HEADER = struct.Struct(">I")
MAX_REQUEST = 64 * 1024 * 1024


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        data = sock.recv(size - len(chunks))
        if not data:
            return None
        chunks += data
    return bytes(chunks)


_SEND_LOCK = threading.Lock()


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    body = json.dumps(message).encode("utf-8")
    with _SEND_LOCK:
        sock.sendall(_HEADER.pack(len(body)) + body)


def _die_with_parent() -> None:  # runs in the role's process after fork
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


class Roles:
    """The roles this worker runs: one process each, relayed on the channel."""

    def __init__(self, sock: socket.socket, script: str) -> None:
        self.sock = sock
        self.script = script
        self.running: dict[int, subprocess.Popen[bytes]] = {}
        self.lock = threading.Lock()

    def start(self, role_id: int, argv: list[str]) -> None:
        process = subprocess.Popen(
            [sys.executable, self.script, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        with self.lock:
            self.running[role_id] = process
        _send(self.sock, {"id": role_id, "started": True})
        relays = [
            threading.Thread(target=self._relay, args=(role_id, process.stdout, "stdout")),
            threading.Thread(target=self._relay, args=(role_id, process.stderr, "stderr")),
        ]
        for relay in relays:
            relay.daemon = True
            relay.start()
        threading.Thread(target=self._reap, args=(role_id, process, relays), daemon=True).start()

    def _relay(self, role_id: int, stream: Any, kind: str) -> None:
        while chunk := os.read(stream.fileno(), 256 * 1024):
            with contextlib.suppress(OSError):
                _send(self.sock, {"role": role_id, kind: base64.b64encode(chunk).decode("ascii")})

    def _reap(self, role_id: int, process: subprocess.Popen[bytes], relays: list[Any]) -> None:
        code = process.wait()
        for relay in relays:
            relay.join()
        with self.lock:
            self.running.pop(role_id, None)
        with contextlib.suppress(OSError):
            _send(self.sock, {"role": role_id, "exit": code})

    def stop(self, request_id: int, role_id: int) -> None:
        with self.lock:
            process = self.running.get(role_id)
        _send(self.sock, {"id": request_id, "stopping": process is not None})
        if process is not None:
            # what the worker does to a role: its SIGINT handler, else the end of its stream
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)


def _run(argv: list[str]) -> tuple[int, bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    saved = sys.stdout, sys.stderr
    sys.stdout = io.TextIOWrapper(out, encoding="utf-8", errors="replace", write_through=True)
    sys.stderr = io.TextIOWrapper(err, encoding="utf-8", errors="replace", write_through=True)
    fc_main.OUT = fc_main.Output()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            code = fc_main.run_command(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception:  # what an uncaught exception prints in a one-shot process
            sys.stderr.write(traceback.format_exc())
            code = 1
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        return code, out.getvalue(), err.getvalue()
    finally:
        sys.stdout, sys.stderr = saved
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _read_requests(sock: socket.socket, roles: Roles, commands: queue.Queue[Any]) -> None:
    """Requests, as they come: roles start and stop at once, commands queue (None: the end)."""
    try:
        while True:
            header = _read_exactly(sock, _HEADER.size)
            if header is None:
                return  # the daemon closed its end
            (length,) = _HEADER.unpack(header)
            if length > MAX_REQUEST:
                os._exit(70)
            body = _read_exactly(sock, length)
            if body is None:
                return
            request = json.loads(body)
            if isinstance(request.get("start"), list):
                roles.start(request["id"], [str(a) for a in request["start"]])
            elif "stop" in request:
                roles.stop(request["id"], request["stop"])
            else:
                commands.put(request)
    except OSError:
        return
    finally:
        commands.put(None)


def serve(fd: int, script: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sock = socket.socket(fileno=fd)
    base_env = dict(os.environ)
    base_cwd = os.getcwd()
    roles = Roles(sock, script)
    commands: queue.Queue[Any] = queue.Queue()
    _send(sock, {"id": 0, "ready": True, "pid": os.getpid(), "roles": True})
    threading.Thread(target=_read_requests, args=(sock, roles, commands), daemon=True).start()
    while True:
        request = commands.get()
        if request is None:
            return
        argv = [os.fsencode(a).decode("utf-8", "replace") for a in request["argv"]]
        try:
            code, out, err = _run(argv)
        finally:
            os.environ.clear()
            os.environ.update(base_env)
            if os.getcwd() != base_cwd:
                os.chdir(base_cwd)
        stdout_limit = int(request.get("stdoutLimit") or 64 * 1024 * 1024)
        stderr_limit = int(request.get("stderrLimit") or 256 * 1024)
        overflow = len(out) > stdout_limit
        _send(
            sock,
            {
                "id": request["id"],
                "exitCode": code,
                "stdout": "" if overflow else base64.b64encode(out).decode("ascii"),
                "stderr": base64.b64encode(err[-stderr_limit:]).decode("ascii"),
                "overflow": overflow,
            },
        )


def main() -> None:
    script = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "convos")
    serve(int(sys.argv[1]), script)
