"""Support hours and what the customer is told when a person is asked for."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from models.handoff_text import waiting_notice
from models.hours import SupportHours
from models.settings import parse_staff_keys


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_weekday_hours_in_a_time_zone():
    hours = SupportHours.parse("Mon-Fri 09:00-17:30; Sat 10:00-14:00", "Europe/London")
    assert hours.open_at(at("2026-12-01T09:30:00"))  # Tuesday, London = UTC in winter
    assert not hours.open_at(at("2026-12-01T17:30:00"))  # the end is exclusive
    assert hours.open_at(at("2026-12-05T13:59:00"))  # Saturday
    assert not hours.open_at(at("2026-12-06T12:00:00"))  # Sunday
    summer = SupportHours.parse("Mon-Fri 09:00-17:00", "Europe/London")
    assert summer.open_at(at("2026-07-01T08:30:00"))  # 09:30 BST
    assert not summer.open_at(at("2026-07-01T16:30:00"))  # 17:30 BST


def test_overnight_and_wrapping_day_ranges():
    hours = SupportHours.parse("Fri-Mon 22:00-06:00", "UTC")
    assert hours.open_at(at("2026-12-04T23:00:00"))  # Friday night
    assert hours.open_at(at("2026-12-05T03:00:00"))  # Saturday early: Friday's window
    assert hours.open_at(at("2026-12-08T05:00:00"))  # Tuesday early: Monday's window
    assert not hours.open_at(at("2026-12-08T23:00:00"))  # Tuesday night
    assert SupportHours.parse("", "UTC").open_at(at("2026-12-06T03:00:00"))  # no hours: always


@pytest.mark.parametrize(
    ("text", "zone"),
    [
        ("Mon-Fri 9-17", "UTC"),
        ("Someday 09:00-17:00", "UTC"),
        ("Mon 25:00-26:00", "UTC"),
        ("Mon 09:00-17:00", "Mars/Olympus"),
    ],
)
def test_malformed_hours_are_refused_with_the_part_named(text, zone):
    with pytest.raises(ValueError):
        SupportHours.parse(text, zone)


def test_the_notice_is_honest_about_who_can_answer():
    online = waiting_notice({"in_hours": True, "agents_online": 2, "hours": None})
    assert "stay in this chat" in online and "email" not in online
    nobody = waiting_notice({"in_hours": True, "agents_online": 0, "hours": None})
    assert "nobody is online" in nobody and "email" in nobody
    closed = waiting_notice(
        {"in_hours": False, "agents_online": 3, "hours": "Mon-Fri 09:00-17:00 (UTC)"}
    )
    assert "away right now" in closed and "Mon-Fri 09:00-17:00" in closed and "email" in closed


def test_staff_keys_plain_and_named():
    assert parse_staff_keys("k1, Sam=k2,Ana Lopez=k3") == (
        ("Support", "k1"),
        ("Sam", "k2"),
        ("Ana Lopez", "k3"),
    )
    # Base64 padding is part of a plain key, not a name=key pair.
    assert parse_staff_keys("c2VjcmV0a2V5==,abc=") == (
        ("Support", "c2VjcmV0a2V5=="),
        ("Support", "abc="),
    )
