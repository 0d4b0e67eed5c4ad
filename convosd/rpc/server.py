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
import socket
import stat
import struct
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


class Connection:
    def __init__(
        self,
        server: RpcServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: Peer,
        number: int,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.number = number
        self.is_admin = server.access.is_admin(peer)
        self.in_flight = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.subscriptions: dict[int, Subscription] = {}
        self._out: deque[tuple[bytes, Subscription | None]] = deque()
        self._out_ready = asyncio.Event()
        self._idle = asyncio.Event()  # everything queued was written
        self._idle.set()
        self._closing = False
        self.log = log.bind(conn=number, peer_uid=peer.uid)

    # --- outbox (used by subscriptions too) ---------------------------------------------

    def _enqueue(self, line: bytes, sub: Subscription | None = None) -> None:
        if self._closing:
            if sub is not None:
                sub.wrote()
            return
        self._out.append((line, sub))
        self._idle.clear()
        self._out_ready.set()

    def send_event(self, subscription: Subscription, line: bytes) -> None:
        self._enqueue(line, subscription)

    def send_notice(self, line: bytes) -> None:
        self._enqueue(line)

    def forget(self, subscription: Subscription) -> None:
        self.subscriptions.pop(subscription.id, None)

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
            try:
                self.writer.write(b"".join(batch))
                await self.writer.drain()
            except (ConnectionError, OSError):
                # The peer is gone: nothing more can be written; stop waiting for it.
                self._closing = True
                self._out.clear()
                self._idle.set()
                return
            finally:
                for sub in subs:
                    sub.wrote()

    async def flush(self, timeout_s: float) -> None:
        """Wait until everything queued so far was written (bounded)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)

    # --- reading ------------------------------------------------------------------------

    async def serve(self) -> None:
        writer_task = asyncio.create_task(self._write_loop(), name=f"writer-{self.number}")
        splitter = LineSplitter(self.server.limits.frame_limit)
        try:
            while not self._closing:
                chunk = await self.reader.read(READ_CHUNK)
                if not chunk:
                    frames = splitter.finish()
                    for frame in frames:
                        if isinstance(frame, bytes):
                            self._handle_line(frame)
                    break
                for frame in splitter.feed(chunk):
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
                        break
                    assert isinstance(frame, bytes)
                    self._handle_line(frame)
            # The client closed its side (or sent an over-long line): answer what is running.
            if self.tasks:
                await asyncio.wait(set(self.tasks), timeout=self.server.shutdown_grace_s)
            await self._drain_outbox(2.0)
        except (ConnectionError, OSError):
            pass
        finally:
            await self._teardown(writer_task)

    async def _drain_outbox(self, timeout_s: float) -> None:
        was_closing = self._closing
        self._closing = False
        await self.flush(timeout_s)
        self._closing = was_closing

    async def _teardown(self, writer_task: asyncio.Task[None]) -> None:
        self._closing = True
        for sub in list(self.subscriptions.values()):
            self.server.hub.end(sub, None)
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        writer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer_task
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
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
        requests = sum(1 for item in frame.items if isinstance(item, protocol.Request))
        if self.in_flight + requests > self.server.limits.max_in_flight:
            self._answer_busy(frame)
            return
        self.in_flight += requests
        task = asyncio.create_task(self._run_frame(frame, requests))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

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
            if answers:
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
            connection=self, peer_uid=self.peer.uid, is_admin=self.is_admin, after_response=after
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
    shutdown_grace_s: float = 10.0
    connections: set[Connection] = field(default_factory=set)
    accepted: int = 0
    refused: int = 0
    _server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        prepare_socket_path(self.path, shared=self.socket_group is not None)
        # A deep backlog: a burst of connections is accepted (and, past maxConnections,
        # answered BUSY) instead of failing in the kernel queue.
        self._server = await asyncio.start_unix_server(
            self._accept, path=str(self.path), backlog=4096
        )
        mode = 0o660 if self.socket_group else 0o600
        if self.socket_group:
            os.chown(self.path, -1, resolve_group(self.socket_group))
        os.chmod(self.path, mode)
        log.info("listening", socket=str(self.path), mode=oct(mode))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        peer = peer_of(sock) if sock is not None else Peer(None, None, None)
        if not self.access.is_allowed(peer):
            self.refused += 1
            log.warning("peer_refused", peer_uid=peer.uid, peer_gid=peer.gid)
            writer.close()
            return
        if len(self.connections) >= self.limits.max_connections:
            self.refused += 1
            busy = errors.Busy("too many connections", retry_after_s=1.0)
            await _refuse(reader, writer, busy)
            return
        self.accepted += 1
        connection = Connection(self, reader, writer, peer, self.accepted)
        self.connections.add(connection)
        await connection.serve()

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    async def close(self, grace_s: float) -> None:
        """Graceful: in-flight requests get ``grace_s``, then NOT_READY; then disconnect."""
        self.stop_accepting()
        tasks = [t for c in self.connections for t in c.tasks]
        if tasks:
            await asyncio.wait(tasks, timeout=grace_s)
        self.hub.end_all("shutdown")
        for connection in list(self.connections):
            for task in list(connection.tasks):
                task.cancel()
        connections = list(self.connections)
        await asyncio.gather(*(c.flush(1.0) for c in connections))
        for connection in connections:
            connection._closing = True
            connection.reader.feed_eof()
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


def prepare_socket_path(path: Path, *, shared: bool = False) -> None:
    """Create the parent dir (0700, or 0750 for a socket group); remove a stale socket only
    if nothing listens on it."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o750 if shared else 0o700, parents=True, exist_ok=True)
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
