"""Getting bound, and unbound: the params and results of ``conversation.create``,
``conversation.join``, ``conversation.awaitAdd``, ``conversation.cancelJoin`` and
``daemon.reset`` (convosd.api.binding)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from convosd.rpc.schemas.base import Description, Params, Result, ShortText

InboxId = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class CreateParams(Params):
    name: ShortText | None = None
    profile_name: ShortText | None = Field(default=None, alias="profileName")
    description: Description | None = None
    image_url: Annotated[str, Field(max_length=2048)] | None = Field(default=None, alias="imageUrl")
    permissions: Literal["all-members", "admin-only"] | None = None


class CreateResult(Result):
    conversation_id: str = Field(alias="conversationId")
    invite_url: str = Field(alias="inviteUrl")
    invite_slug: str = Field(alias="inviteSlug")
    inbox_id: str = Field(alias="inboxId")


class JoinParams(Params):
    invite_url: Annotated[str, Field(min_length=1, max_length=8192)] = Field(alias="inviteUrl")
    profile_name: ShortText | None = Field(default=None, alias="profileName")
    timeout_s: Annotated[int, Field(ge=1, le=600)] = Field(default=60, alias="timeoutS")
    as_owner: bool = Field(
        default=False,
        alias="asOwner",
        description="(addition) onboarding: record the conversation as the owner channel "
        "in the state dir (convosctl setup)",
    )


class JoinResult(Result):
    """``{status: "joined", conversationId}`` or ``{status: "pending_acceptance",
    creatorInboxId, retryUntil}``: the fields of the other shape are left out."""

    status: Literal["joined", "pending_acceptance"]
    conversation_id: str | None = Field(default=None, alias="conversationId")
    creator_inbox_id: str | None = Field(default=None, alias="creatorInboxId")
    retry_until: str | None = Field(default=None, alias="retryUntil")


class AwaitAddParams(Params):
    from_: Annotated[list[InboxId], Field(min_length=1, max_length=256)] | None = Field(
        default=None,
        alias="from",
        description="the inbox ids whose add the instance accepts (default: allowFrom)",
    )
    timeout_s: Annotated[int, Field(ge=1, le=31_536_000)] | None = Field(
        default=None,
        alias="timeoutS",
        description="how long to wait for the add (default: joinRetryMaxS); then join_failed",
    )
    profile_name: ShortText | None = Field(
        default=None,
        alias="profileName",
        description="the default profile name of an identity made now (identity create)",
    )


class AwaitAddResult(Result):
    """The instance waits to be added: its inbox id (to hand to whoever adds it), who may
    add it, and until when it waits."""

    status: Literal["awaiting_add"]
    inbox_id: str = Field(alias="inboxId")
    from_: list[str] = Field(alias="from")
    until: str | None


class CancelJoinResult(Result):
    cancelled: bool


class ConfirmParams(Params):
    confirm: Literal[True]


class ResetResult(Result):
    clean: Literal[True]
