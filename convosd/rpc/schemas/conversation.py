"""The bound conversation itself: the params and results of ``conversation.info``,
``.invite``, ``.rename``, ``.lock``, ``.explode``, ``.update``, ``.typing``,
``member.remove`` and ``profile.update`` (convosd.api.conversation and convosd.api.live)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, field_validator, model_validator

from convosd.rpc.schemas.base import Description, HexId, Params, Result, ShortText
from convosd.timefmt import parse_rfc3339


class MemberOut(Result):
    inbox_id: str = Field(alias="inboxId")
    name: str | None
    is_admin: bool = Field(alias="isAdmin")


class InfoResult(Result):
    conversation_id: str = Field(alias="conversationId")
    name: str | None
    member_count: int = Field(alias="memberCount")
    members: list[MemberOut]
    locked: bool


class InviteParams(Params):
    expires_in_s: Annotated[int, Field(ge=1, le=365 * 86400)] | None = Field(
        default=None, alias="expiresInS"
    )
    single_use: bool = Field(default=False, alias="singleUse")


class InviteResult(Result):
    invite_url: str = Field(alias="inviteUrl")
    invite_slug: str = Field(alias="inviteSlug")
    expires_at: str | None = Field(alias="expiresAt")


class RenameParams(Params):
    name: ShortText


class RenameResult(Result):
    name: str


class LockParams(Params):
    unlock: bool = False


class LockResult(Result):
    locked: bool


class ExplodeParams(Params):
    confirm: Literal[True]
    at: str | None = Field(
        default=None,
        description="RFC 3339 date-time in the future: schedule the explosion instead",
    )

    @field_validator("at")
    @classmethod
    def _rfc3339(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rfc3339(value)
        return value


class ExplodeResult(Result):
    """``{exploded: true, membersRemoved}`` now, or ``{exploded: false, scheduledAt}`` for a
    scheduled explosion: the fields of the other shape are left out."""

    exploded: bool
    members_removed: int | None = Field(default=None, alias="membersRemoved")
    scheduled_at: str | None = Field(default=None, alias="scheduledAt")


class UpdateParams(Params):
    name: ShortText | None = None
    description: Description | None = None

    @model_validator(mode="after")
    def _one(self) -> UpdateParams:
        if self.name is None and self.description is None:
            raise ValueError("give name, description or both")
        return self


class UpdateResult(Result):
    name: str | None
    description: str | None


class TypingParams(Params):
    typing: StrictBool = True


class RemoveMemberParams(Params):
    inbox_id: HexId = Field(alias="inboxId")


class RemoveMemberResult(Result):
    removed: list[str]


class ProfileUpdateParams(Params):
    name: ShortText | None = None
    image_url: Annotated[str, Field(min_length=1, max_length=2048)] | None = Field(
        default=None, alias="imageUrl"
    )

    @model_validator(mode="after")
    def _one(self) -> ProfileUpdateParams:
        if self.name is None and self.image_url is None:
            raise ValueError("give name, imageUrl or both")
        return self
