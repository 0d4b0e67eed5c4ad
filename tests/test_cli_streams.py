"""What the long-lived commands print, read without a process: stream lines, watcher lines,
explode notices, and the stderr of a child that exited (convosd.cli.streams, cli.output)."""

from __future__ import annotations

import json

import pytest

from convosd.cli.models import CliMessage
from convosd.cli.output import child_error_summary, is_fatal_child_error
from convosd.cli.streams import (
    BadLine,
    JoinAccepted,
    WatcherError,
    WatcherStreamEnded,
    is_explode_notice,
    parse_stream_line,
    parse_watcher_line,
)

INBOX = "a1" * 32
CID = "c0" * 16


def message(type_id: str = "text", **extra: object) -> dict[str, object]:
    return {
        "id": "m1",
        "senderInboxId": INBOX,
        "contentType": {"authorityId": "xmtp.org", "typeId": type_id, "versionMajor": 1},
        "content": "hi",
        "sentAt": "2026-11-26T00:00:00.123Z",
        **extra,
    }


# --- conversation stream --------------------------------------------------------------


def test_a_stream_line_is_one_message() -> None:
    parsed = parse_stream_line(json.dumps(message()).encode() + b"\n")
    assert isinstance(parsed, CliMessage)
    assert (parsed.id, parsed.sender_inbox_id, parsed.content) == ("m1", INBOX, "hi")


def test_a_blank_stream_line_is_nothing() -> None:
    assert parse_stream_line(b"  \n") is None


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[1, 2]",
        b'{"event": "stream_started"}',  # an event line, not a message
        json.dumps({"id": "m1"}).encode(),  # a message of the wrong shape
        b"\xff\xfe",
    ],
)
def test_anything_else_on_the_stream_is_a_bad_line(line: bytes) -> None:
    with pytest.raises(BadLine):
        parse_stream_line(line)


# --- the join-request watcher ---------------------------------------------------------


def test_adding_lines_are_acceptances() -> None:
    line = f"Adding {INBOX} to conversation {CID}\n".encode()
    assert parse_watcher_line(line) == JoinAccepted(INBOX, CID)
    assert parse_watcher_line(b"Adding the members now") is None


def test_accepted_events_name_the_joiner_and_maybe_the_conversation() -> None:
    accepted = {"event": "join_request_accepted", "joinerInboxId": INBOX}
    assert parse_watcher_line(json.dumps(accepted).encode()) == JoinAccepted(INBOX, None)
    named = {**accepted, "conversationId": CID}
    assert parse_watcher_line(json.dumps(named).encode()) == JoinAccepted(INBOX, CID)
    for broken in ({**accepted, "joinerInboxId": 7}, {**accepted, "conversationId": 7}):
        assert parse_watcher_line(json.dumps(broken).encode()) is None


def test_stream_ended_and_error_events() -> None:
    ended = parse_watcher_line(b'{"event": "stream_ended", "reason": "closed"}')
    assert ended == WatcherStreamEnded("closed")
    error = {"event": "error", "messageId": "m9", "message": "x" * 300}
    assert parse_watcher_line(json.dumps(error).encode()) == WatcherError(True, "x" * 200)
    assert parse_watcher_line(b'{"event": "error"}') == WatcherError(False, "None")


@pytest.mark.parametrize(
    "line",
    [b"Watching for join requests...", b"[]", b'{"event": "join_request_received"}', b"\xff"],
)
def test_other_watcher_lines_report_nothing(line: bytes) -> None:
    assert parse_watcher_line(line) is None


# --- explode notices ------------------------------------------------------------------


@pytest.mark.parametrize(("type_id", "notice"), [("explodeSettings", True), ("text", False)])
def test_explode_notices(type_id: str, notice: bool) -> None:
    assert is_explode_notice(CliMessage.model_validate(message(type_id))) is notice
    assert is_explode_notice(CliMessage.model_validate(message(type_id.upper()))) is notice


# --- the stderr of a child that exited ------------------------------------------------


def test_child_error_summary() -> None:
    block = "Streaming...\n ›   Error: Conversation not found: \n ›   " + CID + "\n\nUSAGE\n  x\n"
    assert child_error_summary(block) == f"Conversation not found: {CID}"
    assert child_error_summary("starting\nTypeError:  boom   here\n") == "TypeError: boom here"
    assert child_error_summary(" \n") is None
    summary = child_error_summary("y" * 2000)
    assert summary is not None and len(summary) == 500


@pytest.mark.parametrize(
    ("error", "fatal"),
    [
        (f"Conversation not found: {CID}", True),
        (f"Conversation {CID} not found", True),
        ("No identity found. Create one with: convos identity create", True),
        ("conversation NOT FOUND on network", True),
        ("dns error: failed to lookup address", False),
        ("database is locked", False),
    ],
)
def test_fatal_child_errors(error: str, fatal: bool) -> None:
    assert is_fatal_child_error(error) is fatal
