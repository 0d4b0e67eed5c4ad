"""events.*: read the journal, subscribe to it (replay then live), search it; and
message.context, the events around a message."""

from __future__ import annotations

import json
from typing import Any

from convosd import errors
from convosd.jsonutil import RawJson
from convosd.rpc import schemas as s
from convosd.rpc.dispatch import CallContext
from convosd.rpc.subscriptions import SubscriptionHub
from convosd.search import QueryError, parse
from convosd.storage.journal import Journal
from convosd.storage.search import SearchQueryError


class EventsApi:
    def __init__(self, journal: Journal, hub: SubscriptionHub) -> None:
        self.journal = journal
        self.hub = hub

    def _check_after(self, after: int) -> None:
        journal = self.journal
        if after < journal.first_seq - 1:
            raise errors.EventsExpired(
                journal.first_seq,
                f"events after {after} are no longer in the journal; it starts at "
                f"{journal.first_seq}",
            )
        if after > journal.last_seq:
            raise errors.InvalidParams(
                f"after ({after}) is beyond the journal's lastSeq ({journal.last_seq})"
            )

    async def subscribe(self, ctx: CallContext, p: s.SubscribeParams) -> s.SubscribeResult:
        journal = self.journal
        after = journal.last_seq if p.after is None else p.after
        self._check_after(after)
        types = frozenset(p.types) if p.types else None
        sub = self.hub.open(ctx.connection, after, types, admin=ctx.is_admin)
        ctx.after_response.append(lambda: self.hub.start(sub))
        position = journal.position
        return s.SubscribeResult(
            subscription=sub.id,
            journal_id=position.journal_id,
            first_seq=position.first_seq,
            last_seq=position.last_seq,
        )

    async def unsubscribe(self, ctx: CallContext, p: s.UnsubscribeParams) -> s.OkResult:
        sub = self.hub.find(ctx.connection, p.subscription)
        if sub is None:
            raise errors.NotFound(f"No subscription {p.subscription} on this connection")
        self.hub.end(sub, None)
        return s.OkResult(ok=True)

    async def read(self, ctx: CallContext, p: s.ReadParams) -> dict[str, Any]:
        """Built as the wire shape (tests validate it against ReadResult): the stored
        bodies are spliced in as they are, not decoded and encoded again (that was 86 % of
        a read). A body stored with ``\\u`` escapes (a lone surrogate made the journal
        escape it) is decoded as before: the whole answer is then escaped alike."""
        journal = self.journal
        self._check_after(p.after)
        events = journal.read(p.after, p.limit, frozenset(p.types) if p.types else None)
        position = journal.position
        bodies = [e.body for e in events]
        # "\x00" never stands raw in JSON text: no match across two bodies
        escaped = "\\ud" in "\x00".join(bodies)
        return {
            "events": [json.loads(b) for b in bodies] if escaped else list(map(RawJson, bodies)),
            "journalId": position.journal_id,
            "firstSeq": position.first_seq,
            "lastSeq": position.last_seq,
        }

    async def search(self, ctx: CallContext, p: s.SearchParams) -> dict[str, Any]:
        """The best matches of ``query`` (FTS5, BM25), with snippets. A query FTS5 cannot
        read is -32602 naming ``query``, never an internal error."""
        try:
            query = parse(p.query)
            hits = self.journal.search(
                query,
                after=p.after,
                before=p.before,
                types=frozenset(p.types) if p.types else None,
                sender=p.sender,
                limit=p.limit,
            )
        except (QueryError, SearchQueryError) as exc:
            # FTS5's own text may quote the query: never echoed
            problem = str(exc) if isinstance(exc, QueryError) else "the index cannot read it"
            raise errors.InvalidParams(
                f"Invalid params: query: {problem}",
                data={"errors": [{"param": "query", "problem": problem}]},
            ) from None
        position = self.journal.position
        return {
            "results": [
                {"event": json.loads(h.body), "snippet": h.snippet, "score": round(h.score, 4)}
                for h in hits
            ],
            **position.as_dict(),
        }

    async def context(self, ctx: CallContext, p: s.ContextParams) -> dict[str, Any]:
        found = self.journal.around(
            p.message_id, p.before, p.after, frozenset(p.types) if p.types else None
        )
        if found is None:
            raise errors.NotFound(f"No message {p.message_id} in the journal")
        earlier, message, later = found
        return {
            "before": [e.as_dict() for e in earlier],
            "message": message.as_dict(),
            "after": [e.as_dict() for e in later],
            **self.journal.position.as_dict(),
        }
