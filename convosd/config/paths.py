"""The daemon's places: the socket and the state dir by default, and the paths derived
from the settings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from convosd.config.settings import Settings


def _first_dir(value: str | None) -> str | None:
    """systemd's ``RUNTIME_DIRECTORY``/``STATE_DIRECTORY`` may list several, ':'-separated."""
    if not value:
        return None
    return value.split(":")[0] or None


def default_socket_path(environ: Mapping[str, str], uid: int) -> Path:
    runtime = _first_dir(environ.get("RUNTIME_DIRECTORY"))
    if runtime:
        return Path(runtime) / "convosd.sock"
    xdg = environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "convosd" / "convosd.sock"
    return Path(f"/tmp/convosd-{uid}") / "convosd.sock"


def default_state_dir(environ: Mapping[str, str], home: Path) -> Path:
    state = _first_dir(environ.get("STATE_DIRECTORY"))
    if state:
        return Path(state)
    xdg = environ.get("XDG_STATE_HOME")
    if xdg:
        return Path(xdg) / "convosd"
    return home / ".local" / "state" / "convosd"


class Paths(BaseModel):
    """The resolved file-system locations of one instance."""

    model_config = ConfigDict(frozen=True)

    socket: Path
    state_dir: Path
    convos_home: Path
    #: the socket's directory is a default location (not configured, not systemd's): the
    #: daemon creates it and keeps it 0700 (0750 with socketGroup)
    own_socket_dir: bool = False


def resolve_paths(
    settings: Settings, environ: Mapping[str, str] | None = None, uid: int | None = None
) -> Paths:
    environ = os.environ if environ is None else environ
    uid = os.getuid() if uid is None else uid
    home = Path(environ.get("HOME") or Path.home())
    daemon = settings.daemon
    state_dir = (daemon.state_dir or default_state_dir(environ, home)).expanduser()
    socket = (daemon.socket or default_socket_path(environ, uid)).expanduser()
    convos_home = (daemon.convos_home or state_dir / "convos").expanduser()
    own_socket_dir = daemon.socket is None and not _first_dir(environ.get("RUNTIME_DIRECTORY"))
    return Paths(
        socket=socket.absolute(),
        state_dir=state_dir.absolute(),
        convos_home=convos_home.absolute(),
        own_socket_dir=own_socket_dir,
    )
