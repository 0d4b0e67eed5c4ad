"""Hypothesis against the child-output readers: no line, however broken, is fatal."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convosd.cli.output import (
    child_error_summary,
    classify,
    error_text,
    is_fatal_child_error,
    last_json,
)
from convosd.cli.streams import BadLine, parse_stream_line, parse_watcher_line
from convosd.conversation.ingest import Ingest
from convosd.framing import OVERSIZE, LineSplitter
from convosd.storage.journal import Journal
from convosd.storage.store import Store
from tests.helpers import examples

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=6),
    max_leaves=15,
)
message_like = st.fixed_dictionaries(
    {
        "id": st.text(max_size=70),
        "senderInboxId": st.text(max_size=70),
        "contentType": st.one_of(
            json_values,
            st.fixed_dictionaries({"typeId": st.sampled_from(["text", "reply", "x"])}),
        ),
        "content": json_values,
        "sentAt": st.one_of(st.text(max_size=30), st.just("2026-11-23T12:00:00.000Z")),
    }
)
watcher_events = st.fixed_dictionaries(
    {"event": st.sampled_from(["join_request_accepted", "stream_ended", "error", "x"])},
    optional={
        "joinerInboxId": json_values,
        "conversationId": json_values,
        "reason": json_values,
        "messageId": json_values,
        "message": json_values,
    },
)
lines = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    message_like.map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(lines, max_size=20))
def test_stream_lines_never_raise(
    tmp_path_factory: pytest.TempPathFactory, batch: list[bytes]
) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    store = Store.open(root)
    try:
        journal = Journal(store)
        ingest = Ingest(
            journal=journal, conversation_id="c" * 32, own_inbox_id="0" * 64, bound_at=0.0
        )
        ingest.on_stream_lines(batch)
        assert ingest.stats.lines == len(batch)
        assert journal.last_seq <= len(batch)
    finally:
        store.close()


@settings(max_examples=examples(300), deadline=None)
@given(
    data=st.binary(max_size=3000),
    cuts=st.lists(st.integers(0, 3000), max_size=8),
    limit=st.integers(1, 200),
)
def test_splitter_bounds_memory(data: bytes, cuts: list[int], limit: int) -> None:
    splitter = LineSplitter(limit)
    previous = 0
    for cut in sorted(c for c in cuts if c <= len(data)):
        for frame in splitter.feed(data[previous:cut]):
            assert frame is OVERSIZE or len(frame) <= limit  # type: ignore[arg-type]
        assert splitter.buffered <= limit
        previous = cut
    splitter.feed(data[previous:])
    assert splitter.buffered <= limit


@settings(max_examples=examples(300), deadline=None)
@given(stdout=st.text(max_size=500), stderr=st.text(max_size=500), code=st.integers(1, 255))
def test_output_readers_never_raise_unexpectedly(stdout: str, stderr: str, code: int) -> None:
    with contextlib.suppress(ValueError):
        last_json(stdout)
    error_text(stderr)
    assert classify("conversation:send-text", code, stderr).code < 0


@settings(max_examples=examples(300), deadline=None)
@given(
    line=st.one_of(
        lines,
        watcher_events.map(lambda v: json.dumps(v).encode()),
        st.text(alphabet="Adingtoconvers 0123456789abcdef", max_size=120).map(str.encode),
    )
)
def test_child_line_readers_never_raise_unexpectedly(line: bytes) -> None:
    """A stream line is a message, nothing (blank) or a BadLine; a watcher line is an event
    or nothing; the stderr readers take any text."""
    with contextlib.suppress(BadLine):
        parse_stream_line(line)
    parse_watcher_line(line)
    text = line.decode("utf-8", errors="replace")
    summary = child_error_summary(text)
    assert summary is None or (len(summary) <= 500 and "\n" not in summary)
    if summary is not None:
        is_fatal_child_error(summary)
