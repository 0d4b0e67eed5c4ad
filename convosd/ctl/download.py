"""``convosctl download MESSAGE_ID [--output PATH]``: attachment.download from the command line.

The daemon stores the file in its state dir and answers its ``path``. With ``--output`` the
file is copied there: read from ``path`` when this user can, else (a daemon of another user)
fetched again as inline ``data``, which the daemon sends for files up to 786432 bytes.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
from pathlib import Path
from typing import Any

from convosd.client import ConvosdClient
from convosd.rpc import schemas as s


def add_parser(sub: Any) -> None:
    p = sub.add_parser("download", help="fetch an inbound attachment")
    p.add_argument("message_id", metavar="MESSAGE_ID")
    p.add_argument(
        "--output", metavar="PATH", help="also copy the file here (a directory: its own name)"
    )


async def run(client: ConvosdClient, args: argparse.Namespace) -> dict[str, Any]:
    result = await client.download_attachment(args.message_id)
    shown = s.dump(result)
    shown.pop("data", None)
    if args.output:
        target = _target(Path(args.output), result.filename)
        try:
            _copy(Path(result.path), target)
        except PermissionError:
            inline = await client.download_attachment(args.message_id, inline=True)
            _write(target, base64.b64decode(inline.data or ""))
        shown["output"] = str(target)
    return shown


def _target(output: Path, filename: str) -> Path:
    return output / filename if output.is_dir() else output


def _copy(source: Path, target: Path) -> None:
    with open(source, "rb") as src:
        _write_from(target, lambda dst: shutil.copyfileobj(src, dst, 1 << 20))


def _write(target: Path, data: bytes) -> None:
    _write_from(target, lambda dst: dst.write(data))


def _write_from(target: Path, fill: Any) -> None:
    """Write through a temporary file beside ``target``, then rename: a failure never
    leaves half a file under the name asked for."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with open(tmp, "xb") as dst:
            fill(dst)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
