"""message.sendAttachment never sends the daemon's own files, whoever asks (issue 25, item 3).

An MCP server running as the daemon's user handed the daemon ``/proc/self/environ`` (the API
key) and the CLI home's ``identity.json`` (the identity's private keys), and both went out.
Every name below reaches a refused place (/proc, /sys, /dev, the state dir, the CLI home,
the config file's directory) directly or by a trick: a symbolic link on the way, ``..``,
``/proc/self/root``, ``/proc/self/fd``, a hard link, a bind mount. Each is refused with
``-32602`` naming ``path`` and the place, and nothing is sent; an ordinary file (also one
with a second hard link, or reached through a linked directory) still goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from convosd import errors
from convosd.attachments.outbox import copy_at_most
from convosd.client import Client
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import needs_root
from tests.rpc_harness import RunningDaemon, running_daemon
from tests.test_attachments_send import KEY_ENV, PASS, assert_nothing_sent, bound

PROC = "/proc"
SYS = "/sys"
DEV = "/dev"
STATE = "the daemon's state dir"
HOME = "the CLI home"
CONFIG = "the directory of the daemon's config file"


async def refusal(client: Client, path: Path | str) -> str | None:
    """The problem the daemon names for ``path``; None when it sent the file."""
    try:
        await client.call("message.sendAttachment", {"path": str(path), "filename": "x.bin"})
    except errors.InvalidParams as exc:
        [found] = exc.extra["errors"]
        assert found["param"] == "path", found
        return str(found["problem"])
    return None


def a_state_file(daemon: RunningDaemon) -> Path:
    """A regular file of the daemon's own in its state dir (outside the CLI home)."""
    state = daemon.instance.paths.state_dir
    home = daemon.instance.paths.convos_home
    found = sorted(
        p for p in state.rglob("*") if p.is_file() and not p.is_symlink() and home not in p.parents
    )
    assert found, list(state.rglob("*"))
    return found[0]


@contextlib.contextmanager
def open_fd(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


async def test_the_daemon_s_own_files_are_refused_by_every_name(
    net: FakeNetwork, tmp_path: Path
) -> None:
    config = tmp_path / "etc" / "convosd.toml"
    config.parent.mkdir()
    config.write_text("# the config\n")
    (config.parent / "convosd.env").write_text("CONVOS_API_KEY=secret\n")
    async with (
        running_daemon(
            net,
            tmp_path / "d",
            extra_environ=KEY_ENV,
            cli_env_passthrough=PASS,
            config_path=config,
            send_rate_per_s=1000.0,  # before the fix, each one went out: none was held up
        ) as daemon,
        await daemon.client() as client,
    ):
        cid = await bound(client)
        home = daemon.instance.paths.convos_home
        identity = home / "identity.json"
        assert identity.is_file()
        state_file = a_state_file(daemon)
        own = tmp_path / "own"
        own.mkdir()
        (own / "home-link").symlink_to(home)
        (own / "fd-link").symlink_to("/proc/self/fd")
        (own / "root-link").symlink_to("/proc/self/root")
        os.link(identity, own / "identity-hardlink.json")
        os.link(state_file, own / "state-hardlink")
        os.link(config, own / "config-hardlink.toml")
        shm = Path("/dev/shm") / f"convosd-test-{os.getpid()}-{tmp_path.name}"
        if shm.parent.is_dir():  # a regular file the daemon could open (refused by name too)
            shm.write_bytes(b"shared memory")
        try:
            with open_fd(identity) as fd:
                cases: dict[str, tuple[str, str]] = {
                    "/proc/self/environ": ("/proc/self/environ", PROC),
                    "/proc/<pid>/environ": (f"/proc/{os.getpid()}/environ", PROC),
                    "/proc/self/root/<identity>": (f"/proc/self/root{identity}", PROC),
                    "/proc/self/fd/<identity fd>": (f"/proc/self/fd/{fd}", PROC),
                    "/dev/fd/<identity fd>": (f"/dev/fd/{fd}", DEV),
                    "symlink to /proc/self/fd, then the fd": (f"{own}/fd-link/{fd}", HOME),
                    "symlink to /proc/self/root": (f"{own}/root-link{identity}", HOME),
                    "/sys file": ("/sys/kernel/uevent_seqnum", SYS),
                    "/dev/null": ("/dev/null", DEV),
                    "a regular file in /dev/shm": (str(shm), DEV),
                    "<cli home>/identity.json": (str(identity), HOME),
                    "identity.json through a linked directory": (
                        f"{own}/home-link/identity.json",
                        HOME,
                    ),
                    "identity.json by ..": (f"{own}/../d/convos/./identity.json", HOME),
                    "identity.json by a hard link": (str(own / "identity-hardlink.json"), HOME),
                    "a state dir file": (str(state_file), STATE),
                    "a state dir file by a hard link": (str(own / "state-hardlink"), STATE),
                    "the config file": (str(config), CONFIG),
                    "an env file beside the config": (str(config.parent / "convosd.env"), CONFIG),
                    "the config by a hard link": (str(own / "config-hardlink.toml"), CONFIG),
                    "a missing file in the CLI home": (str(home / "no-such-file"), HOME),
                }
                answers = {name: await refusal(client, path) for name, (path, _) in cases.items()}
        finally:
            shm.unlink(missing_ok=True)
        wrong = {
            name: answers[name]
            for name, (_, why) in cases.items()
            if not (answers[name] or "").startswith(f"is under {why}:")
        }
        sent = sum(answer is None for answer in answers.values())
        assert wrong == {}, f"{len(wrong)} of {len(cases)} not refused as expected, {sent} sent"
        await assert_nothing_sent(net, daemon, cid)

        # An ordinary file goes, also with a second hard link and through a linked directory.
        (own / "report.txt").write_bytes(b"a report")
        os.link(own / "report.txt", own / "report-link.txt")
        (tmp_path / "own-link").symlink_to(own)
        for path in (own / "report.txt", own / "report-link.txt", tmp_path / "own-link/report.txt"):
            assert await refusal(client, path) is None, path
        events = await client.call("events.read", {"after": 0, "types": ["message_sent"]})
        assert [e["attachment"]["size"] for e in events["events"]] == [8, 8, 8]


async def mount(options: list[str], source: str, target: Path) -> bool:
    await asyncio.to_thread(target.mkdir)
    argv = ["mount", *options, source, str(target)]
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, check=False)
    return done.returncode == 0


