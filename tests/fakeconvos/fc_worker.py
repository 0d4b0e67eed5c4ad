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
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import socket
import struct
import sys
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


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    body = json.dumps(message).encode("utf-8")
    sock.sendall(_HEADER.pack(len(body)) + body)


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


def serve(fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sock = socket.socket(fileno=fd)
    base_env = dict(os.environ)
    base_cwd = os.getcwd()
    _send(sock, {"id": 0, "ready": True, "pid": os.getpid()})
    while True:
        header = _read_exactly(sock, _HEADER.size)
        if header is None:
            return  # the daemon closed its end
        (length,) = _HEADER.unpack(header)
        if length > MAX_REQUEST:
            raise SystemExit(70)
        body = _read_exactly(sock, length)
        if body is None:
            return
        request = json.loads(body)
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
    serve(int(sys.argv[1]))
