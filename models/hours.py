"""Support hours: when people answer, so a customer asking for one is told the truth.

`SUPPORT_HOURS` is a list of day ranges with a time range, separated by `;` — for example
`Mon-Fri 09:00-17:30; Sat 10:00-14:00` — read in `SUPPORT_TIMEZONE` (an IANA zone, default UTC).
Empty means people may answer at any hour (availability then rests on agents being online).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from models.base import utcnow

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(
    r"^(?P<d1>[a-z]{3})(?:\s*-\s*(?P<d2>[a-z]{3}))?\s+"
    r"(?P<h1>\d{1,2}):(?P<m1>\d{2})\s*-\s*(?P<h2>\d{1,2}):(?P<m2>\d{2})$"
)


@dataclass(frozen=True)
class Window:
    """Days of the week (0 = Monday) and a time range; an end at or before the start wraps."""

    days: frozenset[int]
    start: time
    end: time

    def contains(self, moment: datetime) -> bool:
        now = moment.time()
        if self.start < self.end:
            return moment.weekday() in self.days and self.start <= now < self.end
        # Overnight: the part after midnight belongs to the previous day's window.
        if now >= self.start:
            return moment.weekday() in self.days
        return now < self.end and (moment.weekday() - 1) % 7 in self.days


@dataclass(frozen=True)
class SupportHours:
    """Parsed SUPPORT_HOURS; `always` when none were configured."""

    windows: tuple[Window, ...]
    zone: ZoneInfo
    text: str

    @property
    def always(self) -> bool:
        return not self.windows

    def open_at(self, moment: datetime | None = None) -> bool:
        """True when people answer at `moment` (now by default)."""
        if self.always:
            return True
        local = (moment or utcnow()).astimezone(self.zone)
        return any(w.contains(local) for w in self.windows)

    @classmethod
    def parse(cls, text: str, zone: str = "UTC") -> SupportHours:
        """Raise ValueError naming the bad part; the settings turn it into a ConfigError."""
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"SUPPORT_TIMEZONE {zone!r} is not a known time zone") from None
        windows = tuple(_window(part) for part in text.split(";") if part.strip())
        return cls(windows, tz, text.strip())


def _window(part: str) -> Window:
    match = _RANGE.match(" ".join(part.lower().split()))
    if not match or match["d1"] not in DAYS or (match["d2"] and match["d2"] not in DAYS):
        raise ValueError(f"SUPPORT_HOURS part {part.strip()!r} is not like 'Mon-Fri 09:00-17:30'")
    first = DAYS.index(match["d1"])
    last = DAYS.index(match["d2"]) if match["d2"] else first
    days = frozenset((first + i) % 7 for i in range((last - first) % 7 + 1))
    try:
        start = time(int(match["h1"]), int(match["m1"]))
        end = time(int(match["h2"]) % 24, int(match["m2"]))
    except ValueError:
        raise ValueError(f"SUPPORT_HOURS part {part.strip()!r} has an impossible time") from None
    return Window(days, start, end)
