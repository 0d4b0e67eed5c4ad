"""orjson on the wire: every answer is byte for byte what the standard library writes, and
every line is read as the standard library reads it (big integers, NaN, Infinity, lone
surrogates, deep nesting, floats with an exponent)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convosd.jsonutil import dumps, loads
from convosd.rpc import protocol
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S
from tests.rpc_harness import RunningDaemon, running_daemon

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def stdlib_line(value: Any) -> bytes:
    return dumps(value).encode("utf-8") + b"\n"


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_encode_is_the_standard_librarys_bytes(value: Any) -> None:
    assert protocol.encode({"jsonrpc": "2.0", "result": value, "id": 1}) == stdlib_line(
        {"jsonrpc": "2.0", "result": value, "id": 1}
    )


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_decode_reads_what_the_standard_library_reads(value: Any) -> None:
    line = json.dumps(value).encode()
    decoded, _exotic = protocol.decode_wire(line)
    assert decoded == json.loads(line)
    assert json.dumps(decoded) == json.dumps(json.loads(line))  # same types (int vs float)


@pytest.mark.parametrize(
    "value",
    [
        1e-05,
        4.20598641848512e-07,
        -9.558639086514432e-09,
        1e16,
        1.5e300,
        0.0001,
        2**64,
        -(2**63) - 1,
        2**200,
        "\ud800 lone",
        {1: "int key"},
        {"nested": [1e-7, {"x": 2**70}]},
        "é ☃ 😀 \x00\x1f\x7f \u2028",
    ],
)
def test_what_orjson_would_write_otherwise_is_written_by_the_standard_library(
    value: Any,
) -> None:
    message = {"jsonrpc": "2.0", "result": value, "id": 7}
    assert protocol.encode(message) == stdlib_line(message)


def test_an_exotic_answer_keeps_nan_and_infinity() -> None:
    message = {"jsonrpc": "2.0", "result": [math.nan, math.inf], "id": 1}
    assert (
        protocol.encode(message, exotic=True)
        == b'{"jsonrpc":"2.0","result":[NaN,Infinity],"id":1}\n'
    )


@pytest.mark.parametrize(
    ("line", "exotic"),
    [
        (b'{"jsonrpc":"2.0","method":"status","id":1}', False),
        (b'{"jsonrpc":"2.0","method":"status","id":18446744073709551616}', True),
        (b'{"jsonrpc":"2.0","method":"status","id":-9223372036854775809}', True),
        (b'{"jsonrpc":"2.0","method":"status","id":NaN}', True),
        (b'{"jsonrpc":"2.0","method":"status","id":1e400}', True),
        (b'{"jsonrpc":"2.0","method":"status","id":"\\ud800"}', True),
        (b"[" * 300 + b"]" * 300, True),
    ],
)
def test_lines_orjson_could_change_are_read_by_the_standard_library(
    line: bytes, exotic: bool
) -> None:
    value, was_exotic = protocol.decode_wire(line)
    assert was_exotic is exotic
    assert json.dumps(value) == json.dumps(json.loads(line))


def test_parse_errors_are_unchanged() -> None:
    for line, message in [
        (b"\xff", "Parse error: not UTF-8"),
        (b"{", "Parse error: not JSON"),
        (b"{} {}", "Parse error: more than one JSON text on the line"),
        (b"[" * 100_000 + b"]" * 100_000, "Parse error: nested too deeply"),
        (b"1" * 5000, "Parse error: a number has too many digits"),
    ]:
        with pytest.raises(protocol.FrameError) as caught:
            protocol.parse_frame(line)
        assert str(caught.value) == message


@pytest.fixture
async def daemon(net: FakeNetwork, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(net, tmp_path / "d") as running:
        yield running


async def test_ids_come_back_byte_for_byte(daemon: RunningDaemon) -> None:
    reader, writer = await asyncio.open_unix_connection(str(daemon.socket), limit=1 << 20)
    try:
        for raw_id, echoed in [
            (b"18446744073709551616", b'"id":18446744073709551616}'),
            (b"1e-05", b'"id":1e-05}'),
            (b"0.00001", b'"id":1e-05}'),
            (b"4.2e-7", b'"id":4.2e-07}'),
            (b"1E16", b'"id":1e+16}'),
            (b"NaN", b'"id":null}'),  # refused (not a valid id), answered with null
        ]:
            writer.write(b'{"jsonrpc":"2.0","method":"nope","id":' + raw_id + b"}\n")
            line = await asyncio.wait_for(reader.readline(), WAIT_S)
            assert line.endswith(echoed + b"\n"), line
            assert line == protocol.encode(json.loads(line), exotic=True)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_param_named_ctx_is_an_unknown_param(daemon: RunningDaemon) -> None:
    """jsonrpcserver's signature binding refused it as -32602; without that binding it must
    stay -32602 (not reach the method as a second context)."""
    reader, writer = await asyncio.open_unix_connection(str(daemon.socket), limit=1 << 20)
    try:
        writer.write(b'{"jsonrpc":"2.0","method":"status","params":{"ctx":1},"id":1}\n')
        reply = json.loads(await asyncio.wait_for(reader.readline(), WAIT_S))
        assert reply["error"]["code"] == protocol.INVALID_PARAMS
        assert reply["error"]["data"]["kind"] == "INVALID_PARAMS"
    finally:
        writer.close()
        await writer.wait_closed()


def stdlib_text(value: Any) -> str:
    """What :func:`dumps` wrote before it used orjson for plain values."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text


