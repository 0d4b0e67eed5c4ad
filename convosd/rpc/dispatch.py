"""Dispatch of one request: envelope checked by :mod:`protocol`, params by pydantic, the
request routed by jsonrpcserver (its method lookup, ``get_method``, over the method table),
and every exception mapped to an error code of docs/PROTOCOL.md.

A method jsonrpcserver finds is answered here (:func:`protocol.result_object` and
:func:`protocol.error_object`: the objects jsonrpcserver's ``call``, ``to_response`` and
``to_serializable`` built, key for key, without their Either and named-tuple plumbing). What
jsonrpcserver answers itself (a method it does not find) is still its own response, built
by ``to_response``. jsonrpcserver is used in one place, :meth:`Dispatcher._route` and
:func:`_not_found`; its deserializer, jsonschema validation, ``inspect.signature`` binding
and batch gathering are not on the path (:mod:`protocol` and the connection do that work).

No exception reaches jsonrpcserver: :class:`ConvosdError` becomes its code and kind,
anything else "Internal error" with an ``errorId`` that points into the log (both as
:class:`RpcFailure`).

A method marked ``inline`` (``status``, ``health``) has a synchronous handler and is
answered as its request is read (:meth:`Dispatcher.dispatch_inline`), without a task.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog
from jsonrpcserver.dispatcher import create_request, get_method, to_response
from jsonrpcserver.response import to_serializable
from oslash.either import Left
from pydantic import BaseModel, ValidationError

from convosd import errors
from convosd import logging as convosd_logging
from convosd.rpc import protocol
from convosd.rpc.schemas import Params, Result

log = structlog.get_logger("convosd.rpc")

#: a method's handler: a coroutine function, or a plain function for an ``inline`` method
Handler = Callable[["CallContext", Any], Awaitable[Any]] | Callable[["CallContext", Any], Any]
#: one method's call on its raw params (a dict, by name); raises :class:`RpcFailure`
Call = Callable[["CallContext", dict[str, Any]], Awaitable[Any]]
#: an ``inline`` method's call: the same, returning its result at once
InlineCall = Callable[["CallContext", dict[str, Any]], Any]


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
    #: ``handler`` is a plain function that only reads the daemon's state: the request is
    #: answered as it is read, without a task (status, health)
    inline: bool = False


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
    #: jsonrpcserver's method table (what it routes a request to): each method's call
    _routes: dict[str, Call] = field(init=False, repr=False)
    #: the same for the ``inline`` methods, their calls answering at once
    _inline_routes: dict[str, InlineCall] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._routes = {name: partial(self._call, spec) for name, spec in self.methods.items()}
        self._inline_routes = {
            name: partial(self._call_inline, spec)
            for name, spec in self.methods.items()
            if spec.inline
        }

    def _enter(self, spec: MethodSpec, ctx: CallContext, raw: dict[str, Any]) -> Any:
        """The checks before the handler; its params. Raises :class:`ConvosdError`."""
        if not spec.always and (reason := self.not_ready()) is not None:
            raise errors.NotReady(reason)
        if spec.admin and not ctx.is_admin:
            raise errors.Forbidden(f"{spec.name} is for admin peers only")
        try:
            return spec.params.model_validate(raw)
        except ValidationError as exc:
            raise errors.InvalidParams("Invalid params", data={"errors": _describe(exc)}) from None

    async def _call(self, spec: MethodSpec, ctx: CallContext, raw: dict[str, Any]) -> Any:
        if spec.inline:
            return self._call_inline(spec, ctx, raw)
        started = time.perf_counter()
        outcome = "ok"
        cli_error: str | None = None
        try:
            result = await spec.handler(ctx, self._enter(spec, ctx, raw))
            if isinstance(result, BaseModel):
                return result.model_dump(by_alias=True, mode="json")
            return result
        except asyncio.CancelledError:
            outcome = "cancelled"  # the daemon's shutdown: answered NOT_READY
            raise
        except Exception as exc:
            outcome, cli_error, failure = self._failure(spec, exc)
            raise failure from None
        finally:
            self._done(spec, ctx, started, outcome, cli_error)

    def _call_inline(self, spec: MethodSpec, ctx: CallContext, raw: dict[str, Any]) -> Any:
        """:meth:`_call` of an ``inline`` method: the same checks, errors and log line."""
        started = time.perf_counter()
        outcome = "ok"
        cli_error: str | None = None
        try:
            result = spec.handler(ctx, self._enter(spec, ctx, raw))
            if isinstance(result, BaseModel):
                return result.model_dump(by_alias=True, mode="json")
            return result
        except Exception as exc:
            outcome, cli_error, failure = self._failure(spec, exc)
            raise failure from None
        finally:
            self._done(spec, ctx, started, outcome, cli_error)

    def _failure(self, spec: MethodSpec, exc: Exception) -> tuple[str, str | None, RpcFailure]:
        """A handler's exception as its outcome, CLI error and answer."""
        if isinstance(exc, errors.ConvosdError):
            return exc.kind, exc.cli_error, RpcFailure(exc.code, exc.message, exc.rpc_data())
        error_id = uuid.uuid4().hex[:12]
        # called in the handler's ``except``: the traceback is the handler's
        log.exception("rpc_internal_error", method=spec.name, error_id=error_id)
        return (
            "INTERNAL",
            None,
            RpcFailure(
                protocol.INTERNAL_ERROR, "Internal error", {"kind": "INTERNAL", "errorId": error_id}
            ),
        )

    def _done(
        self,
        spec: MethodSpec,
        ctx: CallContext,
        started: float,
        outcome: str,
        cli_error: str | None,
    ) -> None:
        """Count the call and write its log line."""
        self.calls[spec.name] = self.calls.get(spec.name, 0) + 1
        fields: dict[str, Any] = {
            "method": spec.name,
            "outcome": outcome,
            "ms": round((time.perf_counter() - started) * 1000, 2),
            "peer_uid": ctx.peer_uid,
        }
        if cli_error:
            # the CLI's own first error line: the cause an operator needs (never text)
            fields["cli_error"] = cli_error
        if outcome != "cancelled" and ctx.gone():
            # Nobody receives this answer: the request ran to its end all the same
            # (``completed_as`` says how), but its caller saw nothing of it.
            fields["completed_as"] = outcome
            fields["outcome"] = "cancelled"
        convosd_logging.info(log, "rpc", fields)

    def _list_params(self, request: protocol.Request) -> dict[str, Any] | None:
        """The answer to params by position (refused), or None for a notification."""
        if request.notification:
            return None
        if request.method not in self.methods:
            return protocol.error_object(request.id, protocol.METHOD_NOT_FOUND, "Method not found")
        return protocol.error_object(
            request.id,
            protocol.INVALID_PARAMS,
            "Invalid params: pass params by name (an object)",
            {"kind": "INVALID_PARAMS"},
        )

    async def dispatch(self, request: protocol.Request, ctx: CallContext) -> dict[str, Any] | None:
        """The response object, or None for a notification."""
        ctx.request_id = request.id
        ctx.method = request.method
        if isinstance(request.params, list):
            return self._list_params(request)
        routed = self._route(request)
        if isinstance(routed, Left):
            return _not_found(request, routed)
        raw = request.params if request.params is not None else {}
        try:
            # jsonrpcserver's lookup found the method's call: run it (bind hands it over)
            result = await routed.bind(lambda call: call(ctx, raw))
        except RpcFailure as exc:
            return _error(request, exc)
        return None if request.notification else protocol.result_object(request.id, result)

    def answers_inline(self, request: protocol.Request) -> bool:
        """Whether :meth:`dispatch_inline` answers this request (an ``inline`` method's,
        its params by name or none)."""
        return request.method in self._inline_routes and not isinstance(request.params, list)

    def dispatch_inline(self, request: protocol.Request, ctx: CallContext) -> dict[str, Any] | None:
        """:meth:`dispatch` of a request :meth:`answers_inline`, answered at once."""
        ctx.request_id = request.id
        ctx.method = request.method
        routed = get_method(self._inline_routes, request.method)
        raw = request.params if isinstance(request.params, dict) else {}
        try:
            result = routed.bind(lambda call: call(ctx, raw))
        except RpcFailure as exc:
            return _error(request, exc)
        return None if request.notification else protocol.result_object(request.id, result)

    def _route(self, request: protocol.Request) -> Any:
        """jsonrpcserver's routing: ``Right`` of the method's call, or ``Left`` of its
        method-not-found result."""
        return get_method(self._routes, request.method)


def _error(request: protocol.Request, failure: RpcFailure) -> dict[str, Any] | None:
    if request.notification:
        return None
    return protocol.error_object(request.id, failure.code, failure.message, failure.data)


def _not_found(request: protocol.Request, routed: Any) -> dict[str, Any] | None:
    """jsonrpcserver's own answer to a method it did not find (built by its
    ``to_response``), with the ``data.kind`` every error of ours carries."""
    envelope: dict[str, Any] = {"jsonrpc": "2.0", "method": request.method}
    if request.params is not None:
        envelope["params"] = request.params
    if not request.notification:
        envelope["id"] = request.id
    rpc_request = create_request(envelope)
    if request.notification:
        return None  # a notification: no answer
    response = to_serializable(to_response(rpc_request, routed))
    assert isinstance(response, dict)  # one request, one answer
    error = response.get("error")
    if error is not None and not isinstance(error.get("data"), dict):
        # jsonrpcserver's own errors carry a string or nothing.
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
