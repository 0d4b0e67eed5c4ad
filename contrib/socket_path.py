"""Where the add-ons in contrib/ find convosd's socket: one function, so they all agree."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from convosd.config import default_socket_path


def socket_path(given: str | Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """``--socket`` when given, else ``$CONVOSD_SOCKET``, else the daemon's default path."""
    env = os.environ if environ is None else environ
    if given:
        return Path(given).expanduser()
    if env.get("CONVOSD_SOCKET"):
        return Path(env["CONVOSD_SOCKET"]).expanduser()
    return default_socket_path(env, os.getuid())
