"""Schedule expressions: parse them and tell when they fire next.

Four kinds, as EventBridge Scheduler takes them plus plain cron:

- ``rate(N unit)``: every N minutes, hours or days (``rate(1 minute)``, singular for 1,
  plural otherwise). Ticks are ``start + k * period`` for k >= 1.
- ``cron(min hour day-of-month month day-of-week year)``: EventBridge's six fields, with
  ``?`` (one of the two day fields must be ``?``), ``L``, ``W`` and ``#``; days of the
  week count 1-7 = SUN-SAT (not Unix's 0-6).
- ``at(yyyy-mm-ddThh:mm:ss)``: once, at that wall-clock time in the schedule's timezone.
- ``min hour day-of-month month day-of-week``: standard five-field Unix cron (0-6 or 7 =
  SUN-SAT, day fields OR-ed when both are restricted).

Calendar arithmetic is croniter's (``pallets-eco/croniter``); this module only maps
EventBridge's syntax onto it (``?``, day numbering, ``nL``) and filters the year field,
because croniter's own year field misses dates that name a day and a month. Wall-clock
times are in the schedule's IANA timezone (zoneinfo); across DST changes croniter's rules
hold: a time in the skipped hour fires at the first valid time after it, and a time in
the repeated hour fires on both passes.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from faasbox.errors import InvalidParameterError

#: Bounds of rate() values (EventBridge's) and of cron() years (croniter's).
RATE_MAX = 10**6
YEAR_MIN, YEAR_MAX = 1970, 2099
#: An expression that fires less often than this is taken as never firing.
HORIZON_YEARS = 50

_RATE_RE = re.compile(r"^rate\(\s*(\d+)\s+([a-z]+)\s*\)$", re.IGNORECASE)
_CRON_RE = re.compile(r"^cron\((.*)\)$", re.IGNORECASE | re.DOTALL)
_AT_RE = re.compile(r"^at\((.*)\)$", re.IGNORECASE | re.DOTALL)
_AT_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_FIELDS = ("minutes", "hours", "day-of-month", "month", "day-of-week", "year")
#: Characters EventBridge allows in each cron() field (besides digits and names).
_ALLOWED = (",-*/", ",-*/", ",-*?/LW", ",-*/", ",-*?L#", ",-*/")
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
                "DEC")
_NAMES_RE = re.compile("|".join(_DAY_NAMES + _MONTH_NAMES))
_DIGITS = "0123456789"


def zone(name: str) -> ZoneInfo:
    """The IANA timezone ``name``; InvalidParameterError if there is none such."""
    try:
        if not isinstance(name, str) or not name or name.startswith(("/", ".")):
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidParameterError(
            f"unknown timezone {name!r}: use an IANA name such as 'UTC' or 'Europe/Paris'"
        ) from None


class Expression(abc.ABC):
    """A parsed schedule expression. Immutable; times are epoch seconds."""

    text: str

    @property
    def one_time(self) -> bool:
        return False

    @abc.abstractmethod
    def next_after(self, after: float, start_at: float) -> float | None:
        """The first tick strictly later than ``after`` and not before ``start_at``, or
        None when there is none (a past at(), a cron whose years are over)."""


@dataclass(frozen=True)
class Rate(Expression):
    """``rate(N unit)``: ticks at ``start_at + k * period_s``, k = 1, 2, ..."""

    text: str
    period_s: int

    def next_after(self, after: float, start_at: float) -> float | None:
        k = max(1, int((after - start_at) // self.period_s) + 1)
        tick = start_at + k * self.period_s
        while tick <= after:  # float rounding at the boundary
            k += 1
            tick = start_at + k * self.period_s
        return tick


@dataclass(frozen=True)
class At(Expression):
    """``at(...)``: one tick, at ``when`` (epoch seconds)."""

    text: str
    when: float

    @property
    def one_time(self) -> bool:
        return True

    def next_after(self, after: float, start_at: float) -> float | None:
        return self.when if self.when > after else None


@dataclass(frozen=True)
class Cron(Expression):
    """A cron expression, as croniter's five fields plus an optional set of years."""

    text: str
    fields: str
    tz: ZoneInfo
    years: frozenset[int] | None = None

    def next_after(self, after: float, start_at: float) -> float | None:
        moment = datetime.fromtimestamp(max(after, start_at - 1), self.tz)
        limit = moment.year + HORIZON_YEARS
        while moment.year <= limit:
            if self.years is not None:
                later = [year for year in self.years if year >= moment.year]
                if not later:
                    return None
                if min(later) > moment.year:  # jump to just before Jan 1 of that year
                    moment = datetime(min(later), 1, 1, tzinfo=self.tz) - timedelta(seconds=1)
            try:
                tick: datetime = croniter(self.fields, moment).get_next(datetime)
            except CroniterError:  # nothing within croniter's own horizon
                return None
            if self.years is None or tick.year in self.years:
                ts = tick.timestamp()
                if ts > after and ts >= start_at:
                    return ts
                moment = tick  # a fraction of a second before start_at: go on
                continue
            moment = datetime(tick.year + 1, 1, 1, tzinfo=self.tz) - timedelta(seconds=1)
        return None


