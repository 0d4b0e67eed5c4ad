"""JSON log lines are rendered with orjson and written once per loop turn, and none is lost
at exit. Each case runs in its own interpreter: logging is configured per process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.helpers import WAIT_S

PRELUDE = """
import asyncio, io, sys
from convosd import logging as convosd_logging

class Counting(io.StringIO):
    writes = 0
    def write(self, text):
        Counting.writes += 1
        return super().write(text)
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )


def test_lines_of_one_loop_turn_are_written_once() -> None:
    result = run(
        """
        stream = Counting()
        convosd_logging.configure(log_format="json", stream=stream)
        log = convosd_logging.get_logger("t")

        async def main():
            for i in range(100):
                log.info("rpc", method="status", n=i, big=2**70, text="é")
            assert Counting.writes == 0, "written before the turn ended"
            turn = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(turn.set_result, None)
            await turn
            assert Counting.writes == 1, Counting.writes
            log.info("next turn")
            turn = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(turn.set_result, None)
            await turn
            assert Counting.writes == 2, Counting.writes

        asyncio.run(main())
        sys.stdout.write(stream.getvalue())
        """
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 101
    assert lines[0]["event"] == "rpc" and lines[0]["n"] == 0 and lines[0]["level"] == "info"
    assert lines[0]["big"] == 2**70 and lines[0]["text"] == "é" and "timestamp" in lines[0]
    assert [line["n"] for line in lines[:100]] == list(range(100))


def test_pending_lines_are_written_at_exit() -> None:
    result = run(
        """
        convosd_logging.configure(log_format="json", stream=sys.stdout)
        log = convosd_logging.get_logger("t")

        def burst():
            for i in range(10):
                log.info("before_exit", n=i)
            sys.exit(3)  # out of the loop before its next turn, which would write them

        loop = asyncio.new_event_loop()
        loop.call_soon(burst)
        loop.run_forever()
        """
    )
    assert result.returncode == 3, result.stderr
    assert [json.loads(line)["n"] for line in result.stdout.splitlines()] == list(range(10))


def test_a_burst_is_written_without_waiting_for_the_turn() -> None:
    result = run(
        """
        stream = Counting()
        convosd_logging.configure(log_format="json", stream=stream)
        log = convosd_logging.get_logger("t")

        async def main():
            for i in range(2000):
                log.info("burst", n=i)
            assert 0 < Counting.writes < 10, Counting.writes

        asyncio.run(main())
        convosd_logging.flush()
        assert stream.getvalue().count("\\n") == 2000
        """
    )
    assert result.returncode == 0, result.stderr


def test_console_output_is_written_line_by_line() -> None:
    result = run(
        """
        stream = Counting()
        convosd_logging.configure(log_format="console", stream=stream)
        log = convosd_logging.get_logger("t")

        async def main():
            log.info("one")
            log.info("two")
            assert Counting.writes >= 2 and "two" in stream.getvalue()

        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr


def test_a_request_line_written_directly_is_the_line_structlog_writes() -> None:
    """``convosd.logging.info`` (the JSON-RPC request's line) renders straight to the
    batched writer, without the bound logger: the same keys in the same order and the
    same values as ``log.info`` (the timestamp aside), context variables included."""
    result = run(
        """
        import json, structlog

        class NotUsed:
            def info(self, *args, **kwargs):
                raise AssertionError("went through the bound logger")

        stream = io.StringIO()
        convosd_logging.configure(log_format="json", stream=stream)
        log = convosd_logging.get_logger("convosd.rpc")
        fields = {"method": "status", "outcome": "ok", "ms": 0.12, "peer_uid": 1000,
                  "cli_error": "é", "big": 2**70}
        log.info("rpc", **fields)
        convosd_logging.info(NotUsed(), "rpc", dict(fields))
        structlog.contextvars.bind_contextvars(request="r1", method="shadowed")
        log.info("rpc", **fields)
        convosd_logging.info(NotUsed(), "rpc", dict(fields))
        convosd_logging.flush()
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        for line in lines:
            assert line.pop("timestamp")
        print(json.dumps([list(line.items()) for line in lines]))
        """
    )
    assert result.returncode == 0, result.stderr
    via_structlog, direct, via_structlog_ctx, direct_ctx = json.loads(result.stdout)
    assert direct == via_structlog and direct_ctx == via_structlog_ctx
    assert [key for key, _ in direct][-2:] == ["event", "level"]
    assert ["request", "r1"] in direct_ctx and ["method", "status"] in direct_ctx


def test_a_request_line_goes_through_structlog_when_it_is_not_ours() -> None:
    """Under a test's ``capture_logs``, on a console, or at ``logLevel = "warning"`` the
    direct line is what ``log.info`` does: captured, written by structlog, or dropped."""
    result = run(
        """
        import json, structlog
        from structlog.testing import capture_logs

        class Recording:
            calls = []
            def info(self, event, **fields):
                Recording.calls.append((event, fields))

        stream = io.StringIO()
        convosd_logging.configure(log_format="json", stream=stream)
        with capture_logs():
            convosd_logging.info(Recording(), "rpc", {"method": "status"})
        assert Recording.calls == [("rpc", {"method": "status"})], Recording.calls
        convosd_logging.info(Recording(), "rpc", {"method": "health"})
        assert len(Recording.calls) == 1  # ours again once capture_logs ended
        convosd_logging.flush()
        assert json.loads(stream.getvalue())["method"] == "health"

        convosd_logging.configure(log_format="console", stream=io.StringIO())
        convosd_logging.info(Recording(), "rpc", {"method": "console"})
        assert Recording.calls[-1] == ("rpc", {"method": "console"})

        quiet = Counting()
        convosd_logging.configure(log_format="json", stream=quiet, level="warning")
        convosd_logging.info(Recording(), "rpc", {"method": "quiet"})
        convosd_logging.flush()
        assert quiet.getvalue() == "" and len(Recording.calls) == 2
        """
    )
    assert result.returncode == 0, result.stderr
