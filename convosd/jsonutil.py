"""JSON text for the wire and the journal: compact UTF-8, and always encodable.

A lone surrogate can reach us inside a JSON string (``"\\ud800"`` is valid JSON); written
unescaped it would not encode as UTF-8. Such values are written with ``\\u`` escapes instead.
"""

from __future__ import annotations

import json
from typing import Any


def dumps(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text


def has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
