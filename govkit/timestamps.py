"""Times as govkit writes and reads them: ISO 8601 UTC with microseconds and a Z.

Every timestamp govkit parses (record times, review dates, --since/--until) goes through here.
"""

from __future__ import annotations

import datetime as dt
import time

from .errors import InputError

__all__ = ["input_date", "normalise_ts", "parse_date", "parse_ts", "seconds_between", "utc_now", "utc_text"]

_second: tuple[int, str] = (-1, "")  # the last second formatted, and its text


def utc_now() -> str:
    """Now, as the store writes times."""
    return utc_text(time.time_ns())


def utc_text(ns: int) -> str:
    """A time in nanoseconds since the epoch as the store writes it. The date and time of the
    last second seen are formatted once; between appends usually only the microseconds change."""
    global _second
    seconds, micros = divmod(ns // 1000, 1_000_000)
    cached = _second
    if cached[0] != seconds:
        cached = _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{cached[1]}.{micros:06d}Z"


def parse_ts(value: str) -> dt.datetime:
    """An ISO 8601 date or time as an aware datetime (no zone given: UTC). Raises ValueError."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def parse_date(value: str) -> dt.date:
    """The calendar date an ISO date or time begins with. Raises ValueError."""
    return dt.date.fromisoformat(value[:10])


def input_date(value: str, *, parameter: str) -> dt.date:
    """A date a person gave (a flag, an option): InputError naming the parameter when it is not one."""
    try:
        return parse_date(value)
    except ValueError:
        raise InputError("expected a date (YYYY-MM-DD)", parameter=parameter, value=value) from None


def normalise_ts(value: str, *, parameter: str | None = None) -> str:
    """A date or an ISO time in the store's UTC form, for comparisons with stored times."""
    try:
        parsed = parse_ts(value)
    except ValueError:
        raise InputError(f"'{value}' is not an ISO 8601 date or time", parameter=parameter) from None
    utc = parsed.astimezone(dt.UTC)
    return utc.isoformat(timespec="microseconds").replace("+00:00", "Z")


def seconds_between(start: str, end: str) -> float:
    return (parse_ts(end) - parse_ts(start)) / dt.timedelta(seconds=1)
