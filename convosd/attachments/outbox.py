"""Outgoing attachments: the daemon's private copy of each file ``message.sendAttachment``
sends, and the checks on what a caller hands it.

The CLI's ``send-attachment`` reads a file by path and sends its base name as the
attachment's filename. convosd never hands the CLI a caller's path: it copies the bytes (from
the request's base64 ``data``, or from the caller's ``path``) into a file of its own,
``<state dir>/outbox/<random>/<filename>`` (directory 0700, file 0600, created exclusively),
calls the CLI with that, and removes the directory after, whatever happened. Leftovers of a
crash are removed at the next start (:meth:`Outbox.clean`).

Memory: base64 is decoded piece by piece straight into the copy, and a path is copied in
chunks, so the file is never held whole in memory beside the request's own frame. The file
I/O runs in a worker thread: the event loop never blocks on it.

A caller's ``path`` is opened without following a final symbolic link (``O_NOFOLLOW``) and
non-blocking (a FIFO cannot hang the daemon), must be a regular file owned by the caller's
uid or the daemon's, and is read to at most ``maxAttachmentBytes`` + 1 bytes: a file that is,
or grows while read, larger than the limit is refused, never sent cut short.

The daemon never sends its own files, whoever asks (:class:`PathGuard`): nothing under
``/proc``, ``/sys``, ``/dev``, the state dir, the CLI home or the config file's directory
(the API key is in ``/proc/self/environ``, the identity's private keys in the CLI home).
The path is checked as given and after resolving every symbolic link and ``..``, before it
is opened; the opened descriptor is checked again: where the kernel says it is; each of
its directories by device and inode (a bind mount); its file system by device and by type
(procfs or sysfs mounted anywhere, also a fresh mount); and, for a file with several hard
links, whether one of them is in a refused directory.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
import stat
import sys
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from convosd import errors
from convosd.text import name_problem

#: bytes read from a caller's file at a time
COPY_CHUNK = 1 << 20
#: base64 characters decoded at a time (a multiple of 4: 768 KiB of bytes)
BASE64_CHUNK = 1 << 20
#: the longest file name most file systems take (bytes of UTF-8)
NAME_MAX = 255
MIME_MAX = 255

_TOKEN = r"[A-Za-z0-9!#$&^_.+-]"
_MIME = re.compile(
    rf"[A-Za-z0-9]{_TOKEN}{{0,126}}/[A-Za-z0-9]{_TOKEN}{{0,126}}"
    rf'(?:[ \t]*;[ \t]*{_TOKEN}+=(?:{_TOKEN}+|"[^"\\\x00-\x1f\x7f]*"))*'
)


def invalid(param: str, problem: str) -> errors.InvalidParams:
    """-32602 naming the param, in the shape of every other params error (``data.errors``).
    The problem never repeats what the caller sent (it may be a file's content)."""
    return errors.InvalidParams(
        f"{param}: {problem}", data={"errors": [{"param": param, "problem": problem}]}
    )


def check_filename(name: str, param: str = "filename") -> str:
    """A file name the attachment may carry: one path component, 1..255 bytes of UTF-8,
    a name by convosd.text's rule (no NUL, control character, lone surrogate or bidi
    override), not ``.`` or ``..``."""
    if not name:
        raise invalid(param, "is empty")
    problem = name_problem(name)
    if problem is not None:
        raise invalid(param, problem)
    if "/" in name:
        raise invalid(param, "must be a file name, not a path (it contains '/')")
    if name in (".", ".."):
        raise invalid(param, f"cannot be {name!r}")
    size = len(name.encode("utf-8"))
    if size > NAME_MAX:
        raise invalid(param, f"is {size} bytes of UTF-8; at most {NAME_MAX}")
    return name


def check_mime_type(value: str) -> str:
    """``type/subtype`` with optional ``; name=value`` parameters (RFC 6838 characters)."""
    if len(value) > MIME_MAX or not _MIME.fullmatch(value):
        raise invalid("mimeType", "must be a MIME type such as image/png (type/subtype)")
    return value


def base64_size(data: str, limit: int) -> int:
    """The number of bytes standard base64 ``data`` decodes to, checked against ``limit``
    before anything is decoded; the alphabet is checked while decoding."""
    if not data:
        raise invalid("data", "is empty")
    if len(data) % 4:
        raise invalid("data", "is not standard base64 (its length is not a multiple of 4)")
    size = len(data) // 4 * 3 - (2 if data.endswith("==") else 1 if data.endswith("=") else 0)
    if size > limit:
        raise invalid("data", f"decodes to {size} bytes; at most {limit} (maxAttachmentBytes)")
    if size == 0:
        raise invalid("data", "decodes to no bytes: an attachment cannot be empty")
    return size


@dataclass(frozen=True, slots=True)
class Staged:
    """The daemon's copy of one outgoing file."""

    directory: Path
    file: Path
    filename: str
    size: int

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


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


class Outbox:
    """The private copies of outgoing attachments under ``root`` (``<state dir>/outbox``);
    ``refused``: the places a caller's path may not name (:func:`refused_locations`)."""

    def __init__(self, root: Path, max_bytes: int, refused: Sequence[Refused] = ()) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.guard = PathGuard(refused)

    def clean(self) -> int:
        """Remove every copy left behind (a crash while a send ran); how many there were."""
        try:
            entries = list(self.root.iterdir())
        except FileNotFoundError:
            return 0
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()
        return len(entries)

    def _create(self, filename: str) -> tuple[Path, Path, BinaryIO]:
        """A new private directory and the copy's file in it, opened for writing."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory = self.root / secrets.token_hex(16)
            directory.mkdir(mode=0o700)
        except OSError as exc:
            raise _own_failure(exc) from None
        file = directory / filename
        try:
            fd = os.open(
                file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
        except OSError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise _own_failure(exc) from None
        return directory, file, os.fdopen(fd, "wb")

    async def from_base64(self, data: str, filename: str) -> Staged:
        """Decode ``data`` (standard base64, strict) into a new copy named ``filename``."""
        size = base64_size(data, self.max_bytes)
        directory, file, out = self._create(filename)
        staged = Staged(directory, file, filename, size)
        try:
            await asyncio.to_thread(_decode_into, data, out)
        except OSError as exc:
            staged.remove()
            raise _own_failure(exc) from None
        except BaseException:
            staged.remove()
            raise
        return staged

    async def from_path(self, path: str, filename: str | None, owners: Collection[int]) -> Staged:
        """Copy the regular file at ``path`` (absolute; owned by one of ``owners``) into a
        new copy, named ``filename`` or else the file's own name."""
        if "\x00" in path:
            raise invalid("path", "contains NUL")
        if not os.path.isabs(path):
            raise invalid("path", "must be absolute (the daemon does not share your directory)")
        if filename is None:
            if path.endswith("/"):
                raise invalid("path", "must name a file (it ends with '/')")
            filename = check_filename(os.path.basename(path), "path")
        directory, file, out = self._create(filename)
        try:
            # One thread call opens, checks and copies, and closes both files whatever
            # happens: a cancelled request cannot leave a descriptor behind.
            size = await asyncio.to_thread(
                _copy_path, path, out, self.max_bytes, frozenset(owners), self.guard
            )
        except OSError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise _own_failure(exc) from None
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return Staged(directory, file, filename, size)


def _own_failure(exc: OSError) -> errors.NotReady:
    """The daemon's own side of staging failed (its state dir): not the caller's fault."""
    return errors.NotReady(
        f"cannot write the attachment's copy under the state dir: {exc.strerror}"
    )


def _decode_into(data: str, out: BinaryIO) -> None:
    """Strict standard base64 (no white space, padding only at the end), piece by piece."""
    with out:
        length = len(data)
        for start in range(0, length, BASE64_CHUNK):
            piece = data[start : start + BASE64_CHUNK]
            if start + BASE64_CHUNK < length and "=" in piece:
                raise invalid("data", "is not standard base64 (padding before the end)")
            try:
                raw = binascii.a2b_base64(piece, strict_mode=True)
            except ValueError:
                raise invalid("data", "is not standard base64") from None
            out.write(raw)


_KINDS = (
    (stat.S_ISDIR, "is a directory"),
    (stat.S_ISCHR, "is a character device"),
    (stat.S_ISBLK, "is a block device"),
    (stat.S_ISFIFO, "is a FIFO"),
    (stat.S_ISSOCK, "is a socket"),
    (stat.S_ISLNK, "is a symbolic link (it is not followed)"),
)


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    for test, problem in _KINDS:
        if test(mode):
            return problem
    return "is not a regular file"


def _open_source(path: str, limit: int, owners: frozenset[int], guard: PathGuard) -> int:
    """The caller's file, opened read-only and checked on its descriptor."""
    guard.check_name(path)  # first: whether a refused file exists is not told either
    try:
        # lstat first so that a device is refused without being opened at all (opening
        # some devices acts); the descriptor's fstat below is what counts.
        early = os.lstat(path)
    except OSError as exc:
        raise _open_error(exc) from None
    problem = _not_regular(early.st_mode)
    if problem is not None:
        raise invalid("path", problem)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _open_error(exc) from None
    try:
        info = os.fstat(fd)
        guard.check_open(fd, info)
        problem = _not_regular(info.st_mode)
        if problem is not None:
            raise invalid("path", problem)
        if info.st_uid not in owners:
            raise invalid(
                "path",
                f"belongs to uid {info.st_uid}: only files of the caller's uid or the "
                "daemon's are sent",
            )
        if info.st_size > limit:
            raise invalid("path", f"is {info.st_size} bytes; at most {limit} (maxAttachmentBytes)")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_error(exc: OSError) -> errors.InvalidParams:
    if exc.errno == errno.ELOOP:
        return invalid("path", "is a symbolic link (it is not followed)")
    if exc.errno == errno.ENOENT:
        return invalid("path", "does not exist")
    if exc.errno == errno.ENOTDIR:
        return invalid("path", "has a component that is not a directory")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return invalid("path", "cannot be read by the daemon (permission denied)")
    if exc.errno == errno.ENXIO:
        return invalid("path", "is not a regular file")
    if exc.errno == errno.ENAMETOOLONG:
        return invalid("path", "is too long")
    return invalid("path", f"cannot be opened: {exc.strerror}")


def _copy_path(
    path: str, out: BinaryIO, limit: int, owners: frozenset[int], guard: PathGuard
) -> int:
    """Open the caller's file, check it and copy it into ``out``; both are closed after."""
    with out:
        source = _open_source(path, limit, owners, guard)
        return copy_at_most(source, out, limit)


def copy_at_most(source: int, out: BinaryIO, limit: int) -> int:
    """Copy at most ``limit`` + 1 bytes from the descriptor ``source`` (closed after) into
    ``out``; more than ``limit`` is refused (the file grew, or said a smaller size than it
    gives, as a /proc file does)."""
    total = 0
    try:
        while total <= limit:
            try:
                chunk = os.read(source, min(COPY_CHUNK, limit + 1 - total))
            except OSError as exc:
                raise invalid("path", f"cannot be read: {exc.strerror}") from None
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise invalid(
                    "path", f"grew past {limit} bytes while it was read (maxAttachmentBytes)"
                )
            out.write(chunk)  # an OSError here is the daemon's own (its state dir)
    finally:
        os.close(source)
    if total == 0:
        raise invalid("path", "is empty: an attachment cannot be empty")
    return total
