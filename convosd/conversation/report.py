"""What an instance reports: ``status``, ``health`` and its inputs, the children's states.

Computed from what the :class:`~convosd.conversation.instance.Instance` knows (its binding,
its :class:`~convosd.conversation.cli_home.CliHome`, the journal's position, the store's
cached rows); nothing here waits on the network or the CLI to answer them. ``status`` reads
neither SQLite nor the file system (health checks call it often); ``health`` looks at the
state dir.
"""

from __future__ import annotations

import os
import time
from typing import Any

from convosd import __version__
from convosd.conversation.bound import STREAM, WATCHER
from convosd.conversation.instance import Instance
from convosd.health import HealthInputs, HealthStatus, evaluate
from convosd.timefmt import iso


def child_status(instance: Instance) -> dict[str, dict[str, Any]]:
    stopped = {
        "state": "stopped",
        "pid": None,
        "restarts": 0,
        "since": None,
        "lastExit": None,
        "lastError": None,
        "nextRetryAt": None,
    }
    children = instance.children
    return {
        name: (children[name].describe() if name in children else dict(stopped))
        for name in (STREAM, WATCHER)
    }


def health_inputs(instance: Instance) -> HealthInputs:
    conversation = instance.conversation
    ingest = conversation.ingest if conversation is not None else None
    journal_problem = None
    if ingest is not None and not ingest.healthy:
        journal_problem = ingest.last_error or "journal write failed"
    backfill_problem = ingest.backfill_problem if ingest is not None else None
    children = instance.children
    state_dir = instance.paths.state_dir
    state_problem = instance.store.vanished()
    if state_problem is None and not _writable(state_dir):
        state_problem = f"state dir {state_dir} is not writable"
    home = instance.home
    return HealthInputs(
        cli_working=home.cli_working,
        cli_problem=home.cli_problem,
        cli_version_problem=home.cli_version_problem,
        cli_version_known=home.cli_version is not None,
        state_problem=state_problem,
        journal_problem=journal_problem,
        backfill_problem=backfill_problem,
        env_mismatch=instance.env_mismatch,
        binding_mismatch=instance.binding_mismatch,
        identity_mismatch=home.identity_mismatch,
        network_problem=instance.cli.network_problem,
        bound=instance.binding is not None,
        children={name: c.status.state for name, c in children.items()},
        child_errors={name: c.status.last_error for name, c in children.items()},
        enabled=instance.settings.convos.enabled,
    )


def health(instance: Instance) -> tuple[HealthStatus, dict[str, str]]:
    return evaluate(health_inputs(instance))


def clean(instance: Instance) -> bool:
    """Neither bound, nor waiting to be, nor an identity or a database in the CLI home."""
    if instance.binding is not None or instance.store.has_pending_join:
        return False
    return not instance.home.used()


def status(
    instance: Instance, *, subscribers: int = 0, policy: dict[str, Any] | None = None
) -> dict[str, Any]:
    binding = instance.binding
    pending = instance.store.has_pending_join
    home = instance.home
    convos = instance.settings.convos
    return {
        "version": __version__,
        "cliVersion": home.cli_version.version if home.cli_version else None,
        "env": convos.env,
        "uptimeS": round(time.monotonic() - instance.started_monotonic, 3),
        "conversationId": binding.conversation_id if binding else None,
        "inboxId": instance.own_inbox_id,
        "identityId": home.identity_id,
        "ownerConversationId": convos.owner_conversation_id or instance.recorded_owner,
        "ownerInboxIds": instance.owner_inbox_ids,
        "pending": pending,
        "clean": clean(instance),
        "dmPolicy": convos.dm_policy,
        "children": child_status(instance),
        "cli": instance.cli.transport_status(),
        "journal": instance.journal.position.as_dict(),
        "subscribers": subscribers,
        "policy": policy or instance.sender_policy.counts(),
        "expiresAt": instance.expires_at,
        "awaitingAdd": _awaiting_add(instance),
        "addsRefused": instance.history.adds_refused,
    }


def _awaiting_add(instance: Instance) -> dict[str, Any] | None:
    """The wait to be added (``conversation.awaitAdd``), or None."""
    record = instance.store.pending_join()
    if record is None or record.get("kind") != "awaitAdd":
        return None
    chosen = record.get("from")
    return {
        "inboxId": record.get("inboxId") or instance.home.identity_inbox_id,
        "from": sorted(chosen) if chosen else sorted(instance.settings.convos.allow_from),
        "since": iso(record["startedAt"]),
        "until": iso(record["until"]) if record.get("until") is not None else None,
        "refused": len(record.get("refused") or ()),
    }


def _writable(path: Any) -> bool:
    return bool(os.access(path, os.W_OK | os.X_OK))
