"""convosd as MCP tools: an MCP server (official ``mcp`` SDK, low-level ``Server``) over the socket.

Every tool but two is one daemon call (:mod:`contrib.mcp.daemon`); the input schemas are the
daemon's own pydantic params models (:mod:`convosd.rpc.schemas`), the output schemas its
result models. Two tools read from a position in the journal, ``read_events`` and
``wait_for_message``, with a cursor the client keeps (or the server's session cursor on
stdio): :mod:`contrib.mcp.journal` answers them.

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

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.server import Server
from pydantic import ValidationError

from contrib.mcp import paths
from contrib.mcp.daemon import Daemon
from contrib.mcp.journal import JournalTools
from contrib.mcp.results import (
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
    MAX_WAIT_S,
    STATELESS_DESCRIPTIONS,
    STATELESS_START,
    TOOLS,
    Json,
    ReadToolParams,
    Start,
    WaitToolParams,
    instructions,
)
from contrib.mcp.tools import exposed_tools, tool_of
from convosd import errors


class ConvosdMcp:
    """The MCP server: the tools it offers, and each call routed to the daemon
    (:class:`~contrib.mcp.daemon.Daemon`) or to the journal's tools
    (:class:`~contrib.mcp.journal.JournalTools`), its failures made tool results.

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
        self.allow_admin = allow_admin
        #: the folders send_attachment may name a file in (the operator's --allow-path);
        #: none: the tool has no path at all
        self.allow_paths = tuple(os.path.abspath(folder) for folder in allow_paths)
        self.start = start
        #: the operator's --tools, as given (error texts name it)
        self.tools_option = tools
        self.exposed = exposed_tools(tools, TOOLS, allow_admin=allow_admin)
        #: error texts tell which tools --tools left out (None: it left out none)
        every = self.exposed == exposed_tools(ALL, TOOLS, allow_admin=allow_admin)
        self._left_out: frozenset[str] | None = None if every else self.exposed
        #: a cursor kept in this process (by the journal's tools) for the calls that pass
        #: none (stdio: the process is one client's session); without it (HTTP) such a call
        #: starts at ``start``
        self.session_cursor = session_cursor
        self.daemon = Daemon(socket)
        self.journal = JournalTools(
            self.daemon, start=start, max_wait_s=max_wait_s, session_cursor=session_cursor
        )
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

    async def aclose(self) -> None:
        await self.daemon.aclose()

    # --- the tools offered ---------------------------------------------------------------

    async def checked_path(self, given: Any) -> str:
        return await paths.checked_path(given, self.allow_paths)

    async def _list_tools(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        await self.journal.anchor_quietly()
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
            await self.journal.anchor_quietly()
            if spec.name == "read_events":
                return ok_result(
                    await self.journal.read_events(ReadToolParams.model_validate(arguments))
                )
            if spec.name == "wait_for_message":
                wait = WaitToolParams.model_validate(arguments)
                return ok_result(await self.journal.wait_for_message(wait))
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
            result = await self.daemon.call(spec.method, call_params or None)
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


async def serve_stdio(app: ConvosdMcp) -> None:
    from mcp.server.stdio import stdio_server

    try:
        async with stdio_server() as (read_stream, write_stream):
            await app.server.run(
                read_stream, write_stream, app.server.create_initialization_options()
            )
    finally:
        await app.aclose()
