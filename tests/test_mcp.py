"""The MCP server (contrib/mcp) through the SDK's own client, on a daemon on the CLI double."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp import Client as McpClient
from mcp import StdioServerParameters

from contrib.mcp.server import TOOLS, ConvosdMcp
from convosd.cli import ConvosCli
from convosd.client import ConvosdClient
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, eventually, member_count
from tests.rpc_harness import RunningDaemon, member_cli, running_daemon

REPO = Path(__file__).resolve().parent.parent
BASE_TOOLS = {
    "send_message",
    "react",
    "read_events",
    "wait_for_message",
    "conversation_info",
    "create_invite",
}
ADMIN_TOOLS = {t.name for t in TOOLS if t.admin}
GATED_TOOLS = {t.name for t in TOOLS if t.needs_discover}


@contextlib.asynccontextmanager
async def mcp_session(socket: Path, **options: Any) -> AsyncIterator[McpClient]:
    app = ConvosdMcp(socket, **options)
    try:
        async with McpClient(app.server) as client:
            yield client
    finally:
        await app.aclose()


async def call(client: McpClient, tool: str, /, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def call_error(client: McpClient, tool: str, /, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    assert isinstance(result.structured_content, dict)
    error: dict[str, Any] = result.structured_content["error"]
    text = result.content[0]
    assert isinstance(text, types.TextContent) and text.text.startswith(error["kind"])
    return error


@contextlib.asynccontextmanager
async def bound_daemon(
    net: FakeNetwork, tmp_path: Path
) -> AsyncIterator[tuple[RunningDaemon, ConvosCli, str]]:
    """A daemon with a created conversation that bob has joined."""
    async with running_daemon(net, tmp_path / "d") as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            created = await client.create(name="Agents")
        bob = member_cli(net, tmp_path / "bob")
        await bob.join(created.invite_slug, no_wait=True)
        instance = daemon.instance
        assert await eventually(lambda: member_count(instance) == 2)
        yield daemon, bob, created.conversation_id


async def test_tools_schemas_and_admin_flag(net: FakeNetwork, tmp_path: Path) -> None:
    async with running_daemon(net, tmp_path / "d") as daemon:
        async with await ConvosdClient.connect(daemon.socket) as direct:
            methods = {m["name"] for m in (await direct.discover())["methods"]}
        # the gated tools this daemon offers (typing and read receipts, at least)
        offered = {t.name for t in TOOLS if t.needs_discover and t.method in methods}
        assert {"set_typing", "mark_read"} <= offered
        async with mcp_session(daemon.socket) as client:
            listed = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(listed) == BASE_TOOLS | offered  # no admin tools
            assert "download_attachment" in listed
            send = listed["send_message"]
            assert send.description and "reply" in send.description
            assert send.input_schema["required"] == ["message"]
            assert set(send.input_schema["properties"]) == {"message", "replyTo", "idempotencyKey"}
            assert send.input_schema["additionalProperties"] is False
            assert send.output_schema is not None
            assert send.output_schema["required"] == ["messageId"]
            info = listed["conversation_info"].output_schema
            assert info is not None and "members" in info["properties"]

            # An admin tool is refused (and says how to get it), even if the client knows it.
            error = await call_error(client, "create_conversation", name="x")
            assert error["kind"] == "ADMIN_DISABLED" and "--allow-admin" in error["hint"]
            async with await ConvosdClient.connect(daemon.socket) as direct:
                assert (await direct.status()).clean is True

            # A daemon error becomes a tool error with its kind and what to do.
            error = await call_error(client, "conversation_info")
            assert (error["kind"], error["code"]) == ("NOT_BOUND", -32001)
            assert error["message"] == "No active conversation"
            assert "create" in error["hint"]

            # Bad arguments: the daemon's validation, as a tool error.
            error = await call_error(client, "react", messageId="not hex", emoji="👍")
            assert error["kind"] == "INVALID_PARAMS" and error["hint"]

        async with mcp_session(daemon.socket, allow_admin=True) as client:
            listed = {tool.name for tool in (await client.list_tools()).tools}
            assert listed == BASE_TOOLS | ADMIN_TOOLS | offered
            created = await call(client, "create_conversation", name="Made by MCP")
            assert created["conversationId"] and created["inviteUrl"]
            assert await call(client, "set_typing") == {"ok": True}
            assert await call(client, "mark_read") == {"ok": True}
            info = await call(client, "conversation_info")
            assert (info["conversationId"], info["name"]) == (
                created["conversationId"],
                "Made by MCP",
            )
            error = await call_error(client, "create_conversation", name="again")
            assert error["kind"] == "ALREADY_BOUND"


async def test_send_read_wait(net: FakeNetwork, tmp_path: Path) -> None:
    async with bound_daemon(net, tmp_path) as (daemon, bob, cid):
        journal = daemon.instance.journal
        async with mcp_session(daemon.socket) as client:
            # The cursor starts at the journal's end: nothing old, nothing twice.
            first = await call(client, "read_events")
            assert first["events"] == [] and first["cursor"] == journal.last_seq

            hello = await bob.send_text(cid, "hello agent")
            got = await call(client, "wait_for_message", timeoutS=20)
            assert got["timedOut"] is False
            assert [(e["type"], e["messageId"], e["content"]) for e in got["events"]] == [
                ("message", hello.message_id, "hello agent")
            ]
            # What wait returned, read does not return again (bob's join events came before).
            assert (await call(client, "read_events"))["events"] == []

            sent = await call(client, "send_message", message="hi bob", replyTo=hello.message_id)
            assert sent["messageId"]
            read = await call(client, "read_events")
            assert [(e["type"], e["messageId"], e["replyTo"]) for e in read["events"]] == [
                ("message_sent", sent["messageId"], hello.message_id)
            ]
            assert (await call(client, "read_events"))["events"] == []
            replies = [m for m in await bob.messages(cid) if m.content and "hi bob" in m.content]
            assert len(replies) == 1 and replies[0].content_type.type_id == "reply"

            # A wait that someone answers while it waits.
            waiting = asyncio.create_task(client.call_tool("wait_for_message", {"timeoutS": 20}))
            second = await bob.send_text(cid, "second")
            woke = (await asyncio.wait_for(waiting, WAIT_S)).structured_content
            assert woke is not None
            assert [e.get("messageId") for e in woke["events"]] == [second.message_id]

            # Nothing new: the wait times out with no events.
            idle = await call(client, "wait_for_message", timeoutS=0.2)
            assert (idle["events"], idle["timedOut"]) == ([], True)

            # since goes back; every seq once, in order; reading goes on from there.
            everything = await call(client, "read_events", since=0, limit=100)
            seqs = [e["seq"] for e in everything["events"]]
            assert seqs == list(range(1, journal.last_seq + 1))
            assert (await call(client, "read_events"))["events"] == []
            reacted = await call(client, "react", messageId=second.message_id, emoji="👍")
            assert reacted["action"] == "added"


class FakeDaemon:
    """A socket that answers like a newer daemon: rpc.discover lists section-7 methods."""

    def __init__(self, socket: Path, methods: list[dict[str, Any]]) -> None:
        self.socket = socket
        self.methods = methods
        self.calls: list[tuple[str, Any]] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> FakeDaemon:
        self.server = await asyncio.start_unix_server(self._serve, path=str(self.socket))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                request = json.loads(line)
                method, params = request["method"], request.get("params")
                self.calls.append((method, params))
                if method == "rpc.discover":
                    result: Any = {"openrpc": "1.3.2", "methods": self.methods}
                elif method == "status":
                    result = {"journal": {"journalId": "j1", "firstSeq": 1, "lastSeq": 0}}
                else:
                    result = {"ok": True}
                writer.write(
                    json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
                    + b"\n"
                )
                await writer.drain()
        writer.close()


async def test_download_attachment_tool(net: FakeNetwork, tmp_path: Path) -> None:
    async with bound_daemon(net, tmp_path) as (daemon, bob, cid):
        home = bob.setup.convos_home
        message_id = net.send_remote_attachment(home, cid, b"chart", filename="chart.png")
        journal = daemon.instance.journal
        assert await eventually(lambda: journal.message(message_id) is not None)
        async with mcp_session(daemon.socket) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            schema = tools["download_attachment"].input_schema
            assert set(schema["properties"]) == {"messageId", "inline"}
            got = await call(client, "download_attachment", messageId=message_id, inline=True)
            assert (got["filename"], got["size"], got["data"]) == ("chart.png", 5, "Y2hhcnQ=")
            error = await call_error(client, "download_attachment", messageId="ab" * 32)
            assert error["kind"] == "NOT_FOUND"


async def test_newer_daemon_tools_follow_discover(tmp_path: Path) -> None:
    typing_entry = {
        "name": "conversation.typing",
        "params": [
            {"name": "typing", "required": False, "schema": {"type": "boolean", "default": True}}
        ],
    }
    mark_read = {"name": "message.markRead", "params": []}
    async with FakeDaemon(tmp_path / "new.sock", [{"name": "status", "params": []}]) as fake:
        async with mcp_session(fake.socket) as client:
            listed = {tool.name for tool in (await client.list_tools()).tools}
            assert not listed & GATED_TOOLS
            error = await call_error(client, "set_typing")
            assert error["kind"] == "METHOD_NOT_FOUND" and "conversation.typing" in error["message"]
        assert ("conversation.typing", None) not in fake.calls

    async with FakeDaemon(tmp_path / "newer.sock", [typing_entry, mark_read]) as fake:
        async with mcp_session(fake.socket) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert {"set_typing", "mark_read"} <= set(tools)
            assert not {"send_attachment", "download_attachment"} & set(tools)
            assert tools["set_typing"].input_schema["properties"] == {
                "typing": {"type": "boolean", "default": True}
            }
            assert await call(client, "set_typing", typing=False) == {"ok": True}
            assert await call(client, "mark_read") == {"ok": True}
        assert ("conversation.typing", {"typing": False}) in fake.calls
        assert ("message.markRead", None) in fake.calls


async def test_unreachable_daemon_is_a_tool_error(tmp_path: Path) -> None:
    async with mcp_session(tmp_path / "nobody.sock") as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == BASE_TOOLS
        error = await call_error(client, "send_message", message="hi")
        assert error["kind"] == "DAEMON_UNREACHABLE"
        assert str(tmp_path / "nobody.sock") in error["message"] and "--socket" in error["hint"]


async def test_stdio_entry_point(net: FakeNetwork, tmp_path: Path) -> None:
    async with bound_daemon(net, tmp_path) as (daemon, _bob, cid):
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "contrib.mcp", "--socket", str(daemon.socket)],
            cwd=REPO,
        )
        async with McpClient(params) as client:
            listed = {tool.name for tool in (await client.list_tools()).tools}
            assert listed - GATED_TOOLS == BASE_TOOLS  # (and what this daemon offers of those)
            info = await call(client, "conversation_info")
            assert info["conversationId"] == cid and info["memberCount"] == 2
            sent = await call(client, "send_message", message="over stdio")
            read = await call(client, "read_events")
            assert [e["messageId"] for e in read["events"]] == [sent["messageId"]]
