"""The JSON-RPC server on a Unix stream socket (docs/PROTOCOL.md, The socket).

NDJSON both ways. Each connection reads frames with a hard size limit and runs its requests
concurrently (responses may come out of order); one writer task per connection writes
responses and notifications in order, so writes never interleave. Limits: connections,
frame size, requests in flight per connection (BUSY past it). Peers are identified with
SO_PEERCRED; others than root, the daemon's uid and the configured uids/gids are closed at
once, and only admins may call admin methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import select
import socket
import stat
import struct
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from convosd import errors
from convosd.framing import OVERSIZE, LineSplitter
from convosd.rpc import protocol
from convosd.rpc.dispatch import CallContext, Dispatcher
from convosd.rpc.subscriptions import Subscription, SubscriptionHub

log = structlog.get_logger("convosd.server")
READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Peer:
    pid: int | None
    uid: int | None
    gid: int | None
    groups: frozenset[int] = frozenset()


@dataclass(frozen=True)
class AccessPolicy:
    """Who may connect, and who is an admin (docs/PROTOCOL.md, The socket)."""

    daemon_uid: int
    allow_uids: frozenset[int] = frozenset()
    allow_gids: frozenset[int] = frozenset()
    admin_uids: frozenset[int] = frozenset()
    admin_gids: frozenset[int] = frozenset()

    def is_admin(self, peer: Peer) -> bool:
        if peer.uid is None:
            return False
        if peer.uid in (0, self.daemon_uid) or peer.uid in self.admin_uids:
            return True
        return bool(
            self.admin_gids & ({peer.gid} | peer.groups if peer.gid is not None else peer.groups)
        )

    def is_allowed(self, peer: Peer) -> bool:
        if self.is_admin(peer):
            return True
        if peer.uid is not None and peer.uid in self.allow_uids:
            return True
        groups = peer.groups | ({peer.gid} if peer.gid is not None else set())
        return bool(self.allow_gids & groups)


SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux 4.13+


def peer_of(sock: socket.socket) -> Peer:
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return Peer(None, None, None)
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid, _supplementary_groups(sock, pid))


def _supplementary_groups(sock: socket.socket, pid: int) -> frozenset[int]:
    """The peer's groups from the socket itself (SO_PEERGROUPS); /proc/PID/status only as a
    fallback, since ProtectProc=invisible hides other users' processes from the daemon."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * 65536)
        return frozenset(struct.unpack(f"{len(raw) // 4}i", raw[: len(raw) // 4 * 4]))
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("Groups:"):
                    return frozenset(int(g) for g in line.split()[1:])
    except (OSError, ValueError):
        pass
    return frozenset()


@dataclass
class ServerLimits:
    frame_limit: int = 1_048_576
    max_connections: int = 256
    max_in_flight: int = 64
    #: of ``max_connections``, kept for admin peers (others are refused past the rest)
    admin_reserved: int = 4
    #: bytes waiting to be written to one connection before it is no longer read from
    max_output_bytes: int = 1_048_576
    #: a connection not read from whose output makes no progress this long is closed
    output_stall_timeout_s: float = 30.0
    #: a connection with nothing running, no subscription and no traffic this long is closed
    idle_timeout_s: float = 600.0


class Connection:
    """One client. Reads frames and runs each as a task; one writer task writes in order.

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
        server: RpcServer,
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
        self._out: deque[tuple[bytes, Subscription | None]] = deque()
        self._out_ready = asyncio.Event()
        self._idle = asyncio.Event()  # everything queued was written
        self._idle.set()
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

    def _enqueue(self, line: bytes, sub: Subscription | None = None) -> None:
        if self._closing:
            if sub is not None:
                sub.wrote()
            return
        self._out.append((line, sub))
        self.output_bytes += len(line)
        if self.output_bytes > self.peak_output_bytes:
            self.peak_output_bytes = self.output_bytes
        if self.output_bytes > self.server.limits.max_output_bytes:
            self._room.clear()
        self._idle.clear()
        self._out_ready.set()

    def send_event(self, subscription: Subscription, line: bytes) -> None:
        self._enqueue(line, subscription)

    def send_notice(self, line: bytes) -> None:
        self._enqueue(line)

    async def _write_loop(self) -> None:
        while True:
            while not self._out:
                self._idle.set()
                self._out_ready.clear()
                await self._out_ready.wait()
            batch: list[bytes] = []
            subs: list[Subscription] = []
            while self._out and len(batch) < 256:
                line, sub = self._out.popleft()
                batch.append(line)
                if sub is not None:
                    subs.append(sub)
            data = b"".join(batch)
            try:
                self.writer.write(data)
                await self.writer.drain()
            except (ConnectionError, OSError):
                # The peer is gone: nothing more can be written; stop waiting for it.
                self._closing = True
                self._out.clear()
                self.output_bytes = 0
                self._room.set()
                self._idle.set()
                return
            finally:
                for sub in subs:
                    sub.wrote()
            self.output_bytes -= len(data)
            self.written_bytes += len(data)
            if self.output_bytes <= self.server.limits.max_output_bytes // 2:
                self._room.set()

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
                                    f"({self.server.limits.frame_limit} bytes)",
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
        self.in_flight += requests
        task = asyncio.create_task(self._run_frame(frame, requests))
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

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
            self._enqueue(protocol.encode(answers if frame.batch else answers[0]))

    async def _run_frame(self, frame: protocol.Frame, requests: int) -> None:
        after: list[Callable[[], None]] = []
        try:
            if frame.batch:
                answers = await asyncio.gather(*(self._run_item(i, after) for i in frame.items))
                present = [a for a in answers if a is not None]
                if present:
                    self._enqueue(protocol.encode(present))
            else:
                answer = await self._run_item(frame.items[0], after)
                if answer is not None:
                    self._enqueue(protocol.encode(answer))
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
                self.writer.write(protocol.encode(answers if frame.batch else answers[0]))
            raise
        finally:
            self.in_flight -= requests

    async def _run_item(
        self, item: protocol.Item, after: list[Callable[[], None]]
    ) -> dict[str, Any] | None:
        if isinstance(item, protocol.Invalid):
            return protocol.error_object(item.id, item.code, item.message)
        ctx = CallContext(
            connection=self,
            peer_uid=self.peer.uid,
            is_admin=self.is_admin,
            after_response=after,
            gone=self.peer_gone,
        )
        return await self.server.dispatcher.dispatch(item, ctx)


@dataclass
class RpcServer:
    path: Path
    dispatcher: Dispatcher
    hub: SubscriptionHub
    access: AccessPolicy
    limits: ServerLimits = field(default_factory=ServerLimits)
    socket_group: str | None = None
    #: the socket's directory is convosd's own (a default location, not one configured):
    #: besides the checks every socket directory gets, its mode and group are kept exact
    own_socket_dir: bool = False
    shutdown_grace_s: float = 10.0
    connections: set[Connection] = field(default_factory=set)
    #: requests still running whose connection went away (they finish on their own)
    detached: set[asyncio.Task[None]] = field(default_factory=set)
    accepted: int = 0
    refused: int = 0
    _server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        gid = resolve_group(self.socket_group) if self.socket_group else None
        prepare_socket_dir(self.path.parent, group=gid, own=self.own_socket_dir)
        prepare_socket_path(self.path)
        sock = bind_socket(self.path, group=gid)
        try:
            # A deep backlog: a burst of connections is accepted (and, past maxConnections,
            # answered BUSY) instead of failing in the kernel queue.
            self._server = await asyncio.start_unix_server(self._accept, sock=sock, backlog=4096)
        except BaseException:
            sock.close()
            raise
        mode = 0o660 if gid is not None else 0o600
        log.info("listening", socket=str(self.path), mode=oct(mode))

    def admits(self, peer: Peer) -> bool:
        """Room for one more connection of this peer: the last ``admin_reserved`` slots of
        ``max_connections`` are for admin peers only."""
        room = self.limits.max_connections
        if not self.access.is_admin(peer):
            room -= self.limits.admin_reserved
        return len(self.connections) < room

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        peer = peer_of(sock) if sock is not None else Peer(None, None, None)
        if not self.access.is_allowed(peer):
            self.refused += 1
            log.warning("peer_refused", peer_uid=peer.uid, peer_gid=peer.gid)
            writer.close()
            return
        if not self.admits(peer):
            self.refused += 1
            busy = errors.Busy("too many connections", retry_after_s=1.0)
            await _refuse(reader, writer, busy)
            return
        self.accepted += 1
        connection = Connection(
            self, reader, writer, peer, self.accepted, is_admin=self.access.is_admin(peer)
        )
        self.connections.add(connection)
        await connection.serve()

    def adopt(self, tasks: set[asyncio.Task[None]]) -> None:
        """Requests of a connection that went away: they run on, the shutdown cancels them."""
        for task in list(tasks):
            if not task.done():
                self.detached.add(task)
                task.add_done_callback(self.detached.discard)

    def _running(self) -> list[asyncio.Task[None]]:
        tasks = [t for c in self.connections for t in c.tasks] + list(self.detached)
        return [t for t in tasks if not t.done()]

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    async def close(self, grace_s: float) -> None:
        """Graceful: in-flight requests get ``grace_s``, then NOT_READY; then disconnect."""
        self.stop_accepting()
        tasks = self._running()
        if tasks:
            await asyncio.wait(tasks, timeout=grace_s)
        self.hub.end_all("shutdown")
        late = self._running()
        for task in late:
            task.cancel()
        if late:
            # Their NOT_READY answers are written and their CLI processes killed.
            await asyncio.wait(late, timeout=5.0)
        connections = list(self.connections)
        await asyncio.gather(*(c.flush(1.0) for c in connections))
        for connection in connections:
            connection.close_soon("shutdown")
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


async def _refuse(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, busy: errors.Busy
) -> None:
    """Answer BUSY and close gently: half-close, then read what the client already sent (so
    the kernel does not reset the connection before the client reads the answer)."""
    try:
        writer.write(
            protocol.encode(protocol.error_object(None, busy.code, busy.message, busy.rpc_data()))
        )
        if writer.can_write_eof():
            writer.write_eof()
        await asyncio.wait_for(writer.drain(), 1.0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        received = 0
        while received < 1 << 20:
            chunk = await asyncio.wait_for(reader.read(65536), max(0.0, deadline - loop.time()))
            if not chunk:
                break
            received += len(chunk)
    except (TimeoutError, ConnectionError, OSError):
        pass
    finally:
        writer.close()


def resolve_group(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise errors.ConfigError(f"socketGroup {group!r} is not a group on this system") from None


def prepare_socket_dir(directory: Path, *, group: int | None, own: bool) -> None:
    """Make sure nobody but this daemon's uid (and root) can replace the socket.

    A directory that does not exist is created, and one that is convosd's own (``own``: a
    default location such as ``/tmp/convosd-$UID``) must have been created by this uid;
    either way it must belong to this uid and be writable by nobody else, and it is set to
    0700, or 0750 in ``group`` when the socket is shared with a group. Any other (configured)
    directory must belong to this uid or root and not be writable by others, unless sticky
    (``/tmp`` itself). A symbolic link is refused. Every check is made on the opened
    directory, so a directory swapped in between the check and the use cannot pass.
    """
    mode = 0o750 if group is not None else 0o700
    created = False
    if own or not os.path.lexists(directory):
        try:
            directory.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(directory, 0o700)
            created = True
        except FileExistsError:
            pass
        except OSError as exc:
            raise errors.ConfigError(
                f"socket directory {directory} cannot be created: {exc.strerror}"
            ) from None
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(directory):
            raise errors.ConfigError(
                f"socket directory {directory} is a symbolic link: refused, since whoever "
                "controls the link controls the socket. Remove it, or configure the socket "
                "in a real directory"
            ) from None
        raise errors.ConfigError(
            f"socket directory {directory} cannot be opened: {exc.strerror}"
        ) from None
    try:
        info = os.fstat(fd)
        uid = os.geteuid()
        managed = own or created
        if info.st_uid != uid and (managed or info.st_uid != 0):
            raise errors.ConfigError(
                f"socket directory {directory} belongs to uid {info.st_uid}, not to this "
                f"daemon's uid {uid}: another user may have created it to take the socket. "
                "Remove it (or configure another socket path) and start again"
            )
        permissions = stat.S_IMODE(info.st_mode)
        if permissions & 0o022 and (managed or not permissions & stat.S_ISVTX):
            who = "others" if permissions & 0o002 else "its group"
            raise errors.ConfigError(
                f"socket directory {directory} is writable by {who} (mode "
                f"{permissions:04o}): they could replace the socket. Remove it, or make it "
                f"{mode:04o}, and start again"
            )
        if managed:
            if group is not None and info.st_gid != group:
                os.fchown(fd, -1, group)
            if permissions != mode:
                os.fchmod(fd, mode)
    except OSError as exc:
        raise errors.ConfigError(
            f"socket directory {directory} cannot be set to mode {mode:04o}"
            + (f" in group {group}" if group is not None else "")
            + f": {exc.strerror}"
        ) from None
    finally:
        os.close(fd)


def bind_socket(path: Path, *, group: int | None) -> socket.socket:
    """A listening-ready socket bound at ``path``, created 0600 (0660 in ``group``).

    The mode is set by the umask at ``bind()`` and the group with ``lchown``, so neither
    follows a symbolic link swapped in at ``path``; ``lstat`` then checks what was made.
    """
    mode = 0o660 if group is not None else 0o600
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        previous = os.umask(0o777 & ~mode)
        try:
            sock.bind(str(path))
        finally:
            os.umask(previous)
        if group is not None:
            os.chown(path, -1, group, follow_symlinks=False)
        info = os.lstat(path)
        if (
            not stat.S_ISSOCK(info.st_mode)
            or info.st_uid != os.geteuid()
            or stat.S_IMODE(info.st_mode) != mode
            or (group is not None and info.st_gid != group)
        ):
            raise errors.ConfigError(
                f"socket {path} was replaced or changed right after it was created "
                f"(mode {stat.S_IMODE(info.st_mode):04o}, uid {info.st_uid}): refused"
            )
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise errors.ConfigError(f"socket {path} cannot be created: {exc.strerror}") from None
    except BaseException:
        sock.close()
        raise
    return sock


def prepare_socket_path(path: Path) -> None:
    """Remove a stale socket, only if nothing listens on it."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise errors.ConfigError(f"socket path {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)
        log.info("stale_socket_removed", socket=str(path))
        return
    except OSError as exc:
        raise errors.ConfigError(f"socket {path} cannot be checked: {exc.strerror}") from None
    finally:
        probe.close()
    raise errors.ConfigError(f"another process is listening on {path}")
