"""The daemon never sends its own files, whoever asks (:class:`PathGuard`): nothing under
``/proc``, ``/sys``, ``/dev``, the state dir, the CLI home or the config file's directory
(the API key is in ``/proc/self/environ``, the identity's private keys in the CLI home).
The path is checked as given and after resolving every symbolic link and ``..``, before it
is opened; the opened descriptor is checked again: where the kernel says it is; each of
its directories by device and inode (a bind mount); its file system by device and by type
(procfs or sysfs mounted anywhere, also a fresh mount); and, for a file with several hard
links, whether one of them is in a refused directory. :mod:`convosd.attachments.outbox`
opens a caller's path through it."""

from __future__ import annotations

import ctypes
import os
import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from convosd import errors
from convosd.attachments.checks import invalid

#: the pseudo file systems no caller's path may name (the daemon's environment, memory,
#: descriptors, devices)
SYSTEM_REFUSED: tuple[tuple[str, str], ...] = (
    ("/proc", "/proc"),
    ("/sys", "/sys"),
    ("/dev", "/dev"),
)
#: the most entries a hard-link search walks before it gives up (and refuses)
LINK_SEARCH_MAX = 100_000
#: pseudo file systems refused wherever they are mounted (``statfs`` ``f_type``): a fresh
#: procfs mount has a device of its own, so only its type gives it away
PSEUDO_FS: dict[int, str] = {
    0x9FA0: "/proc",  # PROC_SUPER_MAGIC
    0x62656572: "/sys",  # SYSFS_MAGIC
    0x64626720: "/sys",  # DEBUGFS_MAGIC
    0x74726163: "/sys",  # TRACEFS_MAGIC
    0x73636673: "/sys",  # SECURITYFS_MAGIC
}


@dataclass(frozen=True, slots=True)
class Refused:
    """A directory none of whose files a caller's path may name (or one file); ``why``
    names it in the refusal."""

    path: Path
    why: str


def refused_locations(
    state_dir: Path, convos_home: Path, config_path: Path | None
) -> tuple[Refused, ...]:
    """The daemon's own places: the system's pseudo file systems, the state dir, the CLI
    home and the directory of the config file (its secrets, such as an env file, sit
    beside it)."""
    places = [Refused(Path(path), why) for path, why in SYSTEM_REFUSED]
    places.append(Refused(state_dir, "the daemon's state dir"))
    places.append(Refused(convos_home, "the CLI home"))
    if config_path is not None:
        config = Path(os.path.abspath(config_path))
        if config.parent == config.parent.parent:  # a config at / refuses itself, not all
            places.append(Refused(config, "the daemon's config file"))
        else:
            places.append(Refused(config.parent, "the directory of the daemon's config file"))
    return tuple(places)


