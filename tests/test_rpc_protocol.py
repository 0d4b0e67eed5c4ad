"""The socket protocol: the JSON-RPC 2.0 specification's examples, framing and limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convosd.rpc import protocol
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, eventually, examples
from tests.rpc_harness import RunningDaemon, running_daemon


@pytest.fixture
async def daemon(net: FakeNetwork, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(net, tmp_path / "d", frame_limit_bytes=4096) as running:
        yield running


class Raw:
    """A bare NDJSON connection: write lines, read lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: Path) -> Raw:
        return cls(*await asyncio.open_unix_connection(str(path), limit=1 << 24))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, within_s: float = WAIT_S) -> Any:
        line = await asyncio.wait_for(self.reader.readline(), within_s)
        assert line, "connection closed"
        return json.loads(line)

    async def ask(self, data: bytes | str) -> Any:
        raw = data.encode() if isinstance(data, str) else data
        await self.send(raw if raw.endswith(b"\n") else raw + b"\n")
        return await self.recv()

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def raw(daemon: RunningDaemon) -> AsyncIterator[Raw]:
    conn = await Raw.open(daemon.socket)
    yield conn
    await conn.close()


def code(reply: dict[str, Any]) -> int:
    return int(reply["error"]["code"])


async def test_specification_examples(raw: Raw) -> None:
    # rpc call with invalid JSON
    reply = await raw.ask('{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]')
    assert (code(reply), reply["id"]) == (-32700, None)
    # invalid Request object
    reply = await raw.ask('{"jsonrpc": "2.0", "method": 1, "params": "bar"}')
    assert (code(reply), reply["id"]) == (-32600, None)
    # batch, invalid JSON
    reply = await raw.ask(
        '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
        '{"jsonrpc": "2.0", "method"]'
    )
    assert code(reply) == -32700
    # empty array
    reply = await raw.ask("[]")
    assert (code(reply), reply["id"]) == (-32600, None)
    # invalid batch, not empty
    reply = await raw.ask("[1]")
    assert [code(r) for r in reply] == [-32600]
    # invalid batch
    reply = await raw.ask("[1,2,3]")
    assert [(code(r), r["id"]) for r in reply] == [(-32600, None)] * 3
    # mixed batch: answers for requests only, each on its own
    reply = await raw.ask(
        json.dumps(
            [
                {"jsonrpc": "2.0", "method": "health", "id": "1"},
                {"jsonrpc": "2.0", "method": "notify_hello", "params": {"x": 7}},
                {"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": "2"},
                {"foo": "boo"},
                {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
                {"jsonrpc": "2.0", "method": "status", "id": "9"},
            ]
        )
    )
    by_id = {r["id"]: r for r in reply}
    assert len(reply) == 5
    assert by_id["1"]["result"]["status"] in ("ok", "degraded", "down")
    assert code(by_id["2"]) == -32601
    assert code(by_id[None]) == -32600
    assert code(by_id["5"]) == -32601
    assert "version" in by_id["9"]["result"]


async def test_notifications_get_no_answer(raw: Raw) -> None:
    await raw.send(b'{"jsonrpc":"2.0","method":"status"}\n')
    await raw.send(b'[{"jsonrpc":"2.0","method":"health"},{"jsonrpc":"2.0","method":"x"}]\n')
    reply = await raw.ask('{"jsonrpc":"2.0","method":"health","id":42}')
    assert reply["id"] == 42  # nothing came before it


async def test_params_rules(raw: Raw) -> None:
    reply = await raw.ask('{"jsonrpc":"2.0","method":"status","params":[],"id":1}')
    assert code(reply) == -32602 and reply["error"]["data"]["kind"] == "INVALID_PARAMS"
    reply = await raw.ask('{"jsonrpc":"2.0","method":"events.read","params":{"limit":0},"id":2}')
    assert code(reply) == -32602
    assert reply["error"]["data"]["errors"][0]["param"] == "limit"
    reply = await raw.ask('{"jsonrpc":"2.0","method":"status","params":{"bogus":1},"id":3}')
    assert code(reply) == -32602
    reply = await raw.ask('{"jsonrpc":"2.0","method":"nope","id":4}')
    assert code(reply) == -32601 and reply["error"]["data"] == {"kind": "METHOD_NOT_FOUND"}
    reply = await raw.ask('{"jsonrpc":"2.0","method":"status","params":"x","id":5}')
    assert code(reply) == -32600 and reply["id"] == 5


async def test_bad_bytes_keep_the_connection(raw: Raw) -> None:
    for junk in (b"\xff\xfe\xfd", b"not json", b"{}{}", b"\x00", b"   "):
        reply = await raw.ask(junk)
        assert (code(reply), reply["id"]) == (-32700, None), junk
    deep = "[" * 100_000 + "]" * 100_000
    assert code(await raw.ask(deep[:4000])) == -32700  # unbalanced within the frame
    reply = await raw.ask('{"jsonrpc":"2.0","method":"health","id":"\\ud800"}')
    assert reply["id"] == "\ud800"
    reply = await raw.ask('{"jsonrpc":"2.0","method":"health","id":' + "9" * 3000 + "}")
    assert "result" in reply


async def test_over_long_line_is_answered_then_closed(raw: Raw) -> None:
    await raw.send(b"x" * 10_000 + b"\n")
    reply = await raw.recv()
    assert (code(reply), reply["id"]) == (-32700, None)
    # what to do: the limit, and the way around it for a file
    assert "frameLimitBytes" in reply["error"]["message"]
    assert "by path" in reply["error"]["message"]
    assert await asyncio.wait_for(raw.reader.read(), WAIT_S) == b""  # closed


async def test_out_of_order_answers_and_busy(daemon: RunningDaemon) -> None:
    conn = await Raw.open(daemon.socket)
    try:
        lines = b"".join(
            json.dumps({"jsonrpc": "2.0", "method": "status", "id": i}).encode() + b"\n"
            for i in range(200)
        )
        await conn.send(lines)
        replies = [await conn.recv() for _ in range(200)]
        assert sorted(r["id"] for r in replies) == list(range(200))
    finally:
        await conn.close()


async def test_disconnect_mid_request_is_harmless(daemon: RunningDaemon) -> None:
    for _ in range(20):
        conn = await Raw.open(daemon.socket)
        await conn.send(b'{"jsonrpc":"2.0","method":"status","id":1}\n{"jsonrpc":"2.0","met')
        conn.writer.close()
    client = await daemon.client()
    assert (await client.call("health"))["status"] in ("ok", "degraded")
    await client.close()


async def test_thousand_connections_at_once(daemon: RunningDaemon) -> None:
    """Past maxConnections (256) a connection is answered BUSY and closed; the others and
    later clients are served."""
    conns = await asyncio.gather(*(Raw.open(daemon.socket) for _ in range(1000)))
    try:
        for conn in conns:
            conn.writer.write(b'{"jsonrpc":"2.0","method":"health","id":1}\n')
        served = busy = 0
        for conn in conns:
            line = await asyncio.wait_for(conn.reader.readline(), WAIT_S)
            reply = json.loads(line)
            if "result" in reply:
                served += 1
            else:
                assert reply["error"]["data"]["kind"] == "BUSY"
                busy += 1
        assert served == 256 and busy == 744
    finally:
        await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)
    server = daemon.daemon.server
    assert server is not None
    assert await eventually(lambda: len(server.connections) == 0)
    client = await daemon.client()
    assert (await client.call("health"))["status"] in ("ok", "degraded")
    await client.close()


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.binary(max_size=300))
async def test_random_bytes_never_break_the_server(raw: Raw, data: bytes) -> None:
    line = data.replace(b"\n", b" ") + b"\n"
    await raw.send(line)
    reply = await raw.ask('{"jsonrpc":"2.0","method":"health","id":"probe"}')
    while reply.get("id") != "probe":  # the junk may have earned its own answer first
        reply = await raw.recv()
    assert "result" in reply


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=10,
    )
)
async def test_random_json_gets_a_json_rpc_answer(raw: Raw, value: Any) -> None:
    message = json.dumps(value)
    if len(message) > 3000:
        return
    await raw.send(message.encode() + b"\n")
    await raw.send(b'{"jsonrpc":"2.0","method":"health","id":"probe"}\n')
    while True:
        reply = await raw.recv()
        if isinstance(reply, dict) and reply.get("id") == "probe":
            break
        items = reply if isinstance(reply, list) else [reply]
        for item in items:
            assert item["jsonrpc"] == "2.0" and ("result" in item or "error" in item)


