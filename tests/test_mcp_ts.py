"""The MCP server (contrib/mcp) through the TypeScript SDK's own client (issue 25, item 5).

Claude Desktop, Claude Code and the MCP Inspector are TypeScript-SDK clients: a tool result
whose ``structuredContent`` does not match the tool's output schema makes their client throw
("Structured content does not match the tool's output schema"), and the model never reads
the explanation. ``tests/mcp_ts_client.mjs`` (the SDK is a dev dependency in package.json,
installed by ``make setup``) spawns ``python -m contrib.mcp`` over stdio, lists the tools,
calls each case below and reports every result or throw; this test runs it on the pinned
Node against a daemon on the CLI double.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fakeconvos.network import FakeNetwork
from tests.realcli.conftest import pinned_node
from tests.rpc_harness import member_cli, running_daemon

REPO = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).with_name("mcp_ts_client.mjs")
SDK = REPO / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"
#: the daemon's method names, as they would leak into a text (conversation.cancelJoin, ...)
METHOD_NAME = re.compile(
    r"\b(?:conversation|message|events|pairing|daemon|attachment|profile|rpc)\.[a-zA-Z]+\b"
)

pytestmark = pytest.mark.skipif(
    not (pinned_node().is_file() and SDK.is_file()),
    reason="make setup installs the pinned Node and the TypeScript MCP SDK",
)


async def ts_client(
    socket: Path,
    calls: list[tuple[str, dict[str, Any]]],
    *,
    server_args: tuple[str, ...] = (),
    roots: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Run the TypeScript client against ``python -m contrib.mcp --socket SOCKET``."""
    spec = {
        "command": sys.executable,
        "args": ["-m", "contrib.mcp", "--socket", str(socket), *server_args],
        "cwd": str(REPO),
        "env": {"PYTHONPATH": str(REPO)},
        "roots": roots,
        "calls": [{"tool": tool, "arguments": arguments} for tool, arguments in calls],
    }
    return await run_ts_client(spec, home=socket.parent)


async def run_ts_client(spec: dict[str, Any], *, home: Path) -> dict[str, Any]:
    """Run ``tests/mcp_ts_client.mjs`` on ``spec`` (its header says what it takes)."""
    process = await asyncio.create_subprocess_exec(
        str(pinned_node()),
        str(SCRIPT),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)},
        start_new_session=True,
    )
    try:
        # generous: node and a Python MCP server start on a busy 2-core machine
        out, err = await asyncio.wait_for(process.communicate(json.dumps(spec).encode()), 180)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, 9)
            await process.wait()
    assert process.returncode == 0, err.decode(errors="replace")[-3000:]
    report: dict[str, Any] = json.loads(out)
    return report


def check_errors_readable(report: dict[str, Any]) -> list[dict[str, Any]]:
    """No call threw; every error is isError with text and no structuredContent the tool's
    output schema would refuse; no text names a daemon method instead of a tool."""
    threw = [(r["tool"], r["threw"]) for r in report["results"] if r["threw"] is not None]
    errors = [r for r in report["results"] if r["isError"]]
    assert threw == [], f"{len(threw)} calls threw in the TypeScript client: {threw}"
    for result in errors:
        assert result["text"], result
        assert result["structuredContent"] is None, result
        assert not METHOD_NAME.search(result["text"]), result["text"]
    return errors


