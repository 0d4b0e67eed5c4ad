"""The journal: the params and results of ``events.subscribe``, ``events.unsubscribe``,
``events.read``, ``events.search`` and ``message.context`` (convosd.api.events)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from convosd.rpc.schemas.base import EventType, HexId, Params, Result


class SubscribeParams(Params):
    after: Annotated[int, Field(ge=0)] | None = None
    types: list[EventType] | None = None


class SubscribeResult(Result):
    subscription: int
    journal_id: str = Field(alias="journalId")
    first_seq: int = Field(alias="firstSeq")
    last_seq: int = Field(alias="lastSeq")


class UnsubscribeParams(Params):
    subscription: int


class ReadParams(Params):
    after: Annotated[int, Field(ge=0)] = 0
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    types: list[EventType] | None = None


class ReadResult(Result):
    events: list[dict[str, Any]]
    journal_id: str = Field(alias="journalId")
    first_seq: int = Field(alias="firstSeq")
    last_seq: int = Field(alias="lastSeq")


class SearchParams(Params):
    query: Annotated[str, Field(min_length=1, max_length=1024)] = Field(
        description="words, and phrases in double quotes; every result has all of them; a "
        "word ending in * matches as a prefix; nothing else is syntax (OR, NEAR, -, "
        "parentheses are searched as text); at most 32 terms, no U+0000, else -32602"
    )
    types: list[Literal["message", "message_sent"]] | None = Field(
        default=None, description="only these event types (default: both)"
    )
    sender: HexId | None = Field(
        default=None, description="only messages from this inbox id (message events)"
    )
    after: Annotated[int, Field(ge=0)] = Field(
        default=0, description="only events with seq > after (as events.read)"
    )
    before: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="only events with seq < before"
    )
    limit: Annotated[int, Field(ge=1, le=100)] = 20


class SearchHit(Result):
    event: dict[str, Any] = Field(description="the journaled event, as events.read has it")
    snippet: str = Field(
        description="up to 16 words of the text around the match, matched words in « »"
    )
    score: float = Field(
        description="relevance (BM25 among the newest 500 matches); higher is better"
    )


class SearchResult(Result):
    results: list[SearchHit] = Field(
        description="best match first, ranked among the newest 500 matches (page back with before)"
    )
    journal_id: str = Field(alias="journalId")
    first_seq: int = Field(alias="firstSeq")
    last_seq: int = Field(alias="lastSeq")


class ContextParams(Params):
    message_id: HexId = Field(alias="messageId")
    before: Annotated[int, Field(ge=0, le=100)] = Field(
        default=5, description="at most this many events before the message"
    )
    after: Annotated[int, Field(ge=0, le=100)] = Field(
        default=5, description="at most this many events after the message"
    )
    types: list[EventType] | None = Field(
        default=None, description="only these event types around the message (default: all)"
    )


class ContextResult(Result):
    before: list[dict[str, Any]] = Field(description="the events before the message, in order")
    message: dict[str, Any] = Field(description="the message or message_sent event")
    after: list[dict[str, Any]] = Field(description="the events after the message, in order")
    journal_id: str = Field(alias="journalId")
    first_seq: int = Field(alias="firstSeq")
    last_seq: int = Field(alias="lastSeq")
