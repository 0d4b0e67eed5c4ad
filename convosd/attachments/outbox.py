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

The daemon never sends its own files, whoever asks: :mod:`convosd.attachments.guard`
refuses them; :mod:`convosd.attachments.checks` checks the filename, MIME type and size.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from convosd import errors
from convosd.attachments.checks import base64_size, check_filename, invalid
from convosd.attachments.guard import PathGuard, Refused

#: bytes read from a caller's file at a time
COPY_CHUNK = 1 << 20
#: base64 characters decoded at a time (a multiple of 4: 768 KiB of bytes)
BASE64_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Staged:
    """The daemon's copy of one outgoing file."""

    directory: Path
    file: Path
    filename: str
    size: int

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


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
