"""The MCP server over Streamable HTTP (``python -m contrib.mcp --http``, issue 23 item 2).

Each test starts the real entry point as a process on a free loopback port against a
daemon on the CLI double, and talks to it with the Python SDK's Streamable HTTP client,
raw HTTP, or the TypeScript SDK's ``StreamableHTTPClientTransport``
(``tests/mcp_ts_client.mjs``). What is checked: the bearer token, the Host/Origin
allowlist, the stateless cursor (several clients, each its own position), the old
session header, and the flags that keep the server from starting unsafely.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client as McpClient
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from contrib.mcp.__main__ import main as mcp_main
from contrib.mcp.http import (
    TOKEN_ENV,
    Guard,
    HttpConfigError,
    allowlists,
    bind_socket,
    host_names,
    http_settings,
    parse_bind,
)
from contrib.mcp.results import ERROR_META
from contrib.mcp.server import ConvosdMcp
from contrib.mcp.stateful import MAX_WAIT_S, Cursor, decode_cursor, encode_cursor
from convosd import errors
from convosd.client import ConvosdClient
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, eventually
from tests.realcli.conftest import pinned_node
from tests.rpc_harness import running_daemon
from tests.test_mcp import READ_ONLY_TOOLS, bound_daemon
from tests.test_mcp_ts import SDK, check_errors_readable, run_ts_client
from tests.test_search import message

REPO = Path(__file__).resolve().parent.parent
TOKEN = "test-token-0123456789abcdef"
ANNOUNCED = re.compile(r"MCP over HTTP at (http://\S+/mcp)")


def token_file(folder: Path, token: str = TOKEN) -> Path:
    path = folder / "mcp.token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


@contextlib.asynccontextmanager
async def mcp_http_server(
    socket: Path, *args: str, token: str | None = TOKEN, env: dict[str, str] | None = None
) -> AsyncIterator[str]:
    """``python -m contrib.mcp --socket SOCKET --http 127.0.0.1:0 --token-file ...`` as a
    process (its own group); yields the URL it announces; SIGTERM (then SIGKILL) at the end."""
    token_args: list[str] = []
    if token is not None:
        token_args = ["--token-file", str(token_file(socket.parent, token))]
    environ = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    environ |= {"PYTHONPATH": str(REPO), **(env or {})}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "contrib.mcp",
        "--socket",
        str(socket),
        "--http",
        "127.0.0.1:0",
        *token_args,
        *args,
        cwd=REPO,
        env=environ,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    lines: list[str] = []
    announced: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def drain() -> None:
        assert process.stderr is not None
        async for raw in process.stderr:
            line = raw.decode(errors="replace")
            lines.append(line)
            found = ANNOUNCED.search(line)
            if found and not announced.done():
                announced.set_result(found[1])
        if not announced.done():
            announced.set_exception(AssertionError("the server exited:\n" + "".join(lines)))

    drainer = asyncio.create_task(drain())
    try:
        yield await asyncio.wait_for(asyncio.shield(announced), WAIT_S)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), WAIT_S)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        await drainer


@contextlib.asynccontextmanager
async def http_client(url: str, token: str = TOKEN, **options: Any) -> AsyncIterator[McpClient]:
    """The Python SDK's client over Streamable HTTP with ``Authorization: Bearer TOKEN``."""
    headers = {"Authorization": f"Bearer {token}"}
    async with create_mcp_http_client(headers=headers) as http:
        async with McpClient(streamable_http_client(url, http_client=http), **options) as client:
            yield client


