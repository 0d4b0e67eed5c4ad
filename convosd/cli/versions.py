"""Which CLI and which XMTP bindings convosd may run on a CLI home: pure checks, and the
lookup of the bindings version the configured CLI loads (it reads package manifests only).

Their database migrations are forward-only: a CLI home is never opened by a CLI or bindings
older than the ones that last used it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from convosd import errors
from convosd.cli import models

#: convosd drives the 0.10.x CLI only.
SUPPORTED_SERIES = (0, 10)
CLI_PACKAGE = "@xmtp/convos-cli"
BINDINGS_PACKAGE = "@xmtp/node-bindings"


_WHAT_TO_DO = (
    "configure that version or a newer one (`cli`; `make setup` installs the repository's "
    "pins), or restore the state dir from the backup taken before the upgrade"
)


def check_version(version: models.CliVersion, last_used: str | None = None) -> None:
    """0.10.x only (README: Why this CLI version), and never older than the CLI that last used
    this CLI home."""
    major, minor, _patch = version.parts
    if (major, minor) != SUPPORTED_SERIES:
        raise errors.CliUnavailable(
            f"convos CLI {version.version} is not supported: convosd drives 0.10.x only"
        )
    if last_used is not None:
        current, previous = semver_key(version.version), semver_key(last_used)
        if current is not None and previous is not None and current < previous:
            raise errors.CliUnavailable(
                f"convos CLI {version.version} is older than {last_used}, the version last "
                "used on this CLI home: its database migrations are forward-only, so it is not "
                f"opened; {_WHAT_TO_DO}"
            )


def check_bindings(bindings: str | None, last_used: str | None) -> None:
    """The XMTP bindings never older than the ones that last used this CLI home (their
    database migrations are forward-only). Unknown versions cannot be compared: allowed."""
    if bindings is None or last_used is None:
        return
    current, previous = semver_key(bindings), semver_key(last_used)
    if current is not None and previous is not None and current < previous:
        raise errors.CliUnavailable(
            f"{BINDINGS_PACKAGE} {bindings} of the configured CLI is older than {last_used}, "
            "the bindings last used on this CLI home: their database migrations are "
            f"forward-only, so it is not opened; {_WHAT_TO_DO}"
        )


_SEMVER = re.compile(
    r"^v?(?P<core>\d+\.\d+\.\d+)(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)
_SemverKey = tuple[tuple[int, int, int], tuple[int, tuple[tuple[int, int, str], ...]]]


def semver_key(version: str) -> _SemverKey | None:
    """A sort key with semver precedence: a pre-release sorts before its release, its
    identifiers compare numerically when numeric (``1.11.0-nightly.20260522`` <
    ``1.11.0-nightly.20260726`` < ``1.11.0``). None when ``version`` is not semver."""
    match = _SEMVER.match(version.strip())
    if match is None:
        return None
    major, minor, patch = (int(p) for p in match.group("core").split("."))
    pre = match.group("pre")
    if pre is None:
        return (major, minor, patch), (1, ())
    identifiers = tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in pre.split(".")
    )
    return (major, minor, patch), (0, identifiers)


def installed_bindings_version(executable: Sequence[str]) -> str | None:
    """The ``@xmtp/node-bindings`` version the CLI started by ``executable`` loads.

    The CLI is found among the argv words (``node /x/node_modules/@xmtp/convos-cli/bin/run.js``,
    or ``convos`` on PATH, a symlink into the package): the first one inside a package named
    ``@xmtp/convos-cli``. From that package the bindings are found the way Node resolves
    them (``node_modules/@xmtp/node-bindings`` in it or in one of its parent directories).
    """
    for word in reversed(executable):
        path = shutil.which(word) if os.sep not in word else word
        if path is None:
            continue
        package = _package_dir(os.path.realpath(path))
        if package is None:
            continue
        for directory in (package, *package.parents):
            manifest = directory / "node_modules" / BINDINGS_PACKAGE / "package.json"
            version = _manifest(manifest).get("version")
            if isinstance(version, str):
                return version
        return None
    return None


#: the CLI versions that drop the appData fields they do not know unless patched (patches/)
DROPS_UNKNOWN_APP_DATA = ("0.10.15",)
#: what the repository's patch puts in the CLI's metadata code
APP_DATA_PATCH_MARK = "convos-cli.appData.unknownFields"


def keeps_unknown_app_data(executable: Sequence[str]) -> bool | None:
    """Whether the CLI started by ``executable`` keeps the appData fields it does not know:
    False for a version that drops them and is not patched (README, The patch), True when
    the patch is in, None when the CLI is not found or is another version."""
    for word in reversed(executable):
        path = shutil.which(word) if os.sep not in word else word
        if path is None:
            continue
        package = _package_dir(os.path.realpath(path))
        if package is None:
            continue
        if _manifest(package / "package.json").get("version") not in DROPS_UNKNOWN_APP_DATA:
            return None
        try:
            code = (package / "dist" / "utils" / "metadata.js").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        return APP_DATA_PATCH_MARK in code
    return None


def _package_dir(path: str) -> Path | None:
    for directory in Path(path).parents:
        if _manifest(directory / "package.json").get("name") == CLI_PACKAGE:
            return directory
    return None


def _manifest(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
