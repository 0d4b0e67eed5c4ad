"""One client connection: reads frames, runs their requests, writes answers and
notifications in order (the protocol side; :mod:`convosd.rpc.server` accepts and owns them,
and is known here only as a :class:`Host`)."""

from __future__ import annotations

import asyncio
import contextlib
import select
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from convosd import errors
from convosd.framing import OVERSIZE, LineSplitter
from convosd.rpc import protocol
from convosd.rpc.dispatch import CallContext, Dispatcher
from convosd.rpc.limits import ServerLimits
from convosd.rpc.peers import Peer
from convosd.rpc.subscriptions import Subscription, SubscriptionHub

log = structlog.get_logger("convosd.server")
READ_CHUNK = 64 * 1024


class Host(Protocol):
    """What a connection needs of the server that accepted it (:class:`RpcServer`)."""

    limits: ServerLimits
    hub: SubscriptionHub
    dispatcher: Dispatcher
    connections: set[Connection]

    def adopt(self, tasks: set[asyncio.Task[None]]) -> None:
        """Take the requests still running when the connection goes away."""


class Connection:
    """One client. Reads frames and runs each as a task (``status`` and ``health`` are
    answered as they are read, without one); answers and notifications are written in
    order: what a loop turn queued in one write at its end, or by the writer task while the
    transport holds unsent bytes (it waits for them to drain).

    Output is bounded: while more than ``max_output_bytes`` wait to be written the connection
    is not read from (so a peer that sends without reading is held back by the kernel, not
    by our memory), reading resumes below half of it, and a connection whose output makes
    no progress for ``output_stall_timeout_s`` while paused is closed.

    A request outlives its connection: when the peer goes away (or is disconnected for an
    over-long line) its running requests finish on their own, their answers discarded, so
    what they do (an idempotency key, a pending join) is recorded as for any other request.
    Only the daemon's shutdown cancels them.
    """

    def __init__(
        self,
        server: Host,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: Peer,
        number: int,
        *,
        is_admin: bool,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.number = number
        self.is_admin = is_admin
        self.in_flight = 0
        self.tasks: set[asyncio.Task[None]] = set()
        #: bytes queued or being written, not yet written; and the most there ever were
        self.output_bytes = 0
        self.peak_output_bytes = 0
        #: bytes written so far; True while reading waits for the output to drain
        self.written_bytes = 0
        self.reading_paused = False
        #: why the daemon closed the connection ("oversize", "stalled", "idle", "shutdown")
        self.closed_by_daemon: str | None = None
        #: (data, the subscription whose event lines it holds, how many lines)
        self._out: deque[tuple[bytes, Subscription | None, int]] = deque()
        self._out_ready = asyncio.Event()
        self._idle = asyncio.Event()  # everything queued was written
        self._idle.set()
        #: a write of what this loop turn queued is scheduled (:meth:`_write_turn`)
        self._turn_scheduled = False
        #: the writer task has lines in hand (written, waiting for the transport to drain)
        self._writer_busy = False
        self._room = asyncio.Event()  # output below the bound: reading may go on
        self._room.set()
        self._closing = False
        self._torn_down = False
        self._eof = False
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None
        self.log = log.bind(conn=number, peer_uid=peer.uid)

    # --- outbox (used by subscriptions too) ---------------------------------------------

    def _enqueue(self, line: bytes, sub: Subscription | None = None, lines: int = 1) -> None:
        if self._closing:
            if sub is not None:
                sub.wrote(lines)
            return
        self._out.append((line, sub, lines))
        self.output_bytes += len(line)
        if self.output_bytes > self.peak_output_bytes:
            self.peak_output_bytes = self.output_bytes
        if self.output_bytes > self.server.limits.max_output_bytes:
            self._room.clear()
        self._idle.clear()
        if not self._turn_scheduled:
            self._turn_scheduled = True
            self._loop.call_soon(self._write_turn)

    def _write_turn(self) -> None:
        """What the last loop turn queued, in one transport write, at the end of it. The
        writer task takes over when the transport holds unsent bytes (it waits for them to
        drain) or already has lines in hand."""
        self._turn_scheduled = False
        if not self._out or self._torn_down:
            return
        if self._writer_busy or self._unsent() > 0:
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

    def _unsent(self) -> int:
        """Bytes the transport holds, not yet sent."""
        try:
            return int(self.writer.transport.get_write_buffer_size())
        except Exception:
            return 0

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
        if self.output_bytes <= self.server.limits.max_output_bytes // 2:
            self._room.set()
        if not self._out:
            self._idle.set()

    def _peer_gone_writing(self) -> None:
        """The peer is gone: nothing more can be written; stop waiting for it."""
        self._closing = True
        self._out.clear()
        self.output_bytes = 0
        self._room.set()
        self._idle.set()

    def send_event(self, subscription: Subscription, line: bytes) -> None:
        self._enqueue(line, subscription)

    def send_events(self, subscription: Subscription, data: bytes, lines: int) -> None:
        self._enqueue(data, subscription, lines)

    def send_notice(self, line: bytes) -> None:
        self._enqueue(line)

    async def _write_loop(self) -> None:
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

    def _transport_buffered(self) -> int:
        with contextlib.suppress(Exception):
            return int(self.writer.transport.get_write_buffer_size())
        return 0

    def peer_gone(self) -> bool:
        """True once this connection cannot deliver an answer any more: closed by the
        daemon, or the peer closed its end entirely (a peer that only shut down its
        writing side still reads its answers)."""
        if self._closing or self._torn_down:
            return True
        if not (self._eof or self.reader.at_eof() or self.reading_paused):
            return False
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return False
        try:
            poller = select.poll()
            poller.register(sock.fileno(), 0)
            events = poller.poll(0)
        except (OSError, ValueError):
            return True
        return any(mask & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, mask in events)

    def close_soon(self, reason: str) -> None:
        """Stop reading and close: the serve loop ends at its next step."""
        if self.closed_by_daemon is None:
            self.closed_by_daemon = reason
        self._closing = True
        self._room.set()
        self.reader.feed_eof()

    # --- idleness -----------------------------------------------------------------------

    def _touch(self) -> None:
        self._last_activity = self._loop.time()

    def _arm_idle_timer(self, delay: float) -> None:
        self._idle_timer = self._loop.call_later(delay, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_timer = None
        if self._closing or self._torn_down:
            return
        timeout = self.server.limits.idle_timeout_s
        busy = bool(self.tasks or self.server.hub.count(self) or self._out or self.reading_paused)
        quiet_for = self._loop.time() - self._last_activity
        if busy or quiet_for < timeout:
            self._arm_idle_timer(timeout if busy else timeout - quiet_for)
            return
        self.log.info("connection_idle_closed", idle_s=round(quiet_for, 1))
        self.close_soon("idle")

    # --- reading ------------------------------------------------------------------------

    async def serve(self) -> None:
        writer_task = asyncio.create_task(self._write_loop(), name=f"writer-{self.number}")
        self._arm_idle_timer(self.server.limits.idle_timeout_s)
        splitter = LineSplitter(self.server.limits.frame_limit)
        try:
            while not self._closing:
                chunk = await self.reader.read(READ_CHUNK)
                self._touch()
                if not chunk:
                    self._eof = True
                    if not self._closing:
                        for frame in splitter.finish():
                            if isinstance(frame, bytes):
                                self._handle_line(frame)
                    break
                for frame in splitter.feed(chunk):
                    if not self._room.is_set() and not await self._wait_for_room():
                        break
                    if frame is OVERSIZE:
                        self._enqueue(
                            protocol.encode(
                                protocol.error_object(
                                    None,
                                    protocol.PARSE_ERROR,
                                    "Parse error: line longer than the frame limit "
                                    f"({self.server.limits.frame_limit} bytes, "
                                    "frameLimitBytes); send a larger file by path "
                                    "(message.sendAttachment), or raise frameLimitBytes",
                                )
                            )
                        )
                        self._closing = True
                        self.closed_by_daemon = "oversize"
                        break
                    assert isinstance(frame, bytes)
                    self._handle_line(frame)
            if self.closed_by_daemon is None:
                # The peer closed its side: a peer that still reads gets what is running.
                await self._answer_while_listening()
            if self.closed_by_daemon in (None, "oversize"):
                await self._drain_outbox(2.0)
        except (ConnectionError, OSError):
            pass
        finally:
            await self._teardown(writer_task)

    async def _wait_for_room(self) -> bool:
        """Reading waits while the output is over its bound. False: the connection is
        closing (the output made no progress for ``output_stall_timeout_s``)."""
        limits = self.server.limits
        self.reading_paused = True
        self.log.debug("reading_paused", output_bytes=self.output_bytes)
        try:
            while not self._room.is_set() and not self._closing:
                progress = (self.written_bytes, self._transport_buffered())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), limits.output_stall_timeout_s)
                    continue
                if (self.written_bytes, self._transport_buffered()) == progress:
                    self.log.warning(
                        "connection_stalled",
                        output_bytes=self.output_bytes,
                        timeout_s=limits.output_stall_timeout_s,
                    )
                    self.close_soon("stalled")
            return not self._closing
        finally:
            self.reading_paused = False
            self._touch()

    async def _answer_while_listening(self) -> None:
        while self.tasks and not self.peer_gone():
            await asyncio.wait(set(self.tasks), timeout=0.25)

    async def _drain_outbox(self, timeout_s: float) -> None:
        was_closing = self._closing
        self._closing = False
        await self.flush(timeout_s)
        self._closing = was_closing

    async def _teardown(self, writer_task: asyncio.Task[None]) -> None:
        self._closing = True
        self._torn_down = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self.server.hub.end_of(self)
        # What still runs finishes on its own; the daemon's shutdown still cancels it.
        self.server.adopt(self.tasks)
        writer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer_task
        if self._out or self._transport_buffered():
            self.writer.transport.abort()  # a peer that does not read gets nothing more
        else:
            self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)
        self.server.connections.discard(self)

    def _handle_line(self, line: bytes) -> None:
        if not line.strip():
            self._enqueue(
                protocol.encode(
                    protocol.error_object(None, protocol.PARSE_ERROR, "Parse error: empty line")
                )
            )
            return
        try:
            frame = protocol.parse_frame(line)
        except protocol.FrameError as exc:
            self._enqueue(
                protocol.encode(protocol.error_object(None, protocol.PARSE_ERROR, str(exc)))
            )
            return
        except Exception:
            # A defect in the parser must cost one answer, not the connection.
            error_id = uuid.uuid4().hex[:12]
            self.log.exception("frame_internal_error", error_id=error_id)
            self._enqueue(
                protocol.encode(
                    protocol.error_object(
                        None,
                        protocol.INTERNAL_ERROR,
                        "Internal error",
                        {"kind": "INTERNAL", "errorId": error_id},
                    )
                )
            )
            return
        requests = sum(1 for item in frame.items if isinstance(item, protocol.Request))
        if self.in_flight + requests > self.server.limits.max_in_flight:
            self._answer_busy(frame)
            return
        item = frame.items[0]
        if (
            not frame.batch
            and isinstance(item, protocol.Request)
            and self.server.dispatcher.answers_inline(item)
        ):
            self._run_inline(item, frame.exotic)
            return
        self.in_flight += requests
        task = asyncio.create_task(self._run_frame(frame, requests))
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _run_inline(self, request: protocol.Request, exotic: bool) -> None:
        """A request the dispatcher answers at once (status, health): answered here, as it
        is read, without a task (its answer may so come before those of requests read
        earlier and still running, as any answer may)."""
        after: list[Callable[[], None]] = []
        answer = self.server.dispatcher.dispatch_inline(request, self._context(after))
        if answer is not None:
            self._enqueue(protocol.encode(answer, exotic=exotic))
        for hook in after:
            hook()

    def _context(self, after: list[Callable[[], None]]) -> CallContext:
        return CallContext(
            connection=self,
            peer_uid=self.peer.uid,
            is_admin=self.is_admin,
            after_response=after,
            gone=self.peer_gone,
        )

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._touch()

    def _answer_busy(self, frame: protocol.Frame) -> None:
        busy = errors.Busy(
            f"too many requests in flight on this connection "
            f"(at most {self.server.limits.max_in_flight})",
            retry_after_s=0.1,
        )
        answers = [
            protocol.error_object(item.id, busy.code, busy.message, busy.rpc_data())
            if isinstance(item, protocol.Request)
            else protocol.error_object(item.id, item.code, item.message)
            for item in frame.items
            if not (isinstance(item, protocol.Request) and item.notification)
        ]
        if answers:
            self._enqueue(
                protocol.encode(answers if frame.batch else answers[0], exotic=frame.exotic)
            )

    async def _run_frame(self, frame: protocol.Frame, requests: int) -> None:
        after: list[Callable[[], None]] = []
        try:
            if frame.batch:
                answers = await asyncio.gather(*(self._run_item(i, after) for i in frame.items))
                present = [a for a in answers if a is not None]
                if present:
                    self._enqueue(protocol.encode(present, exotic=frame.exotic))
            else:
                answer = await self._run_item(frame.items[0], after)
                if answer is not None:
                    self._enqueue(protocol.encode(answer, exotic=frame.exotic))
            if self._torn_down:
                # The connection went away while this ran: a subscription it opened has
                # nobody to deliver to.
                self.server.hub.end_of(self)
                return
            for hook in after:
                hook()
        except asyncio.CancelledError:
            # Shutdown: the requests that did not finish in the grace period.
            not_ready = errors.NotReady("the daemon is shutting down")
            answers = [
                protocol.error_object(i.id, not_ready.code, not_ready.message, not_ready.rpc_data())
                for i in frame.items
                if isinstance(i, protocol.Request) and not i.notification
            ]
            if answers and not self._torn_down:
                self.writer.write(
                    protocol.encode(answers if frame.batch else answers[0], exotic=frame.exotic)
                )
            raise
        finally:
            self.in_flight -= requests

    async def _run_item(
        self, item: protocol.Item, after: list[Callable[[], None]]
    ) -> dict[str, Any] | None:
        if isinstance(item, protocol.Invalid):
            return protocol.error_object(item.id, item.code, item.message)
        return await self.server.dispatcher.dispatch(item, self._context(after))
