"""The params and results of every method (docs/API.md), as pydantic models.

The same models validate requests, build results and generate ``rpc.discover``, so the
published schema cannot drift from what the daemon does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from convosd.events import EVENT_TYPES
from convosd.text import check_name, check_text
from convosd.timefmt import parse_rfc3339

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


# --- params -----------------------------------------------------------------------------


class NoParams(Params):
    pass


class CreateParams(Params):
    name: ShortText | None = None
    profile_name: ShortText | None = Field(default=None, alias="profileName")
    description: Description | None = None
    image_url: Annotated[str, Field(max_length=2048)] | None = Field(default=None, alias="imageUrl")
    permissions: Literal["all-members", "admin-only"] | None = None


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


InboxId = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


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


class InviteParams(Params):
    expires_in_s: Annotated[int, Field(ge=1, le=365 * 86400)] | None = Field(
        default=None, alias="expiresInS"
    )
    single_use: bool = Field(default=False, alias="singleUse")


class RenameParams(Params):
    name: ShortText


class LockParams(Params):
    unlock: bool = False


class ConfirmParams(Params):
    confirm: Literal[True]


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


class TypingParams(Params):
    typing: StrictBool = True


class RemoveMemberParams(Params):
    inbox_id: HexId = Field(alias="inboxId")


class UpdateParams(Params):
    name: ShortText | None = None
    description: Description | None = None

    @model_validator(mode="after")
    def _one(self) -> UpdateParams:
        if self.name is None and self.description is None:
            raise ValueError("give name, description or both")
        return self


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


class SendParams(Params):
    message: str = Field(
        description="1..maxMessageBytes (default 16384) bytes of UTF-8, without U+0000 or "
        "lone surrogates; never chunked"
    )
    reply_to: HexId | None = Field(default=None, alias="replyTo")
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, alias="idempotencyKey"
    )


class SendAttachmentParams(Params):
    data: str | None = Field(
        default=None,
        description="the file's bytes as standard base64 (RFC 4648, padded, no white space), "
        "at most maxAttachmentBytes (default 10485760) decoded; the request line must fit "
        "frameLimitBytes: send large files by path",
    )
    path: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        default=None,
        description="an absolute path to a regular file owned by the caller's or the "
        "daemon's uid (root and the daemon's uid only); a final symbolic link is not followed; "
        "never a file under /proc, /sys, /dev, the daemon's state dir, the CLI home or the "
        "config file's directory, by any name (links, .., bind mounts): -32602",
    )
    filename: Annotated[str, Field(min_length=1, max_length=255)] | None = Field(
        default=None,
        description="the attachment's file name (one path component, at most 255 bytes of "
        "UTF-8, no control character or bidi override); required with data, with path the "
        "file's own name by default",
    )
    mime_type: Annotated[str, Field(min_length=3, max_length=255)] | None = Field(
        default=None,
        alias="mimeType",
        description="type/subtype; by default the CLI picks it from the file name's extension",
    )
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, alias="idempotencyKey"
    )

    @model_validator(mode="after")
    def _one_source(self) -> SendAttachmentParams:
        if (self.data is None) == (self.path is None):
            raise ValueError("give exactly one of data or path")
        if self.data is not None and self.filename is None:
            raise ValueError("data needs a filename")
        return self


class DownloadParams(Params):
    message_id: HexId = Field(alias="messageId")
    inline: bool = Field(
        default=False, description="also answer the bytes as base64 (files up to 786432 bytes)"
    )


class ReactParams(Params):
    message_id: HexId = Field(alias="messageId")
    emoji: Annotated[str, Field(min_length=1, max_length=64)]
    remove: bool = False


class SubscribeParams(Params):
    after: Annotated[int, Field(ge=0)] | None = None
    types: list[EventType] | None = None


class UnsubscribeParams(Params):
    subscription: int


class ReadParams(Params):
    after: Annotated[int, Field(ge=0)] = 0
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    types: list[EventType] | None = None


class SearchParams(Params):
    query: Annotated[str, Field(min_length=1, max_length=1024)] = Field(
        description="words, and phrases in double quotes; every result has all of them; a "
        "word ending in * matches as a prefix; nothing else is syntax (OR, NEAR, -, "
        "parentheses are searched as text); at most 32 terms, no U+0000, else -32602"
    )
    types: list[Literal["message", "message_sent"]] | None = Field(
        default=None, description="only these event types (default: both)"
    )
    sender: HexId | None = Field(
        default=None, description="only messages from this inbox id (message events)"
    )
    after: Annotated[int, Field(ge=0)] = Field(
        default=0, description="only events with seq > after (as events.read)"
    )
    before: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="only events with seq < before"
    )
    limit: Annotated[int, Field(ge=1, le=100)] = 20


class ContextParams(Params):
    message_id: HexId = Field(alias="messageId")
    before: Annotated[int, Field(ge=0, le=100)] = Field(
        default=5, description="at most this many events before the message"
    )
    after: Annotated[int, Field(ge=0, le=100)] = Field(
        default=5, description="at most this many events after the message"
    )
    types: list[EventType] | None = Field(
        default=None, description="only these event types around the message (default: all)"
    )


class PairingCodeParams(Params):
    code: Annotated[str, Field(min_length=1, max_length=32)]


# --- results ----------------------------------------------------------------------------


class CreateResult(Result):
    conversation_id: str = Field(alias="conversationId")
    invite_url: str = Field(alias="inviteUrl")
    invite_slug: str = Field(alias="inviteSlug")
    inbox_id: str = Field(alias="inboxId")


class JoinResult(Result):
    """``{status: "joined", conversationId}`` or ``{status: "pending_acceptance",
    creatorInboxId, retryUntil}``: the fields of the other shape are left out."""

    status: Literal["joined", "pending_acceptance"]
    conversation_id: str | None = Field(default=None, alias="conversationId")
    creator_inbox_id: str | None = Field(default=None, alias="creatorInboxId")
    retry_until: str | None = Field(default=None, alias="retryUntil")


class AwaitAddResult(Result):
    """The instance waits to be added: its inbox id (to hand to whoever adds it), who may
    add it, and until when it waits."""

    status: Literal["awaiting_add"]
    inbox_id: str = Field(alias="inboxId")
    from_: list[str] = Field(alias="from")
    until: str | None


class AwaitingAddOut(Result):
    inbox_id: str | None = Field(alias="inboxId")
    from_: list[str] = Field(alias="from")
    since: str
    until: str | None
    refused: int


class CancelJoinResult(Result):
    cancelled: bool


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


class InviteResult(Result):
    invite_url: str = Field(alias="inviteUrl")
    invite_slug: str = Field(alias="inviteSlug")
    expires_at: str | None = Field(alias="expiresAt")


class RenameResult(Result):
    name: str


class LockResult(Result):
    locked: bool


class ExplodeResult(Result):
    """``{exploded: true, membersRemoved}`` now, or ``{exploded: false, scheduledAt}`` for a
    scheduled explosion: the fields of the other shape are left out."""

    exploded: bool
    members_removed: int | None = Field(default=None, alias="membersRemoved")
    scheduled_at: str | None = Field(default=None, alias="scheduledAt")


class RemoveMemberResult(Result):
    removed: list[str]


class UpdateResult(Result):
    name: str | None
    description: str | None


class OkResult(Result):
    ok: Literal[True]


class SendResult(Result):
    message_id: str = Field(alias="messageId")


class DownloadResult(Result):
    message_id: str = Field(alias="messageId")
    filename: str = Field(description="the stored file's name (the sender's, sanitised)")
    mime_type: str | None = Field(alias="mimeType")
    size: int
    path: str = Field(description="<state dir>/attachments/<messageId>/<filename>")
    data: str | None = Field(default=None, description="base64 of the file; only with inline")


class ReactResult(Result):
    message_id: str = Field(alias="messageId")
    reference_message_id: str = Field(alias="referenceMessageId")
    action: Literal["added", "removed"]
    emoji: str


class SubscribeResult(Result):
    subscription: int
    journal_id: str = Field(alias="journalId")
    first_seq: int = Field(alias="firstSeq")
    last_seq: int = Field(alias="lastSeq")


class ReadResult(Result):
    events: list[dict[str, Any]]
    journal_id: str = Field(alias="journalId")
    first_seq: int = Field(alias="firstSeq")
    last_seq: int = Field(alias="lastSeq")


class SearchHit(Result):
    event: dict[str, Any] = Field(description="the journaled event, as events.read has it")
    snippet: str = Field(
        description="up to 16 words of the text around the match, matched words in « »"
    )
    score: float = Field(
        description="relevance (BM25 among the newest 500 matches); higher is better"
    )


class SearchResult(Result):
    results: list[SearchHit] = Field(
        description="best match first, ranked among the newest 500 matches (page back with before)"
    )
    journal_id: str = Field(alias="journalId")
    first_seq: int = Field(alias="firstSeq")
    last_seq: int = Field(alias="lastSeq")


class ContextResult(Result):
    before: list[dict[str, Any]] = Field(description="the events before the message, in order")
    message: dict[str, Any] = Field(description="the message or message_sent event")
    after: list[dict[str, Any]] = Field(description="the events after the message, in order")
    journal_id: str = Field(alias="journalId")
    first_seq: int = Field(alias="firstSeq")
    last_seq: int = Field(alias="lastSeq")


class PairingRequestOut(Result):
    code: str
    sender_inbox_id: str = Field(alias="senderInboxId")
    sender_name: str | None = Field(alias="senderName")
    created_at: str = Field(alias="createdAt")
    expires_at: str = Field(alias="expiresAt")
    held: int


class PairingListResult(Result):
    requests: list[PairingRequestOut]


class PairingApproveResult(Result):
    sender_inbox_id: str = Field(alias="senderInboxId")
    released: int


class PairingDenyResult(Result):
    sender_inbox_id: str = Field(alias="senderInboxId")


class ResetResult(Result):
    clean: Literal[True]


class ChildOut(Result):
    state: Literal["stopped", "starting", "running", "backoff", "fatal"]
    pid: int | None
    restarts: int
    since: str | None
    last_exit: dict[str, int | None] | None = Field(alias="lastExit")
    last_error: str | None = Field(alias="lastError")
    next_retry_at: str | None = Field(alias="nextRetryAt")


class CliWorkerOut(Result):
    state: Literal["stopped", "running", "backoff", "unavailable"]
    pid: int | None
    restarts: int
    fallbacks: int
    commands: int
    since: str | None
    last_error: str | None = Field(alias="lastError")
    next_retry_at: str | None = Field(alias="nextRetryAt")


class CliTransportOut(Result):
    transport: Literal["warm", "oneshot"]
    worker: CliWorkerOut | None
    locked_retries: int = Field(alias="lockedRetries")


class JournalOut(Result):
    journal_id: str = Field(alias="journalId")
    first_seq: int = Field(alias="firstSeq")
    last_seq: int = Field(alias="lastSeq")


class PolicyOut(Result):
    held: int
    dropped: dict[str, int]


class StatusResult(Result):
    version: str
    cli_version: str | None = Field(alias="cliVersion")
    env: str
    uptime_s: float = Field(alias="uptimeS")
    conversation_id: str | None = Field(alias="conversationId")
    inbox_id: str | None = Field(alias="inboxId")
    identity_id: str | None = Field(alias="identityId")
    owner_conversation_id: str | None = Field(alias="ownerConversationId")
    owner_inbox_ids: list[str] = Field(alias="ownerInboxIds")
    pending: bool
    clean: bool
    dm_policy: str = Field(alias="dmPolicy")
    children: dict[Literal["stream", "joinRequests"], ChildOut]
    cli: CliTransportOut | None = None
    journal: JournalOut
    subscribers: int
    policy: PolicyOut
    expires_at: str | None = Field(
        default=None,
        alias="expiresAt",
        description="when the conversation's scheduled explosion happens (null: none)",
    )
    awaiting_add: AwaitingAddOut | None = Field(
        default=None,
        alias="awaitingAdd",
        description="the wait to be added (conversation.awaitAdd), null when none",
    )
    adds_refused: int = Field(
        default=0,
        alias="addsRefused",
        description="adds by inboxes not allowed to add the instance, refused so far",
    )


class HealthResult(Result):
    status: Literal["ok", "degraded", "down"]
    checks: dict[str, str]


def dump(result: Result) -> dict[str, Any]:
    """A result as the wire shows it (camelCase)."""
    return result.model_dump(by_alias=True, mode="json")
