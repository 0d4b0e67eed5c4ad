"""How a client finds the daemon's socket, and why it may refuse one it found.

Order: ``--socket``, else ``CONVOSD_SOCKET``, else the first of these that exists:

1. ``$RUNTIME_DIRECTORY/convosd.sock`` (inside a systemd unit)
2. ``/run/convosd/convosd.sock`` (the system service)
3. ``$XDG_RUNTIME_DIR/convosd/convosd.sock`` (a user's own daemon)
4. ``/tmp/convosd-$UID/convosd.sock`` (the daemon's last default; ``make run``)

A path the caller named is used as given. A path the client found itself is used only when
its directory can be trusted: not a symlink, owned by root or by the uid expected there (the
caller for ``/tmp/convosd-$UID`` and ``$XDG_RUNTIME_DIR``, the ``convosd`` service user for
``/run/convosd``), and not writable by others. Otherwise another local user could have made
the directory and put a socket of their own in it, and the client would hand them what it
sends.

:func:`candidates` is pure (paths from an environment and a uid); :func:`check_directory`
and :func:`discover` look at the file system.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SOCKET_NAME = "convosd.sock"
SERVICE_USER = "convosd"


@dataclass(frozen=True)
class Candidate:
    """A place the socket may be, and who may own its directory."""

    path: Path
    #: where the path came from, for messages (``--socket``, ``$XDG_RUNTIME_DIR``, ...)
    source: str
    #: uids trusted to own the directory (unused when the caller named the path)
    owners: frozenset[int] = frozenset()


def _first_dir(value: str | None) -> str | None:
    """systemd's ``RUNTIME_DIRECTORY`` may list several, ':'-separated."""
    if not value:
        return None
    return value.split(":")[0] or None


def explicit(flag: str | None, environ: Mapping[str, str]) -> Candidate | None:
    """The socket the caller named (``--socket``, else ``CONVOSD_SOCKET``), if any."""
    if flag:
        return Candidate(Path(flag).expanduser(), "--socket")
    named = environ.get("CONVOSD_SOCKET")
    if named:
        return Candidate(Path(named).expanduser(), "CONVOSD_SOCKET")
    return None


def candidates(
    environ: Mapping[str, str], uid: int, service_uid: int | None = None
) -> list[Candidate]:
    """The default places, in order, each with the owners its directory may have."""
    mine = frozenset({0, uid})
    service = mine | ({service_uid} if service_uid is not None else set())
    found: list[Candidate] = []
    runtime = _first_dir(environ.get("RUNTIME_DIRECTORY"))
    if runtime:
        # set by systemd for the service itself: the caller is the service user
        found.append(Candidate(Path(runtime) / SOCKET_NAME, "$RUNTIME_DIRECTORY", service))
    found.append(Candidate(Path("/run/convosd") / SOCKET_NAME, "/run/convosd", service))
    xdg = environ.get("XDG_RUNTIME_DIR")
    if xdg:
        found.append(Candidate(Path(xdg) / "convosd" / SOCKET_NAME, "$XDG_RUNTIME_DIR", mine))
    found.append(Candidate(Path(f"/tmp/convosd-{uid}") / SOCKET_NAME, "/tmp/convosd-$UID", mine))
    return found


def service_uid() -> int | None:
    """The uid of the ``convosd`` system user (systemd/convosd.sysusers.conf), if there is one."""
    try:
        return pwd.getpwnam(SERVICE_USER).pw_uid
    except KeyError:
        return None


def check_directory(directory: Path, owners: frozenset[int]) -> str | None:
    """Why ``directory`` cannot be trusted to hold the daemon's socket; None when it can."""
    try:
        st = os.lstat(directory)
    except OSError as exc:
        return f"{directory} cannot be inspected: {exc.strerror}"
    if stat.S_ISLNK(st.st_mode):
        return f"{directory} is a symlink"
    if not stat.S_ISDIR(st.st_mode):
        return f"{directory} is not a directory"
    if st.st_uid not in owners:
        allowed = ", ".join(_user(uid) for uid in sorted(owners))
        return f"{directory} is owned by {_user(st.st_uid)}, not by {allowed}"
    if st.st_mode & stat.S_IWOTH:
        return f"{directory} is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


@dataclass
class Discovery:
    """The outcome: the socket to use, or why there is none."""

    path: Path | None
    source: str | None
    #: every default place looked at, in order (empty when the caller named the path)
    tried: list[Path] = field(default_factory=list)
    #: a socket was found but refused (its directory cannot be trusted)
    refused: str | None = None


def discover(
    flag: str | None,
    environ: Mapping[str, str],
    uid: int,
    *,
    places: list[Candidate] | None = None,
) -> Discovery:
    """The socket to connect to: the caller's, else the first default place that exists."""
    named = explicit(flag, environ)
    if named is not None:
        return Discovery(named.path, named.source)
    if places is None:
        places = candidates(environ, uid, service_uid())
    tried: list[Path] = []
    for place in places:
        tried.append(place.path)
        if not os.path.lexists(place.path):
            continue
        problem = check_directory(place.path.parent, place.owners)
        if problem is not None:
            return Discovery(
                None,
                place.source,
                tried,
                refused=f"refusing the socket {place.path}: {problem}. Another user may have "
                "put it there; remove the directory, or name the socket with --socket PATH or "
                "CONVOSD_SOCKET if you trust it",
            )
        return Discovery(place.path, place.source, tried)
    return Discovery(None, None, tried)


def unreachable_hint(tried: list[Path]) -> str:
    """The end of a "daemon unreachable" message: where we looked, and how to say where."""
    places = ", ".join(str(p) for p in tried)
    return (
        f"looked in {places}; start convosd (`make run`), or name its socket with "
        "--socket PATH or CONVOSD_SOCKET"
    )
