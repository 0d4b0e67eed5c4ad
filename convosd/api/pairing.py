"""pairing.*: the owner's answers to senders the policy holds (convosd.conversation.pairing)."""

from __future__ import annotations

from typing import Any

from convosd.conversation.pairing import SenderPolicy
from convosd.rpc import schemas as s
from convosd.rpc.dispatch import CallContext


class PairingApi:
    def __init__(self, policy: SenderPolicy) -> None:
        self.policy = policy

    async def pairing_list(self, ctx: CallContext, _p: s.NoParams) -> dict[str, Any]:
        return {"requests": self.policy.list_requests()}

    async def pairing_approve(
        self, ctx: CallContext, p: s.PairingCodeParams
    ) -> s.PairingApproveResult:
        sender, released = self.policy.approve(p.code)
        return s.PairingApproveResult(sender_inbox_id=sender, released=released)

    async def pairing_deny(self, ctx: CallContext, p: s.PairingCodeParams) -> s.PairingDenyResult:
        return s.PairingDenyResult(sender_inbox_id=self.policy.deny(p.code))
