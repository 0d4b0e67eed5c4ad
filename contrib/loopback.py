"""Whether an address is one only this machine reaches: the add-ons that serve HTTP (the
gateway, the MCP server) refuse to listen elsewhere without a token or an explicit flag."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ``::1``; any other name is not ours to trust (where it
    points can change)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
