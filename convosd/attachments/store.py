"""Downloaded attachments under ``<state dir>/attachments``: the one owner of that layout.

``attachments/<messageId>/<filename>`` holds one downloaded file (directories 0750, files
0640, group ``socketGroup`` when set) and ``attachments/<messageId>/.meta.json`` what
``attachment.download`` answers about it (written last: a directory without it is an
unfinished download and is cleaned up). A filename is what the sender chose, so it is
sanitised (:func:`safe_filename`) and can never name the metadata file (it never starts with
``.``). A message id is hex (checked again here), so it cannot leave the directory either.

The CLI writes the file itself (``download-attachment --output``), to a fresh temporary name
in the message's directory; the store checks that what it wrote is a regular file, sets its
mode and group, and renames it into place.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DIR_MODE = 0o750
FILE_MODE = 0o640
#: bytes of UTF-8 a stored filename may have (NAME_MAX is 255 on Linux)
MAX_NAME_BYTES = 200
FALLBACK_NAME = "attachment"
META = ".meta.json"
_ID = re.compile(r"^[0-9a-fA-F]{1,128}$")


class UnsafeMessageId(ValueError):
    pass


def check_message_id(message_id: str) -> str:
    if not _ID.match(message_id):
        raise UnsafeMessageId(f"not a message id: {message_id[:80]!r}")
    return message_id


def safe_filename(name: str | None) -> str:
    """``name`` reduced to a harmless file name: its last path component (``/`` or ``\\``),
    without control or format characters (NUL, newlines, bidi overrides), not starting with
    ``.`` or a space, at most :data:`MAX_NAME_BYTES` bytes (the extension kept when short);
    :data:`FALLBACK_NAME` when nothing is left."""
    text = name or ""
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf", "Cs"))
    text = re.split(r"[/\\]", text)[-1].strip()
    text = text.lstrip(". ")
    if not text:
        return FALLBACK_NAME
    if len(text.encode()) > MAX_NAME_BYTES:
        stem, dot, ext = text.rpartition(".")
        keep = f".{ext}" if dot and stem and 0 < len(ext.encode()) <= 16 else ""
        budget = MAX_NAME_BYTES - len(keep.encode())
        head = text[: len(text) - len(keep)] if keep else text
        head = head.encode()[:budget].decode(errors="ignore").rstrip(". ")
        text = (head + keep) if head else FALLBACK_NAME
    return text


@dataclass(frozen=True, slots=True)
class StoredAttachment:
    message_id: str
    filename: str
    mime_type: str | None
    size: int
    path: Path


class AttachmentStore:
    def __init__(self, state_dir: Path, *, gid: int | None = None) -> None:
        self.root = state_dir / "attachments"
        self.gid = gid

    def _dir(self, message_id: str) -> Path:
        return self.root / check_message_id(message_id)

    def _mkdir(self, path: Path) -> None:
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if path.is_symlink() or not path.is_dir():
                raise OSError(f"{path} exists and is not a directory") from None
        os.chmod(path, DIR_MODE)
        if self.gid is not None:
            os.chown(path, -1, self.gid)

    def lookup(self, message_id: str) -> StoredAttachment | None:
        """The stored file of ``message_id``; None when there is none (or only an unfinished
        one)."""
        directory = self._dir(message_id)
        try:
            meta: dict[str, Any] = json.loads((directory / META).read_text("utf-8"))
            path = directory / safe_filename(str(meta["filename"]))
            info = path.lstat()
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        mime = meta.get("mimeType")
        return StoredAttachment(
            message_id, path.name, mime if isinstance(mime, str) else None, info.st_size, path
        )

    def begin(self, message_id: str) -> Path:
        """A fresh path inside the message's directory for the CLI to write to."""
        self._mkdir(self.root)
        directory = self._dir(message_id)
        self._mkdir(directory)
        return directory / f".partial-{secrets.token_hex(8)}"

    def finish(
        self, message_id: str, partial: Path, *, filename: str | None, mime_type: str | None
    ) -> StoredAttachment:
        """Move what the CLI wrote at ``partial`` into place under its sanitised name."""
        directory = self._dir(message_id)
        if partial.parent != directory:
            raise ValueError("not a partial file of this message")
        info = partial.lstat()
        if not stat.S_ISREG(info.st_mode):
            self.discard(message_id, partial)
            raise OSError("the CLI did not write a regular file")
        name = safe_filename(filename)
        os.chmod(partial, FILE_MODE)
        if self.gid is not None:
            os.chown(partial, -1, self.gid)
        final = directory / name
        os.replace(partial, final)
        meta = directory / f".meta-{secrets.token_hex(4)}.tmp"
        fd = os.open(meta, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"filename": name, "mimeType": mime_type}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(meta, directory / META)
        return StoredAttachment(message_id, name, mime_type, final.stat().st_size, final)

    def discard(self, message_id: str, partial: Path) -> None:
        """A failed download: its partial file goes, and the directory if nothing else is
        stored in it."""
        partial.unlink(missing_ok=True)
        directory = self._dir(message_id)
        if not (directory / META).exists():
            shutil.rmtree(directory, ignore_errors=True)

    def total_bytes(self) -> int:
        """The bytes of every regular file under ``attachments/`` (partial files included)."""
        total = 0
        for directory, _dirs, files in os.walk(self.root):
            for name in files:
                try:
                    info = os.lstat(os.path.join(directory, name))
                except OSError:
                    continue
                if stat.S_ISREG(info.st_mode):
                    total += info.st_size
        return total

    def message_ids(self) -> list[str]:
        try:
            return sorted(p.name for p in self.root.iterdir() if _ID.match(p.name))
        except FileNotFoundError:
            return []

    def remove(self, message_id: str) -> None:
        shutil.rmtree(self._dir(message_id), ignore_errors=True)

    def remove_all(self) -> int:
        """Every stored attachment (explode, reset). Returns how many went."""
        ids = self.message_ids()
        shutil.rmtree(self.root, ignore_errors=True)
        return len(ids)

    def prune(self, keep: Callable[[str], bool]) -> int:
        """Remove the attachments whose message ``keep`` rejects (retention)."""
        removed = 0
        for message_id in self.message_ids():
            if not keep(message_id):
                self.remove(message_id)
                removed += 1
        return removed
