"""What every method's params and results share: the base models (params refuse unknown
fields; both are frozen and take the wire's camelCase names), the field types several
families use, the empty params, ``{ok: true}``, and a result as the wire shows it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from convosd.events import EVENT_TYPES
from convosd.text import check_name, check_text

HexId = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{1,256}$")]
EventType = Literal[
    "message",
    "message_sent",
    "member_joined",
    "member_left",
    "pairing_requested",
    "conversation_bound",
    "conversation_locked",
    "conversation_exploded",
    "join_failed",
]
assert set(EventType.__args__) == EVENT_TYPES  # type: ignore[attr-defined]
#: a name (conversation, profile): convosd.text's rule for names (no NUL, control
#: character, lone surrogate or bidi override)
ShortText = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(check_name)]
#: a description: convosd.text's rule for text (message.send's: no NUL, no lone surrogate)
Description = Annotated[str, Field(max_length=1024), AfterValidator(check_text)]


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Result(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)


class NoParams(Params):
    pass


class OkResult(Result):
    ok: Literal[True]


def dump(result: Result) -> dict[str, Any]:
    """A result as the wire shows it (camelCase)."""
    return result.model_dump(by_alias=True, mode="json")
