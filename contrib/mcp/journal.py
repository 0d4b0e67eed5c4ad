"""The two tools this server answers itself, ``read_events`` and ``wait_for_message``
(their params, results and cursor: :mod:`contrib.mcp.stateful`): both read from a position
in the journal.

- ``read_events`` returns the events after a cursor (the journal and the last seq shown)
  and ``nextCursor``, which the client passes back as ``cursor`` to go on: never an event
  twice; ``since`` moves the position back (or forward) first. Every read compares
  ``journalId``: a reset's new journal (or a cursor from another journal) is shown from its
  seq 1 (``journalChanged``).
- ``wait_for_message`` long-polls: a subscription after the same cursor, until the next
  matching event or a timeout.

The cursor is the client's (an opaque string), so requests need no session: over HTTP
several clients each keep their own. A call without one uses the server's session cursor
on stdio (the process is one client's session: it starts at the journal's end when the
session's first request arrives, ``start="latest"``, or at its beginning); without a
session cursor (``session_cursor=False``, HTTP) it starts there on every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from contrib.mcp.daemon import Daemon
from contrib.mcp.results import DaemonUnreachable
from contrib.mcp.stateful import (
    MAX_EVENTS,
    Cursor,
    EventsOut,
    Json,
    ReadToolParams,
    Start,
    WaitOut,
    WaitToolParams,
    decode_cursor,
    encode_cursor,
    past_the_end,
)
from convosd import errors
from convosd.client import Client

log = logging.getLogger("contrib.mcp")


class JournalTools:
    """``read_events`` and ``wait_for_message`` on ``daemon``, and the session's cursor
    (kept for the calls that pass none when ``session_cursor``)."""

    def __init__(
        self, daemon: Daemon, *, start: Start, max_wait_s: float, session_cursor: bool
    ) -> None:
        self.daemon = daemon
        self.start = start
        self.max_wait_s = max_wait_s
        self.session_cursor = session_cursor
        self.cursor = Cursor()
        self._cursor_lock = asyncio.Lock()

    async def anchor_quietly(self) -> None:
        """:meth:`anchor`, when this server keeps a session cursor and the daemon answers."""
        if not self.session_cursor:
            return
        with contextlib.suppress(DaemonUnreachable, errors.ConvosdError):
            await self.anchor()

    async def anchor(self) -> None:
        """Fix the session's cursor at the session's start: the journal's end (or its start)."""
        async with self._cursor_lock:
            if self.cursor.seq is not None:
                return
            start = await self._start_position()
            self.cursor.journal_id, self.cursor.seq = start.journal_id, start.seq

    async def _start_position(self) -> Cursor:
        """Where a reader without a cursor starts: the journal's end (``start="latest"``)
        or just before its oldest event."""
        journal = (await self.daemon.call("status"))["journal"]
        if self.start == "latest":
            return Cursor(int(journal["lastSeq"]), journal["journalId"])
        return Cursor(max(0, int(journal["firstSeq"]) - 1), journal["journalId"])

    @contextlib.asynccontextmanager
    async def _position(
        self, given: str | None, *, since: int | None = None
    ) -> AsyncIterator[Cursor]:
        """The cursor one call reads from and moves: its own when the call passes one (or
        when this server keeps no session cursor: HTTP), else the session's, held under its
        lock for the call. ``since`` replaces the seq (of the current journal)."""
        if given is not None:
            cursor = decode_cursor(given)
            if since is not None:
                cursor = Cursor(since)
            yield cursor
        elif not self.session_cursor:
            yield Cursor(since) if since is not None else await self._start_position()
        else:
            await self.anchor()
            async with self._cursor_lock:
                yield self.cursor

    @staticmethod
    def _new_journal(cursor: Cursor, journal_id: str) -> bool:
        """``journal_id`` is not the cursor's journal (a reset): start it from seq 0."""
        if cursor.journal_id is None or journal_id == cursor.journal_id:
            cursor.journal_id = journal_id
            return False
        log.info("the daemon's journal changed (a reset): reading it from its start")
        cursor.journal_id = journal_id
        cursor.seq = 0
        return True

    async def _journal_changed(self, cursor: Cursor) -> bool:
        """After ``after > lastSeq``: a reset replaced the journal; start at its seq 0."""
        status = await self.daemon.call("status")
        return self._new_journal(cursor, status["journal"]["journalId"])

    async def read_events(self, params: ReadToolParams) -> Json:
        async with self._position(params.cursor, since=params.since) as cursor:
            if params.since is not None:
                cursor.seq = params.since
            skipped_to: int | None = None
            changed = False
            for _ in range(3):
                request: Json = {"after": cursor.seq, "limit": params.limit}
                if params.types:
                    request["types"] = list(params.types)
                try:
                    result = await self.daemon.call("events.read", request)
                except errors.EventsExpired as exc:
                    cursor.seq = skipped_to = max(0, exc.first_seq - 1)
                    continue
                except errors.InvalidParams:
                    if params.since is not None:
                        raise
                    if not await self._journal_changed(cursor):
                        if params.cursor is not None:
                            raise past_the_end() from None
                        raise
                    changed = True
                    continue
                # A reset makes a new journal whose seqs start over: the cursor's seq means
                # nothing there (the new journal may well have passed it), so every read
                # compares journalId and starts the new journal from its seq 0.
                if params.since is None and self._new_journal(cursor, result["journalId"]):
                    changed = True
                    continue
                break
            else:  # pragma: no cover - the journal moved under us three times
                raise errors.Busy("the journal changed while reading; call again")
            events = result["events"]
            cursor.journal_id = result["journalId"]
            seq, next_cursor = self._past(cursor, events)
            out = EventsOut(
                events=events,
                cursor=seq,
                nextCursor=next_cursor,
                journalId=result["journalId"],
                lastSeq=result["lastSeq"],
                more=len(events) >= params.limit,
                skippedTo=skipped_to,
                journalChanged=changed,
            )
            return out.model_dump(by_alias=True)

    @staticmethod
    def _past(cursor: Cursor, events: list[Json]) -> tuple[int, str]:
        """Move ``cursor`` past ``events`` (the last one shown): its seq, and it as the
        ``nextCursor`` the client passes back."""
        if events:
            cursor.seq = int(events[-1]["seq"])
        assert cursor.seq is not None
        return cursor.seq, encode_cursor(cursor)

    async def wait_for_message(self, params: WaitToolParams) -> Json:
        timeout = min(params.timeout_s, self.max_wait_s)
        async with self._position(params.cursor) as cursor:
            # Its own connection: its notifications are its own, and a timeout that closes
            # it drops the subscription with it.
            sub_client = await self.daemon.connect_apart()
            try:
                events, changed = await self._wait_on(
                    sub_client, cursor, params.types, timeout, given=params.cursor is not None
                )
            except ConnectionError as exc:
                raise DaemonUnreachable(self.daemon.socket, "the connection closed") from exc
            finally:
                await sub_client.close()
            seq, next_cursor = self._past(cursor, events)
            out = WaitOut(
                events=events,
                cursor=seq,
                nextCursor=next_cursor,
                timedOut=not events,
                journalChanged=changed,
            )
            return out.model_dump(by_alias=True)

    async def _wait_on(
        self, client: Client, cursor: Cursor, kinds: Sequence[str], wait_s: float, *, given: bool
    ) -> tuple[list[Json], bool]:
        """The events after ``cursor`` of ``kinds`` (waiting up to ``wait_s`` for the first)
        and whether the journal changed (a reset) since the cursor was set."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        changed = False
        for _ in range(3):
            try:
                sub = await client.call(
                    "events.subscribe", {"after": cursor.seq, "types": list(kinds)}
                )
            except errors.EventsExpired as exc:
                cursor.seq = max(0, exc.first_seq - 1)
                continue
            except errors.InvalidParams:
                if not await self._journal_changed(cursor):
                    if given:
                        raise past_the_end() from None
                    raise
                changed = True
                continue
            if self._new_journal(cursor, sub["journalId"]):  # as read_events: from the new seq 0
                changed = True
                await client.call("events.unsubscribe", {"subscription": sub["subscription"]})
                continue
            break
        else:  # pragma: no cover
            raise errors.Busy("the journal changed while subscribing; call again")
        events: list[Json] = []
        while len(events) < MAX_EVENTS:
            remaining = deadline - loop.time() if not events else 0.0
            try:
                if remaining > 0:
                    note = await asyncio.wait_for(self._next_note(client), remaining)
                else:
                    note = client.notifications.get_nowait()
            except (TimeoutError, asyncio.QueueEmpty):
                break
            note_params = note.get("params", {})
            if note_params.get("subscription") != sub["subscription"]:
                continue
            if note.get("method") == "subscription.ended":
                break
            event = note_params.get("event", {})
            if isinstance(event.get("seq"), int) and event["seq"] > (cursor.seq or 0):
                events.append(event)
        return events, changed

    @staticmethod
    async def _next_note(client: Client) -> Json:
        getter = asyncio.ensure_future(client.notifications.get())
        closed = asyncio.ensure_future(client.closed.wait())
        try:
            done, _ = await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not getter.done():
                getter.cancel()
        if getter in done:
            note: Json = getter.result()
            return note
        raise ConnectionError("the daemon closed the connection")
