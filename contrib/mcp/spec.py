"""What a tool is: its spec (name, daemon method, params and result models, annotations,
flags), the annotations of a read and of a write, and the ``--tools`` groups; the table of
every tool is :mod:`contrib.mcp.tools`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from pydantic import BaseModel

Json = dict[str, Any]

#: the ``--tools`` group of the read-only tools
READ_ONLY = "read-only"
#: the ``--tools`` group of every tool (the default)
ALL = "all"


def reads(*, open_world: bool = False) -> types.ToolAnnotations:
    """A read-only tool's annotations."""
    return types.ToolAnnotations(
        read_only_hint=True,
        destructive_hint=False,
        idempotent_hint=True,
        open_world_hint=open_world,
    )


def writes(*, destructive: bool, idempotent: bool, open_world: bool) -> types.ToolAnnotations:
    return types.ToolAnnotations(
        read_only_hint=False,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=open_world,
    )


@dataclass(frozen=True)
class ToolSpec:
    name: str
    method: str  # the daemon's method ("" for the tools this server answers itself)
    description: str
    params: type[BaseModel]
    result: type[BaseModel]
    hints: types.ToolAnnotations
    admin: bool = False
    #: what cannot be undone: the tool takes ``confirm: true`` and is refused without it
    confirm: str = ""
    #: fixed arguments merged into the daemon call (``confirm: true`` of the daemon's own)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    describe: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if bool(self.confirm) != bool(self.hints.destructive_hint):
            raise ValueError(f"{self.name}: destructive and confirm go together")

    @property
    def read_only(self) -> bool:
        return bool(self.hints.read_only_hint)
