"""A finished command's stdout read as the model it should hold.

The CLI prints a JSON document (its last one counts, :func:`~convosd.cli.output.last_json`);
each operation of the adapter expects a shape (:mod:`convosd.cli.models`,
:mod:`convosd.cli.replies`). Output without JSON, or of another shape, is
:class:`~convosd.errors.CliFailed` naming the command, never quoting the output (it may hold
message text). Pure: no process, no I/O.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from convosd import errors
from convosd.cli.argv import Invocation
from convosd.cli.output import NoJsonOutput, last_json


def json_document(invocation: Invocation, stdout: str) -> Any:
    """The last JSON document ``invocation`` printed."""
    try:
        return last_json(stdout)
    except NoJsonOutput:
        raise errors.CliFailed(
            f"convos {invocation.command.replace(':', ' ')} printed no JSON",
            # its size, not its text: stdout may hold message content
            cli_message=f"{len(stdout)} characters of output, no JSON document",
            exit_code=0,
        ) from None


def validated(
    invocation: Invocation, adapter: TypeAdapter[Any] | type[BaseModel], value: Any
) -> Any:
    """``value`` as ``adapter``'s type (a model, or a TypeAdapter of a list or a union)."""
    try:
        if isinstance(adapter, TypeAdapter):
            return adapter.validate_python(value)
        return adapter.model_validate(value)
    except ValidationError as exc:
        raise errors.CliFailed(
            f"convos {invocation.command.replace(':', ' ')} printed an unexpected shape",
            cli_message=summarise(exc),
            exit_code=0,
        ) from None


def listed(invocation: Invocation, adapter: TypeAdapter[Any], value: Any) -> Any:
    """``value`` as a list of ``adapter``'s items."""
    # Empty lists come as {"message": "...", "count": 0}, not [].
    if isinstance(value, dict) and value.get("count") == 0:
        return []
    return validated(invocation, adapter, value)


def summarise(exc: ValidationError) -> str:
    """Where the shape differs: the first five errors, each its place and message."""
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
