"""Schedule expressions: every kind's ticks, timezones and DST, and bad input's errors."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from faasbox.errors import InvalidParameterError
from faasbox.events.expressions import At, Cron, Rate, parse


def ticks(text: str, start: str, count: int = 3, timezone: str = "UTC",
          start_at: float = 0.0) -> list[str]:
    """The next ``count`` ticks after ``start`` (ISO), as ISO times in ``timezone``."""
    expression = parse(text, timezone)
    tz = ZoneInfo(timezone)
    moment = datetime.fromisoformat(start).replace(tzinfo=tz).timestamp()
    found = []
    for _ in range(count):
        tick = expression.next_after(moment, start_at)
        if tick is None:
            break
        found.append(datetime.fromtimestamp(tick, tz).isoformat())
        moment = tick
    return found


def test_rate_ticks_count_from_the_start_time() -> None:
    start = datetime(2024, 1, 1, 0, 0, 7, tzinfo=UTC).timestamp()
    rate = parse("rate(5 minutes)")
    assert isinstance(rate, Rate) and rate.period_s == 300
    assert ticks("rate(5 minutes)", "2024-01-01T00:00:00", start_at=start) == [
        "2024-01-01T00:05:07+00:00", "2024-01-01T00:10:07+00:00", "2024-01-01T00:15:07+00:00",
    ]
    # from a moment long after the start: the next tick on the same grid, not a backlog
    assert ticks("rate(1 hour)", "2024-03-01T10:30:00", 1, start_at=start) == [
        "2024-03-01T11:00:07+00:00"
    ]
    assert parse("rate(1 minute)").period_s == 60  # type: ignore[attr-defined]
    assert parse("rate(2 days)").period_s == 2 * 86400  # type: ignore[attr-defined]
    assert parse("RATE(3 Hours)").text == "rate(3 hours)"


def test_eventbridge_cron_question_mark_and_day_numbering() -> None:
    # 2 = MON, 6 = FRI in EventBridge's 1-7 = SUN-SAT numbering
    assert ticks("cron(0 12 ? * 2-6 *)", "2024-01-05T13:00:00", 3) == [
        "2024-01-08T12:00:00+00:00", "2024-01-09T12:00:00+00:00", "2024-01-10T12:00:00+00:00",
    ]
    assert ticks("cron(0 12 ? * MON-FRI *)", "2024-01-05T13:00:00", 1) == [
        "2024-01-08T12:00:00+00:00"
    ]
    assert ticks("cron(0 12 ? * 1 *)", "2024-01-01T00:00:00", 1) == ["2024-01-07T12:00:00+00:00"]
    assert ticks("cron(0 12 ? * 7 *)", "2024-01-01T00:00:00", 1) == ["2024-01-06T12:00:00+00:00"]
    assert ticks("cron(15 10 10 * ? *)", "2024-01-01T00:00:00", 2) == [
        "2024-01-10T10:15:00+00:00", "2024-02-10T10:15:00+00:00",
    ]
    # 3 = TUE: January 2 2024 is the first Tuesday
    assert ticks("cron(0/20 8-9 ? JAN,MAR 3 *)", "2024-01-01T00:00:00", 4) == [
        "2024-01-02T08:00:00+00:00", "2024-01-02T08:20:00+00:00",
        "2024-01-02T08:40:00+00:00", "2024-01-02T09:00:00+00:00",
    ]


def test_last_day_last_weekday_nth_weekday_and_nearest_weekday() -> None:
    assert ticks("cron(0 12 L * ? *)", "2024-01-01T00:00:00") == [
        "2024-01-31T12:00:00+00:00", "2024-02-29T12:00:00+00:00", "2024-03-31T12:00:00+00:00",
    ]
    # 6L: the last Friday (EventBridge's 6 = FRI)
    assert ticks("cron(0 12 ? * 6L *)", "2024-01-01T00:00:00") == [
        "2024-01-26T12:00:00+00:00", "2024-02-23T12:00:00+00:00", "2024-03-29T12:00:00+00:00",
    ]
    # a lone L in day-of-week is the week's last day, Saturday
    assert ticks("cron(0 12 ? * L *)", "2024-01-01T00:00:00", 1) == ["2024-01-06T12:00:00+00:00"]
    # 6#3: the third Friday
    assert ticks("cron(0 12 ? * 6#3 *)", "2024-01-01T00:00:00") == [
        "2024-01-19T12:00:00+00:00", "2024-02-16T12:00:00+00:00", "2024-03-15T12:00:00+00:00",
    ]
    # 15W: the weekday nearest the 15th (June 15 2024 is a Saturday -> Friday 14th)
    assert ticks("cron(0 12 15W * ? *)", "2024-06-01T00:00:00", 2) == [
        "2024-06-14T12:00:00+00:00", "2024-07-15T12:00:00+00:00",
    ]
    # 1W never leaves the month: June 1 2024 is a Saturday -> Monday 3rd
    assert ticks("cron(0 12 1W * ? *)", "2024-05-20T00:00:00", 1) == ["2024-06-03T12:00:00+00:00"]


def test_year_field_limits_the_years() -> None:
    assert ticks("cron(0 12 1 1 ? 2026-2027)", "2024-01-01T00:00:00") == [
        "2026-01-01T12:00:00+00:00", "2027-01-01T12:00:00+00:00",
    ]
    assert ticks("cron(0 12 2 2 ? 2030/5)", "2024-01-01T00:00:00", 2) == [
        "2030-02-02T12:00:00+00:00", "2035-02-02T12:00:00+00:00",
    ]
    assert ticks("cron(30 23 L 12 ? 2090)", "2024-01-01T00:00:00", 2) == [
        "2090-12-31T23:30:00+00:00"
    ]


def test_unix_five_field_cron_numbers_sunday_0_and_ors_the_day_fields() -> None:
    assert isinstance(parse("*/15 * * * *"), Cron)
    assert ticks("0 12 * * 0", "2024-01-01T00:00:00", 1) == ["2024-01-07T12:00:00+00:00"]
    assert ticks("0 12 * * 7", "2024-01-01T00:00:00", 1) == ["2024-01-07T12:00:00+00:00"]
    # both day fields restricted: the 10th OR any Monday (Vixie cron)
    assert ticks("0 12 10 * MON", "2024-01-01T00:00:00", 3) == [
        "2024-01-01T12:00:00+00:00", "2024-01-08T12:00:00+00:00", "2024-01-10T12:00:00+00:00",
    ]


def test_wall_clock_times_follow_the_timezone_and_its_dst() -> None:
    assert ticks("0 9 * * *", "2024-03-30T00:00:00", 3, "Europe/Paris") == [
        "2024-03-30T09:00:00+01:00", "2024-03-31T09:00:00+02:00", "2024-04-01T09:00:00+02:00",
    ]
    # spring forward: 02:30 does not exist on March 10 in New York -> the first time after
    assert ticks("cron(30 2 * * ? *)", "2024-03-09T00:00:00", 3, "America/New_York") == [
        "2024-03-09T02:30:00-05:00", "2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00",
    ]
    # fall back: 01:30 happens twice on November 3 and fires on both passes (croniter)
    assert ticks("cron(30 1 * * ? *)", "2024-11-02T12:00:00", 2, "America/New_York") == [
        "2024-11-03T01:30:00-04:00", "2024-11-03T01:30:00-05:00",
    ]


def test_at_fires_once_at_a_wall_clock_time_in_the_timezone() -> None:
    at = parse("at(2030-01-31T09:30:00)", "Asia/Tokyo")
    assert isinstance(at, At) and at.one_time
    assert at.when == datetime(2030, 1, 31, 0, 30, tzinfo=UTC).timestamp()
    assert at.next_after(at.when - 1, 0.0) == at.when
    assert at.next_after(at.when, 0.0) is None


def test_cron_ticks_before_the_start_time_do_not_count() -> None:
    start = datetime(2024, 1, 10, tzinfo=UTC).timestamp()
    assert ticks("cron(0 12 * * ? *)", "2024-01-01T00:00:00", 1, start_at=start) == [
        "2024-01-10T12:00:00+00:00"
    ]
    noon = datetime(2024, 1, 10, 12, tzinfo=UTC).timestamp()
    assert ticks("cron(0 12 * * ? *)", "2024-01-01T00:00:00", 1, start_at=noon) == [
        "2024-01-10T12:00:00+00:00"
    ]
    assert ticks("cron(0 12 * * ? *)", "2024-01-01T00:00:00", 1, start_at=noon + 0.5) == [
        "2024-01-11T12:00:00+00:00"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "schedule expression is empty"),
        ("every day", "expected rate(N minutes|hours|days)"),
        ("rate(1 minutes)", "write rate(1 minute)"),
        ("rate(5 minute)", "write rate(5 minutes)"),
        ("rate(0 minutes)", "the value must be 1 to"),
        ("rate(2 weeks)", "unit 'weeks' is not minute(s), hour(s) or day(s)"),
        ("rate(five minutes)", "expected rate(N minute|minutes"),
        ("cron(0 12 * * *)", "cron() takes six fields"),
        ("cron(0 12 * * * *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 12 1 * MON *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 12 ? * 0 *)", "day-of-week '0' is not 1-7 (1 = SUN ... 7 = SAT)"),
        ("cron(0 12 ? * 8 *)", "day-of-week '8' is not 1-7"),
        ("cron(61 12 ? * 1 *)", "bad minutes field '61'"),
        ("cron(0 24 ? * 1 *)", "bad hours field '24'"),
        ("cron(0 12 32 * ? *)", "bad day-of-month field '32'"),
        ("cron(0 12 1 13 ? *)", "bad month field '13'"),
        ("cron(0 12 ? * 6#6 *)", "bad day-of-week field '6#6'"),
        ("cron(0 12 1,15W * ? *)", "bad day-of-month field '1,15W'"),
        ("cron(0 12 ? * 1/2 *)", "the day-of-week field '1/2' may not use '/'"),
        ("cron(0 12 1W * ? 1969)", "bad year field '1969'"),
        ("cron(0 12 30 2 ? *)", "it never fires from now on"),
        ("cron(0 12 1 1 ? 2001)", "it never fires from now on"),
        ("0 12 * * 1#2", "a five-field Unix cron takes numbers"),
        ("61 * * * *", "bad minutes field '61'"),
        ("at(2030-01-31 09:30:00)", "expected at(yyyy-mm-ddThh:mm:ss)"),
        ("at(2030-02-30T09:30:00)", "expected at(yyyy-mm-ddThh:mm:ss)"),
    ],
)
def test_bad_expressions_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        parse(text)
    assert message in str(caught.value)


def test_unknown_timezone_is_refused() -> None:
    for name in ("Mars/Olympus", "", "../etc/passwd"):
        with pytest.raises(InvalidParameterError, match="unknown timezone"):
            parse("rate(1 minute)", name)