async def unmount(target: Path) -> None:
    await asyncio.to_thread(subprocess.run, ["umount", "-l", str(target)], check=True)


@needs_root
async def test_a_bind_mount_of_a_refused_place_is_refused(net: FakeNetwork, tmp_path: Path) -> None:
    """The same directory under another name: caught on the descriptor, by device and inode
    (the name the kernel reports is the mount's); a fresh procfs or sysfs mount (a device of
    its own): caught by its file system's type."""
    async with (
        running_daemon(
            net, tmp_path / "d", extra_environ=KEY_ENV, cli_env_passthrough=PASS
        ) as daemon,
        await daemon.client() as client,
    ):
        cid = await bound(client)
        home = daemon.instance.paths.convos_home
        mounted: list[Path] = []
        try:
            for options, source, target in (
                (["--bind"], str(home), tmp_path / "home"),
                (["--bind"], PROC, tmp_path / "proc"),
                (["-t", "proc"], "proc", tmp_path / "fresh-proc"),
                (["-t", "sysfs"], "sysfs", tmp_path / "fresh-sys"),
            ):
                if not await mount(options, source, target):
                    pytest.skip(f"mount {' '.join(options)} is not allowed here")
                mounted.append(target)
            pid = str(os.getpid())
            answers = [
                await refusal(client, tmp_path / "home" / "identity.json"),
                await refusal(client, tmp_path / "proc" / pid / "environ"),
                await refusal(client, tmp_path / "fresh-proc" / pid / "environ"),
                await refusal(client, tmp_path / "fresh-sys" / "kernel" / "uevent_seqnum"),
            ]
        finally:
            for target in reversed(mounted):
                await unmount(target)
        assert [a and a.split(":")[0] for a in answers] == [
            f"is under {HOME}",
            "is under /proc",
            "is under /proc",
            "is under /sys",
        ]
        await assert_nothing_sent(net, daemon, cid)


def test_a_file_that_gives_more_than_its_size_is_cut_off_and_refused() -> None:
    """A /proc file says size 0 and gives its whole text: the copy stops at limit + 1 and
    refuses, never sends a file cut short. (No caller's path reaches /proc any more: the copy
    step is checked on the descriptor.)"""
    limit = 4096
    grows = Path(f"/proc/{os.getpid()}/maps")
    assert grows.stat().st_size == 0 and len(grows.read_bytes()) > limit
    out = io.BytesIO()
    with pytest.raises(errors.InvalidParams) as caught:
        copy_at_most(os.open(grows, os.O_RDONLY), out, limit)
    assert f"grew past {limit} bytes while it was read" in caught.value.message
    assert len(out.getvalue()) <= limit
