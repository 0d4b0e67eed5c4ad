"""Dispatch of one request: envelope checked by :mod:`protocol`, params by pydantic, the call
routed by jsonrpcserver (its own method lookup, call and response building, one request at a
time: not its deserializer, jsonschema validation, ``inspect.signature`` binding or batch
gathering, which :mod:`protocol` and the connection already do), and every exception mapped
to an error code of docs/PROTOCOL.md.

jsonrpcserver is used in one function, :func:`_route`. It turns a raised exception into
-32603 *with the exception text*; no exception reaches it here: :class:`ConvosdError` becomes
its code and kind, anything else becomes "Internal error" with an ``errorId`` that points
into the log (both as :class:`RpcFailure`, which ``_route`` hands over as its error).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from jsonrpcserver import JsonRpcError, Success
from jsonrpcserver.async_dispatcher import call as call_method
from jsonrpcserver.dispatcher import create_request, get_method, to_response
from jsonrpcserver.response import to_serializable
from jsonrpcserver.result import Result as RpcResult
from jsonrpcserver.sentinels import NOID
from oslash.either import Left
from pydantic import BaseModel, ValidationError

from convosd import errors
from convosd.rpc import protocol
from convosd.rpc.schemas import Params, Result

log = structlog.get_logger("convosd.rpc")

Handler = Callable[["CallContext", Any], Awaitable[Any]]
#: one method's call on its raw params (a dict, by name); raises :class:`RpcFailure`
Call = Callable[["CallContext", dict[str, Any]], Awaitable[Any]]


class RpcFailure(Exception):
    """A request's error answer: code, message and data (docs/PROTOCOL.md)."""

    def __init__(self, code: int, message: str, data: dict[str, Any]) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


@dataclass(frozen=True, slots=True)
class MethodSpec:
    name: str
    params: type[Params]
    result: type[Result] | None
    handler: Handler
    summary: str
    admin: bool = False
    #: answers while ``enabled = false`` and before the daemon is ready
    always: bool = False


@dataclass
class CallContext:
    """Who is calling, on which connection; handed to every method."""

    connection: Any
    peer_uid: int | None
    is_admin: bool
    request_id: Any = None
    method: str = ""
    #: run after the response was queued (events.subscribe starts its replay there)
    after_response: list[Callable[[], None]] = field(default_factory=list)
    #: True once the caller can no longer receive the answer (its connection went away)
    gone: Callable[[], bool] = field(default=lambda: False)


