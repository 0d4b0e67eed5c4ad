"""convosd as MCP tools: an MCP server (official ``mcp`` SDK, low-level ``Server``) over the socket.

Every tool is one daemon call through :class:`convosd.client.ConvosdClient`; the input
schemas are the daemon's own pydantic params models (:mod:`convosd.rpc.schemas`), the output
schemas its result models. Two tools keep state:

- ``read_events`` keeps a cursor (the last seq it showed, and the journal it belongs to),
  so an agent that calls it twice never sees an event twice; ``since`` moves the cursor
  back (or forward) first. Every read compares ``journalId``: a reset's new journal is
  shown from its seq 1 (``journalChanged``).
- ``wait_for_message`` long-polls: a subscription after the same cursor, until the next
  matching event or a timeout.

The cursor belongs to the server process, which is one MCP session on stdio (a desktop
client starts one server per conversation with the model). It starts at the journal's end
when the session's first request arrives (``start="latest"``) or at its beginning.

Tools that only a newer daemon has (typing, mark-read, attachments) are listed only when the
daemon's ``rpc.discover`` names their method; admin tools (create, join, lock, explode,
pairing, reset) only when the operator started the server with ``allow_admin``. A daemon
error becomes a tool result with ``isError: true`` and a text any client shows the model:
the kind and message, each parameter at fault (``data.errors``) and the next step by tool
name; no ``structuredContent`` (it would not match the tool's output schema, and
TypeScript-SDK clients throw on that). Programs find ``{"kind", "code", "message", "hint",
"data"}`` in the result's ``_meta["convosd/error"]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import mcp_types as types
from mcp.server import Server
from pydantic import BaseModel, Field, ValidationError

from convosd import errors
from convosd.client import Client, ConvosdClient, RpcError
from convosd.rpc import schemas as s

log = logging.getLogger("contrib.mcp")

Json = dict[str, Any]
Start = Literal["latest", "beginning"]

#: how long a discover answer is trusted before asking again (a daemon upgrade shows up)
DISCOVER_TTL_S = 60.0
DEFAULT_WAIT_S = 30.0
MAX_WAIT_S = 300.0
MAX_EVENTS = 100


# --- the input models of the stateful tools (built from the daemon's own field types) ----


class ReadToolParams(s.Params):
    since: Annotated[int, Field(ge=0)] | None = Field(
        default=None,
        description="Go back (or forward): show the events after this seq instead of after "
        "the last one already shown; reading goes on from there. 0 = from the start.",
    )
    limit: Annotated[int, Field(ge=1, le=MAX_EVENTS)] = Field(
        default=50, description="At most this many events (1..100)."
    )
    types: list[s.EventType] | None = Field(
        default=None,
        description="Only these event types (default: all). The cursor still moves past "
        "the events left out.",
    )


class WaitToolParams(s.Params):
    timeout_s: Annotated[float, Field(ge=0, le=MAX_WAIT_S)] = Field(
        default=DEFAULT_WAIT_S,
        alias="timeoutS",
        description="Give up after this many seconds (0..300) and return no events.",
    )
    types: list[s.EventType] = Field(
        default_factory=lambda: list[s.EventType](["message"]),
        description='Wake up for these event types (default ["message"]: a member wrote).',
    )


JOURNAL_CHANGED = (
    "The daemon was reset since the last call: its journal is new and seqs start over at 1; "
    "these events are the new journal's from its start."
)


class EventsOut(BaseModel):
    events: list[dict[str, Any]] = Field(description="Journal events, oldest first (seq order).")
    cursor: int = Field(
        description="The seq of the last event shown; the next call goes on after it."
    )
    journal_id: str = Field(alias="journalId")
    last_seq: int = Field(alias="lastSeq", description="The journal's newest seq right now.")
    more: bool = Field(description="More events are waiting: call read_events again.")
    skipped_to: int | None = Field(
        default=None,
        alias="skippedTo",
        description="Set when older events had been trimmed from the journal: reading went "
        "on from this seq.",
    )
    journal_changed: bool = Field(
        default=False,
        alias="journalChanged",
        description=JOURNAL_CHANGED,
    )


class WaitOut(BaseModel):
    events: list[dict[str, Any]]
    cursor: int
    timed_out: bool = Field(alias="timedOut")
    journal_changed: bool = Field(
        default=False, alias="journalChanged", description=JOURNAL_CHANGED
    )


# --- the tool table ----------------------------------------------------------------------


@dataclass(frozen=True)
class ToolSpec:
    name: str
    method: str  # the daemon's method ("" for the stateful tools)
    description: str
    params: type[BaseModel] | None  # None: take the schema from rpc.discover
    result: type[BaseModel] | None = None
    admin: bool = False
    #: listed only when rpc.discover names ``method``
    needs_discover: bool = False
    #: fixed arguments merged into the call (``confirm: true`` is part of the tool's meaning)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    describe: Mapping[str, str] = field(default_factory=dict)


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "send_message",
        "message.send",
        "Send a text message to the conversation. Give replyTo (a messageId from an event) to "
        "send it as a reply. Give idempotencyKey to make a retry safe: the same key never "
        "sends twice (keys live 24 h) and returns the first messageId.",
        s.SendParams,
        s.SendResult,
        describe={
            "replyTo": "The messageId of the message this one answers (optional).",
            "idempotencyKey": "Your key for this send (1..200 chars); a repeat returns the "
            "first result without sending again.",
        },
    ),
    ToolSpec(
        "react",
        "message.react",
        "React to a message with an emoji (remove: true takes the reaction back).",
        s.ReactParams,
        s.ReactResult,
        describe={
            "messageId": "The messageId of the message to react to.",
            "emoji": "One emoji, e.g. 👍.",
        },
    ),
    ToolSpec(
        "read_events",
        "",
        "Read the conversation's new events (messages from members, your own sends, members "
        "joining or leaving, ...), oldest first. The server remembers what it showed you: "
        "calling it again shows only newer events, never one twice. Use since to go back.",
        ReadToolParams,
        EventsOut,
    ),
    ToolSpec(
        "wait_for_message",
        "",
        "Wait until the next message arrives (or timeoutS passes) and return it with any "
        "other new events of the types asked for. Shares the cursor with read_events: what "
        "one returned, the other will not return again.",
        WaitToolParams,
        WaitOut,
    ),
    ToolSpec(
        "conversation_info",
        "conversation.info",
        "The conversation: its id, name, members (inboxId, name, isAdmin) and whether it is "
        "locked.",
        s.NoParams,
        s.InfoResult,
    ),
    ToolSpec(
        "create_invite",
        "conversation.invite",
        "Create an invite link for the conversation (fails with LOCKED while it is locked).",
        s.InviteParams,
        s.InviteResult,
        describe={
            "expiresInS": "The invite expires after this many seconds (default: never).",
            "singleUse": "The invite works once.",
        },
    ),
    # --- only when the daemon offers the method (newer daemons) -------------------------
    ToolSpec(
        "set_typing",
        "conversation.typing",
        "Show (typing: true, the default) or stop showing the typing indicator to members.",
        None,
        needs_discover=True,
    ),
    ToolSpec(
        "mark_read",
        "message.markRead",
        "Send a read receipt: tell members you have read the conversation.",
        None,
        needs_discover=True,
    ),
    ToolSpec(
        "send_attachment",
        "message.sendAttachment",
        "Send a file: its bytes as data (base64) with filename.",
        None,
        needs_discover=True,
    ),
    ToolSpec(
        "download_attachment",
        "attachment.download",
        "Download an attachment that a member sent (by messageId); returns where it is "
        "stored, and its bytes as base64 with inline: true.",
        None,
        needs_discover=True,
    ),
    ToolSpec(
        "search_messages",
        "events.search",
        "Search the conversation's history (messages from members and your own sends) for "
        "words; best match first, each with a snippet (matched words in « ») and the whole "
        'event. All words must appear; "a phrase" in double quotes; a word ending in * is '
        "a prefix. Use get_message_context on a result's messageId to read around it.",
        s.SearchParams,
        s.SearchResult,
        needs_discover=True,
        describe={
            "query": 'Words to find, e.g. deploy friday, "release notes", or invoi* '
            "(case and accents do not matter; at most 32 terms).",
            "types": 'Only "message" (from members) or "message_sent" (yours).',
            "sender": "Only messages from this inboxId.",
            "after": "Only events with seq greater than this.",
            "before": "Only events with seq less than this.",
            "limit": "At most this many results (1..100, default 20).",
        },
    ),
    ToolSpec(
        "get_message_context",
        "message.context",
        "The events just before and after a message (by messageId, e.g. from "
        "search_messages or read_events): what was said around it.",
        s.ContextParams,
        s.ContextResult,
        needs_discover=True,
        describe={
            "messageId": "The messageId of a message in the history.",
            "before": "At most this many events before it (0..100, default 5).",
            "after": "At most this many events after it (0..100, default 5).",
            "types": "Only these event types around it (default: all).",
        },
    ),
    # --- admin: only with allow_admin ---------------------------------------------------
    ToolSpec(
        "create_conversation",
        "conversation.create",
        "ADMIN. Create the instance's conversation (an instance has exactly one).",
        s.CreateParams,
        s.CreateResult,
        admin=True,
    ),
    ToolSpec(
        "join_conversation",
        "conversation.join",
        "ADMIN. Join a conversation by invite; may answer pending_acceptance.",
        s.JoinParams,
        s.JoinResult,
        admin=True,
    ),
    ToolSpec(
        "await_add",
        "conversation.awaitAdd",
        "ADMIN. Wait to be added to a conversation by an allowed inbox (from, default the "
        "daemon's allowFrom); answers the instance's inbox id to hand to whoever adds it.",
        s.AwaitAddParams,
        s.AwaitAddResult,
        admin=True,
    ),
    ToolSpec(
        "cancel_join",
        "conversation.cancelJoin",
        "ADMIN. Cancel a join that waits for acceptance, or stop waiting to be added.",
        s.NoParams,
        s.CancelJoinResult,
        admin=True,
    ),
    ToolSpec(
        "lock_conversation",
        "conversation.lock",
        "ADMIN. Lock the conversation (no one can join; every invite dies), or unlock it.",
        s.LockParams,
        s.LockResult,
        admin=True,
    ),
    ToolSpec(
        "explode_conversation",
        "conversation.explode",
        "ADMIN. IRREVERSIBLE: remove every member and end the conversation.",
        s.NoParams,
        s.ExplodeResult,
        admin=True,
        fixed={"confirm": True},
    ),
    ToolSpec(
        "pairing_list",
        "pairing.list",
        "ADMIN. List pairing requests (senders waiting for approval).",
        s.NoParams,
        s.PairingListResult,
        admin=True,
    ),
    ToolSpec(
        "pairing_approve",
        "pairing.approve",
        "ADMIN. Approve a pairing code: the sender's held messages are released.",
        s.PairingCodeParams,
        s.PairingApproveResult,
        admin=True,
    ),
    ToolSpec(
        "pairing_deny",
        "pairing.deny",
        "ADMIN. Deny a pairing code: the sender's held messages are dropped.",
        s.PairingCodeParams,
        s.PairingDenyResult,
        admin=True,
    ),
    ToolSpec(
        "reset_daemon",
        "daemon.reset",
        "ADMIN. IRREVERSIBLE: wipe the identity, journal and pairing state.",
        s.NoParams,
        s.ResetResult,
        admin=True,
        fixed={"confirm": True},
    ),
)


def input_schema(spec: ToolSpec) -> Json:
    assert spec.params is not None
    schema = spec.params.model_json_schema(by_alias=True)
    schema.pop("title", None)
    for name, prop in schema.get("properties", {}).items():
        prop.pop("title", None)
        if name in spec.describe:
            prop["description"] = spec.describe[name]
    return schema


def output_schema(model: type[BaseModel]) -> Json:
    schema = model.model_json_schema(by_alias=True, mode="serialization")
    schema.pop("title", None)
    return schema


def schema_from_discover(entry: Json, components: Json) -> Json:
    """A tool input schema from an OpenRPC method entry (its by-name params)."""
    text = json.dumps(
        {
            "type": "object",
            "properties": {p["name"]: p.get("schema", {}) for p in entry.get("params", [])},
            "required": [p["name"] for p in entry.get("params", []) if p.get("required")],
            "additionalProperties": False,
        }
    )
    if "#/components/schemas/" in text:
        text = text.replace("#/components/schemas/", "#/$defs/")
        schema: Json = json.loads(text)
        schema["$defs"] = json.loads(
            json.dumps(components).replace("#/components/schemas/", "#/$defs/")
        )
        return schema
    result: Json = json.loads(text)
    return result


# --- errors --------------------------------------------------------------------------------


class DaemonUnreachable(Exception):
    def __init__(self, socket: Path, reason: str) -> None:
        super().__init__(f"convosd is not reachable at {socket} ({reason})")
        self.socket = socket


ATTACHMENT_TOOL = "Send a file: its bytes as data (base64) with filename."
#: how long the client may take to list its roots
ROOTS_TIMEOUT_S = 30.0
#: the key of the roots request in an InputRequiredResult (protocol 2026-07-28)
ROOTS_INPUT = "roots"


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


async def _root_dirs(roots: Sequence[Any]) -> list[str]:
    """The local directories of ``file://`` roots, resolved; other roots name none."""
    dirs = []
    for root in roots:
        parsed = urllib.parse.urlparse(str(getattr(root, "uri", "")))
        if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
            path = urllib.parse.unquote(parsed.path)
            dirs.append(await asyncio.to_thread(os.path.realpath, path))
    return dirs


