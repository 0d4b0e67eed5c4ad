"""Issue 25 item 10: the Kubernetes example's volumes as kubelet leaves them.

With ``fsGroup`` (and without ``fsGroupChangePolicy: OnRootMismatch``) kubelet walks the
whole volume on every mount (pkg/volume/volume_linux.go, SetVolumeOwnership): every entry
gets ``lchown(-1, fsGroup)``; files get ``mode | 0660``, directories ``mode | 02770``
(setgid and group rwx); symlinks keep their mode. An emptyDir is created 0777 on disk, or
is a tmpfs whose root is 1777, and is then walked the same way. :func:`kubelet_walk`
reproduces that as root with os.chown/os.chmod, and convosd is started on the result.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

import pytest

from convosd import preflight
from convosd.client import ConvosdClient
from convosd.errors import ConfigError
from convosd.preflight import Owner, private_groups
from convosd.rpc.sockets import prepare_socket_dir
from tests.conftest import fake_setup
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import needs_root
from tests.rpc_harness import running_daemon
from tests.test_contrib_files import block, deployment_lines

FS_GROUP = 10001  # the manifest's runAsGroup and fsGroup, the image user's own group


def kubelet_walk(root: Path, fs_group: int) -> None:
    """What kubelet does to a volume with ``fsGroup`` on a mount (children first, as its
    walkDeep does; each entry lstat'ed, lchown'ed, and chmod'ed unless a symlink)."""
    for entry in root.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            kubelet_walk(entry, fs_group)
        else:
            _change(entry, fs_group)
    _change(root, fs_group)


def _change(path: Path, fs_group: int) -> None:
    info = os.lstat(path)
    os.chown(path, -1, fs_group, follow_symlinks=False)
    if stat.S_ISLNK(info.st_mode):
        return
    mask = 0o660
    if stat.S_ISDIR(info.st_mode):
        mask |= stat.S_ISGID | 0o110
    os.chmod(path, stat.S_IMODE(info.st_mode) | mask)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def _an_instance(net: FakeNetwork, state: Path) -> None:
    async with running_daemon(net, state):
        pass  # a complete instance: state dir, CLI home, process home, cli.env


# --- the manifest ------------------------------------------------------------------------


def test_the_manifest_keeps_kubelet_off_the_volume_after_the_first_mount() -> None:
    """OnRootMismatch: kubelet walks the volume only while its root lacks the fsGroup and
    the group bits (the first mount, before the state dir exists), so the state dir
    convosd made 0700 stays 0700 from the second start on."""
    lines = [line.split("#", 1)[0].rstrip() for line in deployment_lines()]
    security = [line.split("#", 1)[0].strip() for line in block("securityContext")]
    assert f"fsGroup: {FS_GROUP}" in security
    assert "fsGroupChangePolicy: OnRootMismatch" in security
    # the socket's emptyDir is a tmpfs: its root is sticky (3777 after the walk), which
    # convosd accepts like /tmp; the on-disk emptyDir (2777) it refuses (see below)
    run = lines.index("        - name: run")
    assert lines[run + 1].strip() == "emptyDir:"
    assert "medium: Memory" in lines[run + 2]


@needs_root
@pytest.mark.parametrize(("medium_mode", "accepted"), [(0o777, False), (0o1777, True)])
def test_the_socket_emptydir_as_kubelet_leaves_it(
    tmp_path: Path, medium_mode: int, accepted: bool
) -> None:
    """On disk an emptyDir is 0777 and becomes 2777: anyone in the pod could replace the
    socket, and convosd refuses it. A ``medium: Memory`` one is a tmpfs, 1777 → 3777:
    sticky, so nobody but its owner can remove or rename the socket."""
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(medium_mode)
    kubelet_walk(run, FS_GROUP)
    assert mode(run) == medium_mode | 0o2770
    if accepted:
        prepare_socket_dir(run, group=None, own=False)
    else:
        with pytest.raises(ConfigError, match="writable by others"):
            prepare_socket_dir(run, group=None, own=False)


# --- what convosd accepts ----------------------------------------------------------------


def _user(name: str, uid: int, gid: int) -> pwd.struct_passwd:
    return pwd.struct_passwd((name, "x", uid, gid, "", "/", "/bin/sh"))


def _group(name: str, gid: int, members: list[str]) -> grp.struct_group:
    return grp.struct_group((name, "x", gid, members))


def test_a_group_is_private_only_when_nobody_else_is_in_it() -> None:
    """The image's databases (useradd --user-group): group convosd has one member, the
    daemon's user. A group another user has as primary group or lists, or one the
    databases do not know, is not private."""
    users = [
        _user("root", 0, 0),
        _user("convosd", 10001, 10001),
        _user("alice", 1000, 100),
        _user("bob", 1001, 100),
        _user("carol", 1002, 1002),
    ]
    groups = [
        _group("root", 0, []),
        _group("convosd", 10001, []),
        _group("users", 100, []),
        _group("carol", 1002, ["alice"]),
        _group("project", 2000, ["convosd"]),
        _group("shared", 2001, ["convosd", "alice"]),
        _group("empty", 2002, []),
    ]
    gids = {0, 10001, 100, 1002, 2000, 2001, 2002, 4242}
    assert private_groups(10001, gids, users=users, groups=groups) == {10001, 2000}
    assert private_groups(1000, gids, users=users, groups=groups) == set()
    assert private_groups(1002, gids, users=users, groups=groups) == set()


@needs_root
@pytest.mark.parametrize("state_mode", [0o700, 0o755])
async def test_the_kubelet_layout_in_a_private_group_is_accepted_and_made_private(
    net: FakeNetwork, tmp_path: Path, state_mode: int
) -> None:
    """The exact modes of a walked volume (state dir 2770 or 2775, CLI home 2770, files
    g+rw, group 10001) pass when 10001 is a private group of the daemon's, and are made
    the owner's only again."""
    volume = tmp_path / "volume"
    state = volume / "state"
    await _an_instance(net, state)
    state.chmod(state_mode)
    kubelet_walk(volume, FS_GROUP)
    setup = fake_setup(net, state)
    assert mode(state) == state_mode | 0o2770
    assert mode(setup.convos_home) == 0o2770
    assert mode(setup.env_file) == 0o660
    assert {state.stat().st_gid, setup.env_file.stat().st_gid} == {FS_GROUP}
    pod = Owner(uid=os.getuid(), gids=frozenset({FS_GROUP}), private_gids=frozenset({FS_GROUP}))
    preflight.prepare_state_dir(state, pod)
    preflight.prepare_cli(setup, pod)
    assert mode(state) == 0o700
    assert mode(setup.convos_home) == 0o700
    assert mode(setup.process_home) == 0o700
    assert mode(setup.env_file) == 0o600


@needs_root
@pytest.mark.parametrize(
    ("owner", "problem"),
    [
        # the daemon is not in the fsGroup (another runAsGroup, no supplementary group)
        (Owner(0, frozenset({0}), frozenset({0})), "a group the daemon is not in"),
        # in it, but the databases show others in it too (a shared group such as users)
        (Owner(0, frozenset({0, FS_GROUP}), frozenset({0})), "has other members"),
    ],
)
async def test_the_kubelet_layout_in_a_group_not_ours_alone_is_refused(
    net: FakeNetwork, tmp_path: Path, owner: Owner, problem: str
) -> None:
    volume = tmp_path / "volume"
    state = volume / "state"
    await _an_instance(net, state)
    kubelet_walk(volume, FS_GROUP)
    with pytest.raises(ConfigError, match=f"writable by group or others.*{problem}"):
        preflight.prepare_state_dir(state, owner)
    assert mode(state) == 0o2770  # left as it was


@needs_root
async def test_others_write_is_refused_in_any_group(net: FakeNetwork, tmp_path: Path) -> None:
    """A volume whose directories were 0777 (a 0777 emptyDir, a chmod -R) walks to 2777."""
    volume = tmp_path / "volume"
    state = volume / "state"
    await _an_instance(net, state)
    state.chmod(0o777)
    kubelet_walk(volume, FS_GROUP)
    pod = Owner(uid=os.getuid(), gids=frozenset({FS_GROUP}), private_gids=frozenset({FS_GROUP}))
    with pytest.raises(ConfigError, match=r"writable by group or others \(mode 2777\)"):
        preflight.prepare_state_dir(state, pod)


@needs_root
async def test_the_daemon_starts_again_after_kubelet_walked_its_volume(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """The crash loop itself: the second start on a walked volume. The fsGroup here is the
    test's own gid (root's, private on this machine), so the daemon's real check judges it;
    before the fix it exited 1 with "writable by group or others"."""
    gid = os.getegid()
    if gid not in Owner.current().private_gids:
        pytest.skip(f"gid {gid} is not private to this uid on this machine")
    volume = tmp_path / "volume"
    state = volume / "state"
    await _an_instance(net, state)
    kubelet_walk(volume, gid)
    assert mode(state) == 0o2770 and mode(state / "cli.env") == 0o660
    # the harness puts the socket beside the state dir, in the volume's root; in the pod
    # it is on its own emptyDir (see the socket test above)
    volume.chmod(0o755)
    async with running_daemon(net, state) as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            assert (await client.health()).status in {"ok", "degraded"}
    assert mode(state) == 0o700
    assert mode(state / "cli.env") == 0o600
