# ruff: noqa: E501 - the expected answers are whole wire lines, kept as they are
"""The RPC hot path: a method jsonrpcserver routes is answered by the dispatcher itself
(without jsonrpcserver's ``call``/``to_response``), ``status`` and ``health`` are answered
inline, and every answer is the bytes the jsonrpcserver path wrote. The expected lines
below were written by the dispatcher before the hot path (commit 4aa7488) for the same
requests and handlers (errorIds replaced by ``ID``)."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace
from typing import Any, cast

import pytest
from pydantic import Field

from convosd import errors
from convosd.rpc import dispatch, protocol
from convosd.rpc import schemas as s
from convosd.rpc.connection import Connection
from convosd.rpc.dispatch import CallContext, Dispatcher, MethodSpec
from convosd.rpc.limits import ServerLimits
from convosd.rpc.peers import Peer


class NameParams(s.Params):
    name: str = Field(max_length=5)


class Out(s.Result):
    conversation_id: str = Field(alias="conversationId")
    count: int


async def ok(ctx: CallContext, p: Any) -> dict[str, Any]:
    return {"a": 1, "b": [1.5, None, 1e-05, 2**70], "t": "é\u2028", "n": None}


async def model(ctx: CallContext, p: Any) -> Out:
    return Out(conversation_id="c1", count=3)


async def named(ctx: CallContext, p: NameParams) -> dict[str, Any]:
    return {"hello": p.name}


async def not_found(ctx: CallContext, p: Any) -> None:
    raise errors.NotFound("no such thing", data={"what": "x"})


async def boom(ctx: CallContext, p: Any) -> None:
    raise RuntimeError("secret text")


def status(ctx: CallContext, p: Any) -> dict[str, Any]:
    return {"version": "v", "uptimeS": 1.5, "children": {"stream": {"pid": None}}}


METHODS = {
    "ok": MethodSpec("ok", s.NoParams, None, ok, "ok"),
    "model": MethodSpec("model", s.NoParams, None, model, "model"),
    "named": MethodSpec("named", NameParams, None, named, "named"),
    "missing": MethodSpec("missing", s.NoParams, None, not_found, "nf"),
    "boom": MethodSpec("boom", s.NoParams, None, boom, "boom"),
    "admin": MethodSpec("admin", s.NoParams, None, ok, "admin", admin=True),
    "status": MethodSpec("status", s.NoParams, None, status, "st", always=True, inline=True),
}

CASES: dict[str, bytes] = {
    "ok-int": b'{"jsonrpc":"2.0","method":"ok","id":1}',
    "ok-str": b'{"jsonrpc":"2.0","method":"ok","id":"x\xc3\xa9"}',
    "ok-null": b'{"jsonrpc":"2.0","method":"ok","id":null}',
    "ok-float": b'{"jsonrpc":"2.0","method":"ok","id":1.25}',
    "ok-emptyparams": b'{"jsonrpc":"2.0","method":"ok","params":{},"id":2}',
    "ok-notification": b'{"jsonrpc":"2.0","method":"ok"}',
    "ok-listparams": b'{"jsonrpc":"2.0","method":"ok","params":[1],"id":3}',
    "ok-extra-param": b'{"jsonrpc":"2.0","method":"ok","params":{"x":1},"id":4}',
    "model": b'{"jsonrpc":"2.0","method":"model","id":5}',
    "named": b'{"jsonrpc":"2.0","method":"named","params":{"name":"bob"},"id":6}',
    "named-ctx": b'{"jsonrpc":"2.0","method":"named","params":{"name":"bob","ctx":1},"id":6}',
    "named-too-long": b'{"jsonrpc":"2.0","method":"named","params":{"name":"toolong"},"id":7}',
    "named-missing": b'{"jsonrpc":"2.0","method":"named","id":8}',
    "not-found-error": b'{"jsonrpc":"2.0","method":"missing","id":9}',
    "boom": b'{"jsonrpc":"2.0","method":"boom","id":10}',
    "boom-notification": b'{"jsonrpc":"2.0","method":"boom"}',
    "admin": b'{"jsonrpc":"2.0","method":"admin","id":11}',
    "unknown": b'{"jsonrpc":"2.0","method":"nope","id":12}',
    "unknown-params": b'{"jsonrpc":"2.0","method":"nope","params":{"a":1},"id":13}',
    "unknown-notification": b'{"jsonrpc":"2.0","method":"nope"}',
    "unknown-listparams": b'{"jsonrpc":"2.0","method":"nope","params":[],"id":14}',
    "status": b'{"jsonrpc":"2.0","method":"status","id":15}',
    "status-params": b'{"jsonrpc":"2.0","method":"status","params":{"x":1},"id":16}',
    "status-listparams": b'{"jsonrpc":"2.0","method":"status","params":[],"id":17}',
    "status-notification": b'{"jsonrpc":"2.0","method":"status"}',
    "big-id": b'{"jsonrpc":"2.0","method":"ok","id":12345678901234567890123}',
}

EXPECTED: dict[str, str | None] = {
    "ok-int": '{"jsonrpc":"2.0","result":{"a":1,"b":[1.5,null,1e-05,1180591620717411303424],"t":"é\u2028","n":null},"id":1}\n',
    "ok-str": '{"jsonrpc":"2.0","result":{"a":1,"b":[1.5,null,1e-05,1180591620717411303424],"t":"é\u2028","n":null},"id":"xé"}\n',
    "ok-null": '{"jsonrpc":"2.0","result":{"a":1,"b":[1.5,null,1e-05,1180591620717411303424],"t":"é\u2028","n":null},"id":null}\n',
    "ok-float": '{"jsonrpc":"2.0","result":{"a":1,"b":[1.5,null,1e-05,1180591620717411303424],"t":"é\u2028","n":null},"id":1.25}\n',
    "ok-emptyparams": '{"jsonrpc":"2.0","result":{"a":1,"b":[1.5,null,1e-05,1180591620717411303424],"t":"é\u2028","n":null},"id":2}\n',
    "ok-notification": None,
    "ok-listparams": '{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params: pass params by name (an object)","data":{"kind":"INVALID_PARAMS"}},"id":3}\n',
    "ok-extra-param": '{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params","data":{"kind":"INVALID_PARAMS","errors":[{"param":"x","problem":"Extra inputs are not permitted"}]}},"id":4}\n',
    "model": '{"jsonrpc":"2.0","result":{"conversationId":"c1","count":3},"id":5}\n',
    "named": '{"jsonrpc":"2.0","result":{"hello":"bob"},"id":6}\n',
    "named-ctx": '{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params","data":{"kind":"INVALID_PARAMS","errors":[{"param":"ctx","problem":"Extra inputs are not permitted"}]}},"id":6}\n',
    "named-too-long": '{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params","data":{"kind":"INVALID_PARAMS","errors":[{"param":"name","problem":"String should have at most 5 characters"}]}},"id":7}\n',
    "named-missing": '{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params","data":{"kind":"INVALID_PARAMS","errors":[{"param":"name","problem":"Field required"}]}},"id":8}\n',
    "not-found-error": '{"jsonrpc":"2.0","error":{"code":-32005,"message":"no such thing","data":{"kind":"NOT_FOUND","what":"x"}},"id":9}\n',
    "boom": '{"jsonrpc":"2.0","error":{"code":-32603,"message":"Internal error","data":{"kind":"INTERNAL","errorId":"ID"}},"id":10}\n',
    "boom-notification": None,
    "admin": '{"jsonrpc":"2.0","error":{"code":-32014,"message":"admin is for admin peers only","data":{"kind":"FORBIDDEN"}},"id":11}\n',
    "unknown": '{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found","data":{"kind":"METHOD_NOT_FOUND"}},"id":12}\n',
    "unknown-params": '{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found","data":{"kind":"METHOD_NOT_FOUND"}},"id":13}\n',
    "unknown-notification": None,
    "unknown-listparams": '{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found","data":{"kind":"METHOD_NOT_FOUND"}},"id":14}\n',
    "status": '{"jsonrpc":"2.0","result":{"version":"v","uptimeS":1.5,"children":{"stream":{"pid":null}}},"id":15}\n',
    "status-params": '{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params","data":{"kind":"INVALID_PARAMS","errors":[{"param":"x","problem":"Extra inputs are not permitted"}]}},"id":16}\n',
    "status-listparams": '{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params: pass params by name (an object)","data":{"kind":"INVALID_PARAMS"}},"id":17}\n',
    "status-notification": None,
    "big-id": '{"jsonrpc":"2.0","result":{"a":1,"b":[1.5,null,1e-05,1180591620717411303424],"t":"é\u2028","n":null},"id":12345678901234567890123}\n',
}


def request_of(line: bytes) -> tuple[protocol.Request, bool]:
    frame = protocol.parse_frame(line)
    (item,) = frame.items
    assert isinstance(item, protocol.Request)
    return item, frame.exotic


def wire(answer: dict[str, Any] | None, exotic: bool) -> str | None:
    if answer is None:
        return None
    text = protocol.encode(answer, exotic=exotic).decode()
    return re.sub(r'"errorId":"[0-9a-f]{12}"', '"errorId":"ID"', text)


def context() -> CallContext:
    return CallContext(connection=None, peer_uid=1000, is_admin=False)


@pytest.mark.parametrize("case", list(CASES))
async def test_every_answer_is_the_bytes_the_jsonrpcserver_path_wrote(case: str) -> None:
    dispatcher = Dispatcher(METHODS)
    request, exotic = request_of(CASES[case])
    assert wire(await dispatcher.dispatch(request, context()), exotic) == EXPECTED[case]
    if dispatcher.answers_inline(request):
        inline = dispatcher.dispatch_inline(request, context())
        assert wire(inline, exotic) == EXPECTED[case]


def test_status_is_answered_inline_and_only_status() -> None:
    dispatcher = Dispatcher(METHODS)
    answers = {case: dispatcher.answers_inline(request_of(line)[0]) for case, line in CASES.items()}
    # params by position go the way of every request (their answer is the same)
    assert {case for case, inline in answers.items() if inline} == {
        "status",
        "status-params",
        "status-notification",
    }
    request, _ = request_of(CASES["status"])
    answer = dispatcher.dispatch_inline(request, context())  # no await: answered at once
    assert answer is not None and answer["result"]["version"] == "v"
    assert dispatcher.calls["status"] == 1


async def test_jsonrpcserver_routes_every_request_and_answers_only_what_it_does_not_find(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its ``get_method`` is the lookup of every request; its ``call`` and ``to_response``
    are no longer on the path of a method it finds (the unknown method's answer is still
    its own)."""
    routed: list[str] = []
    real_get_method = dispatch.get_method
    built: list[Any] = []
    real_to_response = dispatch.to_response

    def spy_get_method(methods: Any, name: str) -> Any:
        routed.append(name)
        return real_get_method(methods, name)

    def spy_to_response(request: Any, result: Any) -> Any:
        built.append(request.method)
        return real_to_response(request, result)

    monkeypatch.setattr(dispatch, "get_method", spy_get_method)
    monkeypatch.setattr(dispatch, "to_response", spy_to_response)
    dispatcher = Dispatcher(METHODS)
    for case in ("ok-int", "model", "not-found-error", "boom", "unknown", "status"):
        request, exotic = request_of(CASES[case])
        assert wire(await dispatcher.dispatch(request, context()), exotic) == EXPECTED[case]
    request, _ = request_of(CASES["status"])
    dispatcher.dispatch_inline(request, context())
    assert routed == ["ok", "model", "missing", "boom", "nope", "status", "status"]
    assert built == ["nope"]