@dataclass(frozen=True, slots=True)
class _Root:
    names: tuple[str, ...]  # as configured (absolute, normalized) and resolved
    ident: tuple[int, int] | None  # (st_dev, st_ino) of the directory, when it exists
    why: str
    system: bool  # a pseudo file system (/proc, /sys, /dev)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class PathGuard:
    """Refuses a caller's path that names one of the daemon's own files (:func:`refused_locations`).

    Called in the worker thread that opens the file: :meth:`check_name` before opening,
    :meth:`check_open` on the descriptor. The refused places are looked at again on every
    check (a state dir that moved, a mount that came)."""

    def __init__(self, refused: Sequence[Refused]) -> None:
        self.refused = tuple(refused)

    def _roots(self) -> list[_Root]:
        system = {path for path, _ in SYSTEM_REFUSED}
        roots = []
        for place in self.refused:
            given = os.path.normpath(os.path.abspath(place.path))
            real = os.path.realpath(given)
            try:
                info = os.stat(real)
                ident: tuple[int, int] | None = (info.st_dev, info.st_ino)
            except OSError:
                ident = None
            roots.append(_Root((given, real), ident, place.why, given in system))
        return roots

    @staticmethod
    def _refuse(why: str) -> errors.InvalidParams:
        return invalid(
            "path",
            f"is under {why}: the daemon never sends its own files (/proc, /sys, /dev, its "
            "state dir, the CLI home, its config file's directory), whoever asks",
        )

    def _check_names(self, names: Sequence[str], roots: Sequence[_Root]) -> None:
        matches = [
            (len(r), root)
            for root in roots
            for r in root.names
            if any(_under(name, r) for name in names)
        ]
        if matches:  # the nearest place names it (the CLI home, not the state dir around it)
            raise self._refuse(max(matches, key=lambda match: match[0])[1].why)

    def check_name(self, path: str) -> None:
        """The path as given (``..`` taken lexically) and with every link resolved."""
        roots = self._roots()
        self._check_names((os.path.normpath(path),), roots)
        self._check_names((os.path.realpath(path),), roots)

    def check_open(self, fd: int, info: os.stat_result) -> None:
        """The opened file: where it really is, what holds it, which inode it is."""
        roots = self._roots()
        try:
            where: str | None = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # no /proc: the check by name before opening stands alone
            where = None
        if where is not None and where.startswith("/"):
            self._check_names((where,), roots)
            idents = {root.ident: root for root in roots if root.ident is not None}
            for directory in _parents(where):
                try:
                    held = os.lstat(directory)
                except OSError:
                    continue
                root = idents.get((held.st_dev, held.st_ino))
                if root is not None:  # the same directory by another name: a bind mount
                    raise self._refuse(root.why)
        magic = _fs_type(fd)
        if magic in PSEUDO_FS:  # procfs or sysfs mounted anywhere, by any means
            raise self._refuse(PSEUDO_FS[magic])
        same = next((r for r in roots if r.ident == (info.st_dev, info.st_ino)), None)
        if same is not None:  # a refused file itself, by any name
            raise self._refuse(same.why)
        for root in roots:
            # a file of that pseudo file system, mounted (or bind-mounted) anywhere
            pseudo = root.system and root.ident is not None and _is_mount(root.names[1])
            if pseudo and root.ident is not None and info.st_dev == root.ident[0]:
                raise self._refuse(root.why)
        if info.st_nlink > 1:
            self._check_links(info, [r for r in roots if not r.system and r.ident is not None])

    def _check_links(self, info: os.stat_result, roots: Sequence[_Root]) -> None:
        """A file with several names: none of them may be in a refused directory."""
        wanted = (info.st_dev, info.st_ino)
        seen = 0
        # the deepest first: a link in the CLI home is named so, not by the state dir around it
        for root in sorted(roots, key=lambda r: len(r.names[1]), reverse=True):
            assert root.ident is not None
            if root.ident[0] != info.st_dev:
                continue  # a hard link never crosses file systems
            for entry in _walk(root.names[1], info.st_dev):
                seen += 1
                if seen > LINK_SEARCH_MAX:
                    raise invalid(
                        "path",
                        "has several hard links and the daemon's own directories are too "
                        "large to check that none of them is there: copy the file first",
                    )
                if entry == wanted:
                    raise self._refuse(root.why)


class _StatFs(ctypes.Structure):
    # struct statfs begins with f_type (a long on Linux's 64-bit ABIs); the rest is room
    _fields_ = (("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 256))


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _fs_type(fd: int) -> int | None:
    """The ``f_type`` magic of the file system holding ``fd`` (``fstatfs``); None when it
    cannot be had (then the other checks stand alone)."""
    if _LIBC is None:
        return None
    buf = _StatFs()
    if _LIBC.fstatfs(fd, ctypes.byref(buf)) != 0:
        return None
    return int(buf.f_type) & 0xFFFFFFFF


def _parents(path: str) -> Iterator[str]:
    """``path``'s directories, nearest first, up to ``/``."""
    current = os.path.dirname(path)
    while True:
        yield current
        parent = os.path.dirname(current)
        if parent == current:
            return
        current = parent


def _is_mount(path: str) -> bool:
    """A mount point of its own (a /dev that is a plain directory of / is no file system)."""
    try:
        return os.lstat(path).st_dev != os.lstat(os.path.dirname(path) or "/").st_dev
    except OSError:
        return False


def _walk(top: str, device: int) -> Iterator[tuple[int, int]]:
    """(st_dev, st_ino) of every file under ``top`` on ``device``; links are not followed."""
    stack = [top]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_dev != device:
                continue
            if stat.S_ISDIR(info.st_mode):
                stack.append(entry.path)
            yield (info.st_dev, info.st_ino)
