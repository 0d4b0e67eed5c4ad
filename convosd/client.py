"""An asyncio client for convosd's socket: calls, typed errors, notifications.

    async with await Client.connect("/run/convosd/convosd.sock") as client:
        status = await client.call("status")

Errors come back as the :mod:`convosd.errors` class of their code (``NotBound``,
``Busy``, ...), with ``data`` in ``.extra``. Server notifications (``event``,
``subscription.ended``) are queued on :attr:`Client.notifications`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from pathlib import Path
from types import TracebackType
from typing import Any

from convosd import errors

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
    exc = cls.__new__(cls)
    errors.ConvosdError.__init__(
        exc, message, data={k: v for k, v in (data or {}).items() if k != "kind"}
    )
    return exc


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[Any, asyncio.Future[Any]] = {}
        self.notifications: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader_task = asyncio.create_task(self._read_loop())
        self.closed = asyncio.Event()

    @classmethod
    async def connect(cls, path: str | Path, *, limit: int = 64 * 1024 * 1024) -> Client:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=limit)
        return cls(reader, writer)

    async def __aenter__(self) -> Client:
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
                    future.set_exception(ConnectionError("the daemon closed the connection"))

    def _resolve(self, message: dict[str, Any]) -> None:
        future = self._waiting.pop(message.get("id"), None)
        if future is not None and not future.done():
            future.set_result(message)

    async def raw(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one request object and return the whole response object."""
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
