"""Whether the convos CLI would find an upload provider for attachments: pure, no secrets kept.

``conversation send-attachment`` builds its provider from two variables (``utils/upload.js``,
``getUploadProvider``): ``CONVOS_UPLOAD_PROVIDER`` names one, and ``CONVOS_API_KEY`` alone
selects ``convos-api``. With neither (or both empty) it has none and fails with "Configure an
upload provider". The CLI reads them from its environment (the ``cliEnvPassthrough``
variables convosd hands it) and from its ``--env-file`` (``<state dir>/cli.env``, where Node's
``loadEnvFile`` does not override a variable the environment already sets).

Only the names are looked at; no value is returned, logged or kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

#: the variables that give the CLI an upload provider (any one, non-empty)
PROVIDER_VARIABLES = ("CONVOS_UPLOAD_PROVIDER", "CONVOS_API_KEY")


def _env_file_values(text: str) -> dict[str, str]:
    """``NAME=value`` lines of a dotenv file (``export``, quotes and comments as dotenv
    writes them); enough to tell an empty value from a set one."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        name = name.strip().removeprefix("export ").strip()
        value = value.strip()
        if value[:1] in ("'", '"', "`") and value[-1:] == value[:1] and len(value) >= 2:
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[name] = value
    return values


def provider_configured(environment: Mapping[str, str], env_file: Path | None) -> bool:
    """True when the CLI run with ``environment`` and ``--env-file=env_file`` has an upload
    provider (it may still be misconfigured: the CLI's own error says so then)."""
    merged = dict(environment)
    if env_file is not None:
        try:
            text = env_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        for name, value in _env_file_values(text).items():
            merged.setdefault(name, value)
    return any(merged.get(name) for name in PROVIDER_VARIABLES)