@dataclass
class Dispatcher:
    methods: dict[str, MethodSpec]
    #: None when serving; else the reason everything but ``always`` methods is NOT_READY
    not_ready: Callable[[], str | None] = lambda: None
    calls: dict[str, int] = field(default_factory=dict)

    def _call_of(self, name: str) -> Call | None:
        spec = self.methods.get(name)
        if spec is None:
            return None

        async def call(ctx: CallContext, raw: dict[str, Any]) -> Any:
            return await self._call(spec, ctx, raw)

        return call

    async def _call(self, spec: MethodSpec, ctx: CallContext, raw: dict[str, Any]) -> Any:
        started = time.perf_counter()
        outcome = "ok"
        cli_error: str | None = None
        try:
            if not spec.always and (reason := self.not_ready()) is not None:
                raise errors.NotReady(reason)
            if spec.admin and not ctx.is_admin:
                raise errors.Forbidden(f"{spec.name} is for admin peers only")
            try:
                params = spec.params.model_validate(raw)
            except ValidationError as exc:
                raise errors.InvalidParams(
                    "Invalid params", data={"errors": _describe(exc)}
                ) from None
            result = await spec.handler(ctx, params)
            if isinstance(result, BaseModel):
                return result.model_dump(by_alias=True, mode="json")
            return result
        except errors.ConvosdError as exc:
            outcome = exc.kind
            cli_error = exc.cli_error
            raise RpcFailure(exc.code, exc.message, exc.rpc_data()) from None
        except asyncio.CancelledError:
            outcome = "cancelled"  # the daemon's shutdown: answered NOT_READY
            raise
        except Exception:
            error_id = uuid.uuid4().hex[:12]
            outcome = "INTERNAL"
            log.exception("rpc_internal_error", method=spec.name, error_id=error_id)
            raise RpcFailure(
                protocol.INTERNAL_ERROR,
                "Internal error",
                {"kind": "INTERNAL", "errorId": error_id},
            ) from None
        finally:
            self.calls[spec.name] = self.calls.get(spec.name, 0) + 1
            extra: dict[str, Any] = {}
            if outcome != "cancelled" and ctx.gone():
                # Nobody receives this answer: the request ran to its end all the same
                # (``completed_as`` says how), but its caller saw nothing of it.
                extra["completed_as"] = outcome
                outcome = "cancelled"
            log.info(
                "rpc",
                method=spec.name,
                outcome=outcome,
                ms=round((time.perf_counter() - started) * 1000, 2),
                peer_uid=ctx.peer_uid,
                # the CLI's own first error line: the cause an operator needs (never text)
                **({"cli_error": cli_error} if cli_error else {}),
                **extra,
            )

    async def dispatch(self, request: protocol.Request, ctx: CallContext) -> dict[str, Any] | None:
        """The response object, or None for a notification."""
        ctx.request_id = request.id
        ctx.method = request.method
        if isinstance(request.params, list):
            if request.notification:
                return None
            if request.method not in self.methods:
                return protocol.error_object(
                    request.id, protocol.METHOD_NOT_FOUND, "Method not found"
                )
            return protocol.error_object(
                request.id,
                protocol.INVALID_PARAMS,
                "Invalid params: pass params by name (an object)",
                {"kind": "INVALID_PARAMS"},
            )
        envelope: dict[str, Any] = {"jsonrpc": "2.0", "method": request.method}
        if request.params is not None:
            envelope["params"] = request.params
        if not request.notification:
            envelope["id"] = request.id
        return await _route(envelope, ctx, self._call_of(request.method))


async def _route(
    envelope: dict[str, Any], ctx: CallContext, call: Call | None
) -> dict[str, Any] | None:
    """Answer one request (``envelope``, already checked) with jsonrpcserver: the only use of
    it. ``call`` is the method's, None when there is no such method."""

    # ``ctx`` positional-only: a param named "ctx" is a param like any other (pydantic
    # refuses it as unknown).
    async def method(ctx: CallContext, /, *args: Any, **kwargs: Any) -> RpcResult:
        assert call is not None
        if args:
            raise JsonRpcError(
                protocol.INVALID_PARAMS,
                "Invalid params: pass params by name (an object)",
                {"kind": "INVALID_PARAMS"},
            )
        try:
            return Success(await call(ctx, kwargs))
        except RpcFailure as exc:
            raise JsonRpcError(exc.code, exc.message, exc.data) from None

    request = create_request(envelope)
    found = get_method({} if call is None else {request.method: method}, request.method)
    # What jsonrpcserver's dispatch_request does, minus validate_args: ``method`` takes any
    # arguments (``ctx`` positional-only), so its signature binding refuses nothing.
    result = found if isinstance(found, Left) else await call_method(request, ctx, found._value)
    if request.id is NOID:
        return None  # a notification: no answer
    response = to_serializable(to_response(request, result))
    assert isinstance(response, dict)  # one request, one answer
    error = response.get("error")
    if error is not None and not isinstance(error.get("data"), dict):
        # jsonrpcserver's own errors (method not found, arity) carry a string or nothing.
        kind = protocol.STANDARD_KINDS.get(error.get("code"), "INTERNAL")
        if kind == "INTERNAL":
            error["message"] = "Internal error"
            error["data"] = {"kind": kind}
        else:
            error["data"] = {"kind": kind}
    return response


def _describe(exc: ValidationError) -> list[dict[str, Any]]:
    """Where and what, never the rejected input (it may be message text)."""
    return [
        {"param": ".".join(str(p) for p in err["loc"]) or None, "problem": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
