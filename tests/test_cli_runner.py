"""The process runner: clean environment, umask, bounds, timeouts and group kills."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from convosd import errors
from convosd.cli.argv import Invocation
from convosd.cli.runner import CliRunner, child_environment
from tests.helpers import WAIT_S, eventually, process_gone


def script(tmp_path: Path, body: str) -> tuple[str, ...]:
    path = tmp_path / "child.py"
    path.write_text(textwrap.dedent(body))
    return (sys.executable, str(path))


#: A script line that returns only once the runner reads the child's stdout: 1 MiB does not
#: fit in a pipe. The runner reads only once its spawn returned, so a test that waits for
#: what the script does after this line cancels a call that holds its process. A cancel that
#: lands earlier, while ``asyncio.create_subprocess_exec`` still connects the pipes, is
#: asyncio's: it SIGKILLs the new process itself (no SIGTERM, no grace), which a loaded
#: machine made these tests see one run in four (the child had already started).
PAST_SPAWN = 'sys.stdout.write("x" * (1 << 20)); sys.stdout.flush()'


def inv(*argv: str) -> Invocation:
    return Invocation(command="test:child", argv=argv)


async def wait_gone(pid: int, within_s: float = WAIT_S) -> bool:
    return await eventually(lambda: process_gone(pid), within_s)


async def times_out_once_started(
    call: Callable[[float], Awaitable[object]], started: Path, first_s: float = 0.5
) -> None:
    """``call(timeout_s)`` must raise CliTimeout after the script got as far as writing
    ``started``: a short timeout keeps the test quick, but a loaded machine can take more than
    a second to start Python, and a timeout that fires before the script wrote its pids
    tests nothing. So the timeout starts at ``first_s`` and doubles (up to WAIT_S) while
    the call timed out before ``started`` existed."""
    started_yet = started.exists
    timeout_s = first_s
    while True:
        with pytest.raises(errors.CliTimeout, match="process group was killed"):
            await call(timeout_s)
        if started_yet() or timeout_s >= WAIT_S:
            break
        timeout_s = min(WAIT_S, timeout_s * 2)
    assert started_yet(), f"the script did not start in {timeout_s:g} s"


def runner(exe: tuple[str, ...], tmp_path: Path, **kw: int | float) -> CliRunner:
    env = {"PATH": os.environ["PATH"], "MARK": "1"}
    return CliRunner(exe, env, tmp_path, **kw)  # type: ignore[arg-type]


async def test_output_exit_code_and_clean_umask(tmp_path: Path) -> None:
    exe = script(
        tmp_path,
        """
        import json, os, sys
        mask = os.umask(0)
        print(json.dumps({"argv": sys.argv[1:], "umask": mask, "env": dict(os.environ)}))
        print("oops", file=sys.stderr)
        sys.exit(3)
        """,
    )
    result = await runner(exe, tmp_path).run(inv("a", "--b=c"), timeout_s=WAIT_S)
    assert result.exit_code == 3
    out = json.loads(result.stdout)
    assert out["argv"] == ["a", "--b=c"]
    assert out["umask"] == 0o077
    assert out["env"]["MARK"] == "1"
    assert "oops" in result.stderr


def test_child_environment_is_clean_and_passes_named_variables() -> None:
    parent = {
        "PATH": "/bin",
        "LANG": "C.UTF-8",
        "SECRET_TOKEN": "x",
        "CONVOS_API_KEY": "k",
        "CONVOS_UPLOAD_PROVIDER": "p",
        "CONVOS_UPLOAD_PROVIDER_TOKEN": "t",
        "XMTP_GATEWAY_HOST": "g",
        "HOME": "/root",
    }
    env = child_environment(
        env="dev",
        convos_home=Path("/s/convos"),
        process_home=Path("/s/home"),
        passthrough=("CONVOS_API_KEY", "CONVOS_UPLOAD_PROVIDER*", "XMTP_GATEWAY_HOST"),
        parent=parent,
    )
    assert env == {
        "PATH": "/bin",
        "LANG": "C.UTF-8",
        "HOME": "/s/home",
        "CONVOS_HOME": "/s/convos",
        "CONVOS_ENV": "dev",
        "CONVOS_SKIP_NEW_VERSION_CHECK": "true",
        "OCLIF_COLUMNS": "10000",
        "NO_COLOR": "1",
        "CONVOS_API_KEY": "k",
        "CONVOS_UPLOAD_PROVIDER": "p",
        "CONVOS_UPLOAD_PROVIDER_TOKEN": "t",
        "XMTP_GATEWAY_HOST": "g",
    }


async def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    exe = script(
        tmp_path,
        f"""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        open({str(pidfile)!r} + ".tmp", "w").write(f"{{os.getpid()}} {{child.pid}}")
        os.rename({str(pidfile)!r} + ".tmp", {str(pidfile)!r})
        print("started", flush=True)
        time.sleep(300)
        """,
    )
    run = runner(exe, tmp_path, kill_grace_s=0.2).run
    await times_out_once_started(lambda t: run(inv(), timeout_s=t), pidfile, first_s=1.0)
    for pid in map(int, pidfile.read_text().split()):
        assert await wait_gone(pid), f"pid {pid} survived the timeout"


async def test_sigterm_ignored_then_sigkill(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    exe = script(
        tmp_path,
        f"""
        import os, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open({str(pidfile)!r} + ".tmp", "w").write(str(os.getpid()))
        os.rename({str(pidfile)!r} + ".tmp", {str(pidfile)!r})
        time.sleep(300)
        """,
    )
    run = runner(exe, tmp_path, kill_grace_s=0.2).run
    await times_out_once_started(lambda t: run(inv(), timeout_s=t), pidfile)
    assert await wait_gone(int(pidfile.read_text()))


async def test_runaway_output_is_bounded(tmp_path: Path) -> None:
    exe = script(
        tmp_path,
        """
        import sys
        chunk = "x" * 65536
        while True:
            sys.stdout.write(chunk)
        """,
    )
    with pytest.raises(errors.CliFailed, match="printed more than 1048576 bytes"):
        await runner(exe, tmp_path, stdout_limit=1 << 20).run(inv(), timeout_s=WAIT_S)


async def test_stderr_keeps_its_tail(tmp_path: Path) -> None:
    exe = script(
        tmp_path,
        """
        import sys
        sys.stderr.write("noise\\n" * 100000)
        sys.stderr.write(" ›   Error: the real reason\\n")
        sys.exit(2)
        """,
    )
    result = await runner(exe, tmp_path, stderr_limit=4096).run(inv(), timeout_s=WAIT_S)
    assert result.exit_code == 2
    assert len(result.stderr) <= 4096
    assert result.stderr.endswith(" ›   Error: the real reason\n")


async def test_missing_executable_is_cli_unavailable(tmp_path: Path) -> None:
    with pytest.raises(errors.CliUnavailable, match="not found"):
        await runner((str(tmp_path / "no-such-convos"),), tmp_path).run(inv(), timeout_s=WAIT_S)


async def test_not_executable_is_cli_unavailable(tmp_path: Path) -> None:
    target = tmp_path / "convos"
    target.write_text("#!/bin/sh\n")
    target.chmod(0o644)
    with pytest.raises(errors.CliUnavailable, match="not executable"):
        await runner((str(target),), tmp_path).run(inv(), timeout_s=WAIT_S)


async def test_cancellation_kills_the_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = tmp_path / "started"
    exe = script(
        tmp_path,
        f"""
        import os, sys, time
        {PAST_SPAWN}
        open({str(pidfile)!r}, "w").write(str(os.getpid()))
        os.rename({str(pidfile)!r}, {str(started)!r})
        time.sleep(300)
        """,
    )
    task = asyncio.create_task(runner(exe, tmp_path, kill_grace_s=0.2).run(inv(), timeout_s=WAIT_S))
    assert await eventually(started.exists)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_gone(int(started.read_text()))


async def test_a_second_cancellation_does_not_spare_a_child_that_ignores_sigterm(
    tmp_path: Path,
) -> None:
    started = tmp_path / "started"
    termed = tmp_path / "termed"
    exe = script(
        tmp_path,
        f"""
        import os, signal, sys, time
        # SIGTERM is noted, not obeyed
        signal.signal(signal.SIGTERM, lambda *_: open({str(termed)!r}, "w").close())
        {PAST_SPAWN}
        open({str(started)!r} + ".tmp", "w").write(str(os.getpid()))
        os.rename({str(started)!r} + ".tmp", {str(started)!r})
        while True:
            time.sleep(1)
        """,
    )
    task = asyncio.create_task(runner(exe, tmp_path, kill_grace_s=1.0).run(inv(), timeout_s=WAIT_S))
    assert await eventually(started.exists)
    pid = int(started.read_text())
    task.cancel()  # SIGTERM (noted, not obeyed), then the grace wait
    assert await eventually(termed.exists)
    task.cancel()  # cancelled again inside that wait
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_gone(pid), "the child outlived a twice-cancelled call"
    # The call's clean-up goes on after the second cancel (by design) until it has reaped
    # the child: the test waits for that, else the loop closes under it and the process
    # object is collected unreaped ("subprocess is still running", an error in whichever
    # test the collection falls in; seen under load).
    assert await eventually(lambda: not os.path.exists(f"/proc/{pid}"))


CRASHES_ONCE = """
import os, pathlib, signal, sys
runs = pathlib.Path(sys.argv[0]).with_name("runs")
count = int(runs.read_text()) if runs.exists() else 0
runs.write_text(str(count + 1))
if count < int(os.environ.get("CRASHES", "1")):
    print("half of an answer", flush=True)
    os.kill(os.getpid(), signal.SIGABRT)  # a native crash: V8's fatal error, a binding fault