def test_frame_parsing_is_pure() -> None:
    frame = protocol.parse_frame(b'[{"jsonrpc":"2.0","method":"a","id":1},{"x":1}]')
    assert frame.batch and isinstance(frame.items[0], protocol.Request)
    assert isinstance(frame.items[1], protocol.Invalid)
    with pytest.raises(protocol.FrameError):
        protocol.parse_frame(b"\xff")
    notification = protocol.parse_frame(b'{"jsonrpc":"2.0","method":"a"}').items[0]
    assert isinstance(notification, protocol.Request) and notification.notification
    bad_id = protocol.parse_frame(b'{"jsonrpc":"2.0","method":"a","id":true}').items[0]
    assert isinstance(bad_id, protocol.Invalid) and bad_id.id is None


def strict_json(line: bytes) -> Any:
    """Parse as JSON proper: ``NaN``/``Infinity`` are not JSON (Python's json accepts them)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


async def test_a_number_with_too_many_digits_is_a_parse_error(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """More than 4,300 digits: Python raises ValueError (not JSONDecodeError). -32700 with id
    null, the connection kept, and the connection's other requests still answered."""
    async with running_daemon(net, tmp_path / "big") as daemon:
        conn = await Raw.open(daemon.socket)
        try:
            net.add_fault("slow_start", command="conversations:create", seconds=1.0, count=1)
            await conn.send(
                b'{"jsonrpc":"2.0","method":"conversation.create","params":{"name":"x"},'
                b'"id":"slow"}\n'
            )
            for digits in ("9" * 5000, "-" + "1" * 4301, "[" + "7" * 10_000 + "]"):
                reply = await conn.ask('{"jsonrpc":"2.0","method":"health","id":' + digits + "}")
                assert (code(reply), reply["id"]) == (-32700, None)
            reply = await conn.ask('{"jsonrpc":"2.0","method":"health","id":"after"}')
            assert reply["id"] == "after" and "result" in reply
            slow = await conn.recv()
            assert slow["id"] == "slow" and "result" in slow, slow
        finally:
            await conn.close()


@pytest.mark.parametrize("bad_id", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
async def test_an_id_json_cannot_carry_is_answered_with_id_null(raw: Raw, bad_id: str) -> None:
    await raw.send(('{"jsonrpc":"2.0","method":"health","id":' + bad_id + "}\n").encode())
    line = await asyncio.wait_for(raw.reader.readline(), WAIT_S)
    reply = strict_json(line)
    assert (code(reply), reply["id"]) == (-32600, None)
    await raw.send(
        (
            '[{"jsonrpc":"2.0","method":"health","id":' + bad_id + "},"
            '{"jsonrpc":"2.0","method":"health","id":2}]\n'
        ).encode()
    )
    replies = strict_json(await asyncio.wait_for(raw.reader.readline(), WAIT_S))
    by_id = {r["id"]: r for r in replies}
    assert code(by_id[None]) == -32600 and "result" in by_id[2]
    assert (await raw.ask('{"jsonrpc":"2.0","method":"health","id":1.5}'))["id"] == 1.5
