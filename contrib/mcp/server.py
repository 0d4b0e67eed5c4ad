"""convosd as MCP tools: an MCP server (official ``mcp`` SDK, low-level ``Server``) over the socket.

Every tool is one daemon call through :class:`convosd.client.ConvosdClient`; the input
schemas are the daemon's own pydantic params models (:mod:`convosd.rpc.schemas`), the output
schemas its result models. Two tools keep state:

- ``read_events`` keeps a cursor (the last seq it showed), so an agent that calls it twice
  never sees an event twice; ``since`` moves the cursor back (or forward) first.
- ``wait_for_message`` long-polls: a subscription after the same cursor, until the next
  matching event or a timeout.

The cursor belongs to the server process, which is one MCP session on stdio (a desktop
client starts one server per conversation with the model). It starts at the journal's end
when the session's first request arrives (``start="latest"``) or at its beginning.

Tools that only a newer daemon has (typing, mark-read, attachments) are listed only when the
daemon's ``rpc.discover`` names their method; admin tools (create, join, lock, explode,
pairing, reset) only when the operator started the server with ``allow_admin``. A daemon
error becomes a tool result with ``isError: true`` whose structured content is
``{"error": {"kind", "code", "message", "hint", "data"}}`` (``hint``: what to do).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import mcp_types as types
from mcp.server import Server
from pydantic import BaseModel, Field

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


class WaitOut(BaseModel):
    events: list[dict[str, Any]]
    cursor: int
    timed_out: bool = Field(alias="timedOut")


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
        "Send a file: data (base64) with filename, or path (a file the daemon's user can read).",
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
        "cancel_join",
        "conversation.cancelJoin",
        "ADMIN. Cancel a join that waits for acceptance.",
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


def error_result(
    kind: str,
    message: str,
    *,
    code: int | None = None,
    data: Json | None = None,
    hint: str | None = None,
) -> types.CallToolResult:
    hint = hint if hint is not None else errors.hint_for(kind)
    body = {"kind": kind, "code": code, "message": message, "hint": hint, "data": data or {}}
    text = f"{kind}: {message}" + (f"\nWhat to do: {hint}" if hint else "")
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content={"error": body},
        is_error=True,
    )


def error_for(exc: errors.ConvosdError) -> types.CallToolResult:
    if isinstance(exc, RpcError):
        kind = str((exc.extra or {}).get("kind") or "INTERNAL")
        if exc.rpc_code == -32601:
            kind = "METHOD_NOT_FOUND"
        return error_result(kind, exc.message, code=exc.rpc_code, data=exc.extra)
    return error_result(exc.kind, exc.message, code=exc.code, data=exc.extra)


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
        start: Start = "latest",
        max_wait_s: float = MAX_WAIT_S,
    ) -> None:
        self.socket = socket
        self.allow_admin = allow_admin
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
            if spec.params is not None:
                schema = input_schema(spec)
            else:
                schema = schema_from_discover(methods[spec.method], components)
            tool = types.Tool(
                name=spec.name,
                description=spec.description,
                input_schema=schema,
                output_schema=output_schema(spec.result) if spec.result is not None else None,
            )
            offered.append((spec, tool))
        self._tools = (document, offered)
        return offered

    async def _list_tools(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        await self._anchor_quietly()
        return types.ListToolsResult(tools=[tool for _, tool in await self.tools()])

    async def _call_tool(
        self, ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        arguments = dict(params.arguments or {})
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
            call_params = {k: v for k, v in arguments.items() if v is not None} | dict(spec.fixed)
            result = await self.call(spec.method, call_params or None)
            return ok_result(result if isinstance(result, dict) else {"result": result})
        except errors.ConvosdError as exc:
            return error_for(exc)
        except DaemonUnreachable as exc:
            return error_result(
                "DAEMON_UNREACHABLE",
                str(exc),
                hint="Start convosd (systemctl start convosd, or make run) or point this server "
                "at its socket with --socket / CONVOSD_SOCKET.",
            )
        except ValueError as exc:  # pydantic's ValidationError of the stateful tools
            return error_result("INVALID_PARAMS", str(exc), code=-32602)

    def _unknown_tool(self, name: str) -> types.CallToolResult:
        spec = next((t for t in TOOLS if t.name == name), None)
        if spec is not None and spec.admin:
            return error_result(
                "ADMIN_DISABLED",
                f"{name} is an admin tool and this server was started without --allow-admin",
                hint="Ask the operator to restart the MCP server with --allow-admin "
                "(and to run it as an admin peer of the daemon).",
            )
        if spec is not None:
            return error_result(
                "METHOD_NOT_FOUND",
                f"{name} needs the daemon method {spec.method}, which this daemon does not offer",
                hint="Upgrade convosd to a version that has it.",
            )
        return error_result("UNKNOWN_TOOL", f"no tool named {name}", hint="List the tools again.")

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
            for _ in range(3):
                request: Json = {"after": self.cursor.seq, "limit": params.limit}
                if params.types:
                    request["types"] = list(params.types)
                try:
                    result = await self.call("events.read", request)
                    break
                except errors.EventsExpired as exc:
                    self.cursor.seq = skipped_to = max(0, exc.first_seq - 1)
                except errors.InvalidParams:
                    if params.since is not None or not await self._journal_changed():
                        raise
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
                events = await self._wait_on(sub_client, params.types, timeout)
            except ConnectionError as exc:
                raise DaemonUnreachable(self.socket, "the connection closed") from exc
            finally:
                await sub_client.close()
            if events:
                self.cursor.seq = int(events[-1]["seq"])
            assert self.cursor.seq is not None
            return WaitOut(events=events, cursor=self.cursor.seq, timedOut=not events).model_dump(
                by_alias=True
            )

    async def _wait_on(self, client: Client, kinds: Sequence[str], wait_s: float) -> list[Json]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        for _ in range(3):
            try:
                sub = await client.call(
                    "events.subscribe", {"after": self.cursor.seq, "types": list(kinds)}
                )
                break
            except errors.EventsExpired as exc:
                self.cursor.seq = max(0, exc.first_seq - 1)
            except errors.InvalidParams:
                if not await self._journal_changed():
                    raise
        else:  # pragma: no cover
            raise errors.Busy("the journal changed while subscribing; call again")
        self.cursor.journal_id = sub["journalId"]
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
        return events

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
