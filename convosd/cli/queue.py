"""The single queue of one-shot CLI calls (docs/PROTOCOL.md, Methods, Sending).

The adapter (:class:`convosd.cli.adapter.ConvosCli`) owns the one queue of an instance and
runs every operation through it, whatever transport runs the commands: no caller can reach
the CLI around it. The stream and the join-request watcher share the CLI's database with
every one-shot command, so one-shot calls run one at a time, in call order (asyncio.Lock is
FIFO). A call the CLI answers with ``database is locked`` or ``Could not acquire identity
lock`` is retried with backoff until ``cliTimeoutS`` has passed, then fails with BUSY.

Only commands that change nothing (:data:`~convosd.cli.argv.REPEATABLE_COMMANDS`) ever reach
the queue as :class:`~convosd.errors.CliLocked`, with those that met the identity lock before
their work (:func:`~convosd.cli.output.lock_met_before_work`): the CLI may meet ``database
is locked`` after its work (a send that went out), so the adapter turns a lock error of any
other command into CLI_FAILED (:func:`~convosd.cli.output.not_run_again`) and the queue
does not run it a second time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from convosd import errors

T = TypeVar("T")


class CliQueue:
    def __init__(self, *, timeout_s: float, rng: random.Random | None = None) -> None:
        self.timeout_s = timeout_s
        self.rng = rng or random.Random()
        self._lock = asyncio.Lock()
        self.waiting = 0
        #: calls that have finished (each may have changed the CLI home)
        self.finished = 0
        #: set when no CLI call may run any more (the state dir is gone): the reason
        self.refused: str | None = None
        #: calls run again because the CLI's database was locked (``status``)
        self.locked_retries = 0
        self.log = structlog.get_logger("convosd.cliqueue")

    async def run(self, call: Callable[[], Awaitable[T]], *, what: str = "cli") -> T:
        """Run ``call`` when every earlier call has finished."""
        self.waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self.waiting -= 1
        try:
            if self.refused is not None:
                raise errors.NotReady(self.refused)
            return await self._with_retries(call, what)
        finally:
            self.finished += 1
            self._lock.release()

    async def _with_retries(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        deadline = time.monotonic() + self.timeout_s
        delay = 0.1
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call()
            except errors.CliLocked:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise errors.Busy(
                        "the convos CLI database stayed locked", retry_after_s=1.0
                    ) from None
                pause = min(remaining, delay * (0.8 + 0.4 * self.rng.random()))
                self.locked_retries += 1
                self.log.info("cli_locked_retry", what=what, attempt=attempt, pause_s=pause)
                await asyncio.sleep(pause)
                delay = min(delay * 2, 2.0)
