"""JSON text for the wire and the journal: compact UTF-8, and always encodable.

A lone surrogate can reach us inside a JSON string (``"\\ud800"`` is valid JSON); written
unescaped it would not encode as UTF-8. Such values are written with ``\\u`` escapes instead.
"""

from __future__ import annotations

import json
from typing import Any


class RawJson:
    """JSON text written as it is (an event body as the journal stored it, which
    :func:`dumps` wrote): the wire's orjson splices it in; :func:`dumps` decodes it first,
    which gives the same text."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"RawJson({self.text!r})"


def _decode_raw(value: Any) -> Any:
    if isinstance(value, RawJson):
        return json.loads(value.text)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_decode_raw)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=_decode_raw)
    return text


def has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
