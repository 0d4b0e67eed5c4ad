"""Start-up checks: the state dir is usable and the CLI works (CONTRACT sections 0 and 1).

The daemon runs these before it serves; until the JSON-RPC server exists, ``convosd`` runs
them, reports what it found and exits (it never pretends to serve).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from convosd import errors
from convosd.cli import CliSetup, ConvosCli, check_version
from convosd.config import Paths, Settings


@dataclass
class PreflightReport:
    """What the start-up checks found. ``problems`` empty means ready to serve."""

    state_dir: Path
    socket: Path
    convos_home: Path
    env: str
    cli: tuple[str, ...]
    cli_version: str | None = None
    identity_id: str | None = None
    inbox_id: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def prepare_state_dir(path: Path) -> None:
    """Create the state dir with mode 0700, or fail with a clear ConfigError."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
    except OSError as exc:
        raise errors.ConfigError(f"state dir {path} cannot be created: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise errors.ConfigError(f"state dir {path} is not writable")


def cli_setup(settings: Settings, paths: Paths) -> CliSetup:
    return CliSetup(
        executable=settings.daemon.cli,
        env=settings.convos.env,
        convos_home=paths.convos_home,
        state_dir=paths.state_dir,
        passthrough=settings.daemon.cli_env_passthrough,
    )


async def run_preflight(settings: Settings, paths: Paths) -> PreflightReport:
    report = PreflightReport(
        state_dir=paths.state_dir,
        socket=paths.socket,
        convos_home=paths.convos_home,
        env=settings.convos.env,
        cli=settings.daemon.cli,
    )
    prepare_state_dir(paths.state_dir)
    setup = cli_setup(settings, paths)
    setup.prepare()
    cli = ConvosCli(setup, timeout_s=settings.daemon.cli_timeout_s)
    try:
        version = await cli.version()
        report.cli_version = version.version
        check_version(version)
        identities = await cli.probe()
    except errors.ConvosdError as exc:
        report.problems.append(f"{exc.kind}: {exc.message}")
        if exc.cli_message:
            report.problems.append(f"the CLI said: {exc.cli_message[:500]}")
        return report
    if identities:
        report.identity_id = identities[0].id
        report.inbox_id = identities[0].inbox_id
    wanted = settings.convos.identity_id
    if wanted is not None and wanted != report.identity_id:
        report.problems.append(
            f"identityId {wanted} does not match the CLI home's identity "
            f"({report.identity_id or 'none'})"
        )
    return report
