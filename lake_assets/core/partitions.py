"""Landing dates: from the object key (`…/2026/11/20/…`, `…/dt=2026-11-20/…`,
`…/year=2026/month=11/day=20/…`), else the object's last-modified time in UTC."""

from __future__ import annotations

import datetime as dt
import re

_PATTERNS = [
    re.compile(r"(?:^|/)(?:dt|date|ds|day|landing_date)=(\d{4})-(\d{2})-(\d{2})(?:/|$)"),
    re.compile(r"(?:^|/)year=(\d{4})/month=(\d{1,2})/day=(\d{1,2})(?:/|$)"),
    re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})(?:/|$)"),
    re.compile(r"(?:^|/)(\d{4})-(\d{2})-(\d{2})(?:/|$)"),
]


def landing_date(key: str, last_modified: dt.datetime) -> dt.date:
    """The landing date of an object: a date in its key wins over its last-modified time."""
    for pattern in _PATTERNS:
        for match in pattern.finditer(key):
            try:
                return dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
            except ValueError:
                continue
    return last_modified.astimezone(dt.timezone.utc).date()
