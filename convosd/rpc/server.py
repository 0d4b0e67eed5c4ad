"""The JSON-RPC server on a Unix stream socket (docs/PROTOCOL.md, The socket).

NDJSON both ways. Each connection reads frames with a hard size limit and runs its requests
concurrently (responses may come out of order); one writer task per connection writes
responses and notifications in order, so writes never interleave. Limits: connections,
frame size, requests in flight per connection (BUSY past it). Peers are identified with
SO_PEERCRED; others than root, the daemon's uid and the configured uids/gids are closed at
once, and only admins may call admin methods.

This module is the runtime side: it binds the socket (:mod:`convosd.rpc.sockets`), admits
peers (:mod:`convosd.rpc.peers`), owns the connections and shuts them down; each client's
protocol (framing, answers, output bounds) is :class:`convosd.rpc.connection.Connection`
(with its :mod:`~convosd.rpc.requests` and :mod:`~convosd.rpc.output`), which knows the
server only as its :class:`convosd.rpc.connection.Host` (no import back).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from convosd import errors
from convosd.groups import resolve_group
from convosd.rpc import protocol
from convosd.rpc.connection import Connection
from convosd.rpc.dispatch import Dispatcher
from convosd.rpc.limits import ServerLimits
from convosd.rpc.peers import AccessPolicy, Peer, peer_of
from convosd.rpc.sockets import bind_socket, prepare_socket_dir, prepare_socket_path
from convosd.rpc.subscriptions import SubscriptionHub

log = structlog.get_logger("convosd.server")


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
        tasks = [t for c in self.connections for t in c.requests.tasks] + list(self.detached)
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
        await asyncio.gather(*(c.output.flush(1.0) for c in connections))
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
