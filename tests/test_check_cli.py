"""scripts/check_cli.py's comparison of two CLIs' ``convos schema`` (pure; the command itself
installs from the registry and runs the real tiers, so it is not run by the suite)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


def checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_cli", REPO / "scripts" / "check_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_command_ids_of_the_listing() -> None:
    listing = {
        "version": "0.10.15",
        "commands": [{"id": "conversation:add-members", "usage": "x"}, {"id": "init"}],
        "commonFlags": {"json": {"type": "boolean"}},
    }
    assert checker()._command_ids(listing) == {"conversation:add-members", "init"}


def test_schema_changes_name_each_command_argument_and_flag() -> None:
    old = {
        "conversation:lock": {"args": {"id": {"required": True}}, "flags": {"force": {}}},
        "conversation:gone": {"args": {}, "flags": {}},
        "(every command)": {"flags": {"json": {"type": "boolean"}}},
    }
    new = {
        "conversation:lock": {
            "args": {"id": {"required": False}},
            "flags": {"force": {}, "unlock": {"type": "boolean"}},
        },
        "conversation:new": {"args": {}, "flags": {}},
        "(every command)": {"flags": {"json": {"type": "boolean"}, "quiet": {}}},
    }
    changes = checker().schema_changes(old, new)
    assert changes == [
        "command added: conversation:new",
        "command removed: conversation:gone",
        "(every command): flag added: quiet",
        'conversation:lock: arg changed: id: {"required": true} -> {"required": false}',
        "conversation:lock: flag added: unlock",
    ]
    assert checker().schema_changes(old, old) == []
