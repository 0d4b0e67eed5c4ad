"""The socket's limits (docs/PROTOCOL.md, The socket): what the server admits and what each
connection bounds."""

from __future__ import annotations

from dataclasses import dataclass


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
