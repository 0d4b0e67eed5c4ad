"""status and health: read-only views of the daemon, answered as their request is read
(``inline`` methods: plain functions, no task)."""

from __future__ import annotations

from typing import Any

from convosd.conversation import report
from convosd.conversation.instance import Instance
from convosd.rpc import schemas as s
from convosd.rpc.dispatch import CallContext
from convosd.rpc.subscriptions import SubscriptionHub


class StatusApi:
    def __init__(self, instance: Instance, hub: SubscriptionHub) -> None:
        self.instance = instance
        self.hub = hub

    def status(self, ctx: CallContext, _p: s.NoParams) -> dict[str, Any]:
        # The hot path of health checks: built as the wire shape directly (tests validate it
        # against StatusResult, which also documents it in rpc.discover).
        instance = self.instance
        policy = instance.sender_policy.counts()
        return report.status(instance, subscribers=len(self.hub), policy=policy)

    def health(self, ctx: CallContext, _p: s.NoParams) -> s.HealthResult:
        status, checks = report.health(self.instance)
        return s.HealthResult(status=status, checks=checks)
