"""The gateway's routes and the daemon side: each route's handler turns a request's JSON
into one daemon call through :class:`Upstream`, and a daemon error into its HTTP status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from contrib.gateway.http import Headers, HttpError, Json
from convosd import errors
from convosd.client import Client, RpcError

log = logging.getLogger("contrib.gateway")

STATUS_FIELDS: Final = ("conversationId", "inboxId", "pending", "clean")
RETRY_SOON: Final[Headers] = (("Retry-After", "1"),)


class Upstream:
    """convosd's socket, one connection per call.

    The gateway carries control-plane traffic (a pool polling status every few seconds, a
    handful of admin calls), each of which runs the CLI for tens of milliseconds or more;
    a local connect costs about a tenth of a millisecond. In exchange there is no shared
    connection to watch, repair or reconnect: a daemon restart or a dropped connection
    fails only the request in flight, and the next one simply connects again. The daemon's
    ``maxInFlightPerConnection`` does not become a gateway-wide cap either; its
    ``maxConnections`` is the back-pressure (refused: 503 with Retry-After), and the
    gateway's own ``max_connections`` (64 by default, the daemon's 256) keeps it below that.
    """

    def __init__(self, socket: Path, *, connect_timeout_s: float, call_timeout_s: float) -> None:
        self.socket = socket
        self.connect_timeout_s = connect_timeout_s
        self.call_timeout_s = call_timeout_s

    async def call(
        self, method: str, params: Json | None = None, *, extra_timeout_s: float = 0.0
    ) -> Json:
        try:
            client = await asyncio.wait_for(Client.connect(self.socket), self.connect_timeout_s)
        except OSError as exc:  # missing socket, refused, permission, TimeoutError
            log.warning("convosd unreachable at %s: %s", self.socket, exc)
            raise HttpError(503, "convosd is not reachable", headers=RETRY_SOON) from None
        try:
            # A connection the daemon closes (shutdown, a peer it refuses) must not leave
            # the call waiting for an answer that cannot come: race it against ``closed``.
            call = asyncio.ensure_future(client.call(method, params))
            closed = asyncio.ensure_future(client.closed.wait())
            try:
                await asyncio.wait(
                    {call, closed},
                    timeout=self.call_timeout_s + extra_timeout_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                call.cancel()
                closed.cancel()
                await asyncio.gather(call, closed, return_exceptions=True)
            if call.cancelled() and closed.cancelled():
                raise HttpError(504, f"convosd did not answer {method} in time")
            if call.cancelled():
                raise ConnectionError("closed")
            result = call.result()
        except errors.ConvosdError as exc:
            raise from_daemon(exc) from None
        except ConnectionError as exc:
            # Shutting down, restarting, or refusing the connection (over maxConnections:
            # its BUSY answer has ``id: null``, which convosd.client drops): retry soon.
            log.warning("convosd closed the connection during %s: %r", method, exc)
            raise HttpError(503, "convosd closed the connection", headers=RETRY_SOON) from None
        except KeyError:  # a response with neither result nor error
            raise HttpError(502, f"convosd answered {method} without a result") from None
        finally:
            await client.close()
        if not isinstance(result, dict):
            raise HttpError(502, f"convosd answered {method} with a non-object")
        return result


def from_daemon(exc: errors.ConvosdError) -> HttpError:
    """The HTTP answer for an error of convosd (docs/PROTOCOL.md, Errors)."""
    if isinstance(exc, errors.AlreadyBound):
        return HttpError(409, errors.AlreadyBound.default_message)
    if isinstance(exc, errors.InvalidParams):
        problems = exc.extra.get("errors")
        if isinstance(problems, list) and problems:
            details = "; ".join(
                f"{p.get('param') or 'params'}: {p.get('problem')}"
                for p in problems
                if isinstance(p, dict)
            )
            return HttpError(400, f"{exc.message}: {details}")
        return HttpError(400, exc.message)
    if isinstance(exc, errors.NotBound | errors.InviteInvalid | errors.InviteExpired):
        return HttpError(400, exc.message)
    if isinstance(exc, errors.Busy):
        retry = exc.extra.get("retryAfterS")
        seconds = math.ceil(retry) if isinstance(retry, int | float) and retry > 0 else 1
        return HttpError(429, exc.message, headers=(("Retry-After", str(max(1, seconds))),))
    if isinstance(exc, errors.NotReady):
        return HttpError(503, exc.message, headers=RETRY_SOON)
    message = exc.message
    cli_error = exc.extra.get("error")
    if isinstance(cli_error, str) and cli_error and cli_error != message:
        message = f"{message}: {cli_error}"
    error_id = exc.extra.get("errorId")
    if isinstance(error_id, str):
        message = f"{message} (errorId {error_id})"
    if isinstance(exc, errors.CliError | RpcError):
        return HttpError(502, message)  # the daemon, its CLI or the network failed
    return HttpError(500, message)  # PERMISSION_DENIED, LOCKED, FORBIDDEN, NOT_FOUND, ...


# --- routes -------------------------------------------------------------------------------

Handler = Callable[[Upstream, Json], Awaitable[Json]]


@dataclass(frozen=True)
class Route:
    method: str
    handler: Handler


_KIND_NAMES: Final[Mapping[type, str]] = {str: "string", bool: "boolean", int: "integer"}
_ARTICLES: Final[Mapping[type, str]] = {str: "a", bool: "a", int: "an"}


def fields(body: Json, spec: Mapping[str, type], required: tuple[str, ...] = ()) -> Json:
    """The fields of ``spec`` present in ``body`` (null = absent), each of its JSON type.

    Other fields are ignored, as the original routes ignore ``env``, ``instructions``,
    ``metadata`` and the like; ranges and formats are the daemon's to check (INVALID_PARAMS).
    """
    out: Json = {}
    for key, kind in spec.items():
        value = body.get(key)
        if value is None and key not in required:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            if key in required:
                raise HttpError(400, f"{key} ({_KIND_NAMES[kind]}) is required")
            raise HttpError(400, f"{key} must be {_ARTICLES[kind]} {_KIND_NAMES[kind]}")
        out[key] = value
    return out


def status_view(status: Json) -> Json:
    missing = [key for key in STATUS_FIELDS if key not in status]
    if missing:
        raise HttpError(502, f"convosd's status lacks {', '.join(missing)}")
    return {key: status[key] for key in STATUS_FIELDS}


async def create(up: Upstream, body: Json) -> Json:
    params = fields(
        body,
        {
            "name": str,
            "profileName": str,
            "description": str,
            "imageUrl": str,
            "permissions": str,
        },
    )
    if "name" in params:
        params.setdefault("profileName", params["name"])  # as the original route does
    return await up.call("conversation.create", params)


async def join(up: Upstream, body: Json) -> Json:
    params = fields(
        body, {"inviteUrl": str, "profileName": str, "timeoutS": int}, required=("inviteUrl",)
    )
    wait_s = min(max(params.get("timeoutS", 60), 0), 600)
    return await up.call("conversation.join", params, extra_timeout_s=wait_s)


async def send(up: Upstream, body: Json) -> Json:
    params = fields(
        body, {"message": str, "replyTo": str, "idempotencyKey": str}, required=("message",)
    )
    return {"success": True, **await up.call("message.send", params)}


async def rename(up: Upstream, body: Json) -> Json:
    params = fields(body, {"name": str}, required=("name",))
    return {"ok": True, **await up.call("conversation.rename", params)}


async def lock(up: Upstream, body: Json) -> Json:
    params = fields(body, {"unlock": bool})
    return {"ok": True, **await up.call("conversation.lock", params)}


async def explode(up: Upstream, body: Json) -> Json:
    return {"ok": True, **await up.call("conversation.explode", {"confirm": True})}


async def reset(up: Upstream, body: Json) -> Json:
    answer = {"ok": True, "reset": True, **await up.call("daemon.reset", {"confirm": True})}
    with contextlib.suppress(HttpError):  # the reset happened: report it even without status
        answer["status"] = status_view(await up.call("status"))
    return answer


async def status(up: Upstream, body: Json) -> Json:
    return status_view(await up.call("status"))


ROUTES: Final[Mapping[str, Route]] = {
    "/convos/conversation": Route("POST", create),
    "/convos/join": Route("POST", join),
    "/convos/conversation/send": Route("POST", send),
    "/convos/rename": Route("POST", rename),
    "/convos/lock": Route("POST", lock),
    "/convos/explode": Route("POST", explode),
    "/convos/reset": Route("POST", reset),
    "/convos/status": Route("GET", status),
}
