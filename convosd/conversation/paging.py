"""Reading the backfill's window page by page (``conversation messages --direction ascending
--sent-after <cursor> --limit N``): the cursor arithmetic over a ``sentAt`` that shows
milliseconds only. Each page goes to the caller's merge as it is read; holding live lines,
the counters of health and the logs of a whole backfill are the caller's
(:class:`convosd.conversation.ingest.Ingest`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog

from convosd.cli.models import CliMessage

PAGE_SIZE = 200
#: ``sentAt`` shows milliseconds; a page whose messages all share one is completed by
#: reading that millisecond alone, at most this many messages.
SAME_MS_LIMIT = 2_000
MS_NS = 1_000_000

#: ``fetch(sent_after_ns, sent_before_ns, limit)``: one ``conversation messages`` call in
#: ascending order; both bounds exclusive, as the CLI has them.
FetchPage = Callable[[int, int | None, int], Awaitable[list[CliMessage]]]

log = structlog.get_logger("convosd.ingest")


def ms_start(message: CliMessage) -> int:
    """The first nanosecond of ``message``'s millisecond."""
    return message.sent_at_ns - message.sent_at_ns % MS_NS


class Pager:
    """One read of the window. ``merge`` journals a page and says how many events it
    wrote; ``complete(asked)`` says whether a page shorter than PAGE_SIZE, asked for at
    ``asked`` (``time.monotonic()``), ends the read (else it reads on from there)."""

    def __init__(
        self,
        fetch_page: FetchPage,
        *,
        merge: Callable[[list[CliMessage]], int],
        complete: Callable[[float], bool] = lambda _asked: True,
    ) -> None:
        self.fetch_page = fetch_page
        self.merge = merge
        self.complete = complete
        self.pages = 0
        self.slowest_s = 0.0
        self.read = 0
        self.journaled = 0
        #: why the window was not read whole (the read still ends normally)
        self.problem: str | None = None
        #: merged up to here: where a read that failed goes on next time
        self.resume_ns: int | None = None
        #: where the last page of a complete read started
        self.tail_ns: int | None = None

    async def run(self, cursor: int) -> None:
        """Read from ``cursor`` (exclusive) until a complete short page.

        ``--sent-after`` is exclusive and compares nanoseconds, but ``sentAt`` shows only
        milliseconds, so each next page starts at the beginning of the last page's last
        millisecond (what else that millisecond holds may follow). Every page moves the
        cursor forward by at least one millisecond: when a whole page shares one, that
        millisecond is read alone (``--sent-before`` its end) and the cursor moves past it.
        """
        while True:
            page, asked = await self._page(cursor, None, PAGE_SIZE)
            if len(page) < PAGE_SIZE:
                if self.complete(asked):
                    self.tail_ns = cursor
                    return
                if page:
                    cursor = max(cursor, ms_start(page[-1]) - 1)
                continue
            last_ms = ms_start(page[-1])
            if page[0].sent_at_ns < last_ms:
                next_cursor = last_ms - 1
            else:
                same, _ = await self._page(last_ms - 1, last_ms + MS_NS, SAME_MS_LIMIT)
                if len(same) >= SAME_MS_LIMIT:
                    self.problem = (
                        f"more than {SAME_MS_LIMIT} messages share sentAt "
                        f"{page[-1].sent_at.isoformat()}: the backfill read "
                        f"{SAME_MS_LIMIT} of them and went on (others may be missing)"
                    )
                    log.warning("backfill_same_ms_overflow", limit=SAME_MS_LIMIT)
                next_cursor = last_ms + MS_NS - 1
            if next_cursor <= cursor:
                # The CLI answered with messages at or before the cursor: paging on
                # would read the same page forever.
                self.problem = (
                    f"the backfill cannot progress: messages after {cursor} ns start at "
                    f"{page[0].sent_at.isoformat()}; the rest of the window is not read"
                )
                log.error("backfill_stuck", cursor_ns=cursor)
                return
            cursor = next_cursor
            self.resume_ns = cursor  # merged up to here, whatever comes next

    async def _page(
        self, after_ns: int, before_ns: int | None, limit: int
    ) -> tuple[list[CliMessage], float]:
        asked = time.monotonic()
        try:
            page = await self.fetch_page(after_ns, before_ns, limit)
        finally:
            self.pages += 1
            self.slowest_s = max(self.slowest_s, time.monotonic() - asked)
        self.read += len(page)
        self.journaled += self.merge(page)
        return page, asked
