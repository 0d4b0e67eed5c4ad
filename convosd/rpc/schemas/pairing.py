"""The sender policy's pairing: the params and results of ``pairing.list``,
``pairing.approve`` and ``pairing.deny`` (convosd.api.pairing)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from convosd.rpc.schemas.base import Params, Result


class PairingCodeParams(Params):
    code: Annotated[str, Field(min_length=1, max_length=32)]


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
