"""One client connection: reads frames and hands them to its requests
(:mod:`convosd.rpc.requests`), whose answers and the notifications its output
(:mod:`convosd.rpc.output`) writes in order; closes when idle, stalled or told to (the
protocol side; :mod:`convosd.rpc.server` accepts and owns them, and is known here only as a
:class:`Host`)."""

from __future__ import annotations

import asyncio
import contextlib
import select
from typing import Protocol

import structlog

from convosd.framing import OVERSIZE, LineSplitter
from convosd.rpc import protocol
from convosd.rpc.output import Output
from convosd.rpc.peers import Peer
from convosd.rpc.requests import Requests, Server
from convosd.rpc.subscriptions import Subscription

log = structlog.get_logger("convosd.server")
READ_CHUNK = 64 * 1024


class Host(Server, Protocol):
    """What a connection needs of the server that accepted it (:class:`RpcServer`)."""

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
        #: True while reading waits for the output to drain
        self.reading_paused = False
        #: why the daemon closed the connection ("oversize", "stalled", "idle", "shutdown")
        self.closed_by_daemon: str | None = None
        self._eof = False
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None
        self.log = log.bind(conn=number, peer_uid=peer.uid)
        self.output = Output(writer, server.limits.max_output_bytes)
        self.requests = Requests(
            server,
            self,
            self.output,
            peer_uid=peer.uid,
            is_admin=is_admin,
            gone=self.peer_gone,
            touch=self._touch,
            log=self.log,
        )

    # --- what subscriptions send (convosd.rpc.subscriptions.Outbox) ---------------------

    def send_event(self, subscription: Subscription, line: bytes) -> None:
        self.output.enqueue(line, subscription)

    def send_events(self, subscription: Subscription, data: bytes, lines: int) -> None:
        self.output.enqueue(data, subscription, lines)

    def send_notice(self, line: bytes) -> None:
        self.output.enqueue(line)

    # --- closing ------------------------------------------------------------------------

    def peer_gone(self) -> bool:
        """True once this connection cannot deliver an answer any more: closed by the
        daemon, or the peer closed its end entirely (a peer that only shut down its
        writing side still reads its answers)."""
        if self.output.closing or self.output.torn_down:
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
        self.output.close()
        self.reader.feed_eof()

    # --- idleness -----------------------------------------------------------------------

    def _touch(self) -> None:
        self._last_activity = self._loop.time()

    def _arm_idle_timer(self, delay: float) -> None:
        self._idle_timer = self._loop.call_later(delay, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_timer = None
        if self.output.closing or self.output.torn_down:
            return
        timeout = self.server.limits.idle_timeout_s
        busy = bool(
            self.requests.tasks
            or self.server.hub.count(self)
            or self.output.waiting
            or self.reading_paused
        )
        quiet_for = self._loop.time() - self._last_activity
        if busy or quiet_for < timeout:
            self._arm_idle_timer(timeout if busy else timeout - quiet_for)
            return
        self.log.info("connection_idle_closed", idle_s=round(quiet_for, 1))
        self.close_soon("idle")

    # --- reading ------------------------------------------------------------------------

    async def serve(self) -> None:
        output = self.output
        handle_line = self.requests.handle_line
        writer_task = asyncio.create_task(output.write_loop(), name=f"writer-{self.number}")
        self._arm_idle_timer(self.server.limits.idle_timeout_s)
        splitter = LineSplitter(self.server.limits.frame_limit)
        try:
            while not output.closing:
                chunk = await self.reader.read(READ_CHUNK)
                self._touch()
                if not chunk:
                    self._eof = True
                    if not output.closing:
                        for frame in splitter.finish():
                            if isinstance(frame, bytes):
                                handle_line(frame)
                    break
                for frame in splitter.feed(chunk):
                    if not output.room.is_set() and not await self._wait_for_room():
                        break
                    if frame is OVERSIZE:
                        output.enqueue(
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
                        output.closing = True
                        self.closed_by_daemon = "oversize"
                        break
                    assert isinstance(frame, bytes)
                    handle_line(frame)
            if self.closed_by_daemon is None:
                # The peer closed its side: a peer that still reads gets what is running.
                await self._answer_while_listening()
            if self.closed_by_daemon in (None, "oversize"):
                await output.drain(2.0)
        except (ConnectionError, OSError):
            pass
        finally:
            await self._teardown(writer_task)

    async def _wait_for_room(self) -> bool:
        """Reading waits while the output is over its bound. False: the connection is
        closing (the output made no progress for ``output_stall_timeout_s``)."""
        limits = self.server.limits
        output = self.output
        self.reading_paused = True
        self.log.debug("reading_paused", output_bytes=output.output_bytes)
        try:
            while not output.room.is_set() and not output.closing:
                progress = (output.written_bytes, output.unsent())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(output.room.wait(), limits.output_stall_timeout_s)
                    continue
                if (output.written_bytes, output.unsent()) == progress:
                    self.log.warning(
                        "connection_stalled",
                        output_bytes=output.output_bytes,
                        timeout_s=limits.output_stall_timeout_s,
                    )
                    self.close_soon("stalled")
            return not output.closing
        finally:
            self.reading_paused = False
            self._touch()

    async def _answer_while_listening(self) -> None:
        tasks = self.requests.tasks
        while tasks and not self.peer_gone():
            await asyncio.wait(set(tasks), timeout=0.25)

    async def _teardown(self, writer_task: asyncio.Task[None]) -> None:
        self.output.closing = True
        self.output.torn_down = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self.server.hub.end_of(self)
        # What still runs finishes on its own; the daemon's shutdown still cancels it.
        self.server.adopt(self.requests.tasks)
        await self.output.finish(writer_task)
        self.server.connections.discard(self)
