"""The socket's directory and path: checked, made, bound with the right mode and group
(docs/PROTOCOL.md, The socket)."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import structlog

from convosd import errors

log = structlog.get_logger("convosd.server")


def prepare_socket_dir(directory: Path, *, group: int | None, own: bool) -> None:
    """Make sure nobody but this daemon's uid (and root) can replace the socket.

    A directory that does not exist is created, and one that is convosd's own (``own``: a
    default location such as ``/tmp/convosd-$UID``) must have been created by this uid;
    either way it must belong to this uid and be writable by nobody else, and it is set to
    0700, or 0750 in ``group`` when the socket is shared with a group. Any other (configured)
    directory must belong to this uid or root and not be writable by others, unless sticky
    (``/tmp`` itself). A symbolic link is refused. Every check is made on the opened
    directory, so a directory swapped in between the check and the use cannot pass.
    """
    mode = 0o750 if group is not None else 0o700
    created = False
    if own or not os.path.lexists(directory):
        try:
            directory.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(directory, 0o700)
            created = True
        except FileExistsError:
            pass
        except OSError as exc:
            raise errors.ConfigError(
                f"socket directory {directory} cannot be created: {exc.strerror}"
            ) from None
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(directory):
            raise errors.ConfigError(
                f"socket directory {directory} is a symbolic link: refused, since whoever "
                "controls the link controls the socket. Remove it, or configure the socket "
                "in a real directory"
            ) from None
        raise errors.ConfigError(
            f"socket directory {directory} cannot be opened: {exc.strerror}"
        ) from None
    try:
        info = os.fstat(fd)
        uid = os.geteuid()
        managed = own or created
        if info.st_uid != uid and (managed or info.st_uid != 0):
            raise errors.ConfigError(
                f"socket directory {directory} belongs to uid {info.st_uid}, not to this "
                f"daemon's uid {uid}: another user may have created it to take the socket. "
                "Remove it (or configure another socket path) and start again"
            )
        permissions = stat.S_IMODE(info.st_mode)
        if permissions & 0o022 and (managed or not permissions & stat.S_ISVTX):
            who = "others" if permissions & 0o002 else "its group"
            raise errors.ConfigError(
                f"socket directory {directory} is writable by {who} (mode "
                f"{permissions:04o}): they could replace the socket. Remove it, or make it "
                f"{mode:04o}, and start again"
            )
        if managed:
            if group is not None and info.st_gid != group:
                os.fchown(fd, -1, group)
            if permissions != mode:
                os.fchmod(fd, mode)
    except OSError as exc:
        raise errors.ConfigError(
            f"socket directory {directory} cannot be set to mode {mode:04o}"
            + (f" in group {group}" if group is not None else "")
            + f": {exc.strerror}"
        ) from None
    finally:
        os.close(fd)


def bind_socket(path: Path, *, group: int | None) -> socket.socket:
    """A listening-ready socket bound at ``path``, created 0600 (0660 in ``group``).

    The mode is set by the umask at ``bind()`` and the group with ``lchown``, so neither
    follows a symbolic link swapped in at ``path``; ``lstat`` then checks what was made.
    """
    mode = 0o660 if group is not None else 0o600
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        previous = os.umask(0o777 & ~mode)
        try:
            sock.bind(str(path))
        finally:
            os.umask(previous)
        if group is not None:
            os.chown(path, -1, group, follow_symlinks=False)
        info = os.lstat(path)
        if (
            not stat.S_ISSOCK(info.st_mode)
            or info.st_uid != os.geteuid()
            or stat.S_IMODE(info.st_mode) != mode
            or (group is not None and info.st_gid != group)
        ):
            raise errors.ConfigError(
                f"socket {path} was replaced or changed right after it was created "
                f"(mode {stat.S_IMODE(info.st_mode):04o}, uid {info.st_uid}): refused"
            )
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise errors.ConfigError(f"socket {path} cannot be created: {exc.strerror}") from None
    except BaseException:
        sock.close()
        raise
    return sock


def prepare_socket_path(path: Path) -> None:
    """Remove a stale socket, only if nothing listens on it."""
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