def tool_param_error(param: str, problem: str) -> errors.InvalidParams:
    """INVALID_PARAMS naming ``param``, in the daemon's shape (``data.errors``)."""
    return errors.InvalidParams(
        f"{param}: {problem}", data={"errors": [{"param": param, "problem": problem}]}
    )


#: where an error result carries its details for programs: ``_meta`` is never checked
#: against the tool's output schema (``structuredContent`` is, by TypeScript-SDK clients)
ERROR_META = "convosd/error"

_METHOD_NAME = re.compile(r"\b[a-z]+\.[a-z][A-Za-z]*\b")
_TOOL_OF_METHOD = {spec.method: spec.name for spec in TOOLS if spec.method}
_SENDS = frozenset({"send_message", "send_attachment"})


def tool_terms(text: str) -> str:
    """A daemon text with its method names as this server's tool names
    (``conversation.cancelJoin`` -> ``cancel_join``)."""
    return _METHOD_NAME.sub(lambda m: _TOOL_OF_METHOD.get(m.group(0), m.group(0)), text)


@dataclass(frozen=True)
class ErrorContext:
    """What the next step of an error depends on: the tool called and the server's options."""

    tool: str = ""
    allow_admin: bool = False

    def admin(self, tool: str) -> str:
        if self.allow_admin:
            return f"`{tool}`"
        return f"`{tool}` (an admin tool: the operator must start this server with --allow-admin)"

    @property
    def again(self) -> str:
        return f"call `{self.tool}` again" if self.tool else "call the tool again"


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
        return (
            "The instance has no conversation yet: "
            + ctx.admin("create_conversation")
            + " makes one, "
            + ctx.admin("join_conversation")
            + " joins one by invite; or the operator sets it up (convosctl setup INVITE)."
        )
    if kind == "ALREADY_BOUND":
        if data.get("awaitingAdd"):
            return (
                "The instance waits to be added to a conversation: wait for it "
                '(`wait_for_message` with types ["conversation_bound"]) or stop waiting with '
                + ctx.admin("cancel_join")
                + "."
            )
        if data.get("pending"):
            return (
                "A join waits for the creator's acceptance: wait for it (`wait_for_message` "
                'with types ["conversation_bound"]) or give it up with '
                + ctx.admin("cancel_join")
                + "."
            )
        return (
            "The instance is bound to its conversation for good: go on using it; "
            + ctx.admin("reset_daemon")
            + " (irreversible) wipes it to start over."
        )
    if kind in ("INVITE_INVALID", "INVITE_EXPIRED"):
        return "Ask a member for a new invite, then call " + ctx.admin("join_conversation") + "."
    if kind == "NOT_FOUND":
        if ctx.tool.startswith("pairing_"):
            return "Check the code against " + ctx.admin("pairing_list") + "; do not retry it."
        if ctx.tool == "get_message_context":
            return (
                "That message is not in the history (an unknown id, or trimmed by retention): "
                "take a messageId from `search_messages` or `read_events`; do not retry it."
            )
        return "Check the messageId: take it from an event of `read_events`; do not retry it."
    if kind == "PERMISSION_DENIED":
        return "The instance lacks that right in the conversation: ask a member who has it."
    if kind == "LOCKED":
        return (
            "The conversation is locked: "
            + ctx.admin("lock_conversation")
            + " with unlock: true, then `create_invite` again."
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
        return (
            "Send the content as text with `send_message` instead, and tell the operator that "
            "files need an upload provider."
        )
    if kind == "EVENTS_EXPIRED":
        return "Older events were trimmed: call `read_events` again (it goes on from the oldest)."
    if kind == "INTERNAL":
        error_id = data.get("errorId")
        report = f" (errorId {error_id})" if error_id else ""
        return f"A defect in convosd: tell the operator{report}; you may " + ctx.again + "."
    if kind == "METHOD_NOT_FOUND":
        return "This daemon does not offer it: list the tools again; the operator may upgrade."
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
        if exc.rpc_code == -32601:
            kind = "METHOD_NOT_FOUND"
        return error_result(kind, exc.message, code=exc.rpc_code, data=exc.extra, ctx=ctx)
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


# --- the server ---------------------------------------------------------------------------


@dataclass
class Cursor:
    seq: int | None = None  # None: not anchored yet
    journal_id: str | None = None


class ConvosdMcp:
    """The MCP server's state: the daemon connection, the discover cache, the cursor."""

    def __init__(
        self,
        socket: Path,
        *,
        allow_admin: bool = False,
        allow_paths: Sequence[Path] = (),
        start: Start = "latest",
        max_wait_s: float = MAX_WAIT_S,
    ) -> None:
        self.socket = socket
        self.allow_admin = allow_admin
        #: the folders send_attachment may name a file in (the operator's --allow-path);
        #: none: the tool has no path at all
        self.allow_paths = tuple(os.path.abspath(folder) for folder in allow_paths)
        self.start = start
        self.max_wait_s = max_wait_s
        self.cursor = Cursor()
        self._client: ConvosdClient | None = None
        self._connect_lock = asyncio.Lock()
        self._cursor_lock = asyncio.Lock()
        self._discovered: tuple[float, Json] | None = None
        self._tools: tuple[Json, list[tuple[ToolSpec, types.Tool]]] | None = None
        self.server: Server[Any] = Server(
            "convosd",
            version="0.1.0",
            instructions="Tools for one end-to-end encrypted Convos (XMTP) conversation, "
            "through the local convosd daemon. Call read_events to catch up, "
            "wait_for_message to wait for the next message, send_message to answer "
            "(replyTo to reply to one). Errors carry a kind and what to do.",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )

    # --- daemon connection ---------------------------------------------------------------

    async def client(self) -> ConvosdClient:
        async with self._connect_lock:
            if self._client is not None and not self._client.closed.is_set():
                return self._client
            if self._client is not None:
                await self._client.close()
                self._client = None
            try:
                self._client = await ConvosdClient.connect(self.socket)
            except OSError as exc:
                raise DaemonUnreachable(self.socket, exc.strerror or type(exc).__name__) from exc
            return self._client

    async def call(self, method: str, params: Json | None = None) -> Any:
        client = await self.client()
        try:
            return await client.call(method, params)
        except ConnectionError as exc:
            raise DaemonUnreachable(self.socket, "the connection closed") from exc

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def discover(self) -> Json:
        now = time.monotonic()
        if self._discovered is not None and now - self._discovered[0] < DISCOVER_TTL_S:
            return self._discovered[1]
        document: Json = await self.call("rpc.discover")
        self._discovered = (now, document)
        return document

    # --- the tools offered ---------------------------------------------------------------

    async def tools(self) -> list[tuple[ToolSpec, types.Tool]]:
        """The tools this server offers now (admin flag, daemon's methods)."""
        try:
            document = await self.discover()
        except (DaemonUnreachable, errors.ConvosdError) as exc:
            log.warning("rpc.discover failed (%s): listing the base tools only", exc)
            document = {"methods": []}
        if self._tools is not None and self._tools[0] is document:
            return self._tools[1]
        methods = {m.get("name"): m for m in document.get("methods", [])}
        components = document.get("components", {}).get("schemas", {})
        offered = []
        for spec in TOOLS:
            if spec.admin and not self.allow_admin:
                continue
            if spec.needs_discover and spec.method not in methods:
                continue
            description = spec.description
            if spec.params is not None:
                schema = input_schema(spec)
            else:
                schema = schema_from_discover(methods[spec.method], components)
            if spec.name == "send_attachment":
                description = self._attachment_schema(schema)
            tool = types.Tool(
                name=spec.name,
                description=description,
                input_schema=schema,
                output_schema=output_schema(spec.result) if spec.result is not None else None,
            )
            offered.append((spec, tool))
        self._tools = (document, offered)
        return offered

    def _attachment_schema(self, schema: Json) -> str:
        """``path`` only when the operator named folders (and described with them); the
        tool's description to go with it."""
        properties = schema.get("properties", {})
        if not self.allow_paths:
            properties.pop("path", None)
            if "path" in schema.get("required", []):
                schema["required"].remove("path")
            return ATTACHMENT_TOOL
        folders = ", ".join(self.allow_paths)
        if "path" in properties:
            properties["path"] = {
                "type": "string",
                "description": f"Instead of data: the absolute path of a file inside {folders} "
                "(and inside your roots, when you have any); sent under its own name unless "
                "filename is given.",
            }
        return ATTACHMENT_TOOL + f" Or path: a file inside {folders}."

    async def checked_path(self, given: Any) -> str:
        """``path`` of send_attachment with every link resolved, refused here unless it is
        inside a folder the operator allowed (the daemon refuses its own files in any case)."""
        if not self.allow_paths:
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
        folders = await asyncio.to_thread(lambda: [os.path.realpath(f) for f in self.allow_paths])
        if not any(_inside(real, folder) for folder in folders):
            raise tool_param_error(
                "path",
                "is outside the folders this server may send from ("
                + ", ".join(self.allow_paths)
                + "): name a file inside one of them, or send the bytes as data",
            )
        return real

    async def client_roots(
        self, request: Any, params: types.CallToolRequestParams
    ) -> list[str] | types.InputRequiredResult | None:
        """The client's roots as resolved directories; None when the client has no roots
        capability. On a connection that takes server requests (protocol 2025-11-25 and
        before) the server asks ``roots/list``; on 2026-07-28 it answers
        ``InputRequiredResult`` and the client calls again with the roots. A client that
        has roots but cannot list them allows nothing."""
        answered = (params.input_responses or {}).get(ROOTS_INPUT)
        if answered is not None:
            return await _root_dirs(getattr(answered, "roots", []))
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
        return await _root_dirs(listed.roots)

    async def _list_tools(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        await self._anchor_quietly()
        return types.ListToolsResult(tools=[tool for _, tool in await self.tools()])

    async def _call_tool(
        self, request: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        arguments = dict(params.arguments or {})
        ctx = ErrorContext(params.name, self.allow_admin)
        try:
            await self._anchor_quietly()
            offered = {spec.name: spec for spec, _ in await self.tools()}
            spec = offered.get(params.name)
            if spec is None:
                return self._unknown_tool(params.name)
            if spec.name == "read_events":
                return ok_result(await self.read_events(ReadToolParams.model_validate(arguments)))
            if spec.name == "wait_for_message":
                wait = WaitToolParams.model_validate(arguments)
                return ok_result(await self.wait_for_message(wait))
            if spec.name == "send_attachment" and arguments.get("path") is not None:
                real = await self.checked_path(arguments["path"])
                roots = await self.client_roots(request, params)
                if isinstance(roots, types.InputRequiredResult):
                    return roots
                if roots is not None and not any(_inside(real, root) for root in roots):
                    raise tool_param_error(
                        "path",
                        f"is outside the client's roots ({', '.join(roots) or 'none'}): name a "
                        "file inside one of them, or send the bytes as data",
                    )
                arguments["path"] = real
            call_params = {k: v for k, v in arguments.items() if v is not None} | dict(spec.fixed)
            result = await self.call(spec.method, call_params or None)
            return ok_result(result if isinstance(result, dict) else {"result": result})
        except errors.ConvosdError as exc:
            return error_for(exc, ctx)
        except DaemonUnreachable as exc:
            return error_result(
                "DAEMON_UNREACHABLE",
                str(exc),
                hint="The operator must start convosd (systemctl start convosd, or make run) "
                "or point this server at its socket with --socket / CONVOSD_SOCKET; then "
                + ctx.again
                + ".",
            )
        except ValidationError as exc:  # the stateful tools' arguments
            return validation_error(exc, ctx)

    def _unknown_tool(self, name: str) -> types.CallToolResult:
        spec = next((t for t in TOOLS if t.name == name), None)
        if spec is not None and spec.admin:
            return error_result(
                "ADMIN_DISABLED",
                f"{name} is an admin tool and this server was started without --allow-admin",
                hint="This server does not offer it: the operator must restart it with "
                "--allow-admin (and run it as an admin peer of the daemon).",
            )
        if spec is not None:
            return error_result(
                "METHOD_NOT_FOUND",
                f"{name} is not offered by this daemon (it is too old for it)",
                hint="This daemon does not offer it: the operator may upgrade convosd.",
            )
        return error_result(
            "UNKNOWN_TOOL", f"no tool named {name}", hint="List the tools again; use one of those."
        )

    # --- the cursor ----------------------------------------------------------------------

    async def _anchor_quietly(self) -> None:
        with contextlib.suppress(DaemonUnreachable, errors.ConvosdError):
            await self.anchor()

    async def anchor(self) -> None:
        """Fix the cursor at the session's start: the journal's end (or its start)."""
        async with self._cursor_lock:
            if self.cursor.seq is not None:
                return
            status = await self.call("status")
            journal = status["journal"]
            self.cursor.journal_id = journal["journalId"]
            if self.start == "latest":
                self.cursor.seq = int(journal["lastSeq"])
            else:
                self.cursor.seq = max(0, int(journal["firstSeq"]) - 1)

    def _new_journal(self, journal_id: str) -> bool:
        """``journal_id`` is not the cursor's journal (a reset): start it from seq 0."""
        if self.cursor.journal_id is None or journal_id == self.cursor.journal_id:
            self.cursor.journal_id = journal_id
            return False
        log.info("the daemon's journal changed (a reset): reading it from its start")
        self.cursor.journal_id = journal_id
        self.cursor.seq = 0
        return True

    async def _journal_changed(self) -> bool:
        """After ``after > lastSeq``: a reset replaced the journal; start at its seq 0."""
        status = await self.call("status")
        journal_id = status["journal"]["journalId"]
        if journal_id != self.cursor.journal_id:
            self.cursor.journal_id = journal_id
            self.cursor.seq = 0
            return True
        return False

    async def read_events(self, params: ReadToolParams) -> Json:
        await self.anchor()
        async with self._cursor_lock:
            if params.since is not None:
                self.cursor.seq = params.since
            skipped_to: int | None = None
            changed = False
            for _ in range(3):
                request: Json = {"after": self.cursor.seq, "limit": params.limit}
                if params.types:
                    request["types"] = list(params.types)
                try:
                    result = await self.call("events.read", request)
                except errors.EventsExpired as exc:
                    self.cursor.seq = skipped_to = max(0, exc.first_seq - 1)
                    continue
                except errors.InvalidParams:
                    if params.since is not None or not await self._journal_changed():
                        raise
                    changed = True
                    continue
                # A reset makes a new journal whose seqs start over: the cursor's seq means
                # nothing there (the new journal may well have passed it), so every read
                # compares journalId and starts the new journal from its seq 0.
                if params.since is None and self._new_journal(result["journalId"]):
                    changed = True
                    continue
                break
            else:  # pragma: no cover - the journal moved under us three times
                raise errors.Busy("the journal changed while reading; call again")
            events = result["events"]
            self.cursor.journal_id = result["journalId"]
            if events:
                self.cursor.seq = int(events[-1]["seq"])
            assert self.cursor.seq is not None
            out = EventsOut(
                events=events,
                cursor=self.cursor.seq,
                journalId=result["journalId"],
                lastSeq=result["lastSeq"],
                more=len(events) >= params.limit,
                skippedTo=skipped_to,
                journalChanged=changed,
            )
            return out.model_dump(by_alias=True)

    async def wait_for_message(self, params: WaitToolParams) -> Json:
        await self.anchor()
        timeout = min(params.timeout_s, self.max_wait_s)
        async with self._cursor_lock:
            # Its own connection: its notifications are its own, and a timeout that closes
            # it drops the subscription with it.
            try:
                sub_client = await Client.connect(self.socket)
            except OSError as exc:
                raise DaemonUnreachable(self.socket, exc.strerror or type(exc).__name__) from exc
            try:
                events, changed = await self._wait_on(sub_client, params.types, timeout)
            except ConnectionError as exc:
                raise DaemonUnreachable(self.socket, "the connection closed") from exc
            finally:
                await sub_client.close()
            if events:
                self.cursor.seq = int(events[-1]["seq"])
            assert self.cursor.seq is not None
            out = WaitOut(
                events=events, cursor=self.cursor.seq, timedOut=not events, journalChanged=changed
            )
            return out.model_dump(by_alias=True)

    async def _wait_on(
        self, client: Client, kinds: Sequence[str], wait_s: float
    ) -> tuple[list[Json], bool]:
        """The events after the cursor of ``kinds`` (waiting up to ``wait_s`` for the first)
        and whether the journal changed (a reset) since the cursor was set."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        changed = False
        for _ in range(3):
            try:
                sub = await client.call(
                    "events.subscribe", {"after": self.cursor.seq, "types": list(kinds)}
                )
            except errors.EventsExpired as exc:
                self.cursor.seq = max(0, exc.first_seq - 1)
                continue
            except errors.InvalidParams:
                if not await self._journal_changed():
                    raise
                changed = True
                continue
            if self._new_journal(sub["journalId"]):  # as read_events: from the new seq 0
                changed = True
                await client.call("events.unsubscribe", {"subscription": sub["subscription"]})
                continue
            break
        else:  # pragma: no cover
            raise errors.Busy("the journal changed while subscribing; call again")
        events: list[Json] = []
        while len(events) < MAX_EVENTS:
            remaining = deadline - loop.time() if not events else 0.0
            try:
                if remaining > 0:
                    note = await asyncio.wait_for(self._next_note(client), remaining)
                else:
                    note = client.notifications.get_nowait()
            except (TimeoutError, asyncio.QueueEmpty):
                break
            note_params = note.get("params", {})
            if note_params.get("subscription") != sub["subscription"]:
                continue
            if note.get("method") == "subscription.ended":
                break
            event = note_params.get("event", {})
            if isinstance(event.get("seq"), int) and event["seq"] > (self.cursor.seq or 0):
                events.append(event)
        return events, changed

    @staticmethod
    async def _next_note(client: Client) -> Json:
        getter = asyncio.ensure_future(client.notifications.get())
        closed = asyncio.ensure_future(client.closed.wait())
        try:
            done, _ = await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not getter.done():
                getter.cancel()
        if getter in done:
            note: Json = getter.result()
            return note
        raise ConnectionError("the daemon closed the connection")


async def serve_stdio(app: ConvosdMcp) -> None:
    from mcp.server.stdio import stdio_server

    try:
        async with stdio_server() as (read_stream, write_stream):
            await app.server.run(
                read_stream, write_stream, app.server.create_initialization_options()
            )
    finally:
        await app.aclose()