async def test_the_typescript_client_reads_every_tool_error(
    net: FakeNetwork, tmp_path: Path
) -> None:
    async with running_daemon(net, tmp_path / "d") as daemon:
        owner = member_cli(net, tmp_path / "owner")
        other = await owner.create(name="Not ours")
        invite = f"https://convos.app/join/{other.invite.slug}"
        calls: list[tuple[str, dict[str, Any]]] = [
            ("conversation_info", {}),  # 0 NOT_BOUND
            ("join_conversation", {"inviteUrl": invite, "timeoutS": 1}),  # 1 pending
            ("create_conversation", {"name": "x"}),  # 2 ALREADY_BOUND, pending
            ("cancel_join", {}),  # 3
            ("create_conversation", {"name": "From TS"}),  # 4
            ("create_conversation", {"name": "again"}),  # 5 ALREADY_BOUND
            ("react", {"messageId": "not hex", "emoji": "👍"}),  # 6 INVALID_PARAMS
            ("read_events", {"limit": 0}),  # 7 INVALID_PARAMS (the server's own check)
            ("wait_for_message", {"timeoutS": 1000}),  # 8 INVALID_PARAMS
            ("send_message", {"message": "hi", "replyTo": "zz"}),  # 9 INVALID_PARAMS
            ("send_message", {"message": "hello from ts"}),  # 10
            ("read_events", {}),  # 11
            ("lock_conversation", {"confirm": True}),  # 12
            ("create_invite", {}),  # 13 LOCKED
            ("lock_conversation", {"unlock": True, "confirm": True}),  # 14
            ("send_attachment", {"path": "/etc/hostname"}),  # 15 no path without --allow-path
            ("send_attachment", {"data": "aGk=", "filename": "hi.txt"}),  # 16 UPLOAD_UNAVAILABLE
            ("pairing_approve", {"code": "nope"}),  # 17 NOT_FOUND or INVALID_PARAMS
        ]
        report = await ts_client(daemon.socket, calls, server_args=("--allow-admin",))
        results = report["results"]
        errors = check_errors_readable(report)
        assert [r["tool"] for r in errors] == [
            calls[i][0] for i in (0, 2, 5, 6, 7, 8, 9, 13, 15, 16, 17)
        ]

        def text(i: int) -> str:
            return str(results[i]["text"])

        assert "NOT_BOUND" in text(0)
        assert "create_conversation" in text(0) and "join_conversation" in text(0)
        assert results[1]["structuredContent"]["status"] == "pending_acceptance"
        assert "cancel_join" in text(2)
        assert results[3]["structuredContent"] == {"cancelled": True}
        assert "reset_daemon" in text(5)
        for i, param in ((6, "messageId"), (7, "limit"), (8, "timeoutS"), (9, "replyTo")):
            assert "INVALID_PARAMS" in text(i) and f"`{param}`" in text(i), text(i)
        assert results[10]["structuredContent"]["messageId"]
        shown = [e["type"] for e in results[11]["structuredContent"]["events"]]
        assert "message_sent" in shown
        assert "lock_conversation" in text(13) and "unlock" in text(13)
        assert "create_invite" in text(13)
        assert "`path`" in text(15) and "--allow-path" in text(15) and "data" in text(15)
        assert "send_message" in text(16)
        assert "pairing_list" in text(17)
        tools = {t["name"]: t for t in report["tools"]}
        assert "path" not in tools["send_attachment"]["inputSchema"]["properties"]

        # Without --allow-admin: an admin tool is a readable error that says how to get it.
        report = await ts_client(
            daemon.socket, [("create_conversation", {"name": "x"}), ("conversation_info", {})]
        )
        [refused] = check_errors_readable(report)
        assert "--allow-admin" in refused["text"]
        assert report["results"][1]["structuredContent"]["name"] == "From TS"


