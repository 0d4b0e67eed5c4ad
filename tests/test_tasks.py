"""The task scope: every background task has one owner that names it, logs its failure
once and ends it."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from convosd import errors
from convosd import tasks as tasks_module
from convosd.tasks import TaskScope
from tests.helpers import WAIT_S, eventually


async def test_a_failing_task_is_logged_once() -> None:
    scope = TaskScope("test")

    async def fail() -> None:
        raise errors.CliFailed("boom")

    with capture_logs() as logs:
        task = scope.spawn(fail(), "failing")
        await asyncio.wait([task])
        await asyncio.sleep(0)  # the done callback runs on the next loop turn
        await scope.close()
    failures = [e for e in logs if e["event"] == "background_task_failed"]
    assert len(failures) == 1
    assert failures[0]["task"] == "failing" and failures[0]["scope"] == "test"
    assert scope.running() == []


async def test_close_cancels_and_awaits_every_task() -> None:
    scope = TaskScope("test")
    started = asyncio.Event()
    cleaned: list[str] = []

    async def forever(name: str) -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # a cleanup that itself awaits
            cleaned.append(name)

    tasks = [scope.spawn(forever(f"t{i}"), f"t{i}") for i in range(3)]
    assert [t.get_name() for t in tasks] == ["t0", "t1", "t2"]
    await started.wait()
    with capture_logs() as logs:
        await scope.close()
    assert sorted(cleaned) == ["t0", "t1", "t2"]  # awaited, not only cancelled
    assert all(t.cancelled() for t in tasks)
    assert scope.running() == []
    assert not [e for e in logs if e["event"] == "background_task_failed"]


async def test_a_closed_scope_starts_nothing() -> None:
    scope = TaskScope("test")
    await scope.close()
    ran = False

    async def body() -> None:
        nonlocal ran
        ran = True

    with pytest.raises(RuntimeError, match="closed"):
        scope.spawn(body(), "late")
    await asyncio.sleep(0)
    assert not ran and scope.running() == []


async def test_a_task_closing_its_own_scope_is_not_awaited_by_itself() -> None:
    scope = TaskScope("test")
    other_cancelled = asyncio.Event()

    async def other() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            other_cancelled.set()
            raise

    async def closer() -> str:
        await scope.close()
        return "done"

    scope.spawn(other(), "other")
    await asyncio.sleep(0)
    closing = scope.spawn(closer(), "closer")
    assert await asyncio.wait_for(closing, WAIT_S) == "done"
    assert other_cancelled.is_set()


async def test_a_task_that_swallows_its_cancel_does_not_hold_the_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A task that caught its own CancelledError (a backfill page once did) went on, and
    the close (an unbind) waited for it for ever. It is logged with where it waits and
    cancelled again; one that ignores every cancel is logged and left behind."""
    monkeypatch.setattr(tasks_module, "CLOSE_GRACE_S", 0.2, raising=False)
    scope = TaskScope("test")
    waiting = asyncio.Event()
    release = asyncio.Event()
    cancels: list[str] = []

    async def swallows(name: str, times: int) -> None:
        while True:
            try:
                waiting.set()
                await release.wait()
                return
            except asyncio.CancelledError:
                cancels.append(name)
                if cancels.count(name) > times:
                    raise

    once = scope.spawn(swallows("once", 1), "swallows-once")
    always = scope.spawn(swallows("always", 99), "swallows-always")
    try:
        assert await eventually(waiting.is_set)
        with capture_logs() as logs:
            closing = asyncio.ensure_future(scope.close())
            done, _ = await asyncio.wait({closing}, timeout=WAIT_S)
        assert closing in done
        assert once.cancelled() and cancels.count("once") == 2
        assert not always.done() and cancels.count("always") == 2
    finally:
        release.set()  # no task outlives the test
        assert await asyncio.wait_for(always, WAIT_S) is None
        await asyncio.wait_for(closing, WAIT_S)
    ignored = [e for e in logs if e["event"] == "task_ignored_cancel"]
    assert sorted(e["task"] for e in ignored) == ["swallows-always", "swallows-once"]
    assert all("swallows:" in e["at"] and e["log_level"] == "error" for e in ignored)
    [left] = [e for e in logs if e["event"] == "task_left_running"]
    assert left["task"] == "swallows-always" and left["scope"] == "test"
