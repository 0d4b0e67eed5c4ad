"""JSON-RPC 2.0 framing and envelopes over NDJSON: pure, no I/O (docs/PROTOCOL.md, The socket).

:func:`parse_frame` turns one line into what must be done with it: a parse error, one
request, or a batch whose elements are checked one by one (the specification wants an
answer per element; one bad element must not reject the others).

The wire is read and written with orjson, except where orjson would change the answer: a
line orjson refuses or could read differently (integers of 19 digits or more, which orjson
turns into floats past 64 bits; ``NaN``/``Infinity``; lone surrogates; nesting deep enough
to reach the standard library's recursion limit) is read by the standard library, and so is
its answer written; an answer orjson cannot write (integers past 64 bits, non-string keys,
lone surrogates) or writes differently (floats the standard library writes with an
exponent: ``1e-05``, not ``0.00001``) is written by the standard library. Either way the
bytes are the standard library's.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

from convosd.jsonutil import RawJson, dumps

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

STANDARD_KINDS = {
    PARSE_ERROR: "PARSE_ERROR",
    INVALID_REQUEST: "INVALID_REQUEST",
    METHOD_NOT_FOUND: "METHOD_NOT_FOUND",
    INVALID_PARAMS: "INVALID_PARAMS",
    INTERNAL_ERROR: "INTERNAL",
}

_DECODER = json.JSONDecoder()
_NO_ID = object()
#: an integer orjson would read as a float (past 64 bits); also matches inside strings and
#: long fractions, which only sends the line to the standard library
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
#: below this many opening brackets no line nests deep enough to differ
_MAX_FAST_NESTING = 256
#: a float orjson writes otherwise than the standard library: below 1e-4 orjson writes
#: ``0.00001`` (``1e-05``) or a one-digit exponent (``4.2e-7``, not ``4.2e-07``), so the
#: text holds ``.0000`` or ``e-``; matched where a value starts, so hex ids inside strings
#: do not trip it
_FLOAT_DIFFERS = re.compile(rb"[:,\[]-?(?:0\.0000|[0-9]+(?:\.[0-9]+)?e[-+]?[0-9](?![0-9]))")


@dataclass(frozen=True, slots=True)
class Request:
    """A well-formed request. ``id`` is absent (a notification) when ``notification``."""

    method: str
    params: dict[str, Any] | list[Any] | None
    id: Any
    notification: bool


@dataclass(frozen=True, slots=True)
class Invalid:
    """An element that is not a valid request: answered with ``code`` and ``id``."""

    code: int
    message: str
    id: Any = None


Item = Request | Invalid


@dataclass(frozen=True, slots=True)
class Frame:
    """One line: a single item, or a batch (``batch`` True, even for one element)."""

    items: tuple[Item, ...]
    batch: bool
    #: read by the standard library (orjson refused or could change it): answered by it too
    exotic: bool = False


def _valid_id(value: Any) -> bool:
    """A string, a number or null. NaN and the infinities (``NaN``, ``Infinity``, ``1e400``)
    are not numbers JSON can carry back: echoed, the answer would not be valid JSON."""
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or (isinstance(value, str | int) and not isinstance(value, bool))


def check_envelope(value: Any) -> Item:
    if not isinstance(value, dict):
        return Invalid(INVALID_REQUEST, "Invalid Request")
    raw_id = value.get("id", _NO_ID)
    has_id = raw_id is not _NO_ID
    answer_id = raw_id if has_id and _valid_id(raw_id) else None
    if value.get("jsonrpc") != "2.0":
        return Invalid(INVALID_REQUEST, 'Invalid Request: jsonrpc must be "2.0"', answer_id)
    method = value.get("method")
    if not isinstance(method, str):
        return Invalid(INVALID_REQUEST, "Invalid Request: method must be a string", answer_id)
    if has_id and not _valid_id(raw_id):
        return Invalid(INVALID_REQUEST, "Invalid Request: id must be a string or a number")
    params = value.get("params")
    if params is not None and not isinstance(params, dict | list):
        return Invalid(
            INVALID_REQUEST, "Invalid Request: params must be an object or absent", answer_id
        )
    return Request(
        method=method, params=params, id=raw_id if has_id else None, notification=not has_id
    )


class FrameError(ValueError):
    """The line is not one JSON text: answered with -32700 and ``id: null``."""


def decode(line: bytes) -> Any:
    """The line's JSON value as the standard library reads it."""
    return decode_wire(line)[0]


