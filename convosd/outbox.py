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
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
from collections.abc import Collection
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


class Outbox:
    """The private copies of outgoing attachments under ``root`` (``<state dir>/outbox``)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

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
            size = await asyncio.to_thread(_copy_path, path, out, self.max_bytes, frozenset(owners))
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


def _open_source(path: str, limit: int, owners: frozenset[int]) -> int:
    """The caller's file, opened read-only and checked on its descriptor."""
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


def _copy_path(path: str, out: BinaryIO, limit: int, owners: frozenset[int]) -> int:
    """Open the caller's file, check it and copy it into ``out``; both are closed after."""
    with out:
        source = _open_source(path, limit, owners)
        return _copy_from(source, out, limit)


def _copy_from(source: int, out: BinaryIO, limit: int) -> int:
    """Copy at most ``limit`` + 1 bytes; more than ``limit`` is refused (it grew)."""
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
