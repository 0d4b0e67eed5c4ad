"""Start-up helpers: a usable state dir, and the CLI set-up of this instance."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

from convosd import errors
from convosd.cli import CliSetup
from convosd.config import Paths, Settings

log = structlog.get_logger("convosd")


@dataclass(frozen=True)
class Owner:
    """Who the daemon runs as, for judging its files: its uid, the gids it runs with
    (effective and supplementary), and which of those gids are *private* to its user: by
    the user and group databases nobody else is in them (see :func:`private_groups`)."""

    uid: int
    gids: frozenset[int]
    private_gids: frozenset[int]

    @classmethod
    def current(cls, *, with_private: bool = True) -> Owner:
        """This process; ``with_private=False`` skips reading the user and group databases
        (nothing group-writable to judge)."""
        uid = os.getuid()
        gids = frozenset({os.getegid(), *os.getgroups()})
        private = private_groups(uid, gids) if with_private else frozenset()
        return cls(uid=uid, gids=gids, private_gids=private)


def private_groups(
    uid: int,
    gids: Iterable[int],
    *,
    users: Iterable[pwd.struct_passwd] | None = None,
    groups: Iterable[grp.struct_group] | None = None,
) -> frozenset[int]:
    """The gids in ``gids`` whose only member is the user ``uid``: it has the gid as its
    primary group or is its one listed member, no other user has it as primary group and
    its member list names nobody else. The rule OpenSSH applies on Debian to a
    group-writable ``~/.ssh`` (a group the databases do not know, or with no member at
    all, is not private). ``users``/``groups`` default to the system's databases."""
    wanted = set(gids)
    user_list = list(pwd.getpwall() if users is None else users)
    group_list = [g for g in (grp.getgrall() if groups is None else groups) if g.gr_gid in wanted]
    name = next((u.pw_name for u in user_list if u.pw_uid == uid), None)
    private: set[int] = set()
    for group in group_list:
        primary_of = {u.pw_uid for u in user_list if u.pw_gid == group.gr_gid}
        listed = set(group.gr_mem)
        if primary_of - {uid} or listed - ({name} if name else set()):
            continue  # someone else is in it
        if uid in primary_of or (name is not None and name in listed):
            private.add(group.gr_gid)
    return frozenset(private)


def write_problem(info: os.stat_result, owner: Owner) -> str | None:
    """Why ``info`` (a file or directory of the daemon's) lets someone else change what the
    CLI runs with, or None. Pure: the decision of :func:`require_private`.

    Writable by others: refused. Writable by its group: accepted only when the group is one
    the daemon runs with *and* is private to its user (nobody else in it by the user and
    group databases). That is the layout Kubernetes leaves on a volume with ``fsGroup``
    (directories 2770/2775, files g+rw, group = fsGroup = the image user's own group): the
    only other holders of that gid are the pod's own containers, which the operator put
    there. A shared group (``users``, a project group) is refused as before.
    """
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != owner.uid:
        return (
            f"is owned by uid {info.st_uid}, not by the daemon's uid {owner.uid}: its owner "
            "could change what the CLI runs with"
        )
    if mode & stat.S_IWOTH:
        return f"is writable by group or others (mode {mode:04o})"
    if mode & stat.S_IWGRP:
        if info.st_gid not in owner.gids:
            return (
                f"is writable by group or others (mode {mode:04o}, group {info.st_gid}, "
                "a group the daemon is not in)"
            )
        if info.st_gid not in owner.private_gids:
            return (
                f"is writable by group or others (mode {mode:04o}, group {info.st_gid}, "
                "which has other members or is not in the group database)"
            )
    return None


def prepare_state_dir(path: Path, owner: Owner | None = None) -> None:
    """Create the state dir with mode 0700, or fail with a clear ConfigError.

    An existing one must be ours: owned by the daemon's uid and not writable by others nor
    by a group with anyone else in it (whoever can write in it can rewrite ``cli.env`` or
    the CLI home and so inject environment or keys into the CLI; see :func:`write_problem`).
    It is then made 0700.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise errors.ConfigError(f"state dir {path} cannot be created: {exc.strerror}") from None
    require_private(path, "state dir", owner)
    try:
        os.chmod(path, 0o700)
    except OSError as exc:
        raise errors.ConfigError(f"state dir {path} cannot be made 0700: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise errors.ConfigError(f"state dir {path} is not writable")


def require_private(path: Path, what: str, owner: Owner | None = None) -> None:
    """Refuse ``path`` unless :func:`write_problem` finds nothing (a symlink is judged by
    what it points to). Group write it accepts (a private group: the Kubernetes
    ``fsGroup`` layout) is taken away again with every group and other bit, with a
    warning: the path ends up its owner's only."""
    try:
        info = path.stat()
    except OSError as exc:
        raise errors.ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None
    mode = stat.S_IMODE(info.st_mode)
    owner = owner or Owner.current(with_private=bool(mode & stat.S_IWGRP))
    problem = write_problem(info, owner)
    if problem is not None:
        if info.st_uid != owner.uid:
            fix = (
                f". Use a {what} of your own (or chown it to uid {owner.uid} if you trust its "
                "contents)"
            )
        else:
            fix = ": run chmod go-w on it after checking its contents"
        raise errors.ConfigError(f"{what} {path} {problem}{fix}")
    if mode & stat.S_IWGRP:
        try:
            os.chmod(path, mode & 0o700)
        except OSError as exc:
            raise errors.ConfigError(
                f"{what} {path} cannot be made its owner's only: {exc.strerror}"
            ) from None
        log.warning(
            "group_write_removed",
            path=str(path),
            mode=f"{mode:04o}",
            group=info.st_gid,
            hint="a private group's write (Kubernetes fsGroup re-permissions volumes on every "
            "mount unless fsGroupChangePolicy is OnRootMismatch)",
        )


def prepare_cli(setup: CliSetup, owner: Owner | None = None) -> None:
    """Create the CLI's directories and env file; refuse any of them that is not ours."""
    try:
        setup.prepare()
    except OSError as exc:
        raise errors.ConfigError(
            f"the CLI home or env file cannot be created: {exc.strerror} ({exc.filename})"
        ) from None
    require_private(setup.convos_home, "CLI home", owner)
    require_private(setup.process_home, "CLI process home", owner)
    require_private(setup.env_file, "CLI env file", owner)


def cli_setup(settings: Settings, paths: Paths) -> CliSetup:
    return CliSetup(
        executable=settings.daemon.cli,
        env=settings.convos.env,
        convos_home=paths.convos_home,
        state_dir=paths.state_dir,
        passthrough=settings.daemon.cli_env_passthrough,
    )
