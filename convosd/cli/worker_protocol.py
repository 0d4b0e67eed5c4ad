"""The warm worker's channel protocol: the frames, and what the requests and answers say.

The channel is an inherited socketpair end (never stdin, which the CLI's parser reads):
frames of a 4-byte big-endian length and a JSON object, each request and answer carrying an
id. The worker's first frame says it is ready (id 0); a command's answer gives its exit
code, stdout and stderr (base64); a role's output comes in frames of their own, with the
role's id instead of an id (``worker.mjs``'s header has every frame). Nothing here reads a
process: a frame that breaks the protocol raises :class:`ProtocolError`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import Sequence
from typing import Any

HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The worker broke the protocol, crashed, or did not start: restart it, and run the
    command one-shot unless the worker had it (``delivered``) and it is not repeatable."""

    delivered = False


def frame_limit(stdout_limit: int, stderr_limit: int) -> int:
    """The largest frame an answer may be: base64 of both outputs, plus the JSON around them."""
    return (stdout_limit + stderr_limit) * 4 // 3 + 65536


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode("utf-8")
    return HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader, limit: int) -> dict[str, Any]:
    """The next frame's object. The reader's own errors (the channel ended or failed) are
    the caller's to explain."""
    header = await reader.readexactly(HEADER.size)
    (length,) = HEADER.unpack(header)
    if length > limit:
        raise ProtocolError(f"the worker sent a frame of {length} bytes (over the limit)")
    body = await reader.readexactly(length)
    try:
        message = json.loads(body)
    except ValueError:
        raise ProtocolError("the worker sent a frame that is not JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("the worker sent a frame that is not an object")
    return message


def is_ready(hello: dict[str, Any]) -> bool:
    """Whether the worker's first frame is its ready frame."""
    return hello.get("id") == 0 and hello.get("ready") is True


def command_request(
    request_id: int, argv: Sequence[str], *, stdout_limit: int, stderr_limit: int
) -> dict[str, Any]:
    return {
        "id": request_id,
        "argv": list(argv),
        "stdoutLimit": stdout_limit,
        "stderrLimit": stderr_limit,
    }


def command_answer(answer: dict[str, Any], request_id: int) -> tuple[int, bytes, bytes]:
    """A command's exit code, stdout and stderr, from its answer."""
    if answer.get("id") != request_id:
        raise ProtocolError(f"the worker answered id {answer.get('id')!r}, not {request_id}")
    try:
        exit_code = int(answer["exitCode"])
        stdout = base64.b64decode(answer["stdout"], validate=True)
        stderr = base64.b64decode(answer["stderr"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise ProtocolError("the worker's answer lacks exitCode, stdout or stderr") from None
    return exit_code, stdout, stderr


def role_request(role_id: int, argv: Sequence[str], *, stderr_limit: int) -> dict[str, Any]:
    """Start a role: its output comes in frames with ``"role": role_id``."""
    return {"id": role_id, "start": list(argv), "stderrLimit": stderr_limit}


def stop_request(request_id: int, role_id: int) -> dict[str, Any]:
    """End a role (the worker answers, then the role's exit frame comes)."""
    return {"id": request_id, "stop": role_id}
