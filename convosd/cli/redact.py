"""Attachment key material never crosses the CLI boundary.

A remote attachment is encrypted with a key (``secret``), a ``salt`` and a ``nonce``, and
identified by the ``contentDigest`` of its ciphertext. The CLI should never print them, but
0.10.2 printed a reply that carries a remote attachment as the raw JSON of the decoded
attachment, key material included, inside the message text. Every text convosd takes from
the CLI (one-shot stdout and stderr, the long-lived children's stdout lines and stderr) goes
through :func:`redact_text` or :func:`redact_line` before anything parses, journals or logs
it, whatever the CLI version.

What is replaced, at any JSON escaping depth (``"secret":``, ``\\"secret\\":``, ...), is the
value of one of those keys: a string, a flat object (a ``Uint8Array`` as JSON is
``{"0":12,...}``, a Buffer ``{"type":"Buffer","data":[...]}``), a flat array or a bare token.
The value becomes the string ``[redacted]`` at the key's own quoting level, so JSON stays
JSON. Node's ``util.inspect`` form (``secret: Uint8Array(32) [ ... ]``, ``salt: '...'``,
``<Buffer ...>``) is redacted too. A message whose text itself contains such a quoted key
loses that value as well: the price of never letting a key through.
"""

from __future__ import annotations

import re
from typing import Final

KEYS: Final = ("secret", "salt", "nonce", "contentDigest")
REDACTED: Final = "[redacted]"

_KEYS = r"secret|salt|nonce|contentDigest"
# A quoted key at any escaping depth: q is the quote with its escaping (", \", \\\", ...).
_JSON = (
    r"(?P<q>(?:\\)*\")(?P<key>" + _KEYS + r")(?P=q)(?P<sep>\s*:\s*)"
    r"(?:(?P=q)[^\"\\]*(?P=q)"  # a string value at the same level
    r"|\{[^{}]*\}"  # a flat object (Uint8Array / Buffer as JSON)
    r"|\[[^\[\]]*\]"  # a flat array
    r"|[^\s,}\]\"\\]+)"  # a bare token (number, null, ...)
)
# Node's util.inspect (error texts and logs).
_INSPECT = (
    r"\b(?P<ikey>" + _KEYS + r")(?P<isep>: )"
    r"(?:Uint8Array\(\d+\) \[[^\]]*\]|<Buffer[^>]*>|'[^'\\]*'|\[[^\]]*\])"
)
_PATTERN = _JSON + "|" + _INSPECT
_TEXT_RE: Final = re.compile(_PATTERN)
_BYTES_RE: Final = re.compile(_PATTERN.encode())
_TEXT_HINT: Final = re.compile("|".join(KEYS))
_BYTES_HINT: Final = re.compile("|".join(KEYS).encode())


def _text_sub(match: re.Match[str]) -> str:
    q = match.group("q")
    if q is not None:
        return f"{q}{match.group('key')}{q}{match.group('sep')}{q}{REDACTED}{q}"
    return f"{match.group('ikey')}{match.group('isep')}{REDACTED}"


def _bytes_sub(match: re.Match[bytes]) -> bytes:
    q = match.group("q")
    marker = REDACTED.encode()
    if q is not None:
        return q + match.group("key") + q + match.group("sep") + q + marker + q
    return match.group("ikey") + match.group("isep") + marker


def redact_text(text: str) -> str:
    """``text`` with the values of ``secret``, ``salt``, ``nonce`` and ``contentDigest``
    replaced by ``[redacted]``."""
    if _TEXT_HINT.search(text) is None:
        return text
    return _TEXT_RE.sub(_text_sub, text)


def redact_line(line: bytes) -> bytes:
    """:func:`redact_text` for one raw line of a child's output."""
    if _BYTES_HINT.search(line) is None:
        return line
    return _BYTES_RE.sub(_bytes_sub, line)
