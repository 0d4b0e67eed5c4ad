"""A small synchronous wrapper of :class:`~convosd.client.calls.ConvosdClient`, for scripts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from convosd.client.calls import ConvosdClient


class SyncClient:
    """For scripts: ``with SyncClient(path) as c: c.call("status")``. Not thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._client = self._loop.run_until_complete(ConvosdClient.connect(path))
        except BaseException:
            self._loop.close()  # the caller gets the error, not a loop to garbage-collect
            raise

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self._loop.run_until_complete(self._client.call(method, params))

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not asyncio.iscoroutinefunction(attribute):
            return attribute

        def run(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run_until_complete(attribute(*args, **kwargs))

        return run

    def close(self) -> None:
        self._loop.run_until_complete(self._client.close())
        self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
