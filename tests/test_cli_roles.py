"""``cliHost = "single"`` on the CLI double: the stream and the join-request watcher run as
roles of the warm worker (convosd/cli/roles.py), and every failure ends where the module's
docstring says: a role that fails restarts alone; a worker killed, or killed for a command
that ran past its timeout, is replaced and both roles resume with a backfill, nothing lost or
doubled. The real CLI's side is the real-CLI tier run with ``CONVOSD_TEST_CLI_HOST=single``
(docs/LOCAL_NODE.md) and tests/realnode/test_roles_real.py.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from convosd import errors
from convosd.cli.roles import RoleProcess
from convosd.client import ConvosdClient
from convosd.supervisor.child import SupervisedChild
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, eventually, eventually_async, open_sockets, process_gone
from tests.rpc_harness import RunningDaemon, member_cli, running_daemon


@pytest.fixture
async def single(net: FakeNetwork, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(
        net, tmp_path / "d", cli_transport="warm", cli_host="single", cli_timeout_s=20.0
    ) as running:
        yield running


async def _bound_with_member(
    running: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> tuple[ConvosdClient, str, Any]:
    client = await ConvosdClient.connect(running.socket)
    created = await client.create(name="Roles")
    member = member_cli(net, tmp_path / "member")
    await member.join(created.invite_slug, no_wait=True)

    async def joined() -> bool:
        return len((await client.info()).members) == 2

    assert await eventually_async(joined), "the watcher role never admitted the member"
    return client, created.conversation_id, member


async def _children(client: ConvosdClient) -> dict[str, Any]:
    status = await client.call("status")
    return {"worker": status["cli"]["worker"], **status["children"]}


async def _message_texts(client: ConvosdClient) -> list[str]:
    texts: list[str] = []
    after = 0
    while True:
        page = await client.read_events(after=after, limit=1000)
        if not page.events:
            return texts
        texts += [e["content"] for e in page.events if e["type"] == "message"]
        after = page.events[-1]["seq"]


def _role_processes(worker_pid: int, word: str) -> list[int]:
    """The double's role processes (its worker runs each role as a child) naming ``word``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                ppid = int(handle.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == worker_pid and word.encode() in cmdline:
            found.append(int(entry))
    return found


async def _all_journaled_once(client: ConvosdClient, sent: list[str]) -> None:
    async def all_there() -> bool:
        return set(sent) <= set(await _message_texts(client))

    await eventually_async(all_there, pause_s=0.2)
    received = [t for t in await _message_texts(client) if t in set(sent)]
    assert sorted(received) == sorted(sent), "an inbound message is missing or doubled"


