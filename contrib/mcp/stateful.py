"""The two tools this server answers itself, ``read_events`` and ``wait_for_message``:
their params and results (built from the daemon's own field types), their descriptions
with and without a session cursor, and the cursor they take and return (opaque to
clients: ``c1:<journalId>:<seq>`` in base64url)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from contrib.mcp.results import (
    tool_param_error,
)
from contrib.mcp.spec import ToolSpec, reads
from contrib.mcp.tools import DAEMON_TOOLS
from convosd import errors
from convosd.rpc import schemas as s

Json = dict[str, Any]
Start = Literal["latest", "beginning"]

DEFAULT_WAIT_S = 30.0
MAX_WAIT_S = 300.0
MAX_EVENTS = 100


# --- the input models of the stateful tools (built from the daemon's own field types) ----


CURSOR_PARAM = (
    "nextCursor from your last read_events or wait_for_message, as it was: go on after "
    "the events it returned (each client keeps its own)."
)
#: the longest cursor taken (one of ours is about 60 characters)
MAX_CURSOR_CHARS = 256


class ReadToolParams(s.Params):
    cursor: str | None = Field(default=None, max_length=MAX_CURSOR_CHARS, description=CURSOR_PARAM)
    since: Annotated[int, Field(ge=0)] | None = Field(
        default=None,
        description="Go back (or forward): show the events after this seq of the current "
        "journal instead (cursor is then ignored); reading goes on from there. 0 = from "
        "the start.",
    )
    limit: Annotated[int, Field(ge=1, le=MAX_EVENTS)] = Field(
        default=50, description="At most this many events (1..100)."
    )
    types: list[s.EventType] | None = Field(
        default=None,
        description="Only these event types (default: all). The cursor still moves past "
        "the events left out.",
    )


class WaitToolParams(s.Params):
    cursor: str | None = Field(default=None, max_length=MAX_CURSOR_CHARS, description=CURSOR_PARAM)
    timeout_s: Annotated[float, Field(ge=0, le=MAX_WAIT_S)] = Field(
        default=DEFAULT_WAIT_S,
        alias="timeoutS",
        description="Give up after this many seconds (0..300) and return no events.",
    )
    types: list[s.EventType] = Field(
        default_factory=lambda: list[s.EventType](["message"]),
        description='Wake up for these event types (default ["message"]: a member wrote).',
    )


JOURNAL_CHANGED = (
    "The daemon was reset since the last call: its journal is new and seqs start over at 1; "
    "these events are the new journal's from its start."
)


NEXT_CURSOR = (
    "Pass it as cursor to the next read_events or wait_for_message to go on after these "
    "events (opaque: the journal and the seq)."
)


class EventsOut(BaseModel):
    events: list[dict[str, Any]] = Field(description="Journal events, oldest first (seq order).")
    cursor: int = Field(description="The seq of the last event shown.")
    next_cursor: str = Field(alias="nextCursor", description=NEXT_CURSOR)
    journal_id: str = Field(alias="journalId")
    last_seq: int = Field(alias="lastSeq", description="The journal's newest seq right now.")
    more: bool = Field(description="More events are waiting: call read_events again.")
    skipped_to: int | None = Field(
        default=None,
        alias="skippedTo",
        description="Set when older events had been trimmed from the journal: reading went "
        "on from this seq.",
    )
    journal_changed: bool = Field(
        default=False,
        alias="journalChanged",
        description=JOURNAL_CHANGED,
    )


class WaitOut(BaseModel):
    events: list[dict[str, Any]]
    cursor: int = Field(description="The seq of the last event shown.")
    next_cursor: str = Field(alias="nextCursor", description=NEXT_CURSOR)
    timed_out: bool = Field(alias="timedOut")
    journal_changed: bool = Field(
        default=False, alias="journalChanged", description=JOURNAL_CHANGED
    )


#: the tools this server answers itself (a cursor over the daemon's journal)
STATEFUL_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "read_events",
        "",
        "Read the conversation's new events (messages from members, your own sends, members "
        "joining or leaving, ...), oldest first. Pass the nextCursor of your last call as "
        "cursor to see only newer events, never one twice; without cursor, the server goes "
        "on after what it last showed this session. Use since to go back.",
        ReadToolParams,
        EventsOut,
        # the conversation and the daemon stay as they are (only a cursor moves: the
        # client's, or this server's session cursor)
        reads(),
    ),
    ToolSpec(
        "wait_for_message",
        "",
        "Wait until the next message arrives (or timeoutS passes) and return it with any "
        "other new events of the types asked for. Takes and returns the same cursor as "
        "read_events (pass its nextCursor): what one returned, the other will not return "
        "again.",
        WaitToolParams,
        WaitOut,
        reads(),
    ),
)
TOOLS: tuple[ToolSpec, ...] = (*STATEFUL_TOOLS, *DAEMON_TOOLS)


#: the stateful tools' descriptions where the server keeps no session cursor (HTTP: every
#: request stands alone, and several clients share the server)
STATELESS_DESCRIPTIONS = {
    "read_events": "Read the conversation's events (messages from members, your own sends, "
    "members joining or leaving, ...), oldest first. Pass the nextCursor of your last "
    "read_events or wait_for_message as cursor to see only newer events, never one twice; "
    "without cursor, {start}. Use since to go back.",
    "wait_for_message": "Wait until the next message arrives (or timeoutS passes) and return "
    "it with any other new events of the types asked for. Pass the nextCursor of your last "
    "read_events or wait_for_message as cursor: nothing is missed or shown twice between "
    "calls; without cursor, {start}.",
}
#: where a call without cursor starts, by ``start`` (no session cursor)
STATELESS_START = {
    "latest": "it starts at the journal's end (only events from now on) on every call",
    "beginning": "it starts at the journal's beginning on every call",
}


def instructions(exposed: frozenset[str]) -> str:
    """The server's instructions, naming only the tools it exposes."""
    steps = [
        ("read_events", "call read_events to catch up"),
        ("wait_for_message", "wait_for_message to wait for the next message"),
        ("send_message", "send_message to answer (replyTo to reply to one)"),
        ("search_messages", "search_messages to find what was said"),
    ]
    named = "; ".join(text for tool, text in steps if tool in exposed)
    told = f" {named[0].upper()}{named[1:]}." if named else ""
    return (
        "Tools for one end-to-end encrypted Convos (XMTP) conversation, through the local "
        f"convosd daemon.{told} Errors carry a kind and what to do."
    )


