"""convosd as MCP tools: an MCP server (official ``mcp`` SDK, low-level ``Server``) over the socket.

Every tool but two is one daemon call through :class:`convosd.client.ConvosdClient`; the
input schemas are the daemon's own pydantic params models (:mod:`convosd.rpc.schemas`), the
output schemas its result models. Two tools read from a position in the journal:

- ``read_events`` returns the events after a cursor (the journal and the last seq shown)
  and ``nextCursor``, which the client passes back as ``cursor`` to go on: never an event
  twice; ``since`` moves the position back (or forward) first. Every read compares
  ``journalId``: a reset's new journal (or a cursor from another journal) is shown from its
  seq 1 (``journalChanged``).
- ``wait_for_message`` long-polls: a subscription after the same cursor, until the next
  matching event or a timeout.

The cursor is the client's (an opaque string), so requests need no session: over HTTP
several clients each keep their own. A call without one uses the server's session cursor
on stdio (the process is one client's session: it starts at the journal's end when the
session's first request arrives, ``start="latest"``, or at its beginning); without a
session cursor (``session_cursor=False``, HTTP) it starts there on every call.

The tool table (:mod:`contrib.mcp.tools`) is fixed at start from the server's options only
(``allow_admin``, ``tools``, ``allow_paths``): the list never changes with the daemon's
state, and the server declares ``tools.listChanged: false``. Destructive tools take
``confirm: true``. A daemon error becomes a tool result with ``isError: true`` and a text
any client shows the model (:mod:`contrib.mcp.results`): the kind and message, each
parameter at fault (``data.errors``) and the next step by tool name; no
``structuredContent`` (it would not match the tool's output schema, and TypeScript-SDK
clients throw on that). Programs find ``{"kind", "code", "message", "hint", "data"}`` in
the result's ``_meta["convosd/error"]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.server import Server
from pydantic import ValidationError

from contrib.mcp import paths
from contrib.mcp.results import (
    ERROR_META,
    DaemonUnreachable,
    ErrorContext,
    error_for,
    error_result,
    ok_result,
    tool_param_error,
    validation_error,
)
from contrib.mcp.spec import ALL, ToolSpec
from contrib.mcp.stateful import (
    MAX_EVENTS,
    MAX_WAIT_S,
    STATELESS_DESCRIPTIONS,
    STATELESS_START,
    TOOLS,
    Cursor,
    EventsOut,
    Json,
    ReadToolParams,
    Start,
    WaitOut,
    WaitToolParams,
    decode_cursor,
    encode_cursor,
    instructions,
    past_the_end,
)
from contrib.mcp.tools import exposed_tools, tool_of
from convosd import errors
from convosd.client import Client, ConvosdClient

log = logging.getLogger("contrib.mcp")

__all__ = [
    "ERROR_META",
    "TOOLS",
    "ConvosdMcp",
    "DaemonUnreachable",
    "ErrorContext",
    "error_result",
    "serve_stdio",
]


class ConvosdMcp:
    """The MCP server's state: the daemon connection, the tools it exposes, the cursor.

    Raises ValueError on a ``tools`` option that names an unknown tool (or an admin tool
    without ``allow_admin``): the operator's mistake, told at start."""

    def __init__(
        self,
        socket: Path,
        *,
        allow_admin: bool = False,
        allow_paths: Sequence[Path] = (),
        start: Start = "latest",
        max_wait_s: float = MAX_WAIT_S,
        tools: str = ALL,
        session_cursor: bool = True,
    ) -> None:
        self.socket = socket
        self.allow_admin = allow_admin
        #: the folders send_attachment may name a file in (the operator's --allow-path);
        #: none: the tool has no path at all
        self.allow_paths = tuple(os.path.abspath(folder) for folder in allow_paths)
        self.start = start
        self.max_wait_s = max_wait_s
        #: the operator's --tools, as given (error texts name it)
        self.tools_option = tools
        self.exposed = exposed_tools(tools, TOOLS, allow_admin=allow_admin)
        #: error texts tell which tools --tools left out (None: it left out none)
        every = self.exposed == exposed_tools(ALL, TOOLS, allow_admin=allow_admin)
        self._left_out: frozenset[str] | None = None if every else self.exposed
        #: a cursor kept in this process for the calls that pass none (stdio: the process
        #: is one client's session); without it (HTTP) such a call starts at ``start``
        self.session_cursor = session_cursor
        self.cursor = Cursor()
        self._client: ConvosdClient | None = None
        self._connect_lock = asyncio.Lock()
        self._cursor_lock = asyncio.Lock()
        #: the tools offered, fixed for the server's life (listChanged: false)
        self.offered: dict[str, tuple[ToolSpec, types.Tool]] = {
            spec.name: (spec, self._tool(spec)) for spec in TOOLS if spec.name in self.exposed
        }
        self.server: Server[Any] = Server(
            "convosd",
            version="0.1.0",
            instructions=instructions(self.exposed),
            # the list is fixed: the SDK's HTTP transport may look a schema up here
            # instead of running tools/list
            get_tool_input_schema=self._input_schema,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )

    def _tool(self, spec: ToolSpec) -> types.Tool:
        stateless = STATELESS_DESCRIPTIONS.get(spec.name)
        if stateless is not None and not self.session_cursor:
            return tool_of(spec, description=stateless.format(start=STATELESS_START[self.start]))
        if spec.name != "send_attachment":
            return tool_of(spec)
        schema = tool_of(spec).input_schema
        description = paths.attachment_schema(schema, self.allow_paths)
        return tool_of(spec, description=description, schema=schema)

    def _input_schema(self, name: str) -> Json | None:
        offered = self.offered.get(name)
        return offered[1].input_schema if offered is not None else None

    def error_context(self, tool: str) -> ErrorContext:
        return ErrorContext(tool, self.allow_admin, self._left_out)

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

    # --- the tools offered ---------------------------------------------------------------

    async def checked_path(self, given: Any) -> str:
        return await paths.checked_path(given, self.allow_paths)

    async def _list_tools(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        await self._anchor_quietly()
        return types.ListToolsResult(tools=[tool for _, tool in self.offered.values()])

    async def _call_tool(
        self, request: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        arguments = dict(params.arguments or {})
        ctx = self.error_context(params.name)
        offered = self.offered.get(params.name)
        if offered is None:
            return self._unknown_tool(params.name)
        spec = offered[0]
        if spec.confirm:
            if arguments.get("confirm") is not True:
                return self._unconfirmed(spec, ctx)
            del arguments["confirm"]
        try:
            await self._anchor_quietly()
            if spec.name == "read_events":
                return ok_result(await self.read_events(ReadToolParams.model_validate(arguments)))
            if spec.name == "wait_for_message":
                wait = WaitToolParams.model_validate(arguments)
                return ok_result(await self.wait_for_message(wait))
            if spec.name == "send_attachment" and arguments.get("path") is not None:
                real = await self.checked_path(arguments["path"])
                roots = await paths.client_roots(request, params)
                if isinstance(roots, types.InputRequiredResult):
                    return roots
                if roots is not None and not any(paths.inside(real, root) for root in roots):
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

    @staticmethod
    def _unconfirmed(spec: ToolSpec, ctx: ErrorContext) -> types.CallToolResult:
        """A destructive tool called without ``confirm: true``: refused before the daemon
        is asked."""
        return error_result(
            "CONFIRMATION_REQUIRED",
            f"{spec.name} cannot be undone ({spec.confirm}): it needs confirm: true",
            data={"errors": [{"param": "confirm", "problem": "must be true to go ahead"}]},
            ctx=ctx,
        )

    def _unknown_tool(self, name: str) -> types.CallToolResult:
        spec = next((t for t in TOOLS if t.name == name), None)
        ctx = self.error_context(name)
        if spec is not None and spec.admin and not self.allow_admin:
            return error_result(
                "ADMIN_DISABLED",
                f"{name} is an admin tool and this server was started without --allow-admin",
                ctx=ctx,
            )
        if spec is not None:
            return error_result(
                "NOT_EXPOSED",
                f"{name} is not exposed by this server (started with --tools {self.tools_option})",
                ctx=ctx,
            )
        return error_result(
            "UNKNOWN_TOOL", f"no tool named {name}", hint="List the tools again; use one of those."
        )

    # --- the cursor ----------------------------------------------------------------------

    async def _anchor_quietly(self) -> None:
        if not self.session_cursor:
            return
        with contextlib.suppress(DaemonUnreachable, errors.ConvosdError):
            await self.anchor()

    async def anchor(self) -> None:
        """Fix the session's cursor at the session's start: the journal's end (or its start)."""
        async with self._cursor_lock:
            if self.cursor.seq is not None:
                return
            start = await self._start_position()
            self.cursor.journal_id, self.cursor.seq = start.journal_id, start.seq

    async def _start_position(self) -> Cursor:
        """Where a reader without a cursor starts: the journal's end (``start="latest"``)
        or just before its oldest event."""
        journal = (await self.call("status"))["journal"]
        if self.start == "latest":
            return Cursor(int(journal["lastSeq"]), journal["journalId"])
        return Cursor(max(0, int(journal["firstSeq"]) - 1), journal["journalId"])

    @contextlib.asynccontextmanager
    async def _position(
        self, given: str | None, *, since: int | None = None
    ) -> AsyncIterator[Cursor]:
        """The cursor one call reads from and moves: its own when the call passes one (or
        when this server keeps no session cursor: HTTP), else the session's, held under its
        lock for the call. ``since`` replaces the seq (of the current journal)."""
        if given is not None:
            cursor = decode_cursor(given)
            if since is not None:
                cursor = Cursor(since)
            yield cursor
        elif not self.session_cursor:
            yield Cursor(since) if since is not None else await self._start_position()
        else:
            await self.anchor()
            async with self._cursor_lock:
                yield self.cursor

    @staticmethod
    def _new_journal(cursor: Cursor, journal_id: str) -> bool:
        """``journal_id`` is not the cursor's journal (a reset): start it from seq 0."""
        if cursor.journal_id is None or journal_id == cursor.journal_id:
            cursor.journal_id = journal_id
            return False
        log.info("the daemon's journal changed (a reset): reading it from its start")
        cursor.journal_id = journal_id
        cursor.seq = 0
        return True

    async def _journal_changed(self, cursor: Cursor) -> bool:
        """After ``after > lastSeq``: a reset replaced the journal; start at its seq 0."""
        status = await self.call("status")
        return self._new_journal(cursor, status["journal"]["journalId"])

    async def read_events(self, params: ReadToolParams) -> Json:
        async with self._position(params.cursor, since=params.since) as cursor:
            if params.since is not None:
                cursor.seq = params.since
            skipped_to: int | None = None
            changed = False
            for _ in range(3):
                request: Json = {"after": cursor.seq, "limit": params.limit}
                if params.types:
                    request["types"] = list(params.types)
                try:
                    result = await self.call("events.read", request)
                except errors.EventsExpired as exc:
                    cursor.seq = skipped_to = max(0, exc.first_seq - 1)
                    continue
                except errors.InvalidParams:
                    if params.since is not None:
                        raise
                    if not await self._journal_changed(cursor):
                        if params.cursor is not None:
                            raise past_the_end() from None
                        raise
                    changed = True
                    continue
                # A reset makes a new journal whose seqs start over: the cursor's seq means
                # nothing there (the new journal may well have passed it), so every read
                # compares journalId and starts the new journal from its seq 0.
                if params.since is None and self._new_journal(cursor, result["journalId"]):
                    changed = True
                    continue
                break
            else:  # pragma: no cover - the journal moved under us three times
                raise errors.Busy("the journal changed while reading; call again")
            events = result["events"]
            cursor.journal_id = result["journalId"]
            if events:
                cursor.seq = int(events[-1]["seq"])
            assert cursor.seq is not None
            out = EventsOut(
                events=events,
                cursor=cursor.seq,
                nextCursor=encode_cursor(cursor),
                journalId=result["journalId"],
                lastSeq=result["lastSeq"],
                more=len(events) >= params.limit,
                skippedTo=skipped_to,
                journalChanged=changed,
            )
            return out.model_dump(by_alias=True)

    async def wait_for_message(self, params: WaitToolParams) -> Json:
        timeout = min(params.timeout_s, self.max_wait_s)
        async with self._position(params.cursor) as cursor:
            # Its own connection: its notifications are its own, and a timeout that closes
            # it drops the subscription with it.
            try:
                sub_client = await Client.connect(self.socket)
            except OSError as exc:
                raise DaemonUnreachable(self.socket, exc.strerror or type(exc).__name__) from exc
            try:
                events, changed = await self._wait_on(
                    sub_client, cursor, params.types, timeout, given=params.cursor is not None
                )
            except ConnectionError as exc:
                raise DaemonUnreachable(self.socket, "the connection closed") from exc
            finally:
                await sub_client.close()
            if events:
                cursor.seq = int(events[-1]["seq"])
            assert cursor.seq is not None
            out = WaitOut(
                events=events,
                cursor=cursor.seq,
                nextCursor=encode_cursor(cursor),
                timedOut=not events,
                journalChanged=changed,
            )
            return out.model_dump(by_alias=True)

    async def _wait_on(
        self, client: Client, cursor: Cursor, kinds: Sequence[str], wait_s: float, *, given: bool
    ) -> tuple[list[Json], bool]:
        """The events after ``cursor`` of ``kinds`` (waiting up to ``wait_s`` for the first)
        and whether the journal changed (a reset) since the cursor was set."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        changed = False
        for _ in range(3):
            try:
                sub = await client.call(
                    "events.subscribe", {"after": cursor.seq, "types": list(kinds)}
                )
            except errors.EventsExpired as exc:
                cursor.seq = max(0, exc.first_seq - 1)
                continue
            except errors.InvalidParams:
                if not await self._journal_changed(cursor):
                    if given:
                        raise past_the_end() from None
                    raise
                changed = True
                continue
            if self._new_journal(cursor, sub["journalId"]):  # as read_events: from the new seq 0
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
            if isinstance(event.get("seq"), int) and event["seq"] > (cursor.seq or 0):
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
