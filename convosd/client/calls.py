"""Calls over convosd's socket: :class:`Client` (any method, typed errors, notifications
queued) and :class:`ConvosdClient` (a typed method per method of docs/API.md)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from pydantic import BaseModel

from convosd import errors
from convosd.rpc import schemas as s

_R = TypeVar("_R", bound=BaseModel)
_C = TypeVar("_C", bound="Client")

_BY_CODE: dict[int, type[errors.ConvosdError]] = {}


def _index_errors() -> None:
    stack: list[type[errors.ConvosdError]] = [errors.ConvosdError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        # the most general class of each code wins (CliFailed over ConversationNotFound)
        if cls.code not in _BY_CODE or issubclass(_BY_CODE[cls.code], cls):
            _BY_CODE[cls.code] = cls
    _BY_CODE[-32020] = errors.Busy


_index_errors()


class RpcError(errors.ConvosdError):
    """A standard JSON-RPC error (parse, invalid request, method not found, internal)."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None) -> None:
        super().__init__(message, data=data)
        self.rpc_code = code


def error_from(error: dict[str, Any]) -> errors.ConvosdError:
    code = int(error.get("code", -32603))
    message = str(error.get("message", ""))
    data = error.get("data") if isinstance(error.get("data"), dict) else None
    cls = _BY_CODE.get(code)
    if cls is None or code in (-32700, -32600, -32601, -32603):
        return RpcError(code, message, data)
    return cls.from_rpc(message, data or {})


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[Any, asyncio.Future[Any]] = {}
        self.notifications: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader_task = asyncio.create_task(self._read_loop())
        self.closed = asyncio.Event()
        #: an error the daemon sent for the whole connection (``id: null``), e.g. BUSY
        #: "too many connections" before it closed
        self.connection_error: errors.ConvosdError | None = None

    @classmethod
    async def connect(cls: type[_C], path: str | Path, *, limit: int = 64 * 1024 * 1024) -> _C:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=limit)
        return cls(reader, writer)

    async def __aenter__(self: _C) -> _C:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader_task
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    async def _read_loop(self) -> None:
        try:
            while line := await self.reader.readline():
                message = json.loads(line)
                if isinstance(message, list):
                    for item in message:
                        self._resolve(item)
                elif "method" in message and "id" not in message:
                    await self.notifications.put(message)
                else:
                    self._resolve(message)
        finally:
            self.closed.set()
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(self._closed_error())

    def _closed_error(self) -> Exception:
        if self.connection_error is not None:
            return self.connection_error
        return ConnectionError("the daemon closed the connection")

    def _resolve(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        future = self._waiting.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(message)
        elif request_id is None and isinstance(message.get("error"), dict):
            # An answer to no request in particular: it concerns the connection (BUSY on a
            # refused connection, a parse error). Calls waiting now or later get it.
            self.connection_error = error_from(message["error"])

    async def raw(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one request object and return the whole response object."""
        if self.closed.is_set():
            raise self._closed_error()
        request_id = message.get("id")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        self.writer.write(json.dumps(message).encode() + b"\n")
        await self.writer.drain()
        result: dict[str, Any] = await future
        return result

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": next(self._ids)}
        if params is not None:
            message["params"] = params
        response = await self.raw(message)
        if "error" in response:
            raise error_from(response["error"])
        return response["result"]

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.writer.write(json.dumps(message).encode() + b"\n")
        await self.writer.drain()


# --- typed calls ------------------------------------------------------------------------


class ConvosdClient(Client):
    """:class:`Client` with one typed method per method of docs/API.md."""

    async def _typed(
        self, method: str, model: type[_R], params: dict[str, Any] | None = None
    ) -> _R:
        return model.model_validate(await self.call(method, params))

    async def status(self) -> s.StatusResult:
        return await self._typed("status", s.StatusResult)

    async def health(self) -> s.HealthResult:
        return await self._typed("health", s.HealthResult)

    async def create(self, **params: Any) -> s.CreateResult:
        return await self._typed("conversation.create", s.CreateResult, _clean(params))

    async def join(self, invite_url: str, **params: Any) -> s.JoinResult:
        return await self._typed(
            "conversation.join", s.JoinResult, _clean({"inviteUrl": invite_url, **params})
        )

    async def await_add(self, **params: Any) -> s.AwaitAddResult:
        """Wait to be added (params: ``from``, ``timeoutS``, ``profileName``); the answer
        carries the inbox id to hand to whoever adds the instance."""
        return await self._typed("conversation.awaitAdd", s.AwaitAddResult, _clean(params))

    async def cancel_join(self) -> s.CancelJoinResult:
        return await self._typed("conversation.cancelJoin", s.CancelJoinResult)

    async def info(self) -> s.InfoResult:
        return await self._typed("conversation.info", s.InfoResult)

    async def invite(self, **params: Any) -> s.InviteResult:
        return await self._typed("conversation.invite", s.InviteResult, _clean(params))

    async def rename(self, name: str) -> s.RenameResult:
        return await self._typed("conversation.rename", s.RenameResult, {"name": name})

    async def lock(self, *, unlock: bool = False) -> s.LockResult:
        return await self._typed("conversation.lock", s.LockResult, {"unlock": unlock})

    async def explode(self, *, at: str | None = None) -> s.ExplodeResult:
        """Explode now, or with ``at`` (RFC 3339, in the future) schedule it."""
        params = _clean({"confirm": True, "at": at})
        return await self._typed("conversation.explode", s.ExplodeResult, params)

    async def update(
        self, *, name: str | None = None, description: str | None = None
    ) -> s.UpdateResult:
        params = _clean({"name": name, "description": description})
        return await self._typed("conversation.update", s.UpdateResult, params)

    async def typing(self, typing: bool = True) -> s.OkResult:
        """Show (or with False, stop showing) that the instance is typing."""
        return await self._typed("conversation.typing", s.OkResult, {"typing": typing})

    async def mark_read(self) -> s.OkResult:
        return await self._typed("message.markRead", s.OkResult)

    async def remove_member(self, inbox_id: str) -> s.RemoveMemberResult:
        params = {"inboxId": inbox_id}
        return await self._typed("member.remove", s.RemoveMemberResult, params)

    async def update_profile(self, **params: Any) -> s.OkResult:
        return await self._typed("profile.update", s.OkResult, _clean(params))

    async def send(self, message: str, **params: Any) -> s.SendResult:
        return await self._typed(
            "message.send", s.SendResult, _clean({"message": message, **params})
        )

    async def send_attachment(
        self,
        *,
        data: bytes | None = None,
        path: str | os.PathLike[str] | None = None,
        filename: str | None = None,
        mime_type: str | None = None,
        idempotency_key: str | None = None,
    ) -> s.SendResult:
        """Send a file: its bytes (``data``, sent as base64; ``filename`` required) or an
        absolute ``path`` the daemon reads (root and the daemon's uid only)."""
        params = {
            "data": None if data is None else base64.b64encode(data).decode("ascii"),
            "path": None if path is None else os.fspath(path),
            "filename": filename,
            "mimeType": mime_type,
            "idempotencyKey": idempotency_key,
        }
        return await self._typed("message.sendAttachment", s.SendResult, _clean(params))

    async def react(self, message_id: str, emoji: str, *, remove: bool = False) -> s.ReactResult:
        params = {"messageId": message_id, "emoji": emoji, "remove": remove}
        return await self._typed("message.react", s.ReactResult, params)

    async def download_attachment(
        self, message_id: str, *, inline: bool = False
    ) -> s.DownloadResult:
        """Fetch an inbound attachment into the daemon's state dir (``path``); ``inline``
        also answers its bytes as base64 ``data`` (files up to 786432 bytes)."""
        params = {"messageId": message_id, "inline": inline}
        return await self._typed("attachment.download", s.DownloadResult, params)

    async def read_events(self, **params: Any) -> s.ReadResult:
        return await self._typed("events.read", s.ReadResult, _clean(params))

    async def search(
        self,
        query: str,
        *,
        types: list[str] | None = None,
        sender: str | None = None,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
    ) -> s.SearchResult:
        """events.search: the best matches of ``query`` in the journal's message text."""
        params = {
            "query": query,
            "types": types,
            "sender": sender,
            "after": after,
            "before": before,
            "limit": limit,
        }
        return await self._typed("events.search", s.SearchResult, _clean(params))

    async def message_context(
        self,
        message_id: str,
        *,
        before: int | None = None,
        after: int | None = None,
        types: list[str] | None = None,
    ) -> s.ContextResult:
        """message.context: the events around a journaled message."""
        params = {"messageId": message_id, "before": before, "after": after, "types": types}
        return await self._typed("message.context", s.ContextResult, _clean(params))

    async def subscribe(self, **params: Any) -> s.SubscribeResult:
        return await self._typed("events.subscribe", s.SubscribeResult, _clean(params))

    async def unsubscribe(self, subscription: int) -> s.OkResult:
        params = {"subscription": subscription}
        return await self._typed("events.unsubscribe", s.OkResult, params)

    async def pairing_list(self) -> s.PairingListResult:
        return await self._typed("pairing.list", s.PairingListResult)

    async def pairing_approve(self, code: str) -> s.PairingApproveResult:
        return await self._typed("pairing.approve", s.PairingApproveResult, {"code": code})

    async def pairing_deny(self, code: str) -> s.PairingDenyResult:
        return await self._typed("pairing.deny", s.PairingDenyResult, {"code": code})

    async def reset(self) -> s.ResetResult:
        return await self._typed("daemon.reset", s.ResetResult, {"confirm": True})

    async def discover(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("rpc.discover")
        return result


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in params.items() if value is not None}
