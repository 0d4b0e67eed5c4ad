"""The checks on what a caller hands ``message.sendAttachment``: the attachment's filename,
its MIME type, the size its base64 ``data`` decodes to; each refusal is -32602 naming the
param, never repeating what the caller sent (it may be a file's content)."""

from __future__ import annotations

import re

from convosd import errors
from convosd.text import name_problem

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
