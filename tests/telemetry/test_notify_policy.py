"""Who gets what, as a table: severities, preferences, quiet hours across midnight and time
zones (daylight saving included), and channel filters. Pure functions, no database."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from apps.telemetry.notify.policy import (
    AlertNotice,
    Decision,
    Preference,
    at_least,
    channel_wants,
    decide,
    in_quiet_hours,
)
from tests.telemetry.notify_support import alert_payload


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "zone", "at", "quiet"),
    [
        # same-day window, start inclusive, end exclusive
        (time(9), time(17), "UTC", "2026-03-02 08:59", False),
        (time(9), time(17), "UTC", "2026-03-02 09:00", True),
        (time(9), time(17), "UTC", "2026-03-02 16:59", True),
        (time(9), time(17), "UTC", "2026-03-02 17:00", False),
        # across midnight
        (time(22), time(7), "UTC", "2026-03-02 21:59", False),
        (time(22), time(7), "UTC", "2026-03-02 22:00", True),
        (time(22), time(7), "UTC", "2026-03-02 23:59", True),
        (time(22), time(7), "UTC", "2026-03-03 00:00", True),
        (time(22), time(7), "UTC", "2026-03-03 06:59", True),
        (time(22), time(7), "UTC", "2026-03-03 07:00", False),
        # the user's time zone: 21:30 UTC is 22:30 in Paris (winter, UTC+1) ...
        (time(22), time(7), "Europe/Paris", "2026-03-02 21:30", True),
        # ... and 23:30 in summer (UTC+2); 05:30 UTC is 07:30 in Paris, after the window
        (time(22), time(7), "Europe/Paris", "2026-07-02 21:30", True),
        (time(22), time(7), "Europe/Paris", "2026-07-02 05:30", False),
        (time(22), time(7), "Europe/Paris", "2026-07-02 04:30", True),
        # west of UTC: 03:00 UTC is 22:00 the day before in New York (EST, UTC-5)
        (time(22), time(7), "America/New_York", "2026-01-15 03:00", True),
        (time(22), time(7), "America/New_York", "2026-01-15 12:30", False),
        # east, across the date line: 12:00 UTC is 01:00 the next day in Auckland (NZDT)
        (time(22), time(7), "Pacific/Auckland", "2026-01-15 12:00", True),
        (time(22), time(7), "Pacific/Auckland", "2026-01-15 20:00", False),
        # half-hour zone: 17:00 UTC is 22:30 in Kolkata
        (time(22, 30), time(6), "Asia/Kolkata", "2026-01-15 16:59", False),
        (time(22, 30), time(6), "Asia/Kolkata", "2026-01-15 17:00", True),
        # no window, an empty window, half a window: never quiet
        (None, None, "UTC", "2026-03-02 23:00", False),
        (time(22), time(22), "UTC", "2026-03-02 22:00", False),
        (time(22), None, "UTC", "2026-03-02 23:00", False),
        # an unknown zone falls back to UTC
        (time(22), time(7), "Mars/Olympus", "2026-03-02 23:00", True),
    ],
)
def test_quiet_hours(start, end, zone, at, quiet) -> None:
    assert in_quiet_hours(start=start, end=end, timezone=zone, at=utc(at)) is quiet


@pytest.mark.parametrize(
    ("severity", "minimum", "expected"),
    [
        ("critical", "info", True),
        ("info", "info", True),
        ("warning", "minor", False),
        ("minor", "minor", True),
        ("major", "critical", False),
        ("critical", "critical", True),
        ("bogus", "info", False),
    ],
)
def test_severity_order(severity, minimum, expected) -> None:
    assert at_least(severity, minimum) is expected


NIGHT = utc("2026-03-02 23:30")  # 00:30 in Paris
DAY = utc("2026-03-02 10:00")
QUIET_PARIS = {"quiet_start": time(22), "quiet_end": time(7), "timezone": "Europe/Paris"}


@pytest.mark.parametrize(
    ("preference", "severity", "at", "by", "expected"),
    [
        ({}, "major", DAY, None, Decision(portal=True, email=True)),
        ({}, "warning", DAY, None, Decision(portal=True, email=True)),  # default floor
        ({}, "info", DAY, None, Decision(portal=False, email=False)),
        ({"portal": False}, "major", DAY, None, Decision(portal=False, email=True)),
        ({"email": False}, "major", DAY, None, Decision(portal=True, email=False)),
        ({"portal": False, "email": False}, "critical", DAY, None, Decision(False, False)),
        ({"min_severity": "critical"}, "major", DAY, None, Decision(False, False)),
        ({"min_severity": "critical"}, "critical", DAY, None, Decision(True, True)),
        ({"min_severity": "info"}, "info", DAY, None, Decision(True, True)),
        # quiet hours: the portal records, only critical alerts are emailed
        (QUIET_PARIS, "major", NIGHT, None, Decision(portal=True, email=False)),
        (QUIET_PARIS, "critical", NIGHT, None, Decision(portal=True, email=True)),
        (QUIET_PARIS, "major", DAY, None, Decision(portal=True, email=True)),
        ({**QUIET_PARIS, "email": False}, "critical", NIGHT, None, Decision(True, False)),
        # a change the person made themselves (an acknowledgement) is not notified to them
        ({}, "major", DAY, "me@example.com", Decision(portal=False, email=False)),
        ({}, "major", DAY, "ME@example.com", Decision(portal=False, email=False)),
        ({}, "major", DAY, "someone@example.com", Decision(portal=True, email=True)),
    ],
)
def test_decide(preference, severity, at, by, expected) -> None:
    notice = AlertNotice.from_event("alert.acknowledged", alert_payload(severity=severity, by=by))
    decision = decide(
        preference=Preference(**preference), notice=notice, user_email="me@example.com", at=at
    )
    assert decision == expected


@pytest.mark.parametrize(
    ("patterns", "minimum", "event_type", "severity", "expected"),
    [
        ([], "info", "alert.opened", "info", True),
        ([], "major", "alert.opened", "minor", False),
        ([], "major", "alert.resolved", "critical", True),
        (["alert.opened"], "info", "alert.opened", "major", True),
        (["alert.opened"], "info", "alert.resolved", "major", False),
        (["alert.*"], "info", "alert.acknowledged", "info", True),
        (["alert.opened", "alert.resolved"], "warning", "alert.resolved", "warning", True),
        (["alert.opened", "alert.resolved"], "warning", "alert.acknowledged", "critical", False),
    ],
)
def test_channel_filters(patterns, minimum, event_type, severity, expected) -> None:
    wanted = channel_wants(
        patterns=patterns, min_severity=minimum, event_type=event_type, severity=severity
    )
    assert wanted is expected


def test_a_notice_reads_the_payload_contract_and_titles_itself() -> None:
    notice = AlertNotice.from_event("alert.opened", alert_payload(severity="critical"))

    assert notice.title == "[CRITICAL] Opened: Overheating on SN-0042"
    assert notice.subject == "Overheating on SN-0042"
    assert (
        AlertNotice.from_event(
            "alert.resolved", alert_payload(device_serial="", severity="nonsense")
        ).title
        == "[INFO] Resolved: Overheating"
    )
