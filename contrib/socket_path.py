"""Where the add-ons in contrib/ find convosd's socket: one function, so they all agree.

They look where convosctl looks (``convosd.discovery``): ``--socket``, else
``CONVOSD_SOCKET``, else the first default place that exists, refusing a socket whose
directory another user could have planted. When no daemon has made its socket yet, a
long-running add-on waits at the daemon's own default path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from convosd.config import default_socket_path
from convosd.discovery import discover


class UntrustedSocket(ValueError):
    """A socket was found in a directory that cannot be trusted; the message says why."""


def socket_path(given: str | Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """``--socket`` when given, else ``$CONVOSD_SOCKET``, else the discovered socket, else
    the daemon's default path (nothing there yet)."""
    env = os.environ if environ is None else environ
    found = discover(str(given) if given else None, env, os.getuid())
    if found.refused is not None:
        raise UntrustedSocket(found.refused)
    if found.path is not None:
        return found.path
    return default_socket_path(env, os.getuid())
