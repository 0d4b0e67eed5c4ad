"""Roles of the real CLI's worker (``cliHost = "single"``), offline: a long-lived command run
as a role ends with what its own process gives (exit code, stdout, stderr), and a command run
beside it in the same worker gives what it gives alone. On the network, with a live stream
and watcher, see tests/realnode/test_roles_real.py and the tier on CONVOSD_TEST_CLI_HOST=single.
"""

from __future__ import annotations

import asyncio

import pytest

from convosd.cli.argv import ArgvBuilder
from convosd.cli.runner import CliRunner
from convosd.cli.warm import WarmTransport, transport_factory
from convosd.config.settings import DEFAULT_CLI_WORKER_NODE_FLAGS
from tests.helpers import WAIT_S
from tests.realcli.conftest import CLI_BIN, RealCli

pytestmark = pytest.mark.realcli

CID = "0123456789abcdef0123456789abcdef"


async def test_a_role_gives_what_its_process_gives(realcli: RealCli) -> None:
    results = {}
    for side in ("process", "role"):
        ws = realcli.workspace(f"roles-{side}")
        runner = CliRunner((realcli.node, str(CLI_BIN)), ws.env(), ws.root)
        argv = ArgvBuilder(env="dev", env_file=ws.env_file)
        stream = argv.stream(CID)
        if side == "process":
            process = await runner.spec(stream).spawn(pdeathsig=True)
            out, err = await asyncio.wait_for(process.communicate(), WAIT_S)
            results[side] = (process.returncode, out.decode(), err.decode())
            continue
        warm = WarmTransport(runner)
        try:
            role = await warm.start_role(stream)
            assert role is not None and role.pid == warm.describe()["pid"]
            # a command beside the role, in the same worker, while the role runs
            listed = await warm.run(argv.identity_list(), timeout_s=WAIT_S)
            assert listed.exit_code == 0, listed
            code = await asyncio.wait_for(role.wait(), WAIT_S)
            assert role.stdout is not None and role.stderr is not None
            out, err = await role.stdout.read(), await role.stderr.read()
            results[side] = (code, out.decode(), err.decode())
            assert warm.describe()["restarts"] == 0  # the role's failure was its own
        finally:
            await warm.aclose()
    process, role = results["process"], results["role"]
    assert process[0] != 0  # offline: no client, the stream fails
    assert role == process, (role, process)


async def test_the_worker_runs_with_the_node_flags_it_is_given(realcli: RealCli) -> None:
    # cliWorkerNodeFlags: Node's own options, before worker.mjs; the pinned Node accepts the
    # default ones (an option it refused would end the worker: commands would run one-shot)
    ws = realcli.workspace("node-flags")
    runner = CliRunner((realcli.node, str(CLI_BIN)), ws.env(), ws.root)
    flags = DEFAULT_CLI_WORKER_NODE_FLAGS
    factory = transport_factory("warm", node_flags=flags)
    assert factory is not None
    warm = factory(runner)
    try:
        argv = ArgvBuilder(env="dev", env_file=ws.env_file)
        listed = await warm.run(argv.identity_list(), timeout_s=WAIT_S)
        assert listed.exit_code == 0, listed
        described = warm.describe()
        assert described["state"] == "running" and warm.fallbacks == 0, described
        words = _cmdline(described["pid"])
        script = next(i for i, word in enumerate(words) if word.endswith("worker.mjs"))
        assert tuple(words[script - len(flags) : script]) == flags, words
    finally:
        await warm.aclose()


def _cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read().decode().split("\0")