def decode_wire(line: bytes) -> tuple[Any, bool]:
    """``(value, exotic)``: orjson when it reads the line as the standard library would,
    else the standard library (``exotic`` True)."""
    if (
        line.count(b"[") + line.count(b"{") < _MAX_FAST_NESTING
        and _LONG_DIGITS.search(line) is None
    ):
        try:
            return orjson.loads(line), False
        except orjson.JSONDecodeError:
            pass  # the standard library says why (or reads NaN, 1e400, "\ud800")
    return _decode_stdlib(line), True


def _decode_stdlib(line: bytes) -> Any:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("Parse error: not UTF-8") from None
    try:
        value, end = _DECODER.raw_decode(text.strip())
    except json.JSONDecodeError:
        raise FrameError("Parse error: not JSON") from None
    except ValueError:
        # Not a JSONDecodeError: an integer of more than sys.get_int_max_str_digits() digits.
        raise FrameError("Parse error: a number has too many digits") from None
    except RecursionError:
        raise FrameError("Parse error: nested too deeply") from None
    if end != len(text.strip()):
        raise FrameError("Parse error: more than one JSON text on the line")
    return value


def parse_frame(line: bytes) -> Frame:
    """Raises FrameError for a line that is not one UTF-8 JSON text."""
    value, exotic = decode_wire(line)
    if isinstance(value, list):
        if not value:
            return Frame(
                (Invalid(INVALID_REQUEST, "Invalid Request: empty batch"),),
                batch=False,
                exotic=exotic,
            )
        return Frame(tuple(check_envelope(element) for element in value), True, exotic)
    return Frame((check_envelope(value),), batch=False, exotic=exotic)


def error_object(
    request_id: Any, code: int, message: str, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An error response; ``data`` always holds at least ``{"kind": ...}``."""
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "data": data if data is not None else {"kind": STANDARD_KINDS.get(code, "INTERNAL")},
    }
    return {"jsonrpc": "2.0", "error": error, "id": request_id}


def result_object(request_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "result": result, "id": request_id}


def _splice(value: Any) -> Any:
    if isinstance(value, RawJson):
        return orjson.Fragment(value.text)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _leave_out(value: Any) -> Any:
    if isinstance(value, RawJson):
        return None  # the standard library's text already: nothing of orjson's in it
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def encode(message: Any, *, exotic: bool = False) -> bytes:
    """One NDJSON line, byte for byte what the standard library writes (``jsonutil.dumps``).
    ``exotic``: the answer to a line the standard library read (see the module's note)."""
    if not exotic:
        try:
            text = orjson.dumps(message, default=_splice)
        except TypeError:  # orjson.JSONEncodeError: a big integer, a key, a lone surrogate
            pass
        else:
            # A float that differs leaves "e-" or ".0000" in the text: two substring
            # searches are much cheaper than the pattern over a whole answer, and the
            # pattern only looks at what orjson wrote (not at spliced RawJson text).
            if (b"e-" not in text and b".0000" not in text) or _FLOAT_DIFFERS.search(
                orjson.dumps(message, default=_leave_out)
            ) is None:
                # A new object, not orjson's own: orjson's bytes keep a buffer of about
                # 1 KiB each, which lines waiting in an outbox would hold on to.
                return text + b"\n"
    return dumps(message).encode("utf-8") + b"\n"


def notification_line(method: str, params_json: str) -> bytes:
    """A server notification whose params are already JSON text."""
    return f'{{"jsonrpc":"2.0","method":"{method}","params":{params_json}}}\n'.encode()


def event_line(subscription: int, event_json: str) -> bytes:
    """``event`` notification around a journal body (already JSON text): no re-encoding."""
    return event_head(subscription) + event_tail(event_json)


def event_head(subscription: int) -> bytes:
    """What an ``event`` line of ``subscription`` starts with (kept per subscription)."""
    return b'{"jsonrpc":"2.0","method":"event","params":{"subscription":%d,"event":' % subscription


def event_tail(event_json: str) -> bytes:
    """The rest of an ``event`` line: the body and the closing (made once per event)."""
    return event_json.encode() + b"}}\n"
