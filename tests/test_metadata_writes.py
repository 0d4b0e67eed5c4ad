"""convosd brings the group up to date before the CLI rewrites its metadata: 0.10.15's lock,
unlock and ``explode --scheduled`` read the group's appData from the local copy without a
sync, so a copy older than another member's last write loses that write (seen on the real
CLI and the local node: the app's fields 2, 8, 9 and 10 gone). Checked at the adapter's
transport: ``conversation sync`` runs right before each of them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from convosd.api.conversation import ConversationApi
from convosd.cli import ConvosCli
from convosd.cli.setup import CliSetup
from convosd.rpc.dispatch import CallContext
from convosd.rpc.schemas import ExplodeParams, LockParams
from convosd.storage.journal import Journal
from convosd.storage.store import Binding, Store
from tests.test_cli_queue import ScriptedTransport

CID = "ab" * 16
OWN = "a" * 64


class Bound:
    """The instance as these methods see it: bound to CID, the creator and a super admin."""

    binding = Binding(CID, OWN, "dev", "created", OWN, None, 0.0)
    own_inbox_id = OWN

    def __init__(self) -> None:
        self.scheduled: list[datetime] = []

    def known_name(self, inbox_id: str) -> str | None:
        return None

    async def conversation_gone(self, *, by: str | None, reason: str) -> None:
        return None

    def explosion_scheduled(self, when: datetime, by: str | None) -> None:
        self.scheduled.append(when)

    def spawn_task(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        return asyncio.ensure_future(coro)


def reply(value: Any) -> tuple[int, str, str]:
    return (0, json.dumps(value), "")


async def test_lock_unlock_and_a_scheduled_explode_sync_the_group_first(tmp_path: Path) -> None:
    permissions = reply(
        {"conversationId": CID, "policySet": {"addMemberPolicy": 0}, "superAdmins": [OWN]}
    )
    synced = reply({"success": True, "conversationId": CID})
    info = reply(
        {
            "conversation": {"id": CID, "creatorInboxId": OWN},
            "identity": {"inboxId": OWN},
            "members": [],
        }
    )
    transport = ScriptedTransport(
        [
            permissions,
            synced,
            reply({"success": True, "conversationId": CID, "action": "locked"}),
            permissions,
            synced,
            reply({"success": True, "conversationId": CID, "action": "unlocked"}),
            info,
            synced,
            reply({"success": True, "conversationId": CID}),
        ]
    )
    setup = CliSetup(("convos",), "dev", tmp_path / "convos", tmp_path, ())
    cli = ConvosCli(setup, environ={}, transport=lambda _oneshot: transport)
    store = Store.open(tmp_path)
    try:
        api = ConversationApi(Bound(), cli, Journal(store), store.keys)
        ctx = CallContext(connection=None, peer_uid=0, is_admin=True)
        await api.lock(ctx, LockParams())
        await api.lock(ctx, LockParams.model_validate({"unlock": True}))
        at = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
        await api.explode(ctx, ExplodeParams.model_validate({"confirm": True, "at": at}))
        assert transport.commands == [
            "conversation:permissions",
            "conversation:sync",
            "conversation:lock",
            "conversation:permissions",
            "conversation:sync",
            "conversation:lock",
            "conversation:info",
            "conversation:sync",
            "conversation:explode",
        ]
    finally:
        store.close()
        await cli.aclose()
