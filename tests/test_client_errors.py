"""Errors on the client side: the daemon's error becomes the same class, with its attributes.

A client catches ``errors.Busy`` and reads ``retry_after_s``; catches ``errors.EventsExpired``
and reads ``first_seq``. Those are set by the classes' constructors, so the client must build
its errors through them (not with ``__new__``), and keep ``error.data`` as the daemon sent it.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest

from convosd import errors
from convosd.client import ConvosdClient, EventStream, SyncClient, error_from
from tests.fakeconvos.network import FakeNetwork
from tests.rpc_harness import running_daemon


def _wire(error: errors.ConvosdError) -> dict[str, Any]:
    """The ``error`` object of a JSON-RPC response, as the daemon sends it."""
    return {"code": error.code, "message": error.message, "data": error.rpc_data()}


@pytest.mark.parametrize(
    "sent",
    [
        errors.Busy("over sendRatePerS (5.0/s)", retry_after_s=0.1234),
        errors.Busy(),
        errors.EventsExpired(7),
        errors.NotBound(),
        errors.AlreadyBound.join_pending(),
        errors.CliFailed("the CLI failed", exit_code=2, cli_message="Error: boom"),
        errors.InvalidParams("Invalid params", data={"errors": [{"param": "x", "problem": "y"}]}),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_error_is_rebuilt_with_its_attributes_and_data(sent: errors.ConvosdError) -> None:
    got = error_from(_wire(sent))
    assert type(got) is type(sent)
    assert got.message == sent.message
    # data as the daemon sent it, in its order (convosctl prints it)
    assert list(got.rpc_data().items()) == list(sent.rpc_data().items())
    # every attribute the class's constructor sets exists on the client's error too
    assert set(vars(got)) >= set(vars(sent))


async def test_busy_from_the_send_rate_limit_carries_retry_after_s(
    net: FakeNetwork, tmp_path: Path
) -> None:
    # one send per 100 s: the second send is over the rate whatever the machine's load
    async with running_daemon(net, tmp_path / "d", send_rate_per_s=0.01) as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            await client.create(name="rate")
            await client.send("first")
            with pytest.raises(errors.Busy) as busy:
                await client.send("second")
    assert busy.value.retry_after_s is not None and 90 < busy.value.retry_after_s <= 100
    assert busy.value.extra["retryAfterS"] == round(busy.value.retry_after_s, 3)


async def test_events_expired_carries_first_seq(net: FakeNetwork, tmp_path: Path) -> None:
    async with running_daemon(net, tmp_path / "d", journal_max_events=2) as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            await client.create(name="trimmed")
            for i in range(3):
                await client.send(f"m{i}")
            journal = daemon.instance.journal
            assert journal.trim() > 0  # retention (normally hourly) applied now
            with pytest.raises(errors.EventsExpired) as expired:
                await client.read_events(after=0)
            assert expired.value.first_seq == journal.first_seq > 1
            # the same on a subscription that follows the journal
            with pytest.raises(errors.EventsExpired) as followed:
                async for _ in EventStream(daemon.socket, after=0):
                    pass
            assert followed.value.first_seq == journal.first_seq


def test_a_tiny_wait_is_never_advertised_as_retry_now() -> None:
    # the rate limiter can answer 0.0004 s; rounding that to 0.0 told clients "retry now"
    assert errors.Busy(retry_after_s=0.0004).rpc_data()["retryAfterS"] == 0.001
    assert errors.Busy(retry_after_s=0.25).rpc_data()["retryAfterS"] == 0.25


def test_a_sync_client_that_cannot_connect_leaves_no_event_loop(tmp_path: Path) -> None:
    """A script's SyncClient to a daemon that is not there raises, and closes the loop it
    made (left open it warned "unclosed event loop" later, at garbage collection)."""
    with pytest.raises(FileNotFoundError):
        SyncClient(tmp_path / "nothing.sock")
    gc.collect()
