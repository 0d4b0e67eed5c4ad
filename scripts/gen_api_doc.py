"""Render docs/API.md from the OpenRPC document that ``rpc.discover`` serves.

    .venv/bin/python scripts/gen_api_doc.py            # rewrite docs/API.md
    .venv/bin/python scripts/gen_api_doc.py --check    # exit 1 when docs/API.md is stale

Nothing is started: the document is built the way the daemon builds it, from the method table
of :class:`convosd.service.ConvosService` (on a stand-in instance that carries default settings
and None for the rest: building the table calls no method) and
:func:`convosd.rpc.openrpc.document`. The event section comes from
:data:`convosd.events.EVENT_FIELDS`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from convosd import __version__
from convosd.config import load_settings
from convosd.conversation.instance import Instance
from convosd.events import EVENT_FIELDS
from convosd.rpc.openrpc import document
from convosd.rpc.subscriptions import SubscriptionHub
from convosd.service import ConvosService

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "docs" / "API.md"
COMMAND = ".venv/bin/python scripts/gen_api_doc.py"
REF_PREFIX = "#/components/schemas/"


def method_table() -> dict[str, Any]:
    """The daemon's method table for default settings (no instance behind it: building the
    table only reads the settings)."""
    stand_in = cast(
        Instance,
        SimpleNamespace(
            settings=load_settings({}, environ={}),
            paths=SimpleNamespace(
                state_dir=Path("/nonexistent"), convos_home=Path("/nonexistent/convos")
            ),
            cli=None,
            journal=None,
            store=SimpleNamespace(keys=None),
            sender_policy=None,
        ),
    )
    return ConvosService(stand_in, cast(SubscriptionHub, None)).methods()


def build_document() -> dict[str, Any]:
    """The OpenRPC document of ``rpc.discover``, for default settings."""
    return document(method_table(), version=__version__)


# --- JSON schema to text --------------------------------------------------------------------


def _ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref[len(REF_PREFIX) :] if isinstance(ref, str) and ref.startswith(REF_PREFIX) else None


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation other than - and _ dropped."""
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def _grouped(schema: dict[str, Any]) -> str:
    """:func:`type_text` in parentheses when it has alternatives (``array of (a or b)``)."""
    text = type_text(schema)
    alternatives = "anyOf" in schema or len(schema.get("enum", ())) > 1
    return f"({text})" if alternatives else text


