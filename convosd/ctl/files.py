"""convosctl's file commands: ``send-file PATH [--name FILENAME] [--mime-type T]``.

``send-file`` asks the daemon to read the file itself (``message.sendAttachment`` with an
absolute ``path``): nothing crosses the socket but the path. Only root and the daemon's own
uid may do that; any other caller gets ``FORBIDDEN``, and then convosctl reads the file
itself (it can, or it would not have named it) and sends its bytes as ``data``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import stat
from collections.abc import Callable
from pathlib import Path

from convosd import errors
from convosd.client import ConvosdClient
from convosd.rpc import schemas as s

#: the most bytes convosctl reads itself (the daemon's maxAttachmentBytes and frameLimitBytes
#: bound what it accepts; this only keeps a wrong path from filling memory)
READ_LIMIT = 64 * 1024 * 1024


def add_commands(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    """Adds the file commands with ``add_parser`` (the subparsers' ``add_parser``)."""
    p = add_parser(
        "send-file",
        help="send a file as an attachment",
        description="Send a file as an attachment. The daemon reads PATH itself when "
        "convosctl runs as root or as the daemon's user; otherwise convosctl reads it and "
        "sends its bytes (then frameLimitBytes bounds its size).",
    )
    p.add_argument("path", metavar="PATH", type=_absolute)
    p.add_argument("--name", metavar="FILENAME", help="the attachment's name (default: PATH's)")
    p.add_argument("--mime-type", metavar="T", help="default: from the name's extension")
    p.add_argument("--idempotency-key")


def _absolute(text: str) -> Path:
    """PATH as the daemon must get it: absolute (it does not share our directory)."""
    return Path(os.path.abspath(text))


def _read_own(path: Path) -> bytes:
    """The caller's own read of PATH: a regular file, at most READ_LIMIT bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise errors.InvalidParams(f"{path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise errors.InvalidParams(f"{path}: not a regular file")
        data = handle.read(READ_LIMIT + 1)
    if len(data) > READ_LIMIT:
        raise errors.InvalidParams(f"{path}: larger than {READ_LIMIT} bytes")
    return data


async def send_file(client: ConvosdClient, args: argparse.Namespace) -> s.SendResult:
    path: Path = args.path
    try:
        return await client.send_attachment(
            path=path,
            filename=args.name,
            mime_type=args.mime_type,
            idempotency_key=args.idempotency_key,
        )
    except errors.Forbidden:
        pass  # not root, not the daemon's uid: send the bytes instead
    return await client.send_attachment(
        data=await asyncio.to_thread(_read_own, path),
        filename=args.name or path.name,
        mime_type=args.mime_type,
        idempotency_key=args.idempotency_key,
    )