async def call(client: McpClient, tool: str, /, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def call_error(client: McpClient, tool: str, /, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert result.is_error and result.meta is not None, result
    [text] = result.content
    assert isinstance(text, types.TextContent)
    return dict(result.meta[ERROR_META]) | {"text": text.text}


# --- flags --------------------------------------------------------------------------------


def test_the_http_flags_refuse_an_unsafe_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No token, a short one, a non-loopback bind without its flag, a wildcard bind with no
    Host named: the server does not start (exit 2) and says what to do."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    sock = str(tmp_path / "x.sock")
    good = str(token_file(tmp_path))
    short = tmp_path / "short"
    short.write_text("abc\n")
    cases = [
        (["--http", "8765"], "needs a bearer token"),
        (["--http", "8765", "--token-file", str(short)], "at least 16"),
        (["--http", "8765", "--token-file", str(tmp_path / "missing")], "cannot read"),
        (["--http", "10.1.2.3:8765", "--token-file", good], "--allow-non-loopback"),
        (["--http", "0.0.0.0:8765", "--token-file", good], "--allow-non-loopback"),
        (
            ["--http", "0.0.0.0:8765", "--token-file", good, "--allow-non-loopback"],
            "--allow-host",
        ),
        (["--http", "localhost:x", "--token-file", good], "HOST:PORT"),
        (["--token-file", good], "go with --http"),
        (["--http", "8765", "--token-file", good, "--allow-origin", "evil"], "scheme://"),
    ]
    for args, says in cases:
        assert mcp_main(["--socket", sock, *args]) == 2, args
        assert says in capsys.readouterr().err, args
    monkeypatch.setenv(TOKEN_ENV, "short")
    assert mcp_main(["--socket", sock, "--http", "8765"]) == 2
    assert f"${TOKEN_ENV}" in capsys.readouterr().err

    # what the flags mean when they are fine
    assert parse_bind("8765") == ("127.0.0.1", 8765)
    assert parse_bind("[::1]:9") == ("::1", 9)
    assert host_names("127.0.0.1", 8765) == ["127.0.0.1:8765", "localhost:8765"]
    assert host_names("::1", 80) == ["[::1]:80", "localhost:80", "[::1]", "localhost"]
    assert host_names("localhost", 9) == ["localhost:9", "127.0.0.1:9"]
    assert host_names("0.0.0.0", 9) == [] and host_names("10.1.2.3", 9) == ["10.1.2.3:9"]
    hosts, origins = allowlists("127.0.0.1", 5, ["Proxy.Example"], ["https://app.example"])
    assert hosts == {"127.0.0.1:5", "localhost:5", "proxy.example"}
    assert origins == {
        "http://127.0.0.1:5",
        "http://localhost:5",
        "http://proxy.example",
        "https://app.example",
    }
    settings = http_settings(
        "0.0.0.0:80",
        token_file=None,
        environ={TOKEN_ENV: TOKEN},
        allow_hosts=["mcp.lan"],
        allow_non_loopback=True,
    )
    assert (settings.host, settings.port, settings.token) == ("0.0.0.0", 80, TOKEN)
    with pytest.raises(HttpConfigError, match="--allow-non-loopback"):
        http_settings("example.com:80", token_file=None, environ={TOKEN_ENV: TOKEN})


def test_the_token_is_compared_whole() -> None:
    guard = Guard(None, token=TOKEN, hosts=[], origins=[])
    assert guard.token_ok(f"Bearer {TOKEN}") and guard.token_ok(f"bearer  {TOKEN} ")
    for wrong in (None, "", TOKEN, f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Basic {TOKEN}"):
        assert not guard.token_ok(wrong), wrong


async def test_answers_are_not_held_back_by_nagle(tmp_path: Path) -> None:
    """The connections the HTTP server accepts have TCP_NODELAY: a listening socket made
    with proto 0 made asyncio leave Nagle's algorithm on, and each answer's second write
    waited for the client's delayed ACK (40 ms a request on a kept-alive connection)."""
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=bind_socket("127.0.0.1", 0))
    async with server:
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            assert await asyncio.wait_for(accepted, WAIT_S) != 0
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def test_a_cursor_is_opaque_and_checked() -> None:
    cursor = encode_cursor(Cursor(42, "ab" * 16))
    assert "ab" * 16 not in cursor and re.fullmatch(r"[A-Za-z0-9_-]+", cursor)
    assert decode_cursor(cursor) == Cursor(42, "ab" * 16)
    for bad in ("", "nope", "Yzk6YWI6MQ", cursor + "A", cursor[:-2], "!" + cursor):
        with pytest.raises(errors.InvalidParams, match="cursor: is not a cursor this server"):
            decode_cursor(bad)


# --- the guard, on the wire ---------------------------------------------------------------

LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
JSON_HEADERS = {"Accept": "application/json, text/event-stream"}


async def test_token_host_and_origin_are_checked(tmp_path: Path) -> None:
    """401 without the token or with a wrong one; 403 for a Host or an Origin not in the
    allowlist (a DNS-rebinding page's requests); the allowed ones pass; an old client's
    Mcp-Session-Id is accepted and ignored; GET and other paths are refused."""
    socket = tmp_path / "nobody.sock"  # the guard needs no daemon; tools/list answers anyway
    async with (
        mcp_http_server(
            socket, "--allow-host", "proxy.example", "--allow-origin", "https://app.example"
        ) as url,
        httpx2.AsyncClient() as http,
    ):
        port = url.split(":")[2].split("/")[0]
        auth = {"Authorization": f"Bearer {TOKEN}", **JSON_HEADERS}

        async def post(headers: dict[str, str], path: str = "/mcp") -> httpx2.Response:
            return await http.post(url.replace("/mcp", path), json=LIST, headers=headers)

        refused = await post(JSON_HEADERS)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        wrong = await post({"Authorization": f"Bearer {TOKEN}x", **JSON_HEADERS})
        assert wrong.status_code == 401 and "invalid_token" in wrong.headers["www-authenticate"]

        for host in (f"attacker.example:{port}", "localhost:1", f"127.0.0.2:{port}"):
            answer = await post({**auth, "Host": host})
            assert answer.status_code == 403, host
            assert "--allow-host" in answer.json()["error_description"]
        for origin in ("http://attacker.example", "null", f"https://localhost:{port}"):
            answer = await post({**auth, "Origin": origin})
            assert answer.status_code == 403, origin
        # the bound names, the operator's Host and Origin
        for headers in (
            {},
            {"Host": f"localhost:{port}"},
            {"Host": "proxy.example"},
            {"Origin": f"http://127.0.0.1:{port}"},
            {"Origin": "https://app.example"},
        ):
            answer = await post({**auth, **headers})
            assert answer.status_code == 200, (headers, answer.text)
            assert '"send_message"' in answer.text

        # an old client that kept the session id of an earlier server: served
        old = await post(
            {**auth, "Mcp-Protocol-Version": "2025-06-18", "Mcp-Session-Id": "an-old-session"}
        )
        assert old.status_code == 200 and '"read_events"' in old.text

        assert (await http.get(url, headers=auth)).status_code == 405
        assert (await http.delete(url, headers=auth)).status_code == 405
        assert (await post(auth, "/other")).status_code == 404
        assert (await post(JSON_HEADERS, "/other")).status_code == 401  # the token first

        # the SDK's client: refused without the token, served with it
        with pytest.raises(Exception):  # noqa: B017 - the SDK's error type varies by era
            async with http_client(url, token="not-the-token-at-all") as client:
                await client.list_tools()
        async with http_client(url) as client:
            assert "read_events" in {t.name for t in (await client.list_tools()).tools}


# --- the cursor ---------------------------------------------------------------------------


async def test_python_sdk_clients_each_keep_their_own_cursor(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """Two clients (the current protocol, and the handshake era in the SDK's stateless
    mode) of one server: each goes on from the nextCursor it was given, whatever the other
    read; a cursor that is not one fails naming ``cursor``; one from another journal starts
    over at that journal's beginning."""
    async with (
        bound_daemon(net, tmp_path) as (daemon, bob, cid),
        mcp_http_server(daemon.socket) as url,
        http_client(url) as modern,
        http_client(url, mode="legacy") as legacy,
    ):
        tools = {t.name: t for t in (await modern.list_tools()).tools}
        assert "cursor" in tools["read_events"].input_schema["properties"]
        assert "cursor" in tools["wait_for_message"].input_schema["properties"]
        for name in ("read_events", "wait_for_message"):
            description = tools[name].description or ""
            assert "session" not in description and "journal's end" in description

        start = await call(modern, "read_events")
        assert start["events"] == [] and start["journalId"] == daemon.instance.journal.journal_id
        hello = await bob.send_text(cid, "hello over http")
        woke = await call(modern, "wait_for_message", cursor=start["nextCursor"], timeoutS=30)
        assert [e["messageId"] for e in woke["events"]] == [hello.message_id]
        assert (await call(modern, "read_events", cursor=woke["nextCursor"]))["events"] == []

        # the other client, from the first cursor: its own position
        seen = await call(legacy, "read_events", cursor=start["nextCursor"])
        assert [e["messageId"] for e in seen["events"]] == [hello.message_id]
        again = await call(legacy, "read_events", cursor=start["nextCursor"])
        assert again["events"] == seen["events"]  # a cursor is a position, not a session
        sent = await call(legacy, "send_message", message="answer over http")
        mine = await call(modern, "read_events", cursor=woke["nextCursor"])
        assert [e["messageId"] for e in mine["events"]] == [sent["messageId"]]
        waited = await call(legacy, "wait_for_message", cursor=seen["nextCursor"], timeoutS=0.2)
        assert (waited["events"], waited["timedOut"]) == ([], True)  # only a sent one since

        error = await call_error(modern, "read_events", cursor="not-a-cursor")
        assert error["kind"] == "INVALID_PARAMS" and "`cursor`" in error["text"]
        assert "nextCursor" in error["text"]
        error = await call_error(legacy, "wait_for_message", cursor="x", timeoutS=1)
        assert error["kind"] == "INVALID_PARAMS" and "`cursor`" in error["text"]
        journal = daemon.instance.journal
        beyond = encode_cursor(Cursor(journal.last_seq + 1000, journal.journal_id))
        error = await call_error(modern, "read_events", cursor=beyond)
        assert "`cursor`" in error["text"] and "past the end" in error["text"]

        # since: a seq of the current journal, with or without a cursor
        for cursor in ({}, {"cursor": woke["nextCursor"]}):
            back = await call(modern, "read_events", since=0, limit=100, **cursor)
            assert [e["seq"] for e in back["events"]] == list(range(1, journal.last_seq + 1))

        elsewhere = encode_cursor(Cursor(journal.last_seq, "f" * 32))
        over = await call(modern, "read_events", cursor=elsewhere, limit=100)
        assert over["journalChanged"] is True
        assert [e["seq"] for e in over["events"]] == list(range(1, journal.last_seq + 1))
        woke = await call(legacy, "wait_for_message", cursor=elsewhere, timeoutS=5)
        assert woke["journalChanged"] is True
        assert [e["content"] for e in woke["events"]] == ["hello over http"]


async def test_a_cursor_kept_across_a_reset_starts_over(net: FakeNetwork, tmp_path: Path) -> None:
    """After daemon.reset the journal is new and its seqs start over: an HTTP client's
    cursor from the old journal reads the new one from its seq 1 (journalChanged)."""
    async with (
        running_daemon(net, tmp_path / "d") as daemon,
        mcp_http_server(daemon.socket, "--start", "beginning") as url,
        http_client(url) as client,
    ):
        daemon.instance.journal.append([message(i, f"old {i}") for i in range(1, 6)])
        old = await call(client, "read_events")
        assert [e["content"] for e in old["events"]] == [f"old {i}" for i in range(1, 6)]
        # no cursor: every call starts where the server starts readers (none is kept)
        assert (await call(client, "read_events"))["events"] == old["events"]
        async with await ConvosdClient.connect(daemon.socket) as direct:
            await direct.call("daemon.reset", {"confirm": True})
        journal = daemon.instance.journal
        journal.append([message(i, f"new {i}") for i in range(1, 9)])  # past the old cursor
        assert journal.last_seq > old["cursor"]
        new = await call(client, "read_events", cursor=old["nextCursor"])
        assert new["journalChanged"] is True
        assert [e["content"] for e in new["events"]] == [f"new {i}" for i in range(1, 9)]
        assert (await call(client, "read_events", cursor=new["nextCursor"]))["events"] == []


async def test_stdio_takes_a_cursor_and_keeps_its_session_cursor(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """On stdio a call without cursor goes on from the session's cursor as before; a call
    with one reads from there and leaves the session's cursor where it was."""
    async with running_daemon(net, tmp_path / "d") as daemon:
        app = ConvosdMcp(daemon.socket, start="beginning")
        try:
            async with McpClient(app.server) as client:
                daemon.instance.journal.append([message(i, f"m{i}") for i in range(1, 4)])
                first = await call(client, "read_events", limit=2)
                assert [e["content"] for e in first["events"]] == ["m1", "m2"]
                from_start = await call(
                    client, "read_events", cursor=encode_cursor(Cursor(0, first["journalId"]))
                )
                assert [e["content"] for e in from_start["events"]] == ["m1", "m2", "m3"]
                rest = await call(client, "read_events")
                assert [e["content"] for e in rest["events"]] == ["m3"]
                assert rest["nextCursor"] == from_start["nextCursor"]
        finally:
            await app.aclose()


async def test_three_http_clients_over_1000_events_each_see_every_one_once(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """Three clients of one HTTP server read while 1,000 messages arrive in batches, each
    with its own cursor, by read_events pages of different sizes and wait_for_message:
    each sees every message, none twice, in order."""
    total, batch = 1000, 40
    async with (
        running_daemon(net, tmp_path / "d") as daemon,
        mcp_http_server(daemon.socket) as url,
    ):
        journal = daemon.instance.journal
        start_seq = journal.last_seq
        seen: list[list[int]] = [[], [], []]
        contents: list[list[str]] = [[], [], []]

        async def reader(i: int, page: int) -> None:
            async with http_client(url) as client:
                cursor = encode_cursor(Cursor(start_seq, journal.journal_id))
                while len(contents[i]) < total:
                    if len(seen[i]) % 3 == i % 3:
                        got = await call(
                            client,
                            "wait_for_message",
                            cursor=cursor,
                            timeoutS=min(WAIT_S, MAX_WAIT_S),
                        )
                    else:
                        got = await call(client, "read_events", cursor=cursor, limit=page)
                    seen[i] += [e["seq"] for e in got["events"]]
                    contents[i] += [e["content"] for e in got["events"] if e["type"] == "message"]
                    cursor = got["nextCursor"]

        readers = [asyncio.create_task(reader(i, page)) for i, page in enumerate((7, 33, 100))]
        try:
            for first in range(0, total, batch):
                # the next batch once some client has read the last one (reads overlap writes)
                assert await eventually(
                    lambda f=first: max(map(len, contents)) >= f or any(r.done() for r in readers)
                ), f"no client got past {first} messages: {[len(c) for c in contents]}"
                for task in readers:
                    if task.done():
                        task.result()  # a client's failure, raised here
                journal.append([message(n, f"m{n}") for n in range(first + 1, first + batch + 1)])
            _, stuck = await asyncio.wait(readers, timeout=WAIT_S)
            assert not stuck, f"clients stuck at {[len(c) for c in contents]} of {total}"
            for task in readers:
                task.result()
        finally:
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
        expected = [f"m{n}" for n in range(1, total + 1)]
        for i in range(3):
            assert contents[i] == expected, i
            assert seen[i] == sorted(set(seen[i])), i  # none twice, in order
            assert seen[i] == list(range(start_seq + 1, journal.last_seq + 1))  # none missed


async def test_roots_over_http(net: FakeNetwork, tmp_path: Path) -> None:
    """What the README says of roots over HTTP: a current-protocol client's roots narrow
    --allow-path (input_required); a handshake-era client cannot be asked for them over
    stateless HTTP, so only --allow-path holds (the daemon then refuses for want of an
    upload provider here: the path itself was let through)."""
    share = tmp_path / "share"
    (share / "sub").mkdir(parents=True)
    (share / "top.txt").write_bytes(b"top")

    async def list_roots(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=(share / "sub").as_uri(), name="sub")])

    async with running_daemon(net, tmp_path / "d") as daemon:
        async with await ConvosdClient.connect(daemon.socket) as direct:
            await direct.create(name="Roots")
        async with mcp_http_server(daemon.socket, "--allow-path", str(share)) as url:
            outcome = {}
            for mode in ("auto", "legacy"):
                async with http_client(url, list_roots_callback=list_roots, mode=mode) as client:
                    error = await call_error(client, "send_attachment", path=str(share / "top.txt"))
                    outcome[mode] = error["kind"], "client's roots" in error["text"]
            assert outcome == {
                "auto": ("INVALID_PARAMS", True),
                "legacy": ("UPLOAD_UNAVAILABLE", False),
            }


async def test_tools_option_over_http(
    net: FakeNetwork, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--tools and --http together: the listed tools are the ones --tools names, each
    with its annotations and output schema (the stateful tools' with the cursor fields,
    their descriptions the stateless ones), the list declared stable; a tool left out is
    NOT_EXPOSED; the cursor round trip works. An unknown name stops the server at start
    as on stdio."""
    sock = str(tmp_path / "x.sock")
    good = str(token_file(tmp_path))
    assert mcp_main(["--socket", sock, "--http", "0", "--token-file", good, "--tools", "x"]) == 2
    assert "no tool named 'x'" in capsys.readouterr().err
    async with (
        bound_daemon(net, tmp_path) as (daemon, _bob, _cid),
        mcp_http_server(daemon.socket, "--tools", "read-only,send_message") as url,
        http_client(url) as client,
    ):
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == READ_ONLY_TOOLS | {"send_message"}
        capability = client.server_capabilities.tools
        assert capability is not None and not capability.list_changed
        for tool in tools.values():
            assert tool.annotations is not None and tool.output_schema is not None, tool.name
            assert tool.annotations.read_only_hint is (tool.name != "send_message"), tool.name
        for name in ("read_events", "wait_for_message"):
            properties = (tools[name].output_schema or {})["properties"]
            assert {"cursor", "nextCursor", "journalChanged"} <= set(properties), name
            assert "cursor" in tools[name].input_schema["properties"], name
            assert "journal's end" in (tools[name].description or ""), name

        error = await call_error(client, "react", messageId="ab" * 32, emoji="x")
        assert error["kind"] == "NOT_EXPOSED" and "--tools" in error["message"]
        start = await call(client, "read_events")
        sent = await call(client, "send_message", message="read-only plus send")
        seen = await call(client, "read_events", cursor=start["nextCursor"])
        assert [e["messageId"] for e in seen["events"]] == [sent["messageId"]]


# --- the TypeScript SDK's client ------------------------------------------------------------


@pytest.mark.skipif(
    not (pinned_node().is_file() and SDK.is_file()),
    reason="make setup installs the pinned Node and the TypeScript MCP SDK",
)
async def test_the_typescript_client_over_http(net: FakeNetwork, tmp_path: Path) -> None:
    """``StreamableHTTPClientTransport`` (the transport of Claude Code, the MCP Inspector):
    served with the token, also when it sends an old session id; the cursor round trip;
    refused without the token."""
    async with (
        bound_daemon(net, tmp_path) as (daemon, bob, cid),
        mcp_http_server(daemon.socket) as url,
    ):
        hello = await bob.send_text(cid, "hello ts")
        journal = daemon.instance.journal
        assert await eventually(lambda: journal.message(hello.message_id) is not None)
        calls: list[tuple[str, dict[str, Any]]] = [
            ("read_events", {"cursor": "$before"}),  # 0 the journal's last event
            ("send_message", {"message": "from ts over http"}),  # 1
            ("read_events", {"cursor": "$nextCursor"}),  # 2 the send only
            ("read_events", {"cursor": "$nextCursor"}),  # 3 nothing
            ("wait_for_message", {"cursor": "$nextCursor", "timeoutS": 0.2}),  # 4 timed out
            ("read_events", {"cursor": "broken"}),  # 5 INVALID_PARAMS
        ]
        for session_id in (None, "an-old-session-id"):
            last = journal.last_seq  # hello, then the first round's send
            before = encode_cursor(Cursor(last - 1, journal.journal_id))
            spec = {
                "url": url,
                "headers": {"Authorization": f"Bearer {TOKEN}"},
                "sessionId": session_id,
                "roots": None,
                "calls": [
                    {
                        "tool": t,
                        "arguments": {k: before if v == "$before" else v for k, v in a.items()},
                    }
                    for t, a in calls
                ],
            }
            report = await run_ts_client(spec, home=tmp_path)
            assert report["connectError"] is None, report
            [error] = check_errors_readable(report)
            assert "`cursor`" in error["text"]
            results = [r["structuredContent"] for r in report["results"]]
            assert [e["seq"] for e in results[0]["events"]] == [last]
            if session_id is None:
                assert results[0]["events"][0]["content"] == "hello ts"
            sent = results[1]["messageId"]
            assert [e["messageId"] for e in results[2]["events"]] == [sent]
            assert results[3]["events"] == [] and results[4]["timedOut"] is True
            assert {t["name"] for t in report["tools"]} >= {"read_events", "send_message"}
            listed = {t["name"]: t for t in report["tools"]}
            assert all(t["annotations"] and t["outputSchema"] for t in listed.values())
            for name in ("read_events", "wait_for_message"):
                assert "nextCursor" in listed[name]["outputSchema"]["properties"], name

        spec = {"url": url, "headers": {}, "roots": None, "calls": []}
        refused = await run_ts_client(spec, home=tmp_path)
        assert "send Authorization: Bearer TOKEN" in refused["connectError"]
