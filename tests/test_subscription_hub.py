"""The subscription hub owns every subscription, by id and by connection: a connection
finds only its own, ending one (for any reason) removes it from both, and ``end_of`` ends a
connection's subscriptions without a notice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from convosd.rpc.subscriptions import Subscription, SubscriptionHub
from convosd.storage.journal import Journal
from convosd.storage.store import Store


class Conn:
    """An outbox that records what the hub hands it."""

    def __init__(self) -> None:
        self.events: list[bytes] = []
        self.notices: list[bytes] = []

    def send_event(self, subscription: Subscription, line: bytes) -> None:
        self.events.append(line)

    def send_notice(self, line: bytes) -> None:
        self.notices.append(line)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[SubscriptionHub]:
    store = Store.open(tmp_path)
    yield SubscriptionHub(Journal(store), queue_limit=10)
    store.close()


async def test_a_connection_finds_only_its_own_subscriptions(hub: SubscriptionHub) -> None:
    a, b = Conn(), Conn()
    first = hub.open(a, 0, None)
    second = hub.open(a, 0, None)
    other = hub.open(b, 0, None)
    assert len(hub) == 3
    assert (hub.count(a), hub.count(b)) == (2, 1)
    assert hub.find(a, first.id) is first and hub.find(a, second.id) is second
    assert hub.find(b, first.id) is None and hub.find(a, other.id) is None
    hub.end(first, None)
    assert hub.find(a, first.id) is None and hub.count(a) == 1 and len(hub) == 2
    assert a.notices == []  # ended silently


async def test_end_of_ends_one_connection_silently(hub: SubscriptionHub) -> None:
    a, b = Conn(), Conn()
    mine = [hub.open(a, 0, None), hub.open(a, 0, None)]
    other = hub.open(b, 0, None)
    hub.end_of(a)
    assert all(sub.ended for sub in mine) and not other.ended
    assert hub.count(a) == 0 and hub.count(b) == 1 and len(hub) == 1
    assert a.notices == []
    hub.end_all("reset")
    assert other.ended and hub.count(b) == 0 and len(hub) == 0
    assert len(b.notices) == 1 and b"subscription.ended" in b.notices[0]