def type_text(schema: dict[str, Any]) -> str:
    """A short type expression: ``string``, ``integer or null``, ``array of string``, ..."""
    name = _ref_name(schema)
    if name is not None:
        return f"[{name}](#{_anchor(name)})"
    if "anyOf" in schema:
        return " or ".join(type_text(part) for part in schema["anyOf"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " or ".join(f"`{json.dumps(value)}`" for value in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        return f"array of {_grouped(items)}" if isinstance(items, dict) else "array"
    if kind == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, dict):
            keys = schema.get("propertyNames", {}).get("enum")
            key_text = _grouped({"enum": keys}) if keys else "string"
            return f"object: {key_text} → {_grouped(values)}"
        return "object"
    if isinstance(kind, str):
        return kind
    return "any"


def constraints_text(schema: dict[str, Any]) -> str:
    """Length, range and pattern limits (of the non-null alternative of an ``anyOf``)."""
    parts: list[str] = []
    for part in schema.get("anyOf", [schema]):
        low, high = part.get("minLength"), part.get("maxLength")
        if low is not None or high is not None:
            parts.append(
                f"{low if low is not None else 0}..{high if high is not None else ''} chars"
            )
        low, high = part.get("minimum"), part.get("maximum")
        if low is not None and high is not None:
            parts.append(f"{low}..{high}")
        elif low is not None:
            parts.append(f"≥ {low}")
        elif high is not None:
            parts.append(f"≤ {high}")
        if "pattern" in part:
            parts.append(f"pattern `{part['pattern']}`")
    if "default" in schema and schema["default"] is not None:
        parts.append(f"default `{json.dumps(schema['default'])}`")
    return "; ".join(parts)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "—"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _properties_table(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    rows = [
        [f"`{name}`", _yes(name in required), type_text(prop), constraints_text(prop)]
        for name, prop in schema.get("properties", {}).items()
    ]
    return _table(["field", "always present", "type", "constraints"], rows)


def _refs(schema: Any) -> list[str]:
    found: list[str] = []
    if isinstance(schema, dict):
        name = _ref_name(schema)
        if name is not None:
            found.append(name)
        for value in schema.values():
            found += _refs(value)
    elif isinstance(schema, list):
        for value in schema:
            found += _refs(value)
    return found


def _example(method: dict[str, Any]) -> list[str]:
    """The method's first OpenRPC example as the two lines on the wire."""
    examples = method.get("examples") or []
    if not examples:
        return []
    example = examples[0]
    request: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method["name"]}
    if example["params"]:
        request["params"] = {p["name"]: p["value"] for p in example["params"]}
    response = {"jsonrpc": "2.0", "id": 1, "result": example["result"]["value"]}
    return [
        "",
        "Example (the request, then the response; on the wire each is one line):",
        "",
        "```json",
        json.dumps(request, ensure_ascii=False),
        json.dumps(response, ensure_ascii=False, indent=2),
        "```",
    ]


# --- the document ---------------------------------------------------------------------------


def render(doc: dict[str, Any]) -> str:
    schemas: dict[str, Any] = doc["components"]["schemas"]
    methods: list[dict[str, Any]] = doc["methods"]
    out = [
        "# convosd API",
        "",
        f"<!-- Generated by scripts/gen_api_doc.py from rpc.discover: do not edit. "
        f"Run `{COMMAND}`. -->",
        "",
        f"{doc['info']['description']}",
        "",
        f"OpenRPC {doc['openrpc']}, convosd {doc['info']['version']}. Params are by name (an "
        "object). `rpc.discover` returns the same document as JSON. *Admin* methods answer only "
        "root, the daemon's uid and `adminUids`/`adminGids`; others get `FORBIDDEN`.",
        "",
        "## Methods",
        "",
    ]
    out += _table(
        ["method", "admin", "summary"],
        (
            [f"[`{m['name']}`](#{_anchor(m['name'])})", _yes(m["x-admin"]), m["summary"]]
            for m in methods
        ),
    )
    nested: list[str] = []
    for method in methods:
        out += ["", f"### `{method['name']}`", "", method["summary"], ""]
        if method["x-admin"]:
            out += ["**Admin only.**", ""]
        params = method["params"]
        if params:
            out += ["Params:", ""]
            out += _table(
                ["name", "required", "type", "constraints"],
                (
                    [
                        f"`{p['name']}`",
                        _yes(p["required"]),
                        type_text(p["schema"]),
                        constraints_text(p["schema"]),
                    ]
                    for p in params
                ),
            )
        else:
            out += ["Params: none."]
        result = method["result"]["schema"]
        name = _ref_name(result)
        out.append("")
        if name is None:
            out.append(f"Result: {type_text(result)}.")
        elif "properties" not in schemas[name]:
            out.append(f"Result (`{name}`): {type_text(schemas[name])}.")
        else:
            model = schemas[name]
            out += [f"Result (`{name}`):", ""]
            out += _properties_table(model)
            nested += [ref for ref in _refs(model) if ref not in nested]
        out += _example(method)
    if nested:
        out += ["", "## Types", ""]
        for name in nested:
            out += [f"### {name}", ""]
            out += _properties_table(schemas[name])
            out.append("")
        out.pop()
    out += [
        "",
        "## Events",
        "",
        "`events.read` and the `event` notifications of `events.subscribe` carry events: "
        "`{seq, type, at, conversationId}` plus the fields of their type, every field present "
        "(null where unknown).",
        "",
    ]
    out += _table(
        ["type", "fields"],
        (
            [f"`{kind}`", ", ".join(f"`{f}`" for f in fields)]
            for kind, fields in EVENT_FIELDS.items()
        ),
    )
    out += [
        "",
        "## Errors",
        "",
        "`error.data` always holds `{kind}`; `BUSY` may add `retryAfterS` (and, from a cap on "
        "subscriptions, `limit` naming the setting and `max`), `EVENTS_EXPIRED` adds "
        "`firstSeq`, `CLI_FAILED` adds `exitCode` and `error`, `INVALID_PARAMS` may add `errors`, "
        "`ALREADY_BOUND` adds `pending: true` while a join only awaits acceptance; an error the "
        "CLI caused keeps the CLI's own error line in `error`. The protocol around them: "
        "docs/PROTOCOL.md.",
        "",
    ]
    out += _table(
        ["code", "kind", "message", "what a client should do"],
        (
            [str(e["code"]), f"`{e['data']['kind']}`", e["message"], e.get("x-hint") or ""]
            for e in doc["components"]["errors"]
        ),
    )
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render docs/API.md from rpc.discover.")
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: docs/API.md")
    args = parser.parse_args(argv)
    text = render(build_document())
    output: Path = args.output
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != text:
            sys.stderr.write(f"{output} is stale: run `{COMMAND}`\n")
            return 1
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
