"""Invite references (docs/PROTOCOL.md, Methods: Joining). Pure.

Accepted: a bare slug, any URL with an ``i`` query parameter (``https://dev.convos.org/v2?i=…``,
``https://popup.convos.org/v2?i=…``), ``https://convos.app/join/<slug>`` and
``convos://join/<slug>``. The daemon passes the bare slug to the CLI.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit

from convosd import errors

_SLUG = re.compile(r"^[A-Za-z0-9_\-+/=.*]{8,8000}$")


def extract_slug(reference: str) -> str:
    text = reference.strip()
    if not text:
        raise errors.InviteInvalid("The invite is empty")
    if "://" in text:
        parts = urlsplit(text)
        query = parse_qs(parts.query)
        if "i" in query and query["i"][0]:
            slug = query["i"][0]
        else:
            path = [p for p in parts.path.split("/") if p]
            host = parts.netloc.lower()
            if parts.scheme == "convos" and host == "join" and len(path) == 1:
                slug = unquote(path[0])
            elif len(path) == 2 and path[0] == "join":
                slug = unquote(path[1])
            else:
                raise errors.InviteInvalid("The invite URL holds no invite (no ?i= and no /join/)")
    else:
        slug = text
    if not _SLUG.match(slug):
        raise errors.InviteInvalid("The invite is not a Convos invite slug")
    return slug
