"""The MCP server's way to convosd: one shared client connection over the socket, opened on
the first call and again after it closed, and a connection of its own for each wait (its
notifications are its own). A socket that cannot be reached, or a connection that closes
under a call, is :class:`~contrib.mcp.results.DaemonUnreachable`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from contrib.mcp.results import DaemonUnreachable
from contrib.mcp.spec import Json
from convosd.client import Client, ConvosdClient


class Daemon:
    """The daemon at ``socket``, as the tools call it."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self._client: ConvosdClient | None = None
        self._connect_lock = asyncio.Lock()

    async def client(self) -> ConvosdClient:
        async with self._connect_lock:
            if self._client is not None and not self._client.closed.is_set():
                return self._client
            if self._client is not None:
                await self._client.close()
                self._client = None
            try:
                self._client = await ConvosdClient.connect(self.socket)
            except OSError as exc:
                raise DaemonUnreachable(self.socket, exc.strerror or type(exc).__name__) from exc
            return self._client

    async def call(self, method: str, params: Json | None = None) -> Any:
        client = await self.client()
        try:
            return await client.call(method, params)
        except ConnectionError as exc:
            raise DaemonUnreachable(self.socket, "the connection closed") from exc

    async def connect_apart(self) -> Client:
        """A connection of its own (the caller closes it)."""
        try:
            return await Client.connect(self.socket)
        except OSError as exc:
            raise DaemonUnreachable(self.socket, exc.strerror or type(exc).__name__) from exc

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
