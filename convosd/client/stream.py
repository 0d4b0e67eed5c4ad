"""Following the daemon's events across subscriptions' ends, restarts and resets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from convosd import errors
from convosd.client.calls import Client


class EventStream:
    """``async for event in EventStream(path, after=N)``: every event once, in order.

    Resumes from the last seq after ``subscription.ended`` (overflow) and after the daemon
    restarts or the connection drops (reconnecting with backoff). When the daemon's journal
    changed (a new ``journalId``: ``daemon.reset``), it starts again from seq 0 of the new
    journal and counts it in :attr:`journal_changes`. ``EventsExpired`` (the events after
    ``after`` were trimmed) is raised: the caller decides whether to skip ahead.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        after: int | None = None,
        types: list[str] | None = None,
        reconnect_max_s: float = 5.0,
        journal_id: str | None = None,
    ) -> None:
        self.path = path
        self.last_seq = after
        self.types = types
        self.reconnect_max_s = reconnect_max_s
        #: the journal ``after`` belongs to, if known: a different one on the daemon means
        #: it was reset meanwhile, and the stream starts over from its seq 0
        self.journal_id: str | None = journal_id
        self.journal_changes = 0
        self.reconnects = 0

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._events()

    async def _events(self) -> AsyncIterator[dict[str, Any]]:
        delay = 0.1
        while True:
            try:
                client = await Client.connect(self.path)
            except OSError:
                await asyncio.sleep(delay)
                delay = min(self.reconnect_max_s, delay * 2)
                self.reconnects += 1
                continue
            delay = 0.1
            try:
                params: dict[str, Any] = {}
                if self.last_seq is not None:
                    params["after"] = self.last_seq
                if self.types:
                    params["types"] = self.types
                try:
                    sub = await client.call("events.subscribe", params)
                except errors.InvalidParams:
                    # after > lastSeq: the journal is newer than our position (reset).
                    sub = await client.call("events.subscribe", {**params, "after": 0})
                    self.last_seq = 0
                if self.journal_id is not None and sub["journalId"] != self.journal_id:
                    self.journal_changes += 1
                    if params.get("after"):
                        await client.call(
                            "events.unsubscribe", {"subscription": sub["subscription"]}
                        )
                        sub = await client.call("events.subscribe", {**params, "after": 0})
                    self.last_seq = 0
                self.journal_id = sub["journalId"]
                if self.last_seq is None:
                    # "from now": anchor it, so a reconnect resumes here instead of "now" again
                    self.last_seq = sub["lastSeq"]
                async for event in self._drain(client, sub["subscription"]):
                    yield event
            except (ConnectionError, errors.NotReady):
                self.reconnects += 1
                await asyncio.sleep(delay)
            finally:
                await client.close()

    async def _drain(self, client: Client, subscription: int) -> AsyncIterator[dict[str, Any]]:
        while True:
            getter = asyncio.ensure_future(client.notifications.get())
            closed = asyncio.ensure_future(client.closed.wait())
            try:
                done, _ = await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                # also when the stream itself is cancelled: leave no waiter pending
                for waiter in (getter, closed):
                    if not waiter.done():
                        waiter.cancel()
            if getter not in done:
                raise ConnectionError("the daemon closed the connection")
            note = getter.result()
            params = note.get("params", {})
            if params.get("subscription") != subscription:
                continue
            if note.get("method") == "subscription.ended":
                self.last_seq = params.get("lastSeq", self.last_seq)
                return  # resubscribe after lastSeq
            event = params.get("event", {})
            seq = event.get("seq")
            if isinstance(seq, int) and self.last_seq is not None and seq <= self.last_seq:
                continue
            self.last_seq = seq
            yield event
