"""One owner for background tasks.

A :class:`TaskScope` spawns named tasks, keeps a strong reference to each until it ends, logs a
failure once, and on :meth:`TaskScope.close` cancels every task it still holds and waits for
them. An object whose state has a lifetime (the instance, a bound conversation) owns one scope:
closing the scope ends its tasks with it, so none outlives the state it works on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import structlog

from convosd import errors


class TaskScope:
    def __init__(self, name: str) -> None:
        self.name = name
        self.log = structlog.get_logger("convosd.tasks")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a task named ``name``; a closed scope refuses (the coroutine is
        closed unrun, so nothing starts after its owner is gone)."""
        if self._closed:
            coro.close()
            raise RuntimeError(f"task scope {self.name} is closed: {name} not started")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def running(self) -> list[asyncio.Task[Any]]:
        """The tasks not finished yet."""
        return [t for t in self._tasks if not t.done()]

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.log.error(
                "background_task_failed",
                scope=self.name,
                task=task.get_name(),
                error=getattr(exc, "message", type(exc).__name__),
                exc_info=not isinstance(exc, errors.ConvosdError),
            )

    async def close(self) -> None:
        """Cancel every task and wait for them. The calling task, when it is one of the
        scope's own (a task that ends the state it belongs to), is left to finish: waiting
        for itself would never return."""
        self._closed = True
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
