"""Tool results: a daemon answer as ``structuredContent``, an error as a text any client
shows the model (the kind, the message, each parameter at fault, the next step by tool
name) with the details for programs in ``_meta["convosd/error"]``.

An error result has no ``structuredContent``: it would not match the tool's output schema,
and TypeScript-SDK clients throw on that. A next step names only tools, never the daemon's
methods; a tool this server does not offer is named with what the operator must do for it
(``--allow-admin``, ``--tools``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcp_types as types
from pydantic import ValidationError

from contrib.mcp.spec import Json
from contrib.mcp.tools import DAEMON_TOOLS, tool_terms
from convosd import errors
from convosd.client import RpcError

ADMIN_TOOLS = frozenset(spec.name for spec in DAEMON_TOOLS if spec.admin)


class DaemonUnreachable(Exception):
    def __init__(self, socket: Path, reason: str) -> None:
        super().__init__(f"convosd is not reachable at {socket} ({reason})")
        self.socket = socket


def tool_param_error(param: str, problem: str) -> errors.InvalidParams:
    """INVALID_PARAMS naming ``param``, in the daemon's shape (``data.errors``)."""
    return errors.InvalidParams(
        f"{param}: {problem}", data={"errors": [{"param": param, "problem": problem}]}
    )


#: where an error result carries its details for programs: ``_meta`` is never checked
#: against the tool's output schema (``structuredContent`` is, by TypeScript-SDK clients)
ERROR_META = "convosd/error"

_SENDS = frozenset({"send_message", "send_attachment"})
_TOOL_REF = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class ErrorContext:
    """What the next step of an error depends on: the tool called and the server's options."""

    tool: str = ""
    allow_admin: bool = False
    #: the tools this server exposes (``--tools``); None: every tool ``allow_admin`` allows
    exposed: frozenset[str] | None = None

    def ref(self, tool: str) -> str:
        """``tool`` as a next step names it: with what the operator must do when this
        server does not offer it."""
        if tool in ADMIN_TOOLS and not self.allow_admin:
            return (
                f"`{tool}` (an admin tool: the operator must start this server with --allow-admin)"
            )
        if self.exposed is not None and tool not in self.exposed:
            return f"`{tool}` (not exposed: the operator must add it to this server's --tools)"
        return f"`{tool}`"

    @property
    def again(self) -> str:
        return f"call `{self.tool}` again" if self.tool else "call the tool again"

    def say(self, text: str) -> str:
        """``text`` with each ``{tool}`` in it named as :meth:`ref` names it."""
        return _TOOL_REF.sub(lambda found: self.ref(found[1]), text)


def next_step(kind: str, data: Mapping[str, Any], ctx: ErrorContext) -> str:
    """What the model should do after an error of ``kind``, in this server's tool names."""
    send_key = " with the same idempotencyKey" if ctx.tool in _SENDS else ""
    if kind == "INVALID_PARAMS":
        return (
            "Fix the parameter named above and "
            + ctx.again
            + "; the same arguments fail again (see the tool's input schema)."
        )
    if kind == "NOT_BOUND":
        return ctx.say(
            "The instance has no conversation yet: {create_conversation} makes one, "
            "{join_conversation} joins one by invite; or the operator sets it up (convosctl "
            "setup INVITE)."
        )
    if kind == "ALREADY_BOUND":
        if data.get("awaitingAdd"):
            return ctx.say(
                "The instance waits to be added to a conversation: wait for it "
                '({wait_for_message} with types ["conversation_bound"]) or stop waiting with '
                "{cancel_join}."
            )
        if data.get("pending"):
            return ctx.say(
                "A join waits for the creator's acceptance: wait for it ({wait_for_message} "
                'with types ["conversation_bound"]) or give it up with {cancel_join}.'
            )
        return ctx.say(
            "The instance is bound to its conversation for good: go on using it; "
            "{reset_daemon} (irreversible) wipes it to start over."
        )
    if kind in ("INVITE_INVALID", "INVITE_EXPIRED"):
        return ctx.say("Ask a member for a new invite, then call {join_conversation}.")
    if kind == "NOT_FOUND":
        if ctx.tool.startswith("pairing_"):
            return ctx.say("Check the code against {pairing_list}; do not retry it.")
        if ctx.tool == "get_message_context":
            return ctx.say(
                "That message is not in the history (an unknown id, or trimmed by retention): "
                "take a messageId from {search_messages} or {read_events}; do not retry it."
            )
        return ctx.say(
            "Check the messageId: take it from an event of {read_events}; do not retry it."
        )
    if kind == "PERMISSION_DENIED":
        return "The instance lacks that right in the conversation: ask a member who has it."
    if kind == "LOCKED":
        return ctx.say(
            "The conversation is locked: {lock_conversation} with unlock: true and confirm: "
            "true, then {create_invite} again."
        )
    if kind == "FORBIDDEN":
        if ctx.tool == "send_attachment":
            return "Send the file's bytes as data (base64) with filename instead of path."
        return (
            "This MCP server's user is not an admin peer of the daemon: the operator must run "
            "it as one (adminUids/adminGids)."
        )
    if kind == "BUSY":
        wait = data.get("retryAfterS")
        after = f"Wait {wait:g} s, then " if isinstance(wait, (int, float)) else "Wait a moment, "
        return after + ctx.again + send_key + "."
    if kind == "NOT_READY":
        return "The daemon is starting or stopping: " + ctx.again + " in a moment."
    if kind == "CLI_TIMEOUT":
        if send_key:
            return (
                ctx.again.capitalize()
                + send_key
                + ": the send may have gone out, and the key makes the retry safe (a call "
                "without a key may send twice)."
            )
        return ctx.again.capitalize() + " later."
    if kind == "NETWORK_UNAVAILABLE":
        return ctx.again.capitalize() + " later" + send_key + ": the network is unreachable."
    if kind == "CLI_FAILED":
        return "Read the CLI's message above; " + ctx.again + " only if its cause is temporary."
    if kind == "CLI_UNAVAILABLE":
        return "The operator must fix the convos CLI; calling again does not help until then."
    if kind == "UPLOAD_UNAVAILABLE":
        return ctx.say(
            "Send the content as text with {send_message} instead, and tell the operator "
            "that files need an upload provider."
        )
    if kind == "EVENTS_EXPIRED":
        return ctx.say(
            "Older events were trimmed: call {read_events} again (it goes on from the oldest)."
        )
    if kind == "INTERNAL":
        error_id = data.get("errorId")
        report = f" (errorId {error_id})" if error_id else ""
        return f"A defect in convosd: tell the operator{report}; you may " + ctx.again + "."
    if kind == "METHOD_NOT_FOUND":
        return (
            "This daemon is older than this server and does not offer it: the operator may "
            "upgrade convosd; the other tools work meanwhile."
        )
    if kind == "CONFIRMATION_REQUIRED":
        return (
            "Make sure this is meant (ask the user unless they asked for exactly this), then "
            + ctx.again
            + " with confirm: true."
        )
    if kind == "ADMIN_DISABLED":
        return (
            "This server does not offer it: the operator must restart it with --allow-admin "
            "(and run it as an admin peer of the daemon)."
        )
    if kind == "NOT_EXPOSED":
        return (
            "This server does not offer it: use the tools it lists; the operator must add it "
            "to this server's --tools to offer it."
        )
    return f"Tell the operator (error kind {kind})."


