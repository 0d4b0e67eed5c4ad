"""What the relay is configured with, checked (the URL, the signing secrets), and the
Standard Webhooks signature of each delivery (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``): what a receiver verifies."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

Json = dict[str, Any]
USER_AGENT = "convosd-webhook/0.1"


class ConfigProblem(Exception):
    """A bad URL, secret or option: the relay does not start (exit 2)."""


def check_url(url: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigProblem(f"bad webhook URL {url!r}: expected http(s)://host[:port]/path")
    if parts.username or parts.password:
        raise ConfigProblem("bad webhook URL: credentials in the URL are not supported")
    try:
        parts.port  # noqa: B018 - raises on a port out of range or not a number
    except ValueError as exc:
        raise ConfigProblem(f"bad webhook URL {url!r}: {exc}") from exc
    return parts


SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES = 24
"""A ``whsec_`` secret's key is at least this long (Standard Webhooks: 24 to 64 bytes)."""
MIN_LEGACY_SECRET_CHARS = 16
SECRET_ENV = "CONVOSD_WEBHOOK_SECRET"
NEW_SECRET_HINT = (
    "make one with: python3 -c 'import base64, os; "
    'print("whsec_" + base64.b64encode(os.urandom(32)).decode())\''
)


def secret_key(text: str, where: str, *, legacy: bool) -> bytes:
    """The HMAC key of one secret. Error texts name where it came from, never its content."""
    if text.startswith(SECRET_PREFIX):
        encoded = text[len(SECRET_PREFIX) :]
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigProblem(
                f"the {where} is not valid base64 after {SECRET_PREFIX!r}: {NEW_SECRET_HINT}"
            ) from None
        if len(key) < MIN_KEY_BYTES:
            raise ConfigProblem(
                f"the {where} is too short: its key is {len(key)} bytes, use at least "
                f"{MIN_KEY_BYTES}; {NEW_SECRET_HINT}"
            )
        return key
    if not legacy:
        raise ConfigProblem(
            f"the {where} is not in the Standard Webhooks form whsec_<base64>: {NEW_SECRET_HINT} "
            "(or keep a plain old secret for this release with --legacy-signature, deprecated)"
        )
    if len(text) < MIN_LEGACY_SECRET_CHARS:
        raise ConfigProblem(
            f"the {where} is too short: use at least {MIN_LEGACY_SECRET_CHARS} characters"
        )
    return text.encode()


def load_secrets(
    secret_file: Path | None,
    environ: Mapping[str, str],
    *,
    legacy: bool = False,
) -> list[bytes]:
    """The signing keys, from the file or ``$CONVOSD_WEBHOOK_SECRET``, in the order given.

    One or more secrets separated by whitespace (one a line in a file): each signs every
    request. A secret is ``whsec_<base64>`` (the key is the decoded part); with ``legacy``
    (``--legacy-signature``) a plain secret of the old scheme, at least 16 characters, is
    accepted too (the key is its text). Nothing in an error names a secret's content.
    """
    if secret_file is not None:
        try:
            text = secret_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigProblem(
                f"cannot read the secret file {secret_file}: {exc.strerror}"
            ) from exc
        except UnicodeDecodeError:
            raise ConfigProblem(f"the secret file {secret_file} is not UTF-8 text") from None
        where = str(secret_file)
    else:
        text = environ.get(SECRET_ENV, "")
        where = f"${SECRET_ENV}"
    tokens = text.split()
    if not tokens:
        if secret_file is not None:
            raise ConfigProblem(f"no signing secret in {where}")
        raise ConfigProblem(f"no signing secret: give --secret-file FILE or set {SECRET_ENV}")
    return [
        secret_key(
            token,
            f"secret in {where}" if len(tokens) == 1 else f"secret #{n} in {where}",
            legacy=legacy,
        )
        for n, token in enumerate(tokens, 1)
    ]


def sign_v1(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    """One Standard Webhooks signature: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def sign_legacy(key: bytes, timestamp: str, body: bytes) -> str:
    """The deprecated ``X-Convosd-Signature``: ``sha256=`` + hex HMAC of ``timestamp.body``."""
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def request_headers(
    keys: list[bytes],
    msg_id: str,
    timestamp: int,
    body: bytes,
    *,
    event_type: str,
    legacy: bool = False,
) -> dict[str, str]:
    """The headers of one attempt: Standard Webhooks, one signature per key; the old ones too
    with ``legacy``."""
    ts = str(timestamp)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": " ".join(sign_v1(key, msg_id, ts, body) for key in keys),
    }
    if legacy:
        headers.update(
            {
                "Idempotency-Key": msg_id,
                "X-Convosd-Event-Type": event_type,
                "X-Convosd-Timestamp": ts,
                "X-Convosd-Signature": sign_legacy(keys[0], ts, body),
            }
        )
    return headers
