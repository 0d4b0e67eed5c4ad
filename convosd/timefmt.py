"""The one timestamp format of the protocol: RFC 3339, UTC, milliseconds, ``Z``. Pure.

Every timestamp convosd writes (event ``at`` and ``sentAt``, child ``since``, pairing and
join deadlines) goes through :func:`iso`, so they all read ``2026-05-04T09:15:02.481Z``.
"""

from __future__ import annotations

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
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
