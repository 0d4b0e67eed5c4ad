"""One connection's requests: each frame read is answered (a parse error, BUSY past
``maxInFlight``), run at once (``status``, ``health``: the dispatcher answers them inline)
or run as a task; the answers go to the connection's :class:`~convosd.rpc.output.Output`
(the dispatch side of :class:`convosd.rpc.connection.Connection`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from convosd import errors
from convosd.rpc import protocol
from convosd.rpc.dispatch import CallContext, Dispatcher
from convosd.rpc.limits import ServerLimits
from convosd.rpc.output import Output
from convosd.rpc.subscriptions import Outbox, SubscriptionHub


class Server(Protocol):
    """What a connection's requests need of the server that accepted it."""

    limits: ServerLimits
    hub: SubscriptionHub
    dispatcher: Dispatcher


class Requests:
    """The requests of one connection: how many run (``in_flight``, which ``maxInFlight``
    bounds) and their tasks. A task outlives the connection (its answer is then dropped);
    only the daemon's shutdown cancels it, and its requests are then answered NOT_READY."""

    def __init__(
        self,
        server: Server,
        connection: Outbox,
        output: Output,
        *,
        peer_uid: int | None,
        is_admin: bool,
        gone: Callable[[], bool],
        touch: Callable[[], None],
        log: Any,
    ) -> None:
        self.server = server
        #: the connection, as the methods see it (``CallContext.connection``)
        self.connection = connection
        self.output = output
        self.peer_uid = peer_uid
        self.is_admin = is_admin
        #: True once the connection cannot deliver an answer any more
        self.gone = gone
        #: the connection was active (a request finished): its idle time starts over
        self.touch = touch
        self.log = log
        self.in_flight = 0
        self.tasks: set[asyncio.Task[None]] = set()

    def handle_line(self, line: bytes) -> None:
        if not line.strip():
            self.output.enqueue(
                protocol.encode(
                    protocol.error_object(None, protocol.PARSE_ERROR, "Parse error: empty line")
                )
            )
            return
        try:
            frame = protocol.parse_frame(line)
        except protocol.FrameError as exc:
            self.output.enqueue(
                protocol.encode(protocol.error_object(None, protocol.PARSE_ERROR, str(exc)))
            )
            return
        except Exception:
            # A defect in the parser must cost one answer, not the connection.
            error_id = uuid.uuid4().hex[:12]
            self.log.exception("frame_internal_error", error_id=error_id)
            self.output.enqueue(
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
            self.output.enqueue(protocol.encode(answer, exotic=exotic))
        for hook in after:
            hook()

    def _context(self, after: list[Callable[[], None]]) -> CallContext:
        return CallContext(
            connection=self.connection,
            peer_uid=self.peer_uid,
            is_admin=self.is_admin,
            after_response=after,
            gone=self.gone,
        )

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.touch()

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
            self.output.enqueue(
                protocol.encode(answers if frame.batch else answers[0], exotic=frame.exotic)
            )

    async def _run_frame(self, frame: protocol.Frame, requests: int) -> None:
        after: list[Callable[[], None]] = []
        try:
            if frame.batch:
                answers = await asyncio.gather(*(self._run_item(i, after) for i in frame.items))
                present = [a for a in answers if a is not None]
                if present:
                    self.output.enqueue(protocol.encode(present, exotic=frame.exotic))
            else:
                answer = await self._run_item(frame.items[0], after)
                if answer is not None:
                    self.output.enqueue(protocol.encode(answer, exotic=frame.exotic))
            if self.output.torn_down:
                # The connection went away while this ran: a subscription it opened has
                # nobody to deliver to.
                self.server.hub.end_of(self.connection)
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
            if answers and not self.output.torn_down:
                self.output.writer.write(
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
