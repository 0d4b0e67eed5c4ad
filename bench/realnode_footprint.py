"""Memory of the process tree with live XMTP clients: convosd on the real CLI against the
local node (tests/xmtpnode), a real peer admitted, then N sends.

``.venv/bin/python -m bench.realnode_footprint --sends 1000 [--cli-host both]`` (needs a
private network namespace: root or user namespaces). Prints RSS and PSS
(``/proc/<pid>/smaps_rollup``) of the daemon, the warm worker, the stream child and the
join-request watcher, idle and after the sends; with ``cliHost = "single"`` the stream and the
watcher are roles of the worker (one process, counted once). ``--cli-host both`` runs
``separate`` then ``single`` in the same invocation. Not in ``python -m bench``: it takes
minutes on the real CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from convosd import errors
from convosd.client import Client
from tests.helpers import eventually_async
from tests.xmtpnode.harness import CLI_BIN, LocalNode, Peer, kill_group, pinned_node
from tests.xmtpnode.netns import open_namespace


def rollup(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            parts = line.split()
            if parts and parts[0] in ("Rss:", "Pss:"):
                values[parts[0]] = int(parts[1])
    return values["Rss:"], values["Pss:"]


async def pids(client: Client, daemon_pid: int) -> dict[str, int]:
    """Name → pid, one entry per process (roles of the worker share its entry)."""
    status = await client.call("status")
    named: dict[int, list[str]] = {daemon_pid: ["daemon"]}
    worker = (status.get("cli") or {}).get("worker") or {}
    if worker.get("pid"):
        named.setdefault(worker["pid"], []).append("worker")
    for name, child in status["children"].items():
        if child["pid"]:
            named.setdefault(child["pid"], []).append(name)
    return {"+".join(names): pid for pid, names in named.items()}


def table(title: str, found: dict[str, int]) -> None:
    print(f"{title}:")
    total_rss = total_pss = 0
    for name, pid in found.items():
        rss, pss = rollup(pid)
        total_rss += rss
        total_pss += pss
        print(f"  {name:<28} pid {pid:<7} RSS {rss / 1024:7.1f} MiB  PSS {pss / 1024:7.1f} MiB")
    print(
        f"  {'total':<28} {'':<11} RSS {total_rss / 1024:7.1f} MiB  PSS {total_pss / 1024:7.1f} MiB"
    )


def start_daemon(root: Path, socket: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "convosd", "--state-dir", str(root / "state")]
    return subprocess.Popen(
        [*argv, "--socket", str(socket)],
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


async def run(sends: int, host: str) -> int:
    namespace = open_namespace()
    if isinstance(namespace, str):
        print(f"skipped: {namespace}")
        return 0
    root = Path(tempfile.mkdtemp(prefix="footprint-"))
    node = LocalNode(namespace, root / "node")
    node.start()
    nsenter = shutil.which(node.enter[0]) or node.enter[0]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **node.cli_env(),
        "CONVOSD_ENV": "local",
        "CONVOSD_DM_POLICY": "open",
        "CONVOSD_SEND_RATE_PER_S": "1000",
        "CONVOSD_CLI_ENV_PASSTHROUGH": "CONVOS_API_KEY,NODE_EXTRA_CA_CERTS",
        "CONVOSD_CLI": " ".join((nsenter, *node.enter[1:], str(pinned_node()), str(CLI_BIN))),
        "CONVOSD_LOG_LEVEL": "warning",
        "CONVOSD_CLI_HOST": host,
    }
    socket = root / "d.sock"
    daemon = start_daemon(root, socket, env)
    try:
        deadline = time.monotonic() + 120
        while not socket.exists():
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise RuntimeError("the daemon did not start")
            await asyncio.sleep(0.2)
        client = await Client.connect(socket)

        async def ready() -> bool:
            try:
                await client.call("conversation.info")
            except errors.NotReady:
                return False
            except errors.ConvosdError:
                return True  # NOT_BOUND: ready
            return True

        assert await eventually_async(ready, within_s=120, pause_s=0.2)
        created = await client.call("conversation.create", {"name": "Footprint"})
        peer = Peer(node, root / "peer")
        joined = await asyncio.to_thread(
            peer.json,
            "conversations",
            "join",
            created["inviteSlug"],
            "--timeout",
            "240",
            timeout_s=300,
        )

        async def two_members() -> bool:
            return bool((await client.call("conversation.info"))["memberCount"] == 2)

        assert await eventually_async(two_members, within_s=120, pause_s=1.0)
        await asyncio.sleep(10)  # settle: the first refreshes after the admission
        found = await pids(client, daemon.pid)
        table(f"cliHost={host}: idle, bound, 1 peer ({joined['status']})", found)
        started = time.monotonic()
        for n in range(sends):
            await client.call("message.send", {"message": f"footprint {n}"})
        elapsed = time.monotonic() - started
        print(f"{sends} sends in {elapsed:.1f}s ({sends / elapsed:.1f}/s, warm transport)")
        await asyncio.sleep(5)
        table(f"cliHost={host}: after {sends} sends", await pids(client, daemon.pid))
        await client.close()
    finally:
        kill_group(daemon, grace_s=30)
        node.stop()
        namespace.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sends", type=int, default=1000)
    parser.add_argument("--cli-host", choices=("single", "separate", "both"), default="both")
    args = parser.parse_args()
    hosts = ("separate", "single") if args.cli_host == "both" else (args.cli_host,)
    for host in hosts:
        code = asyncio.run(run(args.sends, host))
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