def _problems(data: Mapping[str, Any]) -> list[str]:
    """``data.errors`` as lines that name each parameter at fault."""
    lines = []
    for entry in data.get("errors") or []:
        if not isinstance(entry, Mapping):
            continue
        param, problem = entry.get("param"), entry.get("problem") or "is not valid"
        if param:
            lines.append(f"Parameter at fault: `{param}`: {problem}")
        else:
            lines.append(f"The arguments together: {problem}")
    return lines


def error_result(
    kind: str,
    message: str,
    *,
    code: int | None = None,
    data: Json | None = None,
    hint: str | None = None,
    ctx: ErrorContext | None = None,
) -> types.CallToolResult:
    """A tool error any client reads: ``isError``, the explanation as text (the kind, the
    message, each parameter at fault, what to do next by tool name) and no
    ``structuredContent`` (a TypeScript-SDK client checks it against the tool's output
    schema and throws); the same details for programs in ``_meta["convosd/error"]``."""
    data = data or {}
    message = tool_terms(message)
    hint = hint if hint is not None else next_step(kind, data, ctx or ErrorContext())
    lines = [f"{kind}: {message}", *_problems(data)]
    if kind == "CLI_FAILED" and isinstance(data.get("error"), str):
        lines.append(f"The CLI said: {data['error']}")
    lines.append(f"What to do: {hint}")
    body = {"kind": kind, "code": code, "message": message, "hint": hint, "data": data}
    return types.CallToolResult(
        content=[types.TextContent(type="text", text="\n".join(lines))],
        is_error=True,
        meta={ERROR_META: body},
    )


def error_for(exc: errors.ConvosdError, ctx: ErrorContext) -> types.CallToolResult:
    if isinstance(exc, RpcError):
        kind = str((exc.extra or {}).get("kind") or "INTERNAL")
        message = exc.message
        if exc.rpc_code == -32601:
            kind = "METHOD_NOT_FOUND"
            message = f"{ctx.tool or 'this tool'} is not offered by this daemon (it is older)"
        return error_result(kind, message, code=exc.rpc_code, data=exc.extra, ctx=ctx)
    return error_result(exc.kind, exc.message, code=exc.code, data=exc.extra, ctx=ctx)


def validation_error(exc: ValidationError, ctx: ErrorContext) -> types.CallToolResult:
    """The server's own check of a stateful tool's arguments, shaped as the daemon's."""
    problems = [
        {"param": ".".join(str(p) for p in err["loc"]) or None, "problem": err["msg"]}
        for err in exc.errors()
    ]
    return error_result(
        "INVALID_PARAMS", "Invalid params", code=-32602, data={"errors": problems}, ctx=ctx
    )


def ok_result(value: Json) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(value, ensure_ascii=False))],
        structured_content=value,
    )