class CountingWriter:
    """A StreamWriter's face: counts the writes; ``unsent`` is what its transport holds."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.unsent = 0
        self.transport = SimpleNamespace(get_write_buffer_size=lambda: self.unsent)

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    async def drain(self) -> None:
        return None


def connection_on(writer: CountingWriter) -> Connection:
    server = SimpleNamespace(limits=ServerLimits(), dispatcher=Dispatcher(METHODS))
    return Connection(
        cast(Any, server),
        asyncio.StreamReader(),
        cast(Any, writer),
        Peer(None, 1000, 1000),
        1,
        is_admin=False,
    )


async def next_turns(count: int = 2) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_what_one_loop_turn_queues_is_written_in_one_write_at_its_end() -> None:
    writer = CountingWriter()
    connection = connection_on(writer)
    for n in range(5):
        connection.send_notice(b'{"n":%d}\n' % n)
    assert writer.writes == []  # not before the turn ends
    await next_turns()
    assert writer.writes == [b"".join(b'{"n":%d}\n' % n for n in range(5))]
    assert connection.output.output_bytes == 0 and connection.output.written_bytes == len(
        writer.writes[0]
    )
    await asyncio.wait_for(connection.output.flush(1.0), 2.0)
    connection.send_notice(b"{}\n")
    await next_turns()
    assert len(writer.writes) == 2  # the next turn's line: its own write


async def test_lines_wait_for_the_writer_while_the_transport_holds_unsent_bytes() -> None:
    """A peer that reads slowly: the transport has not sent everything; what is queued goes
    to the writer task, which waits for the transport to drain (the output bound)."""
    writer = CountingWriter()
    writer.unsent = 10
    connection = connection_on(writer)
    connection.send_notice(b"{}\n")
    await next_turns()
    assert writer.writes == [] and connection.output.output_bytes == 3
