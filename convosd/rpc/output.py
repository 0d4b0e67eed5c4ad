"""One connection's output: the lines to write (answers and notifications), in order, and
their bound (the writing side of :class:`convosd.rpc.connection.Connection`).

What a loop turn queues is written at its end in one transport write; while the transport
holds unsent bytes (or the writer task has lines in hand) the writer task takes over and
waits for them to drain, so the output stays bounded by what the peer reads."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from convosd.rpc.subscriptions import Subscription


class Output:
    """The lines waiting to be written on one connection, and how they are written.

    ``room`` is set while fewer than ``max_bytes`` wait (the connection reads only then) and
    set again below half of it. Once ``closing``, lines are dropped (their subscriptions are
    told they were written); once ``torn_down`` nothing more is written at all."""

    def __init__(self, writer: asyncio.StreamWriter, max_bytes: int) -> None:
        self.writer = writer
        self.max_bytes = max_bytes
        #: bytes queued or being written, not yet written; and the most there ever were
        self.output_bytes = 0
        self.peak_output_bytes = 0
        #: bytes written so far
        self.written_bytes = 0
        #: no more lines are taken (the peer is gone, or the daemon closes the connection)
        self.closing = False
        #: the connection is gone: nothing more is written
        self.torn_down = False
        #: (data, the subscription whose event lines it holds, how many lines)
        self._out: deque[tuple[bytes, Subscription | None, int]] = deque()
        self._out_ready = asyncio.Event()
        self._idle = asyncio.Event()  # everything queued was written
        self._idle.set()
        #: a write of what this loop turn queued is scheduled (:meth:`_write_turn`)
        self._turn_scheduled = False
        #: the writer task has lines in hand (written, waiting for the transport to drain)
        self._writer_busy = False
        self.room = asyncio.Event()  # output below the bound: reading may go on
        self.room.set()
        self._loop = asyncio.get_running_loop()

    def enqueue(self, line: bytes, sub: Subscription | None = None, lines: int = 1) -> None:
        if self.closing:
            if sub is not None:
                sub.wrote(lines)
            return
        self._out.append((line, sub, lines))
        self.output_bytes += len(line)
        if self.output_bytes > self.peak_output_bytes:
            self.peak_output_bytes = self.output_bytes
        if self.output_bytes > self.max_bytes:
            self.room.clear()
        self._idle.clear()
        if not self._turn_scheduled:
            self._turn_scheduled = True
            self._loop.call_soon(self._write_turn)

    def _write_turn(self) -> None:
        """What the last loop turn queued, in one transport write, at the end of it. The
        writer task takes over when the transport holds unsent bytes (it waits for them to
        drain) or already has lines in hand."""
        self._turn_scheduled = False
        if not self._out or self.torn_down:
            return
        if self._writer_busy or self.unsent() > 0:
            self._out_ready.set()
            return
        data, subs = self._take()
        try:
            self.writer.write(data)
        except (ConnectionError, OSError):
            self._peer_gone_writing()
            return
        finally:
            for sub, lines in subs:
                sub.wrote(lines)
        self._wrote(data)

    def unsent(self) -> int:
        """Bytes the transport holds, not yet sent."""
        try:
            return int(self.writer.transport.get_write_buffer_size())
        except Exception:
            return 0

    @property
    def waiting(self) -> bool:
        """Lines are queued, not yet handed to the transport."""
        return bool(self._out)

    def _take(self, most: int | None = None) -> tuple[bytes, list[tuple[Subscription, int]]]:
        """The queued lines (at most ``most``) joined, and the subscriptions they hold."""
        batch: list[bytes] = []
        subs: list[tuple[Subscription, int]] = []
        out = self._out
        while out and (most is None or len(batch) < most):
            line, sub, lines = out.popleft()
            batch.append(line)
            if sub is not None:
                subs.append((sub, lines))
        return b"".join(batch), subs

    def _wrote(self, data: bytes) -> None:
        self.output_bytes -= len(data)
        self.written_bytes += len(data)
        if self.output_bytes <= self.max_bytes // 2:
            self.room.set()
        if not self._out:
            self._idle.set()

    def _peer_gone_writing(self) -> None:
        """The peer is gone: nothing more can be written; stop waiting for it."""
        self.closing = True
        self._out.clear()
        self.output_bytes = 0
        self.room.set()
        self._idle.set()

    async def write_loop(self) -> None:
        """Writes when the transport holds unsent bytes: waits for them to drain."""
        while True:
            while not self._out:
                self._idle.set()
                self._out_ready.clear()
                await self._out_ready.wait()
            data, subs = self._take(256)
            self._writer_busy = True
            try:
                self.writer.write(data)
                await self.writer.drain()
            except (ConnectionError, OSError):
                self._peer_gone_writing()
                return
            finally:
                self._writer_busy = False
                for sub, lines in subs:
                    sub.wrote(lines)
            self._wrote(data)

    async def flush(self, timeout_s: float) -> None:
        """Wait until everything queued so far was written (bounded)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)

    async def drain(self, timeout_s: float) -> None:
        """:meth:`flush`, taking lines meanwhile even while closing (the answers of what
        still runs), then closing as before."""
        was_closing = self.closing
        self.closing = False
        await self.flush(timeout_s)
        self.closing = was_closing

    def close(self) -> None:
        """Take no more lines; a reader waiting for room goes on (and sees the closing)."""
        self.closing = True
        self.room.set()

    async def finish(self, writer_task: asyncio.Task[None]) -> None:
        """The connection is torn down: stop the writer task and close the transport (abort
        it when a peer that does not read still has bytes waiting)."""
        writer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer_task
        if self._out or self.unsent():
            self.writer.transport.abort()  # a peer that does not read gets nothing more
        else:
            self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)
