"""The daemon's state: the results of ``status`` (and the parts it is made of) and
``health`` (convosd.api.status)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from convosd.rpc.schemas.base import Result


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


class AwaitingAddOut(Result):
    inbox_id: str | None = Field(alias="inboxId")
    from_: list[str] = Field(alias="from")
    since: str
    until: str | None
    refused: int


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