async def test_both_roles_run_in_the_worker_and_carry_joins_and_messages(
    single: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    client, cid, member = await _bound_with_member(single, net, tmp_path)
    try:
        children = await _children(client)
        worker = children["worker"]["pid"]
        assert isinstance(worker, int)
        # status.children keeps its shape; the pid is the worker's, the one Node process
        for name in ("stream", "joinRequests"):
            assert children[name]["pid"] == worker, children
            assert set(children[name]) == {
                "state",
                "pid",
                "restarts",
                "since",
                "lastExit",
                "lastError",
                "nextRetryAt",
            }
        sent = [f"hello {i}" for i in range(5)]
        for text in sent:
            await member.send_text(cid, text)
        await _all_journaled_once(client, sent)
        assert (await _children(client))["worker"]["pid"] == worker
    finally:
        await client.close()


async def test_a_role_that_fails_restarts_alone(
    single: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    client, cid, member = await _bound_with_member(single, net, tmp_path)
    try:
        before = await _children(client)
        worker = before["worker"]["pid"]
        roles = _role_processes(worker, "stream")
        assert len(roles) == 1, roles
        os.kill(roles[0], signal.SIGKILL)  # the stream role fails; the worker does not

        async def restarted() -> bool:
            now = await _children(client)
            return now["stream"]["restarts"] == 1 and now["stream"]["state"] == "running"

        assert await eventually_async(restarted)
        after = await _children(client)
        assert after["worker"]["pid"] == worker and after["worker"]["restarts"] == 0
        assert after["joinRequests"]["restarts"] == 0
        assert after["stream"]["lastExit"] == {"code": None, "signal": signal.SIGKILL}
        await member.send_text(cid, "after the restart")
        await _all_journaled_once(client, ["after the restart"])
    finally:
        await client.close()


async def _write_while(member: Any, cid: str, count: int, sent: list[str]) -> None:
    for i in range(count):
        text = f"in-{i:04d}"
        while True:
            try:
                await member.send_text(cid, text)
                break
            except errors.ConvosdError:
                continue
        sent.append(text)


async def test_a_worker_killed_under_traffic_loses_and_doubles_nothing(
    single: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    client, cid, member = await _bound_with_member(single, net, tmp_path)
    try:
        worker = (await _children(client))["worker"]["pid"]
        sent: list[str] = []
        writing = asyncio.ensure_future(_write_while(member, cid, 60, sent))
        assert await eventually(lambda: len(sent) >= 10)
        os.kill(worker, signal.SIGKILL)  # the worker alone: both roles go with it
        assert await eventually(lambda: process_gone(worker))
        await writing

        async def resumed() -> bool:
            now = await _children(client)
            return all(
                now[n]["state"] == "running" and now[n]["restarts"] >= 1
                for n in ("stream", "joinRequests")
            )

        assert await eventually_async(resumed)
        now = await _children(client)
        assert now["stream"]["pid"] == now["joinRequests"]["pid"] == now["worker"]["pid"]
        assert now["worker"]["pid"] != worker
        await _all_journaled_once(client, sent)
    finally:
        await client.close()


async def test_a_command_timing_out_loses_no_stream_line(net: FakeNetwork, tmp_path: Path) -> None:
    async with running_daemon(
        net, tmp_path / "d", cli_transport="warm", cli_host="single", cli_timeout_s=3.0
    ) as running:
        client, cid, member = await _bound_with_member(running, net, tmp_path)
        try:
            worker = (await _children(client))["worker"]["pid"]
            sent: list[str] = []
            await _write_while(member, cid, 5, sent)
            net.add_fault("hang", command="conversation send-text", count=1)
            writing = asyncio.ensure_future(_write_while(member, cid, 30, sent))
            with pytest.raises(errors.ConvosdError):
                await client.send("this one hangs")
            await writing
            assert process_gone(worker)  # the timeout took the worker, and both roles

            async def resumed() -> bool:
                now = await _children(client)
                return all(now[n]["state"] == "running" for n in ("stream", "joinRequests"))

            assert await eventually_async(resumed)
            await _all_journaled_once(client, sent)
        finally:
            await client.close()


async def test_unbinding_stops_the_roles_and_the_worker_stays(
    single: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    client, _cid, _member = await _bound_with_member(single, net, tmp_path)
    try:
        worker = (await _children(client))["worker"]["pid"]
        assert len(_role_processes(worker, "stream")) == 1
        await client.call("conversation.explode", {"confirm": True})
        assert await eventually(lambda: _role_processes(worker, "stream") == [])
        assert await eventually(lambda: _role_processes(worker, "process-join-requests") == [])
        status = await client.call("status")
        assert status["cli"]["worker"]["pid"] == worker  # the worker goes on serving
        assert status["children"]["stream"]["state"] == "stopped"
    finally:
        await client.close()


async def test_a_role_that_ended_is_not_signalled_again() -> None:
    stops: list[str] = []
    role = RoleProcess(1, stop=lambda: stops.append("stop"), kill=lambda: stops.append("kill"))
    role.signal(signal.SIGINT)
    role.signal(signal.SIGTERM)  # one stop request is enough
    role.finish(0)
    role.signal(signal.SIGKILL)  # ended: the worker is not this role's to kill
    assert stops == ["stop"] and await role.wait() == 0
    live = RoleProcess(1, stop=lambda: None, kill=lambda: stops.append("kill"))
    live.signal(signal.SIGKILL)
    assert stops == ["stop", "kill"]


async def test_a_role_whose_end_never_comes_is_ended_after_its_grace() -> None:
    """A role's end comes from its worker: a stop request, then SIGKILL (the worker
    restarted). When neither brings it (the kill went to a worker that is not the
    transport's any more), the child's stop, and the unbind waiting for it, waited for ever:
    the role is ended after its grace, as a killed process ends."""
    signals: list[str] = []
    role = RoleProcess(1, stop=lambda: signals.append("stop"), kill=lambda: signals.append("kill"))

    class Spec:
        async def spawn(self, *, pdeathsig: bool = False) -> RoleProcess:
            return role

    child = SupervisedChild("stream", Spec, lambda _lines: None, stop_grace_s=0.2)
    child.start()
    try:
        assert await eventually(lambda: child.pid == 1)
        with capture_logs() as logs:
            stopping = asyncio.ensure_future(child.stop())
            done, _ = await asyncio.wait({stopping}, timeout=WAIT_S)
        assert stopping in done
        assert role.returncode == -signal.SIGKILL and signals[:2] == ["stop", "kill"]
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
            "child_stop_timeout",
            "role_kill_timeout",
        ]
    finally:
        role.finish(0)  # nothing outlives the test
        await child.stop()


async def test_a_daemon_stopped_while_the_watcher_will_not_stop_leaves_nothing_behind(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """At shutdown the watcher role did not stop within its grace (its stop is seen only
    after a long poll): its worker is restarted for it, and the daemon's stop still ends with
    no worker, no role process and no socket of the daemon's left open."""
    before = open_sockets()
    net.add_fault("slow_stop", command="conversations process-join-requests", seconds=None)
    with capture_logs() as logs:
        async with running_daemon(
            net, tmp_path / "d", cli_transport="warm", cli_host="single"
        ) as running:
            client = await ConvosdClient.connect(running.socket)
            try:
                await client.create(name="Roles")
                worker = (await _children(client))["worker"]["pid"]
                assert await eventually(
                    lambda: len(_role_processes(worker, "process-join-requests")) == 1
                )
                assert await eventually(lambda: len(net.streams()) == 2)  # both roles listen
                watcher = _role_processes(worker, "process-join-requests")[0]
            finally:
                await client.close()
    events = [e["event"] for e in logs]
    assert "child_stop_timeout" in events and "cli_worker_restart" in events, events
    assert process_gone(worker) and process_gone(watcher)
    gc.collect()
    assert open_sockets() == before
