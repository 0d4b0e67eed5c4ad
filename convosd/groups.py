"""``socketGroup``: the Unix group that shares the daemon's socket and downloaded attachments."""

from __future__ import annotations

import grp

from convosd import errors


def resolve_group(group: str) -> int:
    """The gid of ``group`` (a name or a number); ConfigError when there is no such group."""
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise errors.ConfigError(f"socketGroup {group!r} is not a group on this system") from None
