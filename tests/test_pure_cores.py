"""Pure cores: backoff math, the child state machine, line framing, event mapping."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from convosd.backoff import Backoff, BackoffPolicy
from convosd.cli.models import CliMessage
from convosd.events import NewEvent, message_event, reference_of
from convosd.framing import OVERSIZE, LineSplitter
from convosd.supervisor.state import ChildState, ChildStatus, ExitStatus, IllegalTransition
from convosd.timefmt import iso

T0 = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)


class TestBackoff:
    def test_doubles_from_half_a_second_to_the_cap(self) -> None:
        policy = BackoffPolicy()
        assert [policy.base_delay(n) for n in range(1, 10)] == [
            0.5,
            1,
            2,
            4,
            8,
            16,
            32,
            60,
            60,
        ]
        assert policy.base_delay(10_000) == 60

    @given(attempt=st.integers(1, 500), seed=st.integers())
    def test_jitter_stays_within_twenty_percent(self, attempt: int, seed: int) -> None:
        policy = BackoffPolicy()
        delay = policy.delay(attempt, random.Random(seed))
        base = policy.base_delay(attempt)
        assert base * 0.8 <= delay <= base * 1.2

    def test_stable_run_resets_the_count(self) -> None:
        b = Backoff(rng=random.Random(1))
        for _ in range(5):
            b.on_exit(uptime_s=0.1)
        assert b.attempt == 5
        b.on_exit(uptime_s=31)
        assert b.attempt == 1

    def test_bad_policies_are_refused(self) -> None:
        with pytest.raises(ValueError):
            BackoffPolicy(initial_s=0)
        with pytest.raises(ValueError):
            BackoffPolicy(jitter=1.5)


class TestChildStatus:
    def test_lifecycle_and_contract_shape(self) -> None:
        s = ChildStatus(state=ChildState.STOPPED, since=T0)
        s.started(100, T0)
        s.became_ready(T0 + timedelta(seconds=1))
        assert s.state is ChildState.RUNNING
        s.exited(ExitStatus.from_returncode(-9), "boom", T0, T0 + timedelta(seconds=0.5))
        assert s.state is ChildState.BACKOFF and s.pid is None
        s.started(101, T0)
        assert s.restarts == 1
        assert s.as_dict() == {
            "state": "starting",
            "pid": 101,
            "restarts": 1,
            "since": "2026-11-23T12:00:00.123Z",
            "lastExit": {"code": None, "signal": 9},
            "lastError": "boom",
            "nextRetryAt": None,
        }

    def test_fatal_exit_has_no_retry(self) -> None:
        s = ChildStatus(state=ChildState.STOPPED, since=T0)
        s.started(1, T0)
        s.exited(ExitStatus.from_returncode(2), "Conversation not found: ab", T0, None)
        assert s.state is ChildState.FATAL and s.next_retry_at is None

    def test_spawn_failures_back_off_from_any_state(self) -> None:
        s = ChildStatus(state=ChildState.STOPPED, since=T0)
        s.spawn_failed("not found", T0, T0 + timedelta(seconds=0.5))  # the first attempt
        assert (s.state, s.last_error, s.restarts) == (ChildState.BACKOFF, "not found", 0)
        s.spawn_failed("still not found", T0, T0 + timedelta(seconds=1))  # a retry
        assert (s.state, s.last_error, s.restarts) == (ChildState.BACKOFF, "still not found", 1)
        s.spawn_failed("gone for good", T0, None)
        assert s.state is ChildState.FATAL and s.next_retry_at is None

    def test_illegal_transition(self) -> None:
        s = ChildStatus(state=ChildState.STOPPED, since=T0)
        with pytest.raises(IllegalTransition):
            s.exited(ExitStatus(0, None), None, T0, T0)  # stopped -> backoff

    def test_iso_is_utc_with_milliseconds(self) -> None:
        east = T0.astimezone(timezone(timedelta(hours=5)))
        assert iso(east) == "2026-11-23T12:00:00.123Z"
        # Unix seconds (the store's and the pairing clock's times) format the same way
        assert iso(T0.timestamp()) == "2026-11-23T12:00:00.123Z"
        assert iso(None) is None

    @given(
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
        st.sampled_from([None, UTC, timezone(timedelta(hours=-7, minutes=-30))]),
    )
    def test_iso_is_the_strftime_text(self, moment: datetime, zone: timezone | None) -> None:
        # iso formats with isoformat (faster); the text is what strftime wrote
        if zone is not None:
            moment = moment.replace(tzinfo=zone)
            try:
                utc = moment.astimezone(UTC)
            except OverflowError:
                return
        else:
            utc = moment
        expected = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
        assert iso(moment) == expected
        if zone is UTC and utc.year > 1970:
            stamp = moment.timestamp()
            exact = datetime.fromtimestamp(stamp, UTC)
            assert iso(stamp) == exact.strftime("%Y-%m-%dT%H:%M:%S.") + (
                f"{exact.microsecond // 1000:03d}Z"
            )


class TestLineSplitter:
    def test_lines_across_chunks(self) -> None:
        s = LineSplitter(100)
        assert s.feed(b"ab") == []
        assert s.feed(b"c\nde\n\nf") == [b"abc", b"de", b""]
        assert s.finish() == [b"f"]

    def test_oversize_line_is_one_marker_and_dropped(self) -> None:
        s = LineSplitter(4)
        assert s.feed(b"12345") == [OVERSIZE]
        assert s.buffered == 0
        assert s.feed(b"6789" * 1000) == []
        assert s.buffered == 0
        assert s.feed(b"0\nok\n") == [b"ok"]

    def test_oversize_inside_one_chunk(self) -> None:
        assert LineSplitter(3).feed(b"a\nbbbbbb\nc\n") == [b"a", OVERSIZE, b"c"]

    @given(
        lines=st.lists(st.binary(max_size=20).filter(lambda b: b"\n" not in b), max_size=20),
        cuts=st.lists(st.integers(0, 500), max_size=10),
    )
    def test_any_chunking_gives_the_same_lines(self, lines: list[bytes], cuts: list[int]) -> None:
        data = b"".join(line + b"\n" for line in lines)
        s = LineSplitter(20)
        got: list[object] = []
        previous = 0
        for cut in sorted(c for c in cuts if c <= len(data)):
            got += s.feed(data[previous:cut])
            previous = cut
        got += s.feed(data[previous:])
        got += s.finish()
        assert got == lines


def cli_message(type_id: str, content: str) -> CliMessage:
    return CliMessage.model_validate(
        {
            "id": "f" * 64,
            "senderInboxId": "a" * 64,
            "contentType": {
                "authorityId": "xmtp.org",
                "typeId": type_id,
                "versionMajor": 1,
                "versionMinor": 0,
            },
            "content": content,
            "sentAt": "2026-11-23T12:00:00.123Z",
            "deliveryStatus": 1,
        }
    )


class TestEventMapping:
    def test_text_message(self) -> None:
        ev = message_event(cli_message("text", "hi"), "c" * 32, "Alice")
        assert ev.type == "message"
        assert ev.fields == {
            "messageId": "f" * 64,
            "senderInboxId": "a" * 64,
            "senderName": "Alice",
            "contentType": "text",
            "content": "hi",
            "sentAt": "2026-11-23T12:00:00.123Z",
            "replyTo": None,
            "reaction": None,
            "attachment": None,
        }

    def test_reaction_and_reply_references(self) -> None:
        ref = "e" * 64
        assert reference_of("reaction", f"reacted 👍 to {ref}") == (
            ref,
            {"emoji": "👍", "action": "added"},
        )
        assert reference_of("reaction", f"removed ❤️ to {ref}") == (
            ref,
            {"emoji": "❤️", "action": "removed"},
        )
        assert reference_of("reply", f'reply to "hello (x)" ({ref}): yes') == (ref, None)
        assert reference_of("reply", f"reply to {ref}: yes") == (ref, None)
        assert reference_of("text", f"reacted 👍 to {ref}") == (None, None)

    def test_event_requires_every_field(self) -> None:
        with pytest.raises(ValueError, match="lacks how"):
            NewEvent(type="conversation_bound", conversation_id=None, fields={})
