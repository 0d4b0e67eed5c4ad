"""The senders' names in one bound conversation, known before their first message is journaled.

:class:`SenderNames` keeps the profile name of each member (from ``profiles`` reads, or from
the join request our watcher accepted until a profile message says otherwise) and looks an
unknown or nameless one up again in the background. A sender's first message waits for its
name: the stream's lines are held (with every line after them, at most NAMES_WAIT_S) behind
one ``profiles`` read, and a backfill page holding such a message waits for the same read.
It is a part of the :class:`~convosd.conversation.bound.BoundConversation`, created and
dropped with it; its lookup runs in the bound conversation's task scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence

from convosd import errors
from convosd.cli import ConvosCli
from convosd.cli.models import CliMessage
from convosd.cli.streams import stream_line_sender
from convosd.tasks import TaskScope

#: how long the stream's lines wait for the name of a sender's first message
NAMES_WAIT_S = 5.0
#: lines held meanwhile, at most; past that they go on (in order) without waiting
HELD_LINES_MAX = 10_000
#: how often a sender whose profile had no name is looked up again
NAMELESS_RETRY_S = 5.0


class SenderNames:
    def __init__(
        self,
        conversation_id: str,
        *,
        cli: ConvosCli,
        tasks: TaskScope,
        own_inbox_id: Callable[[], str | None],
        ask_refresh: Callable[[], None],
        deliver: Callable[[Sequence[bytes]], None],
    ) -> None:
        self.conversation_id = conversation_id
        self.cli = cli
        #: the bound conversation's scope: closed, nothing here starts or reads any more
        self.tasks = tasks
        self.own_inbox_id = own_inbox_id
        #: a ``profiles`` read soon (coalesced with the bound conversation's other reads)
        self.ask_refresh = ask_refresh
        #: the stream's lines on to the ingest, in order
        self.deliver = deliver
        #: the profile name of each inbox seen (None: its profile had no name yet)
        self.known: dict[str, str | None] = {}
        #: when ``profiles`` was last read
        self.read_at = 0.0
        #: the names joiners gave in their join requests (our watcher reports them): what
        #: they are called until a profile message of theirs says otherwise
        self.join_names: dict[str, str] = {}
        #: when a sender whose profile had no name was last looked up again
        self._nameless_at: dict[str, float] = {}
        #: senders whose first message (since this binding started) the stream delivered
        self._writers: set[str] = set()
        #: a lookup of names for a first message, and the stream lines held behind it
        self._names_lookup: asyncio.Task[None] | None = None
        self._held_lines: list[bytes] = []

    def get(self, inbox_id: str) -> str | None:
        """The profile name last seen for ``inbox_id`` (no lookup)."""
        return self.known.get(inbox_id)

    def sender_name(self, inbox_id: str) -> str | None:
        """The profile name of ``inbox_id``. An unknown one, or one whose profile had no name
        (at most every NAMELESS_RETRY_S: a profile message may have come since), is looked
        up in the background for later messages."""
        if inbox_id not in self.known:
            self.known[inbox_id] = None
            self.ask_refresh()
        elif self.known[inbox_id] is None:
            now = time.monotonic()
            if now - self._nameless_at.get(inbox_id, 0.0) >= NAMELESS_RETRY_S:
                self._nameless_at[inbox_id] = now
                self.ask_refresh()
        return self.known.get(inbox_id)

    def joined(self, joiner: str, name: str | None) -> None:
        """Our watcher accepted ``joiner``; ``name``, from the join request's profile, is
        its name from now on: known before the joiner can write (the CLI's ProfileSnapshot
        is built from profile messages, which a joiner sends only after it is in, and never
        with ``join --no-wait``)."""
        if name:
            self.join_names[joiner] = name
            self.known[joiner] = name

    async def refresh(self) -> None:
        if self.tasks.closed:
            return
        profiles = await self.cli.profiles(self.conversation_id)
        for profile in profiles.profiles:
            # no profile message yet: the name from the join request, if we admitted them
            self.known[profile.inbox_id] = (
                profile.name if profile.has_profile else self.join_names.get(profile.inbox_id)
            )
        self.read_at = time.monotonic()

    # --- a sender's name before their first message ------------------------------------

    def on_stream_lines(self, lines: Sequence[bytes]) -> None:
        """The stream's lines to the ingest, in order. The first message of a sender whose
        name is not known waits (with every line after it, at most NAMES_WAIT_S) for one
        ``profiles`` read: a joiner's profile message comes before their first text, so
        that message carries the name the CLI knows by then. Once per sender."""
        if self._names_lookup is not None and len(self._held_lines) < HELD_LINES_MAX:
            self._held_lines.extend(lines)
            return
        self._release_held()
        senders = (stream_line_sender(line) for line in lines)
        if self._names_lookup is None and self._nameless_first_writer(senders):
            self._held_lines.extend(lines)
            self._names_lookup = self.tasks.spawn(self._look_up_names(), "names-lookup")
            return
        self.deliver(lines)

    async def before_backfill_page(self, messages: Sequence[CliMessage]) -> None:
        """A first message the backfill reads before the stream: named like the stream's."""
        if self._nameless_first_writer(m.sender_inbox_id for m in messages):
            with contextlib.suppress(TimeoutError, errors.ConvosdError):
                await asyncio.wait_for(self.refresh(), NAMES_WAIT_S)
        elif self._names_lookup is not None:
            # The stream holds a first message for its sender's name, and this page
            # (read meanwhile) may hold the same message: it waits for the same lookup,
            # or it would be journaled first, without the name. asyncio.wait neither
            # cancels the lookup at the timeout nor raises its end (the binding's close
            # cancels it), and lets the page's own cancellation through: a page that
            # swallowed it (suppressing CancelledError around a shield did) went on, and
            # the backfill loop with it, so the close waited for it for ever.
            await asyncio.wait({self._names_lookup}, timeout=NAMES_WAIT_S)

    def _nameless_first_writer(self, senders: Iterable[str | None]) -> bool:
        """Whether one of ``senders`` writes for the first time with no name known (each
        counts once)."""
        own = self.own_inbox_id()
        found = False
        for sender in senders:
            if sender is None or sender == own or sender in self._writers:
                continue
            self._writers.add(sender)
            found = found or self.known.get(sender) is None
        return found and not self.tasks.closed

    async def _look_up_names(self) -> None:
        try:
            with contextlib.suppress(TimeoutError, errors.ConvosdError):
                await asyncio.wait_for(self.refresh(), NAMES_WAIT_S)
        finally:
            self._names_lookup = None
            if not self.tasks.closed:  # closing: the next start's backfill reads them again
                self._release_held()

    def _release_held(self) -> None:
        held, self._held_lines = self._held_lines, []
        if held:
            self.deliver(held)
