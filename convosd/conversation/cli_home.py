"""The CLI and its home as the instance last saw them.

:class:`CliHome` probes the CLI (``--version``, then ``identity list``) at start and every
PROBE_INTERVAL_S: whether its version and bindings may run against the home, whether it
works, the home's identity (and whether it is the configured one), and whether the home has
an identity or a database at all. It lives as long as the instance; ``status`` and ``health``
read what it knows, never waiting on the CLI to answer them. ``daemon.reset`` wipes the home:
:meth:`CliHome.forget_identity` drops what it knew of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from convosd import errors
from convosd.cli import ConvosCli, check_bindings, check_version
from convosd.cli.models import CliVersion
from convosd.cli.versions import keeps_unknown_app_data
from convosd.config import Paths, Settings
from convosd.storage.store import Store

PROBE_INTERVAL_S = 60.0


class CliHome:
    def __init__(
        self,
        settings: Settings,
        paths: Paths,
        *,
        store: Store,
        cli: ConvosCli,
        on_changed: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.paths = paths
        self.store = store
        self.cli = cli
        self.on_changed = on_changed
        self.log = structlog.get_logger("convosd.instance")
        self.cli_version: CliVersion | None = None
        self.cli_working: bool | None = None
        self.cli_problem: str | None = None
        self.cli_version_problem: str | None = None
        self.identity_mismatch: str | None = None
        self.identity_id: str | None = None
        self.identity_inbox_id: str | None = None
        #: (CLI calls finished, home has an identity or a database) at the last look
        self._home_seen: tuple[int, bool] | None = None

    def warn_if_app_metadata_dropped(self) -> None:
        """Say at start when the configured CLI is an unpatched build that loses the apps'
        metadata."""
        if keeps_unknown_app_data(self.settings.daemon.cli) is False:
            self.log.warning(
                "cli_drops_app_metadata",
                cli=" ".join(self.settings.daemon.cli),
                problem="this convos CLI rewrites a group's appData without the fields it does "
                "not know (lock, unlock, explode --scheduled, a profile image): the apps' "
                "metadata is lost",
                fix="apply the repository's patch: python3 scripts/patch_cli.py --root "
                "<the directory holding its node_modules> (make setup does it for the "
                "repository's own CLI)",
            )

    async def probe(self) -> bool:
        """``--version`` (0.10.x, no downgrade of the CLI or its bindings) and ``identity
        list`` (it loads the binding).

        The CLI home records no version of its own (``identity.json`` has none; the XMTP
        database is encrypted), so the state store keeps the CLI and bindings versions that
        last used it. A refused version is never run against the home: the adapter refuses
        every command but ``--version`` until a later probe passes."""
        bindings = self.cli.bindings_version()
        try:
            version = await self.cli.version()
        except errors.ConvosdError as exc:
            self.cli_working = False
            self.cli_problem = exc.message
            self.on_changed()
            return False
        self.cli_version = version
        try:
            check_version(version, self.store.meta.get("cli_version"))
            check_bindings(bindings, self.store.meta.get("cli_bindings_version"))
        except errors.CliUnavailable as exc:
            if exc.message != self.cli_version_problem:
                self.log.error("cli_version_refused", problem=exc.message)
            self.cli_version_problem = exc.message
            self.cli.refuse(exc.message)
            self.cli_working = False
            self.on_changed()
            return False
        self.cli_version_problem = None
        self.cli.refuse(None)
        try:
            identities = await self.cli.identity_list()
        except errors.ConvosdError as exc:
            self.cli_working = False
            self.cli_problem = exc.message
            self.on_changed()
            return False
        self.cli_working = True
        self.cli_problem = None
        self.store.meta.set("cli_version", version.version)
        if bindings is not None:
            self.store.meta.set("cli_bindings_version", bindings)
        identity_id = identities[0].id if identities else None
        if identity_id != self.identity_id and self.identity_id is not None:
            self.cli.restart_transport("the CLI home's identity changed")
        self.identity_id = identity_id
        inbox = identities[0].inbox_id if identities else None
        self.identity_inbox_id = inbox if inbox and len(inbox) == 64 else None
        wanted = self.settings.convos.identity_id
        if wanted is not None and self.identity_id is not None and wanted != self.identity_id:
            self.identity_mismatch = (
                f"identityId {wanted} does not match the CLI home's identity {self.identity_id}"
            )
        else:
            self.identity_mismatch = None
        self.on_changed()
        return True

    async def probe_loop(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            await self.probe()

    def used(self) -> bool:
        """Whether the CLI home has an identity or a database. Only a CLI call (or a reset)
        creates or removes them: looked at again only after one, not per ``status``."""
        finished = self.cli.finished
        if self._home_seen is None or self._home_seen[0] != finished:
            home = self.paths.convos_home
            used = (home / "identity.json").exists() or (home / "db").exists()
            self._home_seen = (finished, used)
        return self._home_seen[1]

    def forget_identity(self) -> None:
        """``daemon.reset`` removed the home: the identity it compared is gone, and so are
        the home's files (removed after its CLI call)."""
        self.identity_mismatch = None
        self.identity_id = None
        self.identity_inbox_id = None
        self._home_seen = None