def test_dumps_writes_every_character_as_the_standard_library() -> None:
    # one string of every code point but the surrogates, then each surrogate alone
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    assert dumps(every) == stdlib_text(every)
    assert dumps({"k": every, "l": [every]}) == stdlib_text({"k": every, "l": [every]})
    for c in (0xD800, 0xDBFF, 0xDC00, 0xDFFF):
        assert dumps(f"a{chr(c)}b") == stdlib_text(f"a{chr(c)}b")


@settings(max_examples=300)
@given(json_values)
def test_dumps_is_the_standard_librarys_text(value: Any) -> None:
    assert dumps(value) == stdlib_text(value)


@pytest.mark.parametrize(
    "value",
    [
        2**63,
        2**64 - 1,
        2**64,
        -(2**63) - 1,
        10**30,
        [1.0, 1e-05, 1e16, float("nan"), float("inf")],
        {"a": {"b": [True, False, None, "x\u2028"]}},
        {1: "non-string key"},
        [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
    ],
)
def test_dumps_of_what_orjson_writes_otherwise(value: Any) -> None:
    assert dumps(value) == stdlib_text(value)


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":1,"a":2}',
        b'{"a":"\\ud800"}',
        b'{"a":1e400}',
        b'{"a":NaN,"b":-Infinity}',
        b'\xef\xbb\xbf{"a":1}',
        b'{"a":123456789012345678901,"b":[-98765432109876543210]}',
        b'{"a":1.5e-7,"b":[0.1]}',
        b'{"a":"\\u0000 \xc3\xa9"}',
        b"[" * 300 + b"]" * 300,
    ],
)
def test_loads_reads_what_the_standard_library_reads(text: bytes) -> None:
    expected = json.loads(text)
    got = loads(text)
    assert repr(got) == repr(expected)


@pytest.mark.parametrize("text", [b'{"a":"\xff"}', b"[1,]", b'{"a":"\x01"}', b"", b"{"])
def test_loads_refuses_what_the_standard_library_refuses(text: bytes) -> None:
    with pytest.raises(ValueError) as stdlib:
        json.loads(text)
    with pytest.raises(ValueError) as ours:
        loads(text)
    assert type(ours.value) is type(stdlib.value)


@settings(max_examples=300)
@given(json_values)
def test_loads_of_any_value(value: Any) -> None:
    text = stdlib_text(value).encode("utf-8", "surrogatepass")
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            loads(text)
        return
    assert repr(loads(text)) == repr(expected)
