"""``send_attachment`` by ``path``: only inside the folders the operator named
(``--allow-path``) and inside the client's MCP roots when it has any (README.md, Files by
path). The daemon refuses its own files whoever asks; this is the server's narrower check.
"""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.parse
from collections.abc import Sequence
from typing import Any

import mcp_types as types

from contrib.mcp.results import tool_param_error
from contrib.mcp.spec import Json

log = logging.getLogger("contrib.mcp")

ATTACHMENT_TOOL = "Send a file: its bytes as data (base64) with filename."
#: how long the client may take to list its roots
ROOTS_TIMEOUT_S = 30.0
#: the key of the roots request in an InputRequiredResult (protocol 2026-07-28)
ROOTS_INPUT = "roots"


def inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


async def root_dirs(roots: Sequence[Any]) -> list[str]:
    """The local directories of ``file://`` roots, resolved; other roots name none."""
    dirs = []
    for root in roots:
        parsed = urllib.parse.urlparse(str(getattr(root, "uri", "")))
        if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
            path = urllib.parse.unquote(parsed.path)
            dirs.append(await asyncio.to_thread(os.path.realpath, path))
    return dirs


def attachment_schema(schema: Json, allow_paths: Sequence[str]) -> str:
    """``path`` only when the operator named folders (and described with them); the
    tool's description to go with it."""
    properties = schema.get("properties", {})
    if not allow_paths:
        properties.pop("path", None)
        if "path" in schema.get("required", []):
            schema["required"].remove("path")
        return ATTACHMENT_TOOL
    folders = ", ".join(allow_paths)
    if "path" in properties:
        properties["path"] = {
            "type": "string",
            "description": f"Instead of data: the absolute path of a file inside {folders} "
            "(and inside your roots, when you have any); sent under its own name unless "
            "filename is given.",
        }
    return ATTACHMENT_TOOL + f" Or path: a file inside {folders}."


async def checked_path(given: Any, allow_paths: Sequence[str]) -> str:
    """``path`` of send_attachment with every link resolved, refused here unless it is
    inside a folder the operator allowed (the daemon refuses its own files in any case)."""
    if not allow_paths:
        raise tool_param_error(
            "path",
            "this server sends no file by path (its operator allowed no folder with "
            "--allow-path): send the file's bytes as data with filename",
        )
    if not isinstance(given, str) or not given or "\x00" in given:
        raise tool_param_error("path", "must be a non-empty absolute path")
    if not os.path.isabs(given):
        raise tool_param_error("path", "must be absolute")
    real = await asyncio.to_thread(os.path.realpath, given)
    folders = await asyncio.to_thread(lambda: [os.path.realpath(f) for f in allow_paths])
    if not any(inside(real, folder) for folder in folders):
        raise tool_param_error(
            "path",
            "is outside the folders this server may send from ("
            + ", ".join(allow_paths)
            + "): name a file inside one of them, or send the bytes as data",
        )
    return real


async def client_roots(
    request: Any, params: types.CallToolRequestParams
) -> list[str] | types.InputRequiredResult | None:
    """The client's roots as resolved directories; None when the client has no roots
    capability. On a connection that takes server requests (protocol 2025-11-25 and
    before) the server asks ``roots/list``; on 2026-07-28 it answers
    ``InputRequiredResult`` and the client calls again with the roots. A client that
    has roots but cannot list them allows nothing."""
    answered = (params.input_responses or {}).get(ROOTS_INPUT)
    if answered is not None:
        return await root_dirs(getattr(answered, "roots", []))
    session = getattr(request, "session", None)
    capabilities = getattr(session, "client_capabilities", None)
    if session is None or capabilities is None or capabilities.roots is None:
        return None
    if not getattr(session, "can_send_request", False):
        return types.InputRequiredResult(input_requests={ROOTS_INPUT: types.ListRootsRequest()})
    try:
        listed = await asyncio.wait_for(
            session.send_request(types.ListRootsRequest(), types.ListRootsResult),
            ROOTS_TIMEOUT_S,
        )
    except Exception as exc:  # the client's failure: fail closed
        log.warning("roots/list failed (%s): no path is allowed", exc)
        return []
    return await root_dirs(listed.roots)
