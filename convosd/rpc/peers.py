"""Who is on the other end of a connection (SO_PEERCRED and its groups), and who may
connect or call admin methods (docs/PROTOCOL.md, The socket)."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass


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