@dataclass
class Cursor:
    seq: int | None = None  # None: not anchored yet
    journal_id: str | None = None


#: inside a cursor: ``c1:<journalId>:<seq>``, then base64url without padding (opaque to
#: clients: the format may change with its version tag)
_CURSOR = re.compile(r"c1:([0-9A-Za-z_-]{1,64}):(0|[1-9][0-9]{0,17})")
BAD_CURSOR = (
    "is not a cursor this server returned: pass nextCursor from the last read_events or "
    "wait_for_message as it was, or leave cursor out to start again"
)


def encode_cursor(cursor: Cursor) -> str:
    """A position a client keeps and passes back: the journal and the last seq shown."""
    assert cursor.journal_id is not None and cursor.seq is not None
    raw = f"c1:{cursor.journal_id}:{cursor.seq}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(text: str) -> Cursor:
    """The position ``text`` names; INVALID_PARAMS naming ``cursor`` for anything that is
    not one of :func:`encode_cursor`'s."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise tool_param_error("cursor", BAD_CURSOR) from None
    found = _CURSOR.fullmatch(raw)
    if found is None or encode_cursor(Cursor(int(found[2]), found[1])) != text:
        raise tool_param_error("cursor", BAD_CURSOR)
    return Cursor(int(found[2]), found[1])


def past_the_end() -> errors.InvalidParams:
    return tool_param_error(
        "cursor",
        "points past the end of the daemon's journal (not a cursor this server returned): "
        "pass nextCursor as it was, or leave cursor out to start again",
    )
