"""One owner for background tasks.

A :class:`TaskScope` spawns named tasks, keeps a strong reference to each until it ends, logs a
failure once, and on :meth:`TaskScope.close` cancels every task it still holds and waits for
them. An object whose state has a lifetime (the instance, a bound conversation) owns one scope:
closing the scope ends its tasks with it, so none outlives the state it works on.

A cancelled task ends at once (its cleanup may stop a CLI worker: seconds). One still running
:data:`CLOSE_GRACE_S` after its cancel swallowed it (a bug: a page of a backfill once did, and
unbind waited for it for ever): it is logged with where it waits and cancelled once more; one
that survives that too is logged and left behind, so the close, and what waits for it, ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import structlog

from convosd import errors

#: how long a cancelled task may take to end before it counts as one that ignored its cancel
CLOSE_GRACE_S = 10.0


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
        left = await self._wait(tasks)
        for task in left:
            self.log.error(
                "task_ignored_cancel", scope=self.name, task=task.get_name(), at=where(task)
            )
            task.cancel()
        for task in await self._wait(left):
            self.log.error(
                "task_left_running", scope=self.name, task=task.get_name(), at=where(task)
            )

    async def _wait(self, tasks: list[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
        """Wait for ``tasks`` to end, at most CLOSE_GRACE_S; those still running. The
        closer's own cancellation does not cut the close short (as before the grace: an
        owner half ended would be worse), and is not passed on to the tasks (shield)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_GRACE_S
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(task), max(0.0, deadline - loop.time()))
        return [t for t in tasks if not t.done()]


def where(task: asyncio.Task[Any]) -> str:
    """Where ``task`` waits: its coroutines, outermost first (``name:line`` each)."""
    parts: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and len(parts) < 30:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        parts.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return " > ".join(parts)
