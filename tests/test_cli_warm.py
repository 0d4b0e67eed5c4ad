"""The warm transport on the CLI double: same results as one-shot, and every failure path
(timeout, crash, protocol error, cancellation, restart) ends where the docstring of
convosd/cli/warm.py says. The real CLI's equivalence is tests/realcli/test_warm_equivalence.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import stat
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from convosd import errors
from convosd.backoff import BackoffPolicy
from convosd.cli import CliSetup, ConvosCli
from convosd.cli.argv import ArgvBuilder, Invocation
from convosd.cli.runner import CliRunner, child_environment
from convosd.cli.warm import WarmTransport, transport_factory
from convosd.cli.worker_command import WORKER_SCRIPT, worker_command
from tests.conftest import fake_setup
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, eventually, open_sockets, process_gone
from tests.rpc_harness import running_daemon

CID = "0123456789abcdef0123456789abcdef"


def _runner(net: FakeNetwork, root: Path, executable: tuple[str, ...] | None = None) -> CliRunner:
    setup = fake_setup(net, root)
    setup.prepare()
    env = child_environment(
        env="dev",
        convos_home=setup.convos_home,
        process_home=setup.process_home,
        passthrough=("FAKECONVOS_*",),
        parent={"PATH": "/usr/bin:/bin", "FAKECONVOS_NETWORK": str(net.path)},
    )
    return CliRunner(executable or setup.executable, env, root, kill_grace_s=0.5)


def _inv(*argv: str) -> Invocation:
    if argv == ("--version",):
        return ArgvBuilder.version()
    return Invocation(":".join(a for a in argv[:2] if not a.startswith("-")), argv)


ARGVS = [
    ("identity", "list", "--json"),
    ("conversations", "create", "--name", "Team", "--json"),
    ("identity", "list"),
    ("conversation", "info", CID, "--json"),
    ("conversations", "inspect-invite", "garbage", "--json"),
    ("conversation", "send-text"),  # missing argument: the parser, and stdin, are involved
    ("conversation", "info", CID, "--bogus"),
    ("conversation", "send-text", CID, "hi", "--env-file", "/nonexistent/x.env"),
    ("bogus",),
    ("identity",),
    ("--help",),
    ("conversations", "list", "--json"),
]


async def test_double_worker_gives_what_the_one_shot_gives(
    net: FakeNetwork, tmp_path: Path
) -> None:
    oneshot = _runner(net, tmp_path / "one")
    warm = WarmTransport(_runner(net, tmp_path / "warm"))
    try:
        for argv in ARGVS:
            one = await oneshot.run(_inv(*argv), timeout_s=20)
            hot = await warm.run(_inv(*argv), timeout_s=20)
            # each home has its own identity: its ids differ, nothing else
            expected = (one.exit_code, len(one.stdout.splitlines()), one.stderr)
            got = (hot.exit_code, len(hot.stdout.splitlines()), hot.stderr)
            assert got == expected, argv
            if "create" not in argv and "list" not in argv:
                assert hot.stdout == one.stdout, argv
        status = warm.describe()
        assert status["state"] == "running" and status["commands"] == len(ARGVS)
        assert status["fallbacks"] == 0 and status["restarts"] == 0
    finally:
        await warm.aclose()
    assert warm.describe()["state"] == "stopped"


async def test_a_timeout_kills_the_worker_and_the_next_command_gets_a_new_one(
    net: FakeNetwork, tmp_path: Path
) -> None:
    warm = WarmTransport(_runner(net, tmp_path))
    try:
        await warm.run(_inv("identity", "list", "--json"), timeout_s=20)
        first = warm.describe()["pid"]
        net.add_fault("hang", command="conversation info", count=1)
        with pytest.raises(errors.CliTimeout, match=r"did not finish in 0\.5 s"):
            await warm.run(_inv("conversation", "info", CID, "--json"), timeout_s=0.5)
        assert process_gone(first)
        assert warm.describe()["state"] == "stopped"
        result = await warm.run(_inv("identity", "list", "--json"), timeout_s=20)
        assert result.exit_code == 0
        status = warm.describe()
        assert status["pid"] not in (None, first) and status["restarts"] == 1
        assert status["fallbacks"] == 0  # a timeout is the command's failure, not a fallback
    finally:
        await warm.aclose()


async def test_a_worker_dying_mid_command_falls_back_to_one_shot_and_backs_off(
    net: FakeNetwork, tmp_path: Path
) -> None:
    warm = WarmTransport(_runner(net, tmp_path), policy=BackoffPolicy(initial_s=30, cap_s=60))
    try:
        await warm.run(_inv("identity", "list", "--json"), timeout_s=20)
        pid = warm.describe()["pid"]
        assert isinstance(pid, int)
        net.add_fault("slow_start", command="identity list", count=1, seconds=30)
        call = asyncio.create_task(warm.run(_inv("identity", "list", "--json"), timeout_s=20))
        assert await eventually(lambda: net.faults() == [])  # the worker took the fault
        os.killpg(pid, signal.SIGKILL)
        result = await call  # run again one-shot: the fault is used up, so it is quick
        assert result.exit_code == 0 and result.stdout.strip() != ""
        status = warm.describe()
        assert status["state"] == "backoff" and status["fallbacks"] == 1
        assert status["pid"] is None and status["nextRetryAt"] is not None
        assert "closed its channel" in (status["lastError"] or "")
        # while backing off, commands run one-shot (and are counted)
        assert (await warm.run(_inv("identity", "list"), timeout_s=20)).exit_code == 0
        assert warm.describe()["fallbacks"] == 2
    finally:
        await warm.aclose()


async def test_a_worker_dying_under_a_command_that_changes_things_does_not_run_it_twice(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """The worker had ``conversations create`` when it died: it may have created the group
    already, so the command is not run again one-shot (a send would go out twice); the
    caller gets CLI_FAILED saying so, and the worker is restarted as for any failure."""
    warm = WarmTransport(_runner(net, tmp_path), policy=BackoffPolicy(initial_s=30, cap_s=60))
    try:
        await warm.run(_inv("identity", "list", "--json"), timeout_s=20)
        pid = warm.describe()["pid"]
        assert isinstance(pid, int)
        net.add_fault("slow_start", command="conversations create", count=1, seconds=30)
        create = _inv("conversations", "create", "--name", "Team", "--json")
        call = asyncio.create_task(warm.run(create, timeout_s=20))
        assert await eventually(lambda: net.faults() == [])  # the worker took the fault
        os.killpg(pid, signal.SIGKILL)
        with pytest.raises(errors.CliFailed, match="not run again"):
            await call
        listed = await warm.run(_inv("conversations", "list", "--json"), timeout_s=20)
        assert json.loads(listed.stdout)["count"] == 0  # not created behind the error
        status = warm.describe()
        assert status["state"] == "backoff" and status["fallbacks"] == 1  # the list only
    finally:
        await warm.aclose()


async def test_a_worker_dying_under_a_send_that_went_out_does_not_send_it_again(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """Issue 25 item 14: ``send-text`` sent, then the worker died before answering. Were it
    run again one-shot (listed as repeatable), the text would go out twice; it fails with
    CLI_FAILED saying it may have been sent, and the network holds it once."""
    warm = WarmTransport(_runner(net, tmp_path), policy=BackoffPolicy(initial_s=30, cap_s=60))
    try:
        create = _inv("conversations", "create", "--name", "T", "--json")
        created = await warm.run(create, timeout_s=20)
        cid = json.loads(created.stdout)["conversationId"]
        pid = warm.describe()["pid"]
        assert isinstance(pid, int)
        own = net.inbox_id(tmp_path / "convos")
        net.add_fault("hang_after_output", command="conversation:send-text", count=1)
        send = _inv("conversation", "send-text", cid, "--text=once", "--json")
        call = asyncio.create_task(warm.run(send, timeout_s=20))

        def texts() -> int:
            return [m["type_id"] for m in net.sent_by(own)].count("text")

        assert await eventually(lambda: texts() == 1)  # it went out, then hangs
        os.killpg(pid, signal.SIGKILL)
        with pytest.raises(errors.CliFailed, match="may have been sent, so it was not run again"):
            await call
        assert texts() == 1
        assert warm.describe()["fallbacks"] == 0  # not run one-shot either
    finally:
        await warm.aclose()


def _companion(tmp_path: Path, net: FakeNetwork, worker_body: str) -> tuple[str, ...]:
    """A CLI (a wrapper of the double) whose companion worker is ``worker_body``."""
    cli = tmp_path / "bin" / "convos"
    cli.parent.mkdir()
    cli.write_text(f'#!/bin/sh\nexec {sys.executable} {net.executable} "$@"\n')
    worker = tmp_path / "bin" / "convos-worker"
    worker.write_text(f"#!{sys.executable}\n{worker_body}")
    for path in (cli, worker):
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return (str(cli),)


async def test_a_worker_breaking_the_protocol_is_replaced_by_one_shot(
    net: FakeNetwork, tmp_path: Path
) -> None:
    body = (
        "import os, struct, sys\n"
        "fd = int(sys.argv[1])\n"
        "os.write(fd, struct.pack('>I', 9) + b'not json!')\n"
        "os.read(fd, 1)\n"
    )
    executable = _companion(tmp_path, net, body)
    assert worker_command(executable) == (executable[0] + "-worker",)
    warm = WarmTransport(_runner(net, tmp_path / "state", executable))
    try:
        result = await warm.run(_inv("identity", "list", "--json"), timeout_s=20)
        assert result.exit_code == 0
        status = warm.describe()
        assert status["fallbacks"] == 1 and status["state"] == "backoff"
        assert status["lastError"] == "the worker sent a frame that is not JSON"
    finally:
        await warm.aclose()


async def test_a_frame_over_the_limit_is_a_protocol_error(net: FakeNetwork, tmp_path: Path) -> None:
    body = (
        "import os, struct, sys\n"
        "fd = int(sys.argv[1])\n"
        "os.write(fd, struct.pack('>I', 2**31))\n"
        "os.read(fd, 1)\n"
    )
    executable = _companion(tmp_path, net, body)
    warm = WarmTransport(_runner(net, tmp_path / "state", executable))
    try:
        assert (await warm.run(_inv("identity", "list"), timeout_s=20)).exit_code == 0
        assert "over the limit" in (warm.describe()["lastError"] or "")
    finally:
        await warm.aclose()


async def test_a_cancelled_call_that_hangs_stops_the_worker_at_its_deadline(
    net: FakeNetwork, tmp_path: Path
) -> None:
    warm = WarmTransport(_runner(net, tmp_path))
    try:
        await warm.run(_inv("identity", "list", "--json"), timeout_s=WAIT_S)
        pid = warm.describe()["pid"]
        assert isinstance(pid, int)
        net.add_fault("hang", command="conversation info", count=1)
        call = asyncio.create_task(warm.run(_inv("conversation", "info", CID), timeout_s=3))
        assert await eventually(lambda: net.faults() == [])
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await eventually(lambda: process_gone(pid))  # at the command's own 3 s
        assert (await warm.run(_inv("identity", "list"), timeout_s=WAIT_S)).exit_code == 0
        assert warm.describe()["pid"] != pid
    finally:
        await warm.aclose()


async def test_a_cancelled_call_that_finishes_leaves_the_worker(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """A binding that ends cancels its backfill's read: the worker (and the roles it hosts)
    must not die for it; the read finishes in the worker and its answer is dropped."""
    warm = WarmTransport(_runner(net, tmp_path))
    try:
        await warm.run(_inv("identity", "list", "--json"), timeout_s=WAIT_S)
        pid = warm.describe()["pid"]
        net.add_fault("slow_start", command="identity list", seconds=1, count=1)
        call = asyncio.create_task(warm.run(_inv("identity", "list"), timeout_s=WAIT_S))
        assert await eventually(lambda: net.faults() == [])
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert (await warm.run(_inv("identity", "list"), timeout_s=WAIT_S)).exit_code == 0
        assert warm.describe()["pid"] == pid and warm.describe()["restarts"] == 0
    finally:
        await warm.aclose()


async def test_invalidate_starts_a_new_worker_before_the_next_command(
    net: FakeNetwork, tmp_path: Path
) -> None:
    warm = WarmTransport(_runner(net, tmp_path))
    try:
        await warm.run(_inv("identity", "list"), timeout_s=20)
        pid = warm.describe()["pid"]
        warm.invalidate("test")
        await warm.run(_inv("identity", "list"), timeout_s=20)
        assert warm.describe()["pid"] != pid and process_gone(pid)
        assert warm.describe()["restarts"] == 1
    finally:
        await warm.aclose()


def _upgrade(cli: Path) -> None:
    cli.write_text('#!/bin/sh\necho "@xmtp/convos-cli/0.10.16 linux-x64 node-v22.23.3"\n')


async def test_version_runs_one_shot_and_a_changed_cli_restarts_the_worker(
    net: FakeNetwork, tmp_path: Path
) -> None:
    double = Path(net.executable).parent
    body = f"import sys\nsys.path.insert(0, {str(double)!r})\nfrom fc_worker import main\nmain()\n"
    executable = _companion(tmp_path, net, body)
    warm = WarmTransport(_runner(net, tmp_path / "state", executable))
    try:
        assert "0.10.15" in (await warm.run(_inv("--version"), timeout_s=20)).stdout
        await warm.run(_inv("identity", "list"), timeout_s=20)
        pid = warm.describe()["pid"]
        assert warm.describe()["commands"] == 1  # --version did not reach the worker
        # an upgrade in place: the next --version prints another version
        _upgrade(Path(executable[0]))
        await warm.run(_inv("--version"), timeout_s=20)
        await warm.run(_inv("identity", "list"), timeout_s=20)
        assert warm.describe()["pid"] != pid and process_gone(pid)
    finally:
        await warm.aclose()


def test_worker_command_for_the_npm_package_uses_the_same_node(tmp_path: Path) -> None:
    package = tmp_path / "node_modules" / "@xmtp" / "convos-cli"
    (package / "bin").mkdir(parents=True)
    (package / "package.json").write_text('{"name": "@xmtp/convos-cli"}')
    run_js = package / "bin" / "run.js"
    run_js.write_text("#!/usr/bin/env node\n")
    assert worker_command(("/opt/node", str(run_js))) == ("/opt/node", str(WORKER_SCRIPT))
    link = tmp_path / "convos"
    link.symlink_to(run_js)
    assert worker_command((str(link),)) == ("/usr/bin/env", "node", str(WORKER_SCRIPT))
    plain = tmp_path / "other"
    plain.write_text("#!/bin/sh\n")
    assert "no " in str(worker_command((str(plain),)))
    assert "was not found" in str(worker_command(("/nonexistent/convos",)))


def test_node_flags_go_before_the_worker_script_of_the_npm_package_only(tmp_path: Path) -> None:
    package = tmp_path / "node_modules" / "@xmtp" / "convos-cli"
    (package / "bin").mkdir(parents=True)
    (package / "package.json").write_text('{"name": "@xmtp/convos-cli"}')
    run_js = package / "bin" / "run.js"
    run_js.write_text("#!/usr/bin/env node\n")
    flags = ("--max-semi-space-size=2", "--max-old-space-size=512")
    assert worker_command(("nsenter", "-n", "/opt/node", str(run_js)), flags) == (
        "nsenter",
        "-n",
        "/opt/node",
        *flags,
        str(WORKER_SCRIPT),
    )
    # a companion worker need not be Node: it gets no Node options
    other = tmp_path / "convos-double"
    other.write_text("#!/bin/sh\n")
    companion = tmp_path / "convos-double-worker"
    companion.write_text("#!/bin/sh\n")
    companion.chmod(0o755)
    assert worker_command((str(other),), flags) == (str(companion),)


async def test_a_cli_without_a_worker_runs_one_shot_and_says_why(
    net: FakeNetwork, tmp_path: Path
) -> None:
    executable = _companion(tmp_path, net, "")
    (tmp_path / "bin" / "convos-worker").unlink()
    warm = WarmTransport(_runner(net, tmp_path / "state", executable))
    assert (await warm.run(_inv("identity", "list"), timeout_s=20)).exit_code == 0
    status = warm.describe()
    assert status["state"] == "unavailable" and "convos-worker" in (status["lastError"] or "")
    await warm.aclose()


async def test_status_reports_the_worker_and_reset_restarts_it(
    net: FakeNetwork, tmp_path: Path
) -> None:
    async with running_daemon(net, tmp_path / "d", cli_transport="warm") as running:
        client = await running.client()
        try:
            status = (await client.call("status"))["cli"]
            assert status["transport"] == "warm" and status["lockedRetries"] == 0
            worker = status["worker"]
            assert worker["state"] == "running" and isinstance(worker["pid"], int)
            assert worker["commands"] >= 1  # the start-up probe ran in it
            # unbound: no background call is cancelled (which would kill the worker too)
            assert await client.call("daemon.reset", {"confirm": True}) == {"clean": True}
            same = (await client.call("status"))["cli"]["worker"]
            assert same["pid"] == worker["pid"]  # the reset command itself ran in it
            await client.call("conversation.create", {"name": "Again"})
            after = (await client.call("status"))["cli"]["worker"]
            assert after["pid"] != worker["pid"] and process_gone(worker["pid"])
            assert after["restarts"] == 1 and after["fallbacks"] == 0
        finally:
            await client.close()


async def test_oneshot_transport_has_no_worker(net: FakeNetwork, tmp_path: Path) -> None:
    async with running_daemon(net, tmp_path / "d", cli_transport="oneshot") as running:
        client = await running.client()
        try:
            status = (await client.call("status"))["cli"]
            assert status == {"transport": "oneshot", "worker": None, "lockedRetries": 0}
        finally:
            await client.close()


async def test_the_adapter_closes_its_worker(net: FakeNetwork, tmp_path: Path) -> None:
    setup: CliSetup = fake_setup(net, tmp_path)
    setup.prepare()
    cli = ConvosCli(
        setup,
        environ={"PATH": "/usr/bin:/bin", "FAKECONVOS_NETWORK": str(net.path)},
        transport=WarmTransport,
    )
    assert await cli.identity_list() == []
    pid = cli.transport_status()["worker"]["pid"]
    await cli.aclose()
    assert process_gone(pid)


async def test_a_worker_gone_between_commands_is_a_fallback_not_an_error(
    net: FakeNetwork, tmp_path: Path
) -> None:
    warm = WarmTransport(_runner(net, tmp_path))
    try:
        await warm.run(_inv("identity", "list"), timeout_s=20)
        pid = warm.describe()["pid"]
        assert isinstance(pid, int)
        os.killpg(pid, signal.SIGKILL)
        assert await eventually(lambda: process_gone(pid))
        result = await warm.run(_inv("identity", "list", "--json"), timeout_s=20)
        assert result.exit_code == 0
        status = warm.describe()
        assert status["fallbacks"] == 1 and status["state"] == "backoff"
    finally:
        await warm.aclose()


def _replace_identity(net: FakeNetwork, home: Path, other: Path) -> None:
    """Another identity in ``home`` (its children keep running: the file is swapped at once)."""
    donor = net.create_identity_home(other)
    os.replace(donor / "identity.json", home / "identity.json")


async def test_an_identity_change_restarts_the_worker(net: FakeNetwork, tmp_path: Path) -> None:
    async with running_daemon(net, tmp_path / "d", cli_transport="warm") as running:
        client = await running.client()
        try:
            await client.call("conversation.create", {"name": "Team"})
            assert await running.instance.home.probe()  # it learns the identity create made
            before = (await client.call("status"))["cli"]["worker"]
            _replace_identity(net, tmp_path / "d" / "convos", tmp_path / "other")
            assert await running.instance.home.probe()  # what the periodic probe does
            with pytest.raises(errors.CliFailed, match="Conversation not found"):
                await client.call("conversation.info")  # the new identity is not a member
            after = (await client.call("status"))["cli"]["worker"]
            assert after["pid"] != before["pid"] and after["restarts"] == before["restarts"] + 1
        finally:
            await client.close()


async def test_closing_under_a_running_command_does_not_run_it_again(
    net: FakeNetwork, tmp_path: Path
) -> None:
    warm = WarmTransport(_runner(net, tmp_path))
    await warm.run(_inv("identity", "list"), timeout_s=20)
    pid = warm.describe()["pid"]
    net.add_fault("hang", command="conversation info", count=1)
    call = asyncio.create_task(warm.run(_inv("conversation", "info", CID), timeout_s=20))
    assert await eventually(lambda: net.faults() == [])
    await warm.aclose()
    with pytest.raises(errors.NotReady):
        await call
    assert process_gone(pid) and warm.describe()["fallbacks"] == 0


async def test_a_call_cancelled_while_the_worker_starts_leaves_no_half_started_worker(
    net: FakeNetwork, tmp_path: Path
) -> None:
    double = Path(net.executable).parent
    marker = tmp_path / "started"
    body = (
        f"import sys, time, pathlib\nsys.path.insert(0, {str(double)!r})\n"
        f"pathlib.Path({str(marker)!r}).touch()\ntime.sleep(0.5)\n"
        "from fc_worker import main\nmain()\n"
    )
    executable = _companion(tmp_path, net, body)
    warm = WarmTransport(_runner(net, tmp_path / "state", executable))
    try:
        call = asyncio.create_task(warm.run(_inv("identity", "list"), timeout_s=20))
        assert await eventually(marker.exists)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert (await warm.run(_inv("identity", "list"), timeout_s=20)).exit_code == 0
        status = warm.describe()
        assert status["fallbacks"] == 0 and status["state"] == "running", status
    finally:
        await warm.aclose()


async def test_commands_use_the_worker_the_roles_restarted_in_not_one_shot(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """After a crash the roles start again at once in a new worker (their own backoff); the
    worker's backoff must not send commands one-shot beside it meanwhile: with the real CLI a
    one-shot command is a second XMTP client over the database the roles' client uses (what
    ``cliHost = "single"`` is for)."""
    warm = WarmTransport(_runner(net, tmp_path), policy=BackoffPolicy(initial_s=30, cap_s=60))
    roles = []
    try:
        created = json.loads(
            (
                await warm.run(
                    _inv("conversations", "create", "--name", "R", "--json"), timeout_s=20
                )
            ).stdout
        )
        stream = _inv("conversation", "stream", created["conversationId"], "--json")
        first = await warm.start_role(stream)
        assert first is not None
        roles.append(first)
        os.killpg(first.pid, signal.SIGKILL)  # a crash: the worker and its role
        assert await asyncio.wait_for(first.wait(), WAIT_S) != 0
        await warm.run(_inv("identity", "list"), timeout_s=20)  # one-shot: no worker
        assert warm.describe()["state"] == "backoff"
        fallbacks = warm.describe()["fallbacks"]
        second = await warm.start_role(stream)  # the role's own backoff passed: a new worker
        assert second is not None and second.pid != first.pid
        roles.append(second)
        commands = warm.describe()["commands"]
        assert (await warm.run(_inv("identity", "list"), timeout_s=20)).exit_code == 0
        status = warm.describe()
        assert status["fallbacks"] == fallbacks, "a command ran one-shot beside the roles' worker"
        assert status["commands"] == commands + 1 and status["pid"] == second.pid
    finally:
        for role in roles:
            role.signal(signal.SIGTERM)
        await warm.aclose()


async def test_the_worker_gets_malloc_arena_max_unless_its_environment_sets_one(
    net: FakeNetwork, tmp_path: Path
) -> None:
    # cliWorkerMallocArenaMax: the worker's MALLOC_ARENA_MAX; one passed through wins; 0: none
    cases = [("2", {}, "2"), ("0", {}, None), ("2", {"MALLOC_ARENA_MAX": "4"}, "4")]
    for index, (setting, passed, expected) in enumerate(cases):
        runner = _runner(net, tmp_path / f"arena{index}")
        runner.env.update(passed)
        factory = transport_factory("warm", malloc_arena_max=int(setting))
        assert factory is not None
        warm = factory(runner)
        try:
            assert (await warm.run(_inv("identity", "list"), timeout_s=20)).exit_code == 0
            environ = _environ(warm.describe()["pid"])
            assert environ.get("MALLOC_ARENA_MAX") == expected, (setting, passed)
        finally:
            await warm.aclose()


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as handle:
        pairs = handle.read().decode().split("\0")
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


@pytest.mark.parametrize("stage", ["create_subprocess_exec", "open_connection"])
async def test_a_call_cancelled_while_the_worker_is_spawned_leaves_no_socket_or_process(
    stage: str, net: FakeNetwork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A binding that ends cancels its backfill's read; at shutdown, after the worker was
    restarted for a role that did not stop, that read was starting a new worker. On a loaded
    machine the cancel came while the worker process was being started, or its channel
    opened: the daemon's end of the channel (a socketpair end) was left open, to be
    garbage-collected unclosed (``ResourceWarning: unclosed <socket.socket … family=1,
    type=1>``), and, in the second case, the worker process left running."""
    real_exec, real_connect = asyncio.create_subprocess_exec, asyncio.open_connection
    reached = asyncio.Event()
    pids: list[int] = []

    async def exec_(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        if stage == "create_subprocess_exec":
            reached.set()
            await asyncio.Event().wait()  # a loaded machine: the fork and exec take a while
        process = await real_exec(*args, **kwargs)
        pids.append(process.pid)
        return process

    async def connect(*args: Any, **kwargs: Any) -> Any:
        reached.set()
        await asyncio.Event().wait()
        return await real_connect(*args, **kwargs)

    warm = WarmTransport(_runner(net, tmp_path))
    try:
        before = open_sockets()
        monkeypatch.setattr(asyncio, "create_subprocess_exec", exec_)
        monkeypatch.setattr(asyncio, "open_connection", connect)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            call = asyncio.create_task(warm.run(_inv("identity", "list"), timeout_s=20))
            await asyncio.wait_for(reached.wait(), WAIT_S)
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
            del call  # its exception's frames hold what the start had opened
            gc.collect()
        assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
        assert open_sockets() == before
        assert all(await asyncio.gather(*(eventually(lambda p=p: process_gone(p)) for p in pids)))
        monkeypatch.undo()
        assert (await warm.run(_inv("identity", "list"), timeout_s=20)).exit_code == 0
    finally:
        monkeypatch.undo()
        await warm.aclose()


async def test_closing_while_a_worker_is_restarted_for_a_role_waits_for_its_end(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """A role that did not stop restarts its worker (SIGKILL to the role), in a task of its
    own; a daemon stopping meanwhile closed the transport and went on while that worker, its
    channel and its role were still being stopped."""
    warm = WarmTransport(_runner(net, tmp_path))
    try:
        created = json.loads(
            (
                await warm.run(
                    _inv("conversations", "create", "--name", "R", "--json"), timeout_s=20
                )
            ).stdout
        )
        role = await warm.start_role(
            _inv("conversation", "stream", created["conversationId"], "--json")
        )
        assert role is not None
        role.signal(signal.SIGKILL)  # it would not stop: its worker is restarted
        await asyncio.sleep(0)  # one turn of the loop: that restart has begun
    finally:
        await warm.aclose()
    assert process_gone(role.pid) and role.returncode is not None
