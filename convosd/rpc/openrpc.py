"""``rpc.discover``: the OpenRPC 1.x document, generated from the same pydantic models that
validate params and build results (so it cannot drift from the daemon's behaviour)."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from convosd.errors import ConvosdError, hint_for
from convosd.rpc.dispatch import MethodSpec
from convosd.rpc.examples import openrpc_examples

REF = "#/components/schemas/{model}"


#: The JSON-RPC standard errors convosd answers with (-32602 is :class:`InvalidParams`).
_STANDARD = (
    (-32700, "Parse error", "PARSE_ERROR"),
    (-32600, "Invalid Request", "INVALID_REQUEST"),
    (-32601, "Method not found", "METHOD_NOT_FOUND"),
    (-32603, "Internal error", "INTERNAL"),
)


def _error_table() -> list[dict[str, Any]]:
    seen: dict[int, dict[str, Any]] = {
        code: {"code": code, "message": message, "data": {"kind": kind}}
        for code, message, kind in _STANDARD
    }
    stack: list[type[ConvosdError]] = [ConvosdError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.kind in ("INTERNAL",) or cls.code in seen:
            continue
        seen[cls.code] = {
            "code": cls.code,
            "message": cls.default_message,
            "data": {"kind": cls.kind},
        }
    for entry in seen.values():
        entry["x-hint"] = hint_for(entry["data"]["kind"])
    return sorted(seen.values(), key=lambda e: -e["code"])


def document(methods: dict[str, MethodSpec], *, version: str) -> dict[str, Any]:
    models = {spec.params for spec in methods.values()} | {
        spec.result for spec in methods.values() if spec.result is not None
    }
    keyed = [
        (model, "validation" if model in {s.params for s in methods.values()} else "serialization")
        for model in sorted(models, key=lambda m: m.__name__)
    ]
    _, schema = models_json_schema(keyed, ref_template=REF, by_alias=True)  # type: ignore[arg-type]
    components = schema.get("$defs", {})
    entries = []
    for name in sorted(methods):
        spec = methods[name]
        params_schema = components.get(spec.params.__name__, {})
        required = set(params_schema.get("required", []))
        params = [
            {"name": field, "required": field in required, "schema": field_schema}
            for field, field_schema in params_schema.get("properties", {}).items()
        ]
        entry: dict[str, Any] = {
            "name": name,
            "summary": spec.summary,
            "paramStructure": "by-name",
            "params": params,
            "result": {
                "name": "result",
                "schema": {"$ref": REF.format(model=spec.result.__name__)}
                if spec.result is not None
                else {"type": "object"},
            },
            "x-admin": spec.admin,
            "examples": openrpc_examples(name),
        }
        entries.append(entry)
    return {
        "openrpc": "1.3.2",
        "info": {
            "title": "convosd",
            "version": version,
            "description": "Convos (XMTP) channel daemon: JSON-RPC 2.0 over a Unix socket, "
            "one JSON text per line. Notifications: event, subscription.ended.",
        },
        "methods": entries,
        "components": {"schemas": components, "errors": _error_table()},
    }
