"""The journal and the downloaded attachments kept within their limits.

:class:`Retention` trims the journal (by age and count, in chunks so the loop runs between
them) and removes the downloaded attachments whose message is no longer in it; the instance
runs :meth:`Retention.loop` every TRIM_INTERVAL_S in its own task scope.
"""

from __future__ import annotations

import asyncio

import structlog

from convosd.attachments.store import AttachmentStore
from convosd.storage.journal import Journal
from convosd.storage.store import StoreError

TRIM_INTERVAL_S = 3600.0


class Retention:
    def __init__(self, journal: Journal, attachments: AttachmentStore) -> None:
        self.journal = journal
        self.attachments = attachments
        self.log = structlog.get_logger("convosd.instance")

    async def loop(self) -> None:
        while True:
            await asyncio.sleep(TRIM_INTERVAL_S)
            try:
                await self.apply()
            except StoreError as exc:
                self.log.error("journal_trim_failed", error=str(exc))

    async def apply(self) -> int:
        """Trim the journal (age, count; in chunks, the loop runs between them) and remove
        the downloaded attachments whose message is no longer in it. Returns how many
        events went."""
        removed = await self.journal.trim_in_steps()
        if removed:
            self.log.info("journal_trimmed", removed=removed, first_seq=self.journal.first_seq)
        stored = self.attachments.message_ids()
        if stored:
            kept = self.journal.journaled_messages(stored)
            gone = self.attachments.prune(lambda message_id: message_id in kept)
            if gone:
                self.log.info("attachments_trimmed", removed=gone)
        return removed
