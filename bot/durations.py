"""How long a ban or a list entry lasts, as people write it: 30m, 12h, 7d, 2w, or a date."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
FORMS = "a duration like 30m, 12h, 7d or 2w, or an ISO date"


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """When ``text`` from now ends ('7d'), or an ISO date/time (UTC when no zone is given).

    Raises ValueError naming the value and the forms allowed; the time must be in the future.
    """
    now = now or datetime.now(UTC)
    match = _DURATION.match(text.strip().lower())
    if match:
        try:
            when = now + timedelta(**{_UNITS[match[2]]: int(match[1])})
        except OverflowError:
            raise ValueError(f"{text!r} is too far away") from None
    else:
        try:
            when = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not {FORMS}") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    if when <= now:
        raise ValueError(f"{text!r} is not in the future")
    return when