print("the answer")
"""


async def test_a_read_whose_process_crashed_is_run_once_more(tmp_path: Path) -> None:
    cli = runner(script(tmp_path, CRASHES_ONCE), tmp_path)
    read = Invocation(command="conversation:messages", argv=("conversation", "messages", "x"))
    result = await cli.run(read, timeout_s=WAIT_S)
    assert (result.exit_code, result.stdout) == (0, "the answer\n")
    assert (tmp_path / "runs").read_text() == "2"
    assert cli.crash_reruns == 1


async def test_a_command_that_may_have_done_its_work_is_not_run_again(tmp_path: Path) -> None:
    cli = runner(script(tmp_path, CRASHES_ONCE), tmp_path)
    send = Invocation(command="conversation:send-text", argv=("conversation", "send-text", "x"))
    result = await cli.run(send, timeout_s=WAIT_S)
    assert result.exit_code == -signal.SIGABRT
    assert (tmp_path / "runs").read_text() == "1"
    assert cli.crash_reruns == 0


async def test_a_read_that_crashes_again_is_not_run_a_third_time(tmp_path: Path) -> None:
    cli = runner(script(tmp_path, CRASHES_ONCE.replace('"1"', '"5"')), tmp_path)
    read = Invocation(command="conversation:info", argv=("conversation", "info", "x"))
    result = await cli.run(read, timeout_s=WAIT_S)
    assert result.exit_code == -signal.SIGABRT
    assert (tmp_path / "runs").read_text() == "2"