def parse(text: str, timezone: str = "UTC") -> Expression:
    """Parse ``text`` for a schedule in ``timezone``.

    Raises InvalidParameterError saying what is wrong: an unknown kind, a bad rate unit
    or value, a malformed or out-of-range cron field (named), ``?`` misused, a cron that
    never fires, a malformed at() time, or an unknown timezone."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidParameterError("schedule expression is empty")
    text = text.strip()
    tz = zone(timezone)
    if text.lower().startswith("rate("):
        return _rate(text)
    if text.lower().startswith("at("):
        return _at(text, tz)
    if text.lower().startswith("cron("):
        return _eventbridge_cron(text, tz)
    if len(text.split()) == 5:
        return _unix_cron(text, tz)
    raise InvalidParameterError(
        f"invalid schedule expression {text!r}: expected rate(N minutes|hours|days), "
        "cron(min hour day-of-month month day-of-week year), at(yyyy-mm-ddThh:mm:ss) "
        "or a five-field cron 'min hour day-of-month month day-of-week'"
    )


def _rate(text: str) -> Rate:
    match = _RATE_RE.match(text)
    if not match:
        raise InvalidParameterError(
            f"invalid rate expression {text!r}: expected rate(N minute|minutes|hour|hours"
            "|day|days), e.g. rate(5 minutes)"
        )
    value, unit = int(match.group(1)), match.group(2).lower()
    singular = unit.removesuffix("s")
    if singular not in _UNITS:
        raise InvalidParameterError(
            f"invalid rate expression {text!r}: unit {unit!r} is not minute(s), hour(s) "
            "or day(s)"
        )
    if not 1 <= value <= RATE_MAX:
        raise InvalidParameterError(
            f"invalid rate expression {text!r}: the value must be 1 to {RATE_MAX}"
        )
    if (value == 1) != (unit == singular):
        wanted = singular if value == 1 else singular + "s"
        raise InvalidParameterError(
            f"invalid rate expression {text!r}: write rate({value} {wanted}) (singular "
            "unit for 1, plural otherwise)"
        )
    return Rate(text=f"rate({value} {unit})", period_s=value * _UNITS[singular])


def _at(text: str, tz: ZoneInfo) -> At:
    match = _AT_RE.match(text)
    raw = match.group(1).strip() if match else ""
    try:
        if not _AT_TIME_RE.match(raw):
            raise ValueError(raw)
        local = datetime.fromisoformat(raw).replace(tzinfo=tz)
    except ValueError:
        raise InvalidParameterError(
            f"invalid at expression {text!r}: expected at(yyyy-mm-ddThh:mm:ss), e.g. "
            "at(2030-01-31T09:30:00), a wall-clock time in the schedule's timezone"
        ) from None
    return At(text=f"at({raw})", when=local.timestamp())


def _eventbridge_cron(text: str, tz: ZoneInfo) -> Cron:
    match = _CRON_RE.match(text)
    parts = match.group(1).upper().split() if match else []
    if len(parts) != 6:
        raise InvalidParameterError(
            f"invalid cron expression {text!r}: cron() takes six fields 'minutes hours "
            "day-of-month month day-of-week year' (for a five-field Unix cron, leave out "
            "cron( ))"
        )
    for index, part in enumerate(parts):
        bad = set(_NAMES_RE.sub("", part)) - set(_DIGITS + _ALLOWED[index])
        if bad:
            raise InvalidParameterError(
                f"invalid cron expression {text!r}: the {_FIELDS[index]} field {part!r} "
                f"may not use {''.join(sorted(bad))!r}"
            )
    minute, hour, dom, month, dow, year = parts
    if (dom == "?") == (dow == "?"):
        raise InvalidParameterError(
            f"invalid cron expression {text!r}: exactly one of day-of-month and day-of-week "
            "must be '?' (EventBridge cannot match both)"
        )
    if "?" in (dow if dom == "?" else dom):
        raise InvalidParameterError(
            f"invalid cron expression {text!r}: '?' stands alone in its field"
        )
    dom = "*" if dom == "?" else dom
    dow = "*" if dow == "?" else _dow_to_unix(text, dow)
    fields = f"{minute} {hour} {dom} {month} {dow}"
    _check_fields(text, fields, (minute, hour, dom, month, parts[4]))
    years = _years(text, year)
    cron = Cron(text=f"cron({' '.join(parts)})", fields=fields, tz=tz, years=years)
    return _fires(cron)


def _unix_cron(text: str, tz: ZoneInfo) -> Cron:
    fields = " ".join(text.upper().split())
    if set(_NAMES_RE.sub("", fields)) - set(_DIGITS + ",-*/ "):
        raise InvalidParameterError(
            f"invalid cron expression {text!r}: a five-field Unix cron takes numbers, "
            "JAN-DEC, SUN-SAT, '*', ',', '-' and '/' ('?', 'L', 'W', '#' need cron(...))"
        )
    _check_fields(text, fields, tuple(fields.split()))
    return _fires(Cron(text=fields, fields=fields, tz=tz))


def _dow_to_unix(text: str, field: str) -> str:
    """EventBridge day-of-week (1-7 = SUN-SAT, ``nL``, ``n#k``, lone ``L`` = SAT) in
    croniter's syntax (0-6 = SUN-SAT, ``Ln``, ``n#k``)."""

    def day(value: str) -> int:
        if value in _DAY_NAMES:
            return _DAY_NAMES.index(value)
        if value.isdigit() and 1 <= int(value) <= 7:
            return int(value) - 1
        raise InvalidParameterError(
            f"invalid cron expression {text!r}: day-of-week {value!r} is not 1-7 "
            "(1 = SUN ... 7 = SAT) or SUN-SAT"
        )

    terms = []
    for term in field.split(","):
        if term == "*":
            terms.append("*")
        elif term == "L":
            terms.append("6")  # the last day of the week: Saturday
        elif term.endswith("L"):
            terms.append(f"L{day(term[:-1])}")
        elif "#" in term:
            value, _, nth = term.partition("#")
            terms.append(f"{day(value)}#{nth}")
        elif "-" in term:
            low, _, high = term.partition("-")
            terms.append(f"{day(low)}-{day(high)}")
        else:
            terms.append(str(day(term)))
    return ",".join(terms)


def _check_fields(text: str, fields: str, shown: tuple[str, ...]) -> None:
    """Try each field alone (the others ``*``) so an error can name the bad one."""
    names = _FIELDS[:5]
    for index, part in enumerate(fields.split()):
        alone = ["*"] * 5
        alone[index] = part
        try:
            croniter.expand(" ".join(alone))
        except (CroniterError, ValueError, KeyError, IndexError):
            raise InvalidParameterError(
                f"invalid cron expression {text!r}: bad {names[index]} field {shown[index]!r}"
            ) from None
    try:
        croniter.expand(fields)
    except (CroniterError, ValueError, KeyError, IndexError) as exc:
        raise InvalidParameterError(f"invalid cron expression {text!r}: {exc}") from None


def _years(text: str, field: str) -> frozenset[int] | None:
    """The years a cron() year field allows (croniter expands it), None for ``*``."""
    if field == "*":
        return None
    try:
        years = croniter.expand(f"0 0 1 1 * 0 {field}")[0][6]
    except (CroniterError, ValueError, KeyError, IndexError):
        raise InvalidParameterError(
            f"invalid cron expression {text!r}: bad year field {field!r} (years "
            f"{YEAR_MIN}-{YEAR_MAX}, with ',', '-', '*', '/')"
        ) from None
    return frozenset(int(year) for year in years)


def _fires(cron: Cron) -> Cron:
    """``cron``, if it fires at least once from now on within the horizon."""
    if cron.next_after(datetime.now(cron.tz).timestamp(), 0.0) is None:
        raise InvalidParameterError(
            f"invalid cron expression {cron.text!r}: it never fires from now on "
            "(an impossible date, or only past years)"
        )
    return cron
