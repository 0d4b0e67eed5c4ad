"""JSON text for the wire and the journal: compact UTF-8, and always encodable.

A lone surrogate can reach us inside a JSON string (``"\\ud800"`` is valid JSON); written
unescaped it would not encode as UTF-8. Such values are written with ``\\u`` escapes instead.

A value made only of strings, integers, booleans, None, lists and string-keyed dicts (an
event's fields, say) is written by orjson, whose text for those is the standard library's
byte for byte (tests/test_wire_json.py); anything else (a float, a RawJson, a subclass) and
what orjson refuses (a lone surrogate, an integer past 64 bits) by the standard library.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

#: nesting from which :func:`loads` leaves a text to the standard library (whose recursion
#: limit decides how deep it reads)
_MAX_FAST_NESTING = 256
#: nesting past which :func:`dumps` leaves a value to the standard library
_PLAIN_DEPTH = 32


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


def _plain(value: Any, depth: int = 0) -> bool:
    """Whether orjson writes ``value`` as the standard library does (exact types only:
    a float's text may differ, and orjson writes NaN as null). Deep values go to the
    standard library, which alone decides how deep it writes."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if depth >= _PLAIN_DEPTH:
        return False
    if kind is dict:
        for key in value:
            if type(key) is not str:
                return False
        items = value.values()
    elif kind is list:
        items = value
    else:
        return False
    for item in items:  # the scalars here, without a call each (an event is mostly those)
        kind = type(item)
        if not (kind is str or item is None or kind is int or kind is bool) and not _plain(
            item, depth + 1
        ):
            return False
    return True


def dumps(value: Any) -> str:
    if _plain(value):
        try:
            return orjson.dumps(value).decode("utf-8")
        except orjson.JSONEncodeError:  # a lone surrogate, an integer past 64 bits
            pass
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


def _has_float(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        value = value.values()
    elif kind is not list:
        return kind is float
    for item in value:
        kind = type(item)
        if kind is float or ((kind is dict or kind is list) and _has_float(item)):
            return True
    return False


def loads(data: bytes) -> Any:
    """The JSON value of ``data`` exactly as ``json.loads`` reads it (and the same errors:
    ValueError or UnicodeDecodeError), through orjson where it reads the same value: a
    stream line is read several times as fast. orjson refuses NaN, 1e400, lone surrogates
    and a BOM, and reads an integer past 64 bits as a float: a text with any of those, or
    with a float at all, or deep, is read by the standard library."""
    if data.count(b"[") + data.count(b"{") < _MAX_FAST_NESTING:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # the standard library reads it or says why not
        else:
            if not _has_float(value):
                return value
    return json.loads(data)
