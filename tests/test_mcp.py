"""The MCP server (contrib/mcp) through the SDK's own client, on a daemon on the CLI double."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client as McpClient
from mcp import StdioServerParameters

from contrib.mcp.__main__ import allowed_folders
from contrib.mcp.__main__ import main as mcp_main
from contrib.mcp.results import ERROR_META, ErrorContext, error_result
from contrib.mcp.server import ConvosdMcp
from contrib.mcp.stateful import TOOLS
from contrib.mcp.tools import exposed_tools
from convosd import errors
from convosd.cli import ConvosCli
from convosd.client import ConvosdClient
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, eventually, member_count, network_messages
from tests.rpc_harness import RunningDaemon, member_cli, running_daemon
from tests.test_attachments_send import KEY_ENV, PASS

REPO = Path(__file__).resolve().parent.parent
ADMIN_TOOLS = {t.name for t in TOOLS if t.admin}
#: every tool a server without --allow-admin lists, whatever the daemon's state
BASE_TOOLS = {t.name for t in TOOLS} - ADMIN_TOOLS
READ_ONLY_TOOLS = {"read_events", "wait_for_message", "conversation_info"} | {
    "search_messages",
    "get_message_context",
}
DESTRUCTIVE_TOOLS = {"lock_conversation", "explode_conversation", "pairing_deny", "reset_daemon"}


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
    """An error result: text for the model, no structured content (it would not match the
    tool's output schema), the details for programs in ``_meta``; the text with them."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    assert result.structured_content is None
    assert result.meta is not None
    error: dict[str, Any] = dict(result.meta[ERROR_META])
    [text] = result.content
    assert isinstance(text, types.TextContent) and text.text.startswith(error["kind"])
    assert text.text.endswith(f"What to do: {error['hint']}")
    return error | {"text": text.text}


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
        async with mcp_session(daemon.socket) as client:
            listed = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(listed) == BASE_TOOLS  # no admin tools
            assert {"download_attachment", "set_typing", "mark_read"} <= set(listed)
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
            assert listed == BASE_TOOLS | ADMIN_TOOLS
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


async def listed_on_network(net: FakeNetwork, daemon: RunningDaemon) -> list[dict[str, Any]]:
    """The attachments of the daemon's conversation as the network holds them."""
    instance = daemon.instance
    cid = instance.binding.conversation_id
    rows = await network_messages(net, instance.paths.convos_home, cid)
    return [m for m in rows if m["contentType"]["typeId"] == "remoteStaticAttachment"]


class FakeDaemon:
    """A socket that answers like a daemon offering only ``methods`` (``status`` and
    ``rpc.discover`` always): -32601 for any other, ``results[method]`` or ``{"ok": true}``
    for those; it records every call."""

    def __init__(
        self, socket: Path, methods: list[str], results: dict[str, Any] | None = None
    ) -> None:
        self.socket = socket
        self.methods = methods
        self.results = results or {}
        self.calls: list[tuple[str, Any]] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> FakeDaemon:
        self.server = await asyncio.start_unix_server(self._serve, path=str(self.socket))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def _answer(self, method: str) -> dict[str, Any]:
        if method == "rpc.discover":
            listed = [{"name": name, "params": []} for name in self.methods]
            return {"result": {"openrpc": "1.3.2", "methods": listed}}
        if method == "status":
            return {"result": {"journal": {"journalId": "j1", "firstSeq": 1, "lastSeq": 0}}}
        if method in self.methods:
            return {"result": self.results.get(method, {"ok": True})}
        return {"error": {"code": -32601, "message": "Method not found"}}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                request = json.loads(line)
                method, params = request["method"], request.get("params")
                self.calls.append((method, params))
                answer = {"jsonrpc": "2.0", "id": request["id"]} | self._answer(method)
                writer.write(json.dumps(answer).encode() + b"\n")
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


async def test_search_messages_and_get_message_context_tools(
    net: FakeNetwork, tmp_path: Path
) -> None:
    from tests.test_search import message

    async with running_daemon(net, tmp_path / "d") as daemon:
        daemon.instance.journal.append(
            [message(1, "the deploy is friday"), message(2, "ok", sender="ab" * 32)]
        )
        async with mcp_session(daemon.socket) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            search, context = tools["search_messages"], tools["get_message_context"]
            assert search.input_schema["required"] == ["query"]
            assert "title" not in search.input_schema["properties"]["query"]
            assert search.output_schema is not None and context.output_schema is not None
            assert search.output_schema["required"][0] == "results"
            found = await call(client, "search_messages", query="deploy", limit=5)
            [hit] = found["results"]
            assert hit["event"]["seq"] == 1 and hit["snippet"] == "the «deploy» is friday"
            around = await call(client, "get_message_context", messageId=f"{1:064x}", after=1)
            assert around["message"]["seq"] == 1 and [e["seq"] for e in around["after"]] == [2]
            error = await call_error(client, "search_messages", query="( - )")
            assert error["kind"] == "INVALID_PARAMS" and "query" in error["text"]
            error = await call_error(client, "get_message_context", messageId="9" * 64)
            assert error["kind"] == "NOT_FOUND" and "`search_messages`" in error["hint"]


async def test_the_tool_list_does_not_change_with_the_daemon(tmp_path: Path) -> None:
    """Issue 23, item 1: clients list the tools once (and again only on list_changed). The
    list came from the daemon's rpc.discover, so a server started before its daemon, or
    beside an older one, listed fewer tools and never told: the model never saw them. It
    is fixed at start from the server's options; the server says listChanged: false; a
    tool the daemon lacks answers METHOD_NOT_FOUND."""
    socket = tmp_path / "d.sock"
    async with mcp_session(socket) as client:
        tools = client.server_capabilities.tools
        assert tools is not None and not tools.list_changed
        down = (await client.list_tools()).tools
        assert {tool.name for tool in down} == BASE_TOOLS
        async with FakeDaemon(socket, ["message.markRead"]) as fake:
            assert (await client.list_tools()).tools == down
            assert await call(client, "mark_read") == {"ok": True}
            error = await call_error(client, "set_typing", typing=False)
            assert error["kind"] == "METHOD_NOT_FOUND" and "set_typing" in error["message"]
            assert "upgrade" in error["hint"] and not METHOD_NAME.search(error["text"])
            assert (await client.list_tools()).tools == down
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
            assert listed == BASE_TOOLS
            info = await call(client, "conversation_info")
            assert info["conversationId"] == cid and info["memberCount"] == 2
            sent = await call(client, "send_message", message="over stdio")
            read = await call(client, "read_events")
            assert [e["messageId"] for e in read["events"]] == [sent["messageId"]]


@contextlib.asynccontextmanager
async def sending_daemon(net: FakeNetwork, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    """A bound daemon that can send files (an upload provider on the double)."""
    async with running_daemon(
        net, tmp_path / "d", extra_environ=KEY_ENV, cli_env_passthrough=PASS
    ) as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            await client.create(name="Files")
        yield daemon


def roots_of(*folders: Path) -> Any:
    async def list_roots(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(
            roots=[types.Root(uri=folder.as_uri(), name=folder.name) for folder in folders]
        )

    return list_roots


async def test_send_attachment_names_a_path_only_inside_the_operator_s_folders(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """Item 3 of issue 25: without --allow-path the tool has no path (a model could name
    /proc/self/environ or the CLI home's identity.json); with it, only files inside the
    folders named, and inside the client's roots when it has any."""
    share = tmp_path / "share"
    (share / "sub").mkdir(parents=True)
    (share / "report.txt").write_bytes(b"report")
    (share / "sub" / "deep.txt").write_bytes(b"deep")
    (tmp_path / "outside.txt").write_bytes(b"outside")
    (share / "escape.txt").symlink_to(tmp_path / "outside.txt")
    (share / "inside-link.txt").symlink_to(share / "report.txt")
    async with sending_daemon(net, tmp_path) as daemon:
        identity = daemon.instance.paths.convos_home / "identity.json"
        (share / "identity.json").symlink_to(identity)
        sent_before = len(await listed_on_network(net, daemon))

        async with mcp_session(daemon.socket) as client:
            tool = {t.name: t for t in (await client.list_tools()).tools}["send_attachment"]
            assert "path" not in tool.input_schema["properties"]
            assert "path" not in (tool.description or "")
            for path in (share / "report.txt", Path("/proc/self/environ"), identity):
                error = await call_error(client, "send_attachment", path=str(path))
                assert error["kind"] == "INVALID_PARAMS"
                assert "Parameter at fault: `path`" in error["text"]
                assert "--allow-path" in error["text"] and "data" in error["text"]
            sent = await call(client, "send_attachment", data="aGk=", filename="hi.txt")
            assert sent["messageId"]

        async with mcp_session(daemon.socket, allow_paths=[share]) as client:
            tool = {t.name: t for t in (await client.list_tools()).tools}["send_attachment"]
            assert str(share) in tool.input_schema["properties"]["path"]["description"]
            assert str(share) in (tool.description or "")
            for path in (share / "report.txt", share / "inside-link.txt", share / "sub/deep.txt"):
                assert (await call(client, "send_attachment", path=str(path)))["messageId"]
            refused = {
                "outside": tmp_path / "outside.txt",
                "a link out": share / "escape.txt",
                "..": f"{share}/../outside.txt",
                "a link to identity.json": share / "identity.json",
                "identity.json": identity,
                "/proc/self/environ": "/proc/self/environ",
                "relative": "share/report.txt",
            }
            for name, path in refused.items():
                error = await call_error(client, "send_attachment", path=str(path))
                assert "Parameter at fault: `path`" in error["text"], name
                assert error["data"]["errors"][0]["param"] == "path", name

        # The client's roots narrow the operator's folders.
        app = ConvosdMcp(daemon.socket, allow_paths=[share])
        try:
            async with McpClient(app.server, list_roots_callback=roots_of(share / "sub")) as client:
                error = await call_error(client, "send_attachment", path=str(share / "report.txt"))
                assert "outside the client's roots" in error["text"]
                deep = await call(client, "send_attachment", path=str(share / "sub/deep.txt"))
                assert deep["messageId"]
        finally:
            await app.aclose()

        # An operator who names the daemon's own folder: the daemon refuses it anyway.
        home = daemon.instance.paths.convos_home
        async with mcp_session(daemon.socket, allow_paths=[home]) as client:
            error = await call_error(client, "send_attachment", path=str(identity))
            assert "is under the CLI home" in error["text"]

        names = [m["content"] for m in (await listed_on_network(net, daemon))[sent_before:]]
        assert [n.split(" (")[0].removeprefix("[remote attachment: ") for n in names] == [
            "hi.txt",
            "report.txt",
            "report.txt",
            "deep.txt",
            "deep.txt",
        ]


#: a daemon method name (conversation.cancelJoin, ...): a model can only call tools
METHOD_NAME = re.compile(
    r"\b(?:conversation|message|events|pairing|daemon|attachment|profile|rpc|status)\.[a-zA-Z]+\b"
)


def test_every_error_text_names_tools_not_daemon_methods() -> None:
    """Item 5 of issue 25: the next step is a tool the model can call (``cancel_join``,
    not ``conversation.cancelJoin``), also in the daemon's own message; an admin tool says
    how the operator makes it available. Every kind x every tool x both admin settings."""
    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type)
        and issubclass(c, errors.ConvosdError)
        and c is not errors.ConvosdError
    ]
    # and the server's own kinds
    kinds = {c.kind for c in classes} | {
        "METHOD_NOT_FOUND",
        "CONFIRMATION_REQUIRED",
        "ADMIN_DISABLED",
        "NOT_EXPOSED",
    }
    messages = {c.default_message for c in classes} | {errors.AlreadyBound.pending_message}
    datas: list[dict[str, Any]] = [
        {},
        {"pending": True},
        {"retryAfterS": 1.5},
        {"errorId": "e1"},
        {"errors": [{"param": "messageId", "problem": "bad"}, {"param": None, "problem": "x"}]},
    ]
    tool_names = {t.name for t in TOOLS}
    seen = 0
    settings = [
        (allow_admin, exposed)
        for allow_admin in (False, True)
        for exposed in (None, exposed_tools("read-only", TOOLS, allow_admin=allow_admin))
    ]
    for kind in sorted(kinds):
        for tool in sorted(tool_names):
            for allow_admin, exposed in settings:
                if tool in ADMIN_TOOLS and not allow_admin:
                    continue  # not callable: ADMIN_DISABLED
                for data in datas:
                    for message in sorted(messages):
                        ctx = ErrorContext(tool, allow_admin, exposed)
                        result = error_result(kind, message, data=data, ctx=ctx)
                        assert result.structured_content is None
                        [content] = result.content
                        assert isinstance(content, types.TextContent)
                        text = content.text
                        assert not METHOD_NAME.search(text), (kind, tool, text)
                        named = set(re.findall(r"`([a-z_A-Z]+)`", text))
                        assert named <= tool_names | {"messageId"}, (kind, text)
                        admin_named = named & ADMIN_TOOLS
                        if admin_named and not allow_admin:
                            assert "--allow-admin" in text, text
                        offered = exposed or tool_names
                        left_out = (named & tool_names) - ADMIN_TOOLS - offered - {tool}
                        if left_out:  # a next step this server does not offer: say so
                            assert "--tools" in text, text
                        seen += 1
    assert seen > 1000
    pending = error_result(
        "ALREADY_BOUND",
        errors.AlreadyBound.pending_message,
        data={"pending": True},
        ctx=ErrorContext("create_conversation", True),
    ).content[0]
    assert isinstance(pending, types.TextContent)
    assert pending.text.count("cancel_join") == 2  # the message and what to do


async def test_the_cursor_starts_over_on_the_journal_a_reset_makes(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """Item 4 of issue 25: after daemon.reset the journal is new and its seqs start over;
    a cursor kept from the old journal skipped the new journal's first events (all of
    them, when the new journal had just reached the old cursor). read_events and
    wait_for_message compare journalId on every read and show the new journal from seq 1."""
    async with bound_daemon(net, tmp_path) as (daemon, bob, cid):
        olds = [await bob.send_text(cid, f"old {i}") for i in range(5)]
        journal = daemon.instance.journal
        assert await eventually(lambda: journal.message(olds[-1].message_id) is not None)
        async with (
            mcp_session(daemon.socket, allow_admin=True, start="beginning") as reader,
            mcp_session(daemon.socket, start="beginning") as waiter,
        ):
            old = await call(reader, "read_events", limit=100)
            assert old["journalChanged"] is False and old["cursor"] >= 7
            old_messages = await call(waiter, "wait_for_message", timeoutS=5)
            assert [e["content"] for e in old_messages["events"]] == [f"old {i}" for i in range(5)]

            assert await call(reader, "reset_daemon", confirm=True) == {"clean": True}
            created = await call(reader, "create_conversation", name="Again")
            await bob.join(created["inviteSlug"], no_wait=True)
            new_cid = created["conversationId"]
            assert await eventually(lambda: member_count(daemon.instance) == 2)
            texts = [f"new {i}" for i in range(old["cursor"] + 3)]
            sent = [await bob.send_text(new_cid, text) for text in texts]
            journal = daemon.instance.journal
            assert await eventually(
                lambda: journal.message(sent[-1].message_id) is not None, within_s=WAIT_S
            )
            new_last = journal.last_seq
            assert new_last > old["cursor"]  # the new journal passed the old cursor

            shown: list[dict[str, Any]] = []
            changed = []
            while True:
                page = await call(reader, "read_events", limit=100)
                shown += page["events"]
                changed.append(page["journalChanged"])
                if not page["more"]:
                    break
            assert changed[0] is True and not any(changed[1:])
            assert [e["seq"] for e in shown] == list(range(1, new_last + 1))
            kinds = [e["type"] for e in shown]
            assert {"conversation_bound", "member_joined"} <= set(kinds)
            assert [e["content"] for e in shown if e["type"] == "message"] == texts

            woke = await call(waiter, "wait_for_message", timeoutS=5)
            assert woke["journalChanged"] is True
            assert [e["content"] for e in woke["events"]] == texts


def test_allow_path_takes_existing_absolute_folders_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--allow-path and $CONVOSD_MCP_ALLOW_PATHS name folders; anything else stops the
    server at start (exit 2) instead of allowing more than meant."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "file").write_text("x")
    assert allowed_folders([str(tmp_path / "a")], f"{tmp_path / 'b'}:") == [
        tmp_path / "a",
        tmp_path / "b",
    ]
    for bad in ("relative/dir", str(tmp_path / "missing"), str(tmp_path / "file"), "/"):
        with pytest.raises(ValueError, match="--allow-path"):
            allowed_folders([bad], "")
        assert mcp_main(["--socket", str(tmp_path / "x.sock"), "--allow-path", bad]) == 2
        assert "--allow-path" in capsys.readouterr().err


def titles(schema: Any, *, under_properties: bool = False) -> list[str]:
    """Every ``title`` keyword in a JSON schema (a property named "title" is not one)."""
    if isinstance(schema, list):
        return [t for item in schema for t in titles(item)]
    if not isinstance(schema, dict):
        return []
    found = []
    for key, value in schema.items():
        if key == "title" and not under_properties:
            found.append(str(value))
        if key in ("default", "const", "enum", "examples"):
            continue
        found += titles(value, under_properties=key in ("properties", "$defs"))
    return found


async def test_every_tool_has_an_output_schema_annotations_and_no_title_noise(
    tmp_path: Path,
) -> None:
    """Issue 23, item 1: what MCP clients expect of each tool. Each has an output schema
    (its structuredContent is checked against it by the SDK clients, in every other test),
    the four annotations set, no pydantic ``title`` anywhere, no daemon method in any text;
    destructive tools (and only those) require ``confirm``."""
    async with mcp_session(tmp_path / "none.sock", allow_admin=True) as client:
        listed = (await client.list_tools()).tools
    assert {tool.name for tool in listed} == BASE_TOOLS | ADMIN_TOOLS
    assert len(listed) == len(TOOLS) == 22
    for tool in listed:
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
        hints = tool.annotations
        assert hints is not None, tool.name
        flags = (
            hints.read_only_hint,
            hints.destructive_hint,
            hints.idempotent_hint,
            hints.open_world_hint,
        )
        assert all(isinstance(flag, bool) for flag in flags), (tool.name, flags)
        if hints.read_only_hint:
            assert (hints.destructive_hint, hints.idempotent_hint) == (False, True), tool.name
        assert titles(tool.input_schema) == [] and titles(tool.output_schema) == [], tool.name
        text = json.dumps([tool.description, tool.input_schema, tool.output_schema])
        assert not METHOD_NAME.search(text), (tool.name, METHOD_NAME.findall(text))
        confirm = tool.input_schema["properties"].get("confirm")
        if hints.destructive_hint:
            assert confirm is not None and confirm["const"] is True, tool.name
            assert "confirm" in tool.input_schema["required"], tool.name
        else:
            assert confirm is None, tool.name
    read_only = {
        tool.name for tool in listed if tool.annotations and tool.annotations.read_only_hint
    }
    assert read_only == READ_ONLY_TOOLS | {"pairing_list"}
    destructive = {t.name for t in listed if t.annotations and t.annotations.destructive_hint}
    assert destructive == DESTRUCTIVE_TOOLS


def readme_annotations() -> dict[str, tuple[bool, bool, bool, bool]]:
    """The README's tools table: per tool, its four annotation columns (✓ or blank)."""
    rows = {}
    text = (REPO / "contrib" / "mcp" / "README.md").read_text()
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and re.fullmatch(r"`[a-z_]+`", cells[0]):
            flags = cells[1:5]
            assert set(flags) <= {"✓", ""}, line
            rows[cells[0].strip("`")] = tuple(flag == "✓" for flag in flags)
    return rows  # type: ignore[return-value]


def test_the_readme_tools_table_shows_each_tool_s_annotations() -> None:
    documented = readme_annotations()
    assert set(documented) == {t.name for t in TOOLS}
    for spec in TOOLS:
        hints = spec.hints
        actual = (
            hints.read_only_hint,
            hints.destructive_hint,
            hints.idempotent_hint,
            hints.open_world_hint,
        )
        assert documented[spec.name] == actual, spec.name


async def test_destructive_tools_take_an_explicit_confirmation(tmp_path: Path) -> None:
    """Issue 23, item 1: explode, reset, lock and pairing_deny did what they were asked
    at once (explode and reset confirmed on the model's behalf). Without ``confirm: true``
    each is refused with a readable error, before the daemon is asked."""
    done = {
        "conversation.explode": {"exploded": True, "membersRemoved": 1},
        "daemon.reset": {"clean": True},
        "conversation.lock": {"locked": True},
        "pairing.deny": {"senderInboxId": "ab" * 32},
    }
    async with FakeDaemon(tmp_path / "d.sock", list(done), done) as fake:
        async with mcp_session(fake.socket, allow_admin=True) as client:
            tries: list[tuple[str, dict[str, Any]]] = [
                ("explode_conversation", {}),
                ("reset_daemon", {"confirm": False}),
                ("lock_conversation", {"unlock": True}),
                ("pairing_deny", {"code": "K7QX2MPA", "confirm": "yes"}),
            ]
            for tool, arguments in tries:
                error = await call_error(client, tool, **arguments)
                assert error["kind"] == "CONFIRMATION_REQUIRED", error
                assert "Parameter at fault: `confirm`" in error["text"]
                assert f"call `{tool}` again with confirm: true" in error["hint"]
                assert "for good" in error["message"]
            assert [m for m, _ in fake.calls if m in done] == []

            assert (
                await call(client, "explode_conversation", confirm=True)
                == done["conversation.explode"]
            )
            assert await call(client, "reset_daemon", confirm=True) == {"clean": True}
            assert await call(client, "lock_conversation", confirm=True) == {"locked": True}
            await call(client, "pairing_deny", code="K7QX2MPA", confirm=True)
        # the daemon's own confirm where it has one; none where it takes none
        assert [(m, p) for m, p in fake.calls if m in done] == [
            ("conversation.explode", {"confirm": True}),
            ("daemon.reset", {"confirm": True}),
            ("conversation.lock", None),
            ("pairing.deny", {"code": "K7QX2MPA"}),
        ]


async def test_tools_option_exposes_only_the_tools_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 23, item 3: --tools read-only, or a list of tools (groups and names mixed);
    the rest are neither listed nor callable (an error that names --tools), and the next
    steps of errors say when a tool they name is not offered."""
    sent = {"messageId": "ab" * 32}
    methods = ["message.send", "events.read"]
    async with FakeDaemon(tmp_path / "d.sock", methods, {"message.send": sent}) as fake:
        async with mcp_session(fake.socket, tools="read-only") as client:
            assert {t.name for t in (await client.list_tools()).tools} == READ_ONLY_TOOLS
            assert "send_message" not in (client.instructions or "")
            error = await call_error(client, "send_message", message="hi")
            assert error["kind"] == "NOT_EXPOSED" and "--tools read-only" in error["message"]
            assert "--tools" in error["hint"]
            error = await call_error(client, "pairing_list")
            assert error["kind"] == "ADMIN_DISABLED"
        assert ("message.send", {"message": "hi"}) not in fake.calls

        async with mcp_session(fake.socket, allow_admin=True, tools="read-only") as client:
            listed = {t.name for t in (await client.list_tools()).tools}
            assert listed == READ_ONLY_TOOLS | {"pairing_list"}

        async with mcp_session(fake.socket, tools=" send_message, read_events ") as client:
            listed = {t.name for t in (await client.list_tools()).tools}
            assert listed == {"send_message", "read_events"}
            assert await call(client, "send_message", message="hi") == sent
            error = await call_error(client, "react", messageId="ab", emoji="👍")
            assert error["kind"] == "NOT_EXPOSED"
        assert ("message.send", {"message": "hi"}) in fake.calls

        async with mcp_session(fake.socket, tools="read-only,send_message") as client:
            listed = {t.name for t in (await client.list_tools()).tools}
            assert listed == READ_ONLY_TOOLS | {"send_message"}

    # A next step that names a tool left out says how the operator offers it.
    ctx = ConvosdMcp(tmp_path / "x.sock", tools="read-only").error_context("conversation_info")
    [text] = error_result("LOCKED", "The conversation is locked", ctx=ctx).content
    assert isinstance(text, types.TextContent)
    assert "`create_invite` (not exposed: the operator must add it to this server's --tools)" in (
        text.text
    )

    # Unknown names, or admin tools without --allow-admin, stop the server at start.
    bad = {
        "read-only,sned_message": "no tool named 'sned_message'",
        "reset_daemon": "reset_daemon is an admin tool",
        ",": "names no tool",
    }
    for option, said in bad.items():
        with pytest.raises(ValueError, match=re.escape(said)):
            ConvosdMcp(tmp_path / "x.sock", tools=option)
        assert mcp_main(["--socket", str(tmp_path / "x.sock"), "--tools", option]) == 2
        err = capsys.readouterr().err
        assert said in err and "--tools" in err


def test_the_sdk_looks_input_schemas_up_in_the_fixed_table(tmp_path: Path) -> None:
    """The SDK's HTTP transport checks Mcp-Param headers against a tool's input schema:
    with the list fixed, it looks the schema up instead of running tools/list (which
    asks the daemon); a tool not offered has none."""
    app = ConvosdMcp(tmp_path / "x.sock", tools="read-only,send_message")
    lookup = app.server.get_tool_input_schema
    assert lookup is not None
    assert lookup("send_message") == app.offered["send_message"][1].input_schema
    assert lookup("react") is None and lookup("nope") is None
