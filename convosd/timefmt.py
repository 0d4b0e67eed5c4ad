"""The one timestamp format of the protocol: RFC 3339, UTC, milliseconds, ``Z``. Pure.

Every timestamp convosd writes (event ``at`` and ``sentAt``, child ``since``, pairing and
join deadlines) goes through :func:`iso`, so they all read ``2026-05-04T09:15:02.481Z``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import overload


@overload
def iso(moment: datetime | float) -> str: ...
@overload
def iso(moment: None) -> None: ...
def iso(moment: datetime | float | None) -> str | None:
    """``moment`` (a datetime, or Unix seconds) as RFC 3339 UTC with milliseconds and Z.

    A naive datetime is taken as UTC; None stays None (a field that has no time yet).
    """
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    elif moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    if moment.year < 1000:
        # strftime's %Y does not pad these (glibc): the text as it always was
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    # Every inbound message takes two of these: isoformat is C, strftime plus a format
    # costs about a third more (the same text: tests/test_pure_cores.py)
    return moment.isoformat(timespec="milliseconds")[:23] + "Z"


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 date-time (``2026-05-04T09:15:02Z``, ``…02.481+02:00``) as an aware
    datetime. Anything else (a date alone, no offset, a Unix number, a space for ``T``)
    raises ValueError."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError("not an RFC 3339 date-time (like 2026-05-04T09:15:02Z)")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    zone = "+00:00" if offset in ("Z", "z") else offset
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    try:
        moment = datetime.fromisoformat(
            f"{year}-{month}-{day}T{hour}:{minute}:{min(int(second), 59):02d}.{micro}{zone}"
        )
    except ValueError:
        raise ValueError("not a valid date-time (a field is out of range)") from None
    return moment.astimezone(UTC)
