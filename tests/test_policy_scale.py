"""The sender policy at scale: a message's decision does not copy the approved senders
(it cost 1.75 ms per message at 100,000 approved), and decides exactly as before."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from convosd.cli.models import CliMessage
from convosd.conversation.hook import Fate
from convosd.conversation.pairing import SenderPolicy
from convosd.conversation.policy import DENIED_COOLDOWN_S, DmPolicy
from convosd.storage.journal import Journal
from convosd.storage.store import Store


def message(sender: str, n: int = 0) -> CliMessage:
    return CliMessage.model_validate(
        {
            "id": f"{n:064x}",
            "senderInboxId": sender,
            "content": "hi",
            "contentType": {"authorityId": "xmtp.org", "typeId": "text"},
            "sentAt": "2026-11-23T12:00:00.000Z",
        }
    )


def policy_with(store: Store, dm_policy: DmPolicy, approved: int, now: list[float]) -> SenderPolicy:
    with store.transaction():
        for i in range(approved):
            store.pairing.approve(f"{i:064x}", "pairing" if i % 2 else "admitted", 0.0)
        store.pairing.deny("d" * 64, now[0] - 10)
        store.pairing.deny("e" * 64, now[0] - DENIED_COOLDOWN_S - 10)
    return SenderPolicy(
        store,
        Journal(store),
        policy=dm_policy,
        owners=lambda: frozenset({"0" * 63 + "f"}),
        conversation_id=lambda: "c" * 32,
        clock=lambda: now[0],
    )


def per_message_s(policy: SenderPolicy, sender: str, count: int = 300) -> float:
    """The CPU time a message of ``count`` decisions: this process's, so time the machine
    gives to other work does not count."""
    started = time.process_time()
    for n in range(count):
        policy(message(sender, n))
    return (time.process_time() - started) / count


def fastest_ratio(slow: SenderPolicy, fast: SenderPolicy, sender: str, rounds: int = 7) -> float:
    """The ratio of the two policies' fastest rounds, taken in turns: a round that met a
    busy machine (caches emptied by other work) does not decide it. Wall-clock time, one
    round each, gave 8.07 once in a fresh-clone run at load average 21."""
    slow_s, fast_s = [], []
    for _ in range(rounds):
        slow_s.append(per_message_s(slow, sender))
        fast_s.append(per_message_s(fast, sender))
    return min(slow_s) / max(min(fast_s), 1e-9)


def test_the_cost_per_message_does_not_grow_with_the_approved_senders(tmp_path: Path) -> None:
    now = [10_000.0]
    (tmp_path / "s").mkdir()
    (tmp_path / "l").mkdir()
    small_store, large_store = Store.open(tmp_path / "s"), Store.open(tmp_path / "l")
    try:
        small = policy_with(small_store, "allowlist", 10, now)
        large = policy_with(large_store, "allowlist", 100_000, now)
        sender = f"{1:064x}"  # approved by the operator in both
        assert small(message(sender)).fate is Fate.JOURNALED
        assert large(message(sender)).fate is Fate.JOURNALED
        ratio = fastest_ratio(large, small, sender)
        # A copy of 100,000 senders per message made this ratio about 100 and more.
        assert ratio < 5, ratio
    finally:
        small_store.close()
        large_store.close()


@pytest.mark.parametrize("dm_policy", ["pairing", "allowlist"])
def test_views_decide_as_the_copies_did(tmp_path: Path, dm_policy: DmPolicy) -> None:
    now = [10_000.0]
    (tmp_path / "s").mkdir()
    store = Store.open(tmp_path / "s")
    try:
        policy = policy_with(store, dm_policy, 10, now)
        fates = {
            "operator-approved": policy(message(f"{1:064x}")).fate,
            "admitted": policy(message(f"{2:064x}")).fate,
            "owner": policy(message("0" * 63 + "f")).fate,
            "denied recently": policy(message("d" * 64)).fate,
            "denied long ago": policy(message("e" * 64)).fate,
        }
        if dm_policy == "pairing":
            assert fates == {
                "operator-approved": Fate.JOURNALED,
                "admitted": Fate.JOURNALED,
                "owner": Fate.JOURNALED,
                "denied recently": Fate.DROPPED,
                "denied long ago": Fate.HELD,  # a new request
            }
        else:
            assert fates == {
                "operator-approved": Fate.JOURNALED,
                "admitted": Fate.DROPPED,  # admission approves under pairing only
                "owner": Fate.JOURNALED,
                "denied recently": Fate.DROPPED,
                "denied long ago": Fate.DROPPED,
            }
    finally:
        store.close()