async def test_the_typescript_client_s_roots_narrow_the_operator_s_folders(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """A TypeScript-SDK client speaks a protocol revision where the server asks
    ``roots/list`` itself: a path outside the client's roots is refused before the daemon
    sees it, one inside goes on to the daemon (which, without an upload provider here,
    answers UPLOAD_UNAVAILABLE: the path was accepted)."""
    share = tmp_path / "share"
    (share / "sub").mkdir(parents=True)
    (share / "top.txt").write_bytes(b"top")
    (share / "sub" / "deep.txt").write_bytes(b"deep")
    async with running_daemon(net, tmp_path / "d") as daemon:
        async with await daemon.client() as client:
            await client.call("conversation.create", {"name": "Roots"})
        calls: list[tuple[str, dict[str, Any]]] = [
            ("send_attachment", {"path": str(share / "top.txt")}),
            ("send_attachment", {"path": str(share / "sub" / "deep.txt")}),
        ]
        report = await ts_client(
            daemon.socket,
            calls,
            server_args=("--allow-path", str(share)),
            roots=[{"uri": (share / "sub").as_uri(), "name": "sub"}],
        )
        outside, inside = check_errors_readable(report)
        assert "outside the client's roots" in outside["text"] and "`path`" in outside["text"]
        assert inside["text"].startswith("UPLOAD_UNAVAILABLE"), inside["text"]
        assert report["rootsAsked"] == 2
        [tool] = [t for t in report["tools"] if t["name"] == "send_attachment"]
        assert str(share) in tool["inputSchema"]["properties"]["path"]["description"]


async def test_the_typescript_client_searches_and_reads_context(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """The TypeScript client checks each structured result against the tool's output
    schema: search_messages and get_message_context answer what they declare."""
    from tests.test_search import message

    async with running_daemon(net, tmp_path / "d") as daemon:
        daemon.instance.journal.append([message(1, "ship it friday"), message(2, "ok")])
        calls: list[tuple[str, dict[str, Any]]] = [
            ("search_messages", {"query": "friday", "types": ["message"]}),  # 0
            ("search_messages", {"query": '- ( ) "'}),  # 1 INVALID_PARAMS
            ("get_message_context", {"messageId": f"{1:064x}", "after": 1}),  # 2
            ("get_message_context", {"messageId": "9" * 64}),  # 3 NOT_FOUND
        ]
        report = await ts_client(daemon.socket, calls)
        errors = check_errors_readable(report)
        assert [r["tool"] for r in errors] == ["search_messages", "get_message_context"]
        results = report["results"]
        [hit] = results[0]["structuredContent"]["results"]
        assert hit["snippet"] == "ship it «friday»"
        assert "INVALID_PARAMS" in results[1]["text"] and "`query`" in results[1]["text"]
        assert [e["seq"] for e in results[2]["structuredContent"]["after"]] == [2]
        assert "NOT_FOUND" in results[3]["text"]


#: a tool's four MCP annotations, as the TypeScript client reads them
HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")


async def test_the_typescript_client_lists_annotated_tools_and_checks_every_result(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """Issue 23, item 1, as a TypeScript-SDK client sees it: every tool has an output
    schema and its four annotations; the client checks each result's structuredContent
    against the output schema itself (a mismatch throws, and a throw fails this test);
    the list is declared stable (listChanged false); destructive tools want confirm."""
    from tests.test_search import message

    async with running_daemon(net, tmp_path / "d") as daemon:
        async with await daemon.client() as client:
            await client.call("conversation.create", {"name": "Annotated"})
        journal = daemon.instance.journal
        journal.append([message(1, "ship it friday")])
        hello = f"{1:064x}"
        calls: list[tuple[str, dict[str, Any]]] = [
            ("read_events", {"limit": 100}),  # 0
            ("wait_for_message", {"timeoutS": 0.2}),  # 1
            ("send_message", {"message": "hello from ts"}),  # 2
            ("react", {"messageId": hello, "emoji": "👍"}),  # 3
            ("conversation_info", {}),  # 4
            ("create_invite", {"singleUse": True}),  # 5
            ("set_typing", {"typing": False}),  # 6
            ("mark_read", {}),  # 7
            ("search_messages", {"query": "friday"}),  # 8
            ("get_message_context", {"messageId": hello}),  # 9
            ("pairing_list", {}),  # 10
            ("explode_conversation", {}),  # 11 CONFIRMATION_REQUIRED
            ("reset_daemon", {"confirm": "yes"}),  # 12 CONFIRMATION_REQUIRED
            ("lock_conversation", {"confirm": True}),  # 13
        ]
        report = await ts_client(
            daemon.socket, calls, server_args=("--allow-admin", "--start", "beginning")
        )
        errors = check_errors_readable(report)
        assert [r["tool"] for r in errors] == ["explode_conversation", "reset_daemon"]
        for refused in errors:
            assert refused["text"].startswith("CONFIRMATION_REQUIRED"), refused["text"]
            assert "`confirm`" in refused["text"] and "confirm: true" in refused["text"]
        assert daemon.instance.binding is not None  # nothing was exploded or reset
        results = report["results"]
        for i, result in enumerate(results):
            if i not in (11, 12):
                assert isinstance(result["structuredContent"], dict), result
        assert results[0]["structuredContent"]["events"]
        assert results[8]["structuredContent"]["results"][0]["event"]["messageId"] == hello
        assert results[13]["structuredContent"] == {"locked": True}

        assert not (report["capabilities"]["tools"] or {}).get("listChanged")
        tools = {t["name"]: t for t in report["tools"]}
        assert len(tools) == 22
        for tool in tools.values():
            assert tool["outputSchema"]["type"] == "object", tool["name"]
            assert set(tool["annotations"]) >= set(HINTS), tool["name"]
            assert all(isinstance(tool["annotations"][h], bool) for h in HINTS), tool["name"]
            assert "title" not in json.dumps([tool["inputSchema"], tool["outputSchema"]])
        destructive = {n for n, t in tools.items() if t["annotations"]["destructiveHint"]}
        assert destructive == {
            "lock_conversation",
            "explode_conversation",
            "pairing_deny",
            "reset_daemon",
        }
        for name in destructive:
            assert "confirm" in tools[name]["inputSchema"]["required"], name

        # --tools read-only: only the read-only tools, and the others say why not.
        report = await ts_client(
            daemon.socket,
            [("send_message", {"message": "no"}), ("conversation_info", {})],
            server_args=("--tools", "read-only"),
        )
        assert {t["name"] for t in report["tools"]} == {
            "read_events",
            "wait_for_message",
            "conversation_info",
            "search_messages",
            "get_message_context",
        }
        assert all(t["annotations"]["readOnlyHint"] for t in report["tools"])
        [refused] = check_errors_readable(report)
        assert refused["text"].startswith("NOT_EXPOSED") and "--tools" in refused["text"]
        assert report["results"][1]["structuredContent"]["name"] == "Annotated"
