"""contrib.gateway end to end: HTTP over TCP → the gateway → a daemon on the CLI double."""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from contrib.gateway.__main__ import TOKEN_ENV, load_token, parse_listen
from contrib.gateway.routes import ROUTES, Route, Upstream, from_daemon
from contrib.gateway.server import MAX_BODY_BYTES, Gateway, GatewayConfig
from convosd.client import error_from
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S
from tests.rpc_harness import RunningDaemon, member_cli, running_daemon

ALREADY_BOUND = (
    "Instance already bound to a conversation. Terminate process and provision a new one."
)
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: Any


class Http:
    """One keep-alive ``http.client`` connection, used from a thread: the loop keeps serving."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
        self.token = token

    async def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", **(headers or {})}
        if self.token is not None:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        return await asyncio.to_thread(self._request, method, path, data, sent)

    def _request(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str]
    ) -> Reply:
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        payload = response.read()
        received = {name.lower(): value for name, value in response.getheaders()}
        assert received["content-type"] == "application/json"
        return Reply(response.status, received, json.loads(payload) if payload else None)

    def close(self) -> None:
        self.conn.close()


@asynccontextmanager
async def serving(socket_path: Path, **overrides: Any) -> AsyncIterator[Gateway]:
    async with Gateway(GatewayConfig(socket=socket_path, port=0, **overrides)) as gateway:
        yield gateway


@asynccontextmanager
async def http_to(gateway: Gateway, token: str | None = None) -> AsyncIterator[Http]:
    client = Http(gateway.address[1], token)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def daemon(net: FakeNetwork, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(net, tmp_path / "d") as running:
        yield running


@pytest.fixture
async def gateway(daemon: RunningDaemon) -> AsyncIterator[Gateway]:
    async with serving(daemon.socket) as running:
        yield running


@pytest.fixture
async def api(gateway: Gateway) -> AsyncIterator[Http]:
    async with http_to(gateway) as client:
        yield client


# --- raw HTTP, for what http.client will not send --------------------------------------


def parse_responses(data: bytes) -> list[tuple[int, dict[str, str], Any]]:
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "0"))
        body, data = rest[:length], rest[length:]
        out.append((int(status_line.split(" ")[1]), headers, json.loads(body) if body else None))
    return out


async def raw(gateway: Gateway, data: bytes, *, shut: bool = False) -> bytes:
    """Send ``data``, read until the gateway closes the connection."""
    reader, writer = await asyncio.open_connection(*gateway.address)
    try:
        writer.write(data)
        if shut:
            writer.write_eof()
        await writer.drain()
        return await asyncio.wait_for(reader.read(), WAIT_S)
    finally:
        writer.close()
        await writer.wait_closed()


async def raw_one(gateway: Gateway, data: bytes) -> tuple[int, dict[str, str], Any]:
    (reply,) = parse_responses(await raw(gateway, data))
    return reply


# --- the routes -------------------------------------------------------------------------


async def test_every_route_through_a_whole_lifecycle(api: Http, daemon: RunningDaemon) -> None:
    unbound = {"conversationId": None, "inboxId": None, "pending": False, "clean": True}
    assert (await api("GET", "/convos/status")).body == unbound
    for path, body in (
        ("/convos/conversation/send", {"message": "hi"}),
        ("/convos/rename", {"name": "x"}),
        ("/convos/lock", {}),
        ("/convos/explode", None),
    ):
        reply = await api("POST", path, body)
        assert (reply.status, reply.body) == (400, {"error": "No active conversation"}), path

    # the pool's body: unknown fields (env, instructions) are ignored
    reply = await api(
        "POST", "/convos/conversation", {"name": "Team", "env": "dev", "instructions": "be nice"}
    )
    assert reply.status == 200, reply.body
    created = reply.body
    assert set(created) == {"conversationId", "inviteUrl", "inviteSlug", "inboxId"}
    for path, body in (
        ("/convos/conversation", {}),
        ("/convos/join", {"inviteUrl": created["inviteSlug"]}),
    ):
        reply = await api("POST", path, body)
        assert (reply.status, reply.body) == (409, {"error": ALREADY_BOUND})
    reply = await api("GET", "/convos/status")
    assert reply.body == {
        "conversationId": created["conversationId"],
        "inboxId": created["inboxId"],
        "pending": False,
        "clean": False,
    }
    client = await daemon.client()
    try:
        members = (await client.call("conversation.info"))["members"]
        assert [m["name"] for m in members] == ["Team"]  # profileName defaults to name

        sent = await api(
            "POST", "/convos/conversation/send", {"message": "hi", "idempotencyKey": "k"}
        )
        assert sent.status == 200 and sent.body["success"] is True
        again = await api(
            "POST", "/convos/conversation/send", {"message": "hi", "idempotencyKey": "k"}
        )
        assert again.body == sent.body
        reply = await api(
            "POST",
            "/convos/conversation/send",
            {"message": "re", "replyTo": sent.body["messageId"]},
        )
        assert reply.status == 200 and reply.body["messageId"] != sent.body["messageId"]
        events = (await client.call("events.read", {"after": 0}))["events"]
        own = [(e["content"], e["replyTo"]) for e in events if e["type"] == "message_sent"]
        assert own == [("hi", None), ("re", sent.body["messageId"])]
    finally:
        await client.close()

    reply = await api("POST", "/convos/rename", {"name": "Renamed"})
    assert (reply.status, reply.body) == (200, {"ok": True, "name": "Renamed"})
    lock_bodies: list[tuple[dict[str, Any], bool]] = [
        ({}, True),
        ({"unlock": True}, False),
        ({"unlock": False}, True),
    ]
    for body, locked in lock_bodies:
        reply = await api("POST", "/convos/lock", body)
        assert (reply.status, reply.body) == (200, {"ok": True, "locked": locked})
    reply = await api("POST", "/convos/explode")
    assert (reply.status, reply.body) == (200, {"ok": True, "exploded": True, "membersRemoved": 0})
    assert (await api("GET", "/convos/status")).body == {
        "conversationId": None,
        "inboxId": created["inboxId"],  # the identity stays until reset
        "pending": False,
        "clean": False,
    }
    reply = await api("POST", "/convos/reset", {"skipGreeting": True})
    assert (reply.status, reply.body) == (
        200,
        {"ok": True, "reset": True, "clean": True, "status": unbound},
    )


async def test_join_joined_then_pending(
    api: Http, daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    owner = member_cli(net, tmp_path / "owner")
    created = await owner.create(name="Owner's")
    for body, error in (
        ({}, "inviteUrl (string) is required"),
        ({"inviteUrl": 5}, "inviteUrl (string) is required"),
        ({"inviteUrl": "x", "timeoutS": "5"}, "timeoutS must be an integer"),
        ({"inviteUrl": "x", "timeoutS": True}, "timeoutS must be an integer"),
        ({"inviteUrl": "x", "profileName": ["Bot"]}, "profileName must be a string"),
    ):
        reply = await api("POST", "/convos/join", body)
        assert (reply.status, reply.body) == (400, {"error": error})
    reply = await api("POST", "/convos/join", {"inviteUrl": "garbage"})  # INVITE_INVALID
    assert reply.status == 400 and reply.body["error"]

    watcher = await owner.join_requests_spec(created.conversation_id).spawn()
    try:
        reply = await api(
            "POST", "/convos/join", {"inviteUrl": created.invite.url, "profileName": "Bot"}
        )
    finally:
        os.killpg(watcher.pid, signal.SIGKILL)
        await watcher.wait()
    assert (reply.status, reply.body) == (
        200,
        {"status": "joined", "conversationId": created.conversation_id},
    )
    status = (await api("GET", "/convos/status")).body
    assert status["conversationId"] == created.conversation_id and status["inboxId"]
    # a joined instance is no super admin, nor the creator: PERMISSION_DENIED → 500
    for path in ("/convos/lock", "/convos/explode"):
        reply = await api("POST", path)
        assert reply.status == 500 and reply.body["error"], path

    assert (await api("POST", "/convos/reset")).status == 200
    reply = await api(
        "POST",
        "/convos/join",
        {"inviteUrl": f"https://convos.app/join/{created.invite.slug}", "timeoutS": 1},
    )
    assert reply.status == 200
    assert reply.body["status"] == "pending_acceptance"
    assert reply.body["creatorInboxId"] == created.inbox_id and reply.body["retryUntil"]
    status = (await api("GET", "/convos/status")).body
    assert status["pending"] is True and status["conversationId"] is None
    reply = await api("POST", "/convos/join", {"inviteUrl": created.invite.slug})
    assert (reply.status, reply.body) == (409, {"error": ALREADY_BOUND})
    reply = await api("POST", "/convos/conversation", {"name": "other"})
    assert reply.status == 409
    assert (await api("POST", "/convos/reset")).body["status"]["clean"] is True


async def test_bad_bodies_are_400(api: Http) -> None:
    for data, error in (
        (b"{not json", "Body is not valid JSON"),
        (b"\xff\xfe", "Body is not valid JSON"),
        (b'{"name": NaN}', "Body is not valid JSON"),
        (b"[" * 100_000, "Body is not valid JSON"),
        (b"[1]", "Body must be a JSON object"),
        (b'"name"', "Body must be a JSON object"),
        (b'{"name": 5}', "name must be a string"),
        (b'{"name": "x", "permissions": false}', "permissions must be a string"),
    ):
        reply = await api("POST", "/convos/conversation", raw=data)
        assert (reply.status, reply.body) == (400, {"error": error}), data
    for path, body, error in (
        ("/convos/conversation/send", {}, "message (string) is required"),
        ("/convos/conversation/send", {"message": None}, "message (string) is required"),
        ("/convos/conversation/send", {"message": "x", "replyTo": 1}, "replyTo must be a string"),
        ("/convos/rename", {"name": 1}, "name (string) is required"),
        ("/convos/lock", {"unlock": "yes"}, "unlock must be a boolean"),
    ):
        reply = await api("POST", path, body)
        assert (reply.status, reply.body) == (400, {"error": error}), (path, body)
    # the daemon's own validation (INVALID_PARAMS) names the parameter
    reply = await api("POST", "/convos/conversation", {"permissions": "everyone"})
    assert reply.status == 400 and "permissions" in reply.body["error"]
    reply = await api("POST", "/convos/conversation", {"name": ""})
    assert reply.status == 400 and "name" in reply.body["error"]
    # an empty body counts as {}
    assert (await api("POST", "/convos/conversation", raw=b"")).status == 200
    reply = await api("POST", "/convos/conversation/send", {"message": ""})
    assert reply.status == 400 and "message" in reply.body["error"]


async def test_unknown_route_404_and_wrong_method_405(api: Http) -> None:
    reply = await api("GET", "/convos/nothing")
    assert (reply.status, reply.body) == (404, {"error": "Not Found"})
    assert (await api("POST", "/convos/status/")).status == 404
    for method, path, allowed in (
        ("GET", "/convos/conversation", "POST"),
        ("DELETE", "/convos/lock", "POST"),
        ("POST", "/convos/status", "GET"),
        ("HEAD", "/convos/status", "GET"),
    ):
        reply = await api(method, path)
        body = None if method == "HEAD" else {"error": "Method Not Allowed"}  # HEAD: no body
        assert (reply.status, reply.body) == (405, body)
        assert reply.headers["allow"] == allowed
    assert (await api("GET", "/convos/status?verbose=1")).status == 200


async def test_bearer_token_401(daemon: RunningDaemon) -> None:
    async with serving(daemon.socket, token="s3cret-tøken") as gateway:
        async with http_to(gateway) as anonymous:
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Authorization": "Bearer s3cret"},
                {"Authorization": "Basic s3cret-tøken".encode().decode("latin-1")},
                {"Authorization": "s3cret-tøken".encode().decode("latin-1")},
            ):
                reply = await anonymous("GET", "/convos/status", headers=headers)
                assert (reply.status, reply.body) == (401, {"error": "Unauthorized"}), headers
                assert reply.headers["www-authenticate"] == "Bearer"
            # before routing and before reading a body (then the connection closes)
            assert (await anonymous("GET", "/convos/nothing")).status == 401
            reply = await anonymous("POST", "/convos/conversation", {"name": "x"})
            assert reply.status == 401 and reply.headers["connection"] == "close"
        token = "s3cret-tøken".encode().decode("latin-1")  # http.client sends latin-1 headers
        async with http_to(gateway, token) as client:
            assert (await client("GET", "/convos/status")).status == 200
            lower = {"Authorization": f"bearer {token}"}
            assert (await client("GET", "/convos/status", headers=lower)).status == 200
            assert (await client("GET", "/convos/nothing")).status == 404


async def test_busy_is_429_with_retry_after(api: Http, daemon: RunningDaemon) -> None:
    assert (await api("POST", "/convos/conversation", {"name": "x"})).status == 200
    service = daemon.daemon.service
    assert service is not None
    bucket = service.bucket
    bucket.tokens = 0
    bucket.updated = time.monotonic()
    reply = await api("POST", "/convos/conversation/send", {"message": "too fast"})
    assert reply.status == 429 and "sendRatePerS" in reply.body["error"]
    assert reply.headers["retry-after"] == "1"


async def test_not_ready_and_unreachable_are_503(net: FakeNetwork, tmp_path: Path) -> None:
    async with (
        running_daemon(net, tmp_path / "d", convos={"enabled": False}) as daemon,
        serving(daemon.socket) as gateway,
        http_to(gateway) as api,
    ):
        assert (await api("GET", "/convos/status")).status == 200  # status always answers
        reply = await api("POST", "/convos/conversation", {"name": "x"})
        assert reply.status == 503 and reply.headers["retry-after"] == "1"
        assert reply.body["error"]

    # over the daemon's maxConnections: it answers BUSY (id null) and closes; the client
    # raises that BUSY, so the gateway says 429 with the daemon's retryAfterS
    async with (
        running_daemon(net, tmp_path / "full", max_connections=1) as daemon,
        serving(daemon.socket) as gateway,
        http_to(gateway) as api,
    ):
        holder = await daemon.client()
        try:
            reply = await api("GET", "/convos/status")
        finally:
            await holder.close()
        assert (reply.status, reply.body) == (429, {"error": "too many connections"})
        assert reply.headers["retry-after"] == "1"

    stale = tmp_path / "stale.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(stale))  # bound, never listening: connections are refused
    listener.close()
    for path in (tmp_path / "missing.sock", stale):
        async with serving(path) as gateway, http_to(gateway) as api:
            reply = await api("GET", "/convos/status")
            assert (reply.status, reply.body) == (503, {"error": "convosd is not reachable"})
            assert reply.headers["retry-after"] == "1"


async def test_upstream_failures_are_5xx(
    api: Http, daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    assert (await api("POST", "/convos/conversation", {"name": "x"})).status == 200
    net.add_fault("unreachable", command="conversation:send-text", count=1)
    reply = await api("POST", "/convos/conversation/send", {"message": "lost"})
    assert reply.status == 502 and reply.body["error"]

    # a "daemon" that hangs up on every request, and one that never answers
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.close()

    silent_lines: list[bytes] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent_lines.append(await reader.readline())
        await reader.read()  # until the gateway gives up and closes
        writer.close()

    for handler, name, code, error in (
        (hang_up, "hangup.sock", 503, "convosd closed the connection"),
        (silent, "silent.sock", 504, "convosd did not answer status in time"),
    ):
        server = await asyncio.start_unix_server(handler, str(tmp_path / name))
        try:
            async with (
                serving(tmp_path / name, call_timeout_s=0.3) as gateway,
                http_to(gateway) as client,
            ):
                reply = await client("GET", "/convos/status")
                assert (reply.status, reply.body) == (code, {"error": error})
        finally:
            server.close()
            await server.wait_closed()
    assert json.loads(silent_lines[0])["method"] == "status"

    # a "daemon" with odd answers
    answers: dict[str, dict[str, Any]] = {
        "status": {"result": [1]},
        "conversation.rename": {"result": {"name": "x"}, "noise": 1},
        "conversation.lock": {
            "error": {"code": -32603, "message": "Internal error", "data": {"errorId": "e1"}}
        },
        "message.send": {"neither": True},
    }

    async def scripted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = json.loads(await reader.readline())
        writer.write(b'{"jsonrpc":"2.0","method":"event","params":{}}\n')  # ignored
        answer = {"jsonrpc": "2.0", "id": request["id"], **answers[request["method"]]}
        writer.write(json.dumps(answer).encode() + b"\n")
        await reader.read()
        writer.close()

    server = await asyncio.start_unix_server(scripted, str(tmp_path / "odd.sock"))
    try:
        async with serving(tmp_path / "odd.sock") as gateway, http_to(gateway) as client:
            cases: list[tuple[str, str, dict[str, Any] | None, int, str | None]] = [
                ("GET", "/convos/status", None, 502, "convosd answered status with a non-object"),
                ("POST", "/convos/rename", {"name": "x"}, 200, None),
                ("POST", "/convos/lock", None, 502, "Internal error (errorId e1)"),
                (
                    "POST",
                    "/convos/conversation/send",
                    {"message": "m"},
                    502,
                    "convosd answered message.send without a result",
                ),
            ]
            for method, path, body, code, expected in cases:
                reply = await client(method, path, body)
                assert reply.status == code, (path, reply.body)
                assert expected is None or reply.body == {"error": expected}
    finally:
        server.close()
        await server.wait_closed()

    async def broken(up: Upstream, body: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("a bug with a secret in its text")

    routes = {**ROUTES, "/broken": Route("GET", broken)}
    async with (
        Gateway(GatewayConfig(socket=daemon.socket, port=0), routes=routes) as gateway,
        http_to(gateway) as client,
    ):
        reply = await client("GET", "/broken")
        assert (reply.status, reply.body) == (500, {"error": "Internal error"})
        assert (await client("GET", "/convos/status")).status == 200  # still serving


@pytest.mark.parametrize(
    ("code", "data", "status", "message"),
    [
        (-32002, {"kind": "ALREADY_BOUND"}, 409, ALREADY_BOUND),
        (-32001, {"kind": "NOT_BOUND"}, 400, "M"),
        (
            -32602,
            {"errors": [{"param": "name", "problem": "too short"}]},
            400,
            "M: name: too short",
        ),
        (-32003, {"kind": "INVITE_INVALID"}, 400, "M"),
        (-32004, {"kind": "INVITE_EXPIRED"}, 400, "M"),
        (-32020, {"kind": "BUSY", "retryAfterS": 2.2}, 429, "M"),
        (-32021, {"kind": "NOT_READY"}, 503, "M"),
        (-32010, {"kind": "CLI_UNAVAILABLE"}, 502, "M"),
        (-32011, {"kind": "CLI_TIMEOUT"}, 502, "M"),
        (-32012, {"kind": "CLI_FAILED", "exitCode": 2, "error": "boom"}, 502, "M: boom"),
        (-32013, {"kind": "NETWORK_UNAVAILABLE"}, 502, "M"),
        (-32603, {"kind": "INTERNAL", "errorId": "abc"}, 502, "M (errorId abc)"),
        (-32601, None, 502, "M"),
        (-32099, None, 502, "M"),  # a code this gateway does not know
        (-32005, {"kind": "NOT_FOUND"}, 500, "M"),
        (-32006, {"kind": "PERMISSION_DENIED"}, 500, "M"),
        (-32007, {"kind": "LOCKED"}, 500, "M"),
        (-32014, {"kind": "FORBIDDEN"}, 500, "M"),
    ],
)
def test_daemon_errors_map_to_http(
    code: int, data: dict[str, Any] | None, status: int, message: str
) -> None:
    error = from_daemon(error_from({"code": code, "message": "M", "data": data}))
    assert (error.status, error.message) == (status, message)
    retry = dict(error.headers).get("Retry-After")
    assert retry == {429: "3", 503: "1"}.get(status)


# --- HTTP/1.1 itself --------------------------------------------------------------------

STATUS = b"GET /convos/status HTTP/1.1\r\nHost: x\r\n"


async def test_keep_alive_pipelining_and_http10(gateway: Gateway) -> None:
    replies = parse_responses(
        await raw(gateway, STATUS + b"\r\n" + STATUS + b"Connection: close\r\n\r\n")
    )
    assert [(code, h["connection"]) for code, h, _ in replies] == [
        (200, "keep-alive"),
        (200, "close"),
    ]
    assert replies[0][2]["clean"] is True
    code, headers, _ = await raw_one(gateway, b"GET /convos/status HTTP/1.0\r\n\r\n")
    assert (code, headers["connection"]) == (200, "close")
    replies = parse_responses(
        await raw(
            gateway,
            b"GET /convos/status HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
            b"GET /convos/status HTTP/1.0\r\n\r\n",
        )
    )
    assert [h["connection"] for _, h, _ in replies] == ["keep-alive", "close"]
    # an error answer to a request without a body keeps the connection
    replies = parse_responses(
        await raw(
            gateway, b"GET /x HTTP/1.1\r\n\r\nPOST /convos/status HTTP/1.1\r\n\r\n", shut=True
        )
    )
    assert [(code, h["connection"]) for code, h, _ in replies] == [
        (404, "keep-alive"),
        (405, "keep-alive"),
    ]


async def test_bodies_chunked_continue_and_413(daemon: RunningDaemon) -> None:
    async with serving(daemon.socket, max_body_bytes=1024) as gateway:
        lock = b"POST /convos/lock HTTP/1.1\r\nHost: x\r\n"
        chunked = lock + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        code, _, body = await raw_one(
            gateway, chunked + b'5;ext=1\r\n{"unl\r\n0c\r\nock": "yes"}\r\n0\r\nX-T: 1\r\n\r\n'
        )
        assert (code, body) == (400, {"error": "unlock must be a boolean"})  # decoded
        code, headers, body = await raw_one(
            gateway, chunked + b"400\r\n" + b" " * 1024 + b"\r\n1\r\n "
        )
        assert (code, body, headers["connection"]) == (
            413,
            {"error": "Request body too large"},
            "close",
        )
        # declared too large: answered at once, without waiting for the body
        code, headers, body = await raw_one(gateway, lock + b"Content-Length: 1025\r\n\r\n")
        assert (code, body, headers["connection"]) == (
            413,
            {"error": "Request body too large"},
            "close",
        )
        code, _, body = await raw_one(gateway, chunked + b"zz\r\n")
        assert (code, body) == (400, {"error": "Malformed chunk"})

        reader, writer = await asyncio.open_connection(*gateway.address)
        try:
            writer.write(lock + b"Content-Length: 15\r\nExpect: 100-continue\r\n\r\n")
            assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S) == (
                b"HTTP/1.1 100 Continue\r\n\r\n"
            )
            writer.write(b'{"unlock": "x"}')
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
            assert head.startswith(b"HTTP/1.1 400 ")
        finally:
            writer.close()
            await writer.wait_closed()
    assert MAX_BODY_BYTES == 1024 * 1024


async def test_malformed_requests(gateway: Gateway) -> None:
    for data, code, error in (
        (b"GARBAGE\r\n\r\n", 400, "Malformed request line"),
        (b"get /convos/status HTTP/1.1\r\n\r\n", 400, "Malformed request line"),
        (b"GET convos HTTP/1.1\r\n\r\n", 400, "Malformed request target"),
        (b"GET /convos/status HTTP/2.0\r\n\r\n", 505, "HTTP Version Not Supported"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414, "URI Too Long"),
        (STATUS + b"X: " + b"a" * 9000 + b"\r\n\r\n", 431, "Request Header Fields Too Large"),
        (STATUS + b"".join(b"X%d: 1\r\n" % i for i in range(101)) + b"\r\n", 431, None),
        (STATUS + b" folded: yes\r\n\r\n", 400, "Malformed header field"),
        (STATUS + b"Bad Name: 1\r\n\r\n", 400, "Malformed header field"),
        (STATUS + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, None),
        (STATUS + b"Content-Length: -1\r\n\r\n", 400, "Malformed Content-Length"),
        (STATUS + b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, None),
        (STATUS + b"Transfer-Encoding: gzip\r\n\r\n", 501, "Transfer-Encoding not supported"),
    ):
        got, headers, body = await raw_one(gateway, data)
        assert got == code and headers["connection"] == "close", data[:60]
        assert body["error"] == error or error is None
    # a leading empty line is ignored
    code, _, _ = await raw_one(gateway, b"\r\n" + STATUS + b"Connection: close\r\n\r\n")
    assert code == 200


async def test_timeouts_408_and_idle_close(daemon: RunningDaemon) -> None:
    async with serving(daemon.socket, request_timeout_s=0.3, idle_timeout_s=0.3) as gateway:
        # a head or a body that never ends: 408
        for data in (STATUS, b"POST /convos/lock HTTP/1.1\r\nContent-Length: 10\r\n\r\n{"):
            code, headers, body = await raw_one(gateway, data)
            assert (code, body, headers["connection"]) == (
                408,
                {"error": "Request Timeout"},
                "close",
            )
        # no request at all, or none after the last answer: closed without a word
        assert await raw(gateway, b"") == b""
        (reply,) = parse_responses(await raw(gateway, STATUS + b"\r\n"))
        assert reply[0] == 200


async def test_connection_cap_and_graceful_close(daemon: RunningDaemon) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow(up: Upstream, body: dict[str, Any]) -> dict[str, Any]:
        entered.set()
        await release.wait()
        return {"slow": True}

    routes = {**ROUTES, "/slow": Route("GET", slow)}
    gateway = Gateway(GatewayConfig(socket=daemon.socket, port=0, max_connections=2), routes=routes)
    await gateway.start()
    address = gateway.address
    try:
        idle_reader, idle_writer = await asyncio.open_connection(*gateway.address)
        idle_writer.write(STATUS + b"\r\n")
        head = await asyncio.wait_for(idle_reader.readuntil(b"\r\n\r\n"), WAIT_S)
        assert head.startswith(b"HTTP/1.1 200 ")
        await idle_reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]))

        busy_reader, busy_writer = await asyncio.open_connection(*gateway.address)
        busy_writer.write(b"GET /slow HTTP/1.1\r\n\r\n")
        await asyncio.wait_for(entered.wait(), WAIT_S)

        code, headers, body = await raw_one(gateway, STATUS + b"\r\n")  # the third connection
        assert (code, body) == (503, {"error": "Too many connections"})
        assert headers["retry-after"] == "1"

        closing = asyncio.create_task(gateway.close())
        assert await asyncio.wait_for(idle_reader.read(), WAIT_S) == b""  # idle: dropped at once
        assert not closing.done()  # the request in flight gets its grace period
        release.set()
        ((code, headers, body),) = parse_responses(
            await asyncio.wait_for(busy_reader.read(), WAIT_S)
        )
        assert (code, body, headers["connection"]) == (200, {"slow": True}, "close")
        await asyncio.wait_for(closing, WAIT_S)
        assert gateway.connections == 0
        for writer in (idle_writer, busy_writer):
            writer.close()
            await writer.wait_closed()
    finally:
        await gateway.close()
    with pytest.raises(OSError):
        await asyncio.open_connection(*address)


# --- python -m contrib.gateway ------------------------------------------------------------


async def test_module_entry_point(daemon: RunningDaemon, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "contrib.gateway",
        "--socket",
        str(daemon.socket),
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        str(token_file),
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        port = None
        while port is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), WAIT_S)).decode()
            assert line, "the gateway exited before listening"
            if "listening on http://127.0.0.1:" in line:
                port = int(line.split("127.0.0.1:")[1].split()[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(STATUS + b"\r\n" + STATUS + b"Authorization: Bearer file-token\r\n\r\n")
        writer.write(STATUS + b"Authorization: Bearer file-token\r\nConnection: close\r\n\r\n")
        replies = parse_responses(await asyncio.wait_for(reader.read(), WAIT_S))
        writer.close()
        await writer.wait_closed()
        assert [code for code, _, _ in replies] == [401, 200, 200]
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
        assert proc.returncode == 0, err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_token_and_listen_arguments(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("  from-file \nsecond line\n")
    assert load_token(token_file, {TOKEN_ENV: "from-env"}) == "from-file"
    assert load_token(None, {TOKEN_ENV: " from-env\n"}) == "from-env"
    assert load_token(None, {TOKEN_ENV: ""}) is None and load_token(None, {}) is None
    token_file.write_text("\n")
    with pytest.raises(ValueError):
        load_token(token_file, {})
    with pytest.raises(OSError):
        load_token(tmp_path / "absent", {})
    assert parse_listen("127.0.0.1:18789") == ("127.0.0.1", 18789)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("18789", "host:", ":80", "h:99999", "h:x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_listen(bad)
