"""Calendar quantities in the region's time zone: the one place a day, month, year or age is taken.

The lake stores instants: silver's times are UTC timestamps, and the Spark session runs in UTC. A
calendar quantity — the date of an admission, the month of a follow-up, an age, a 30-day or 12-month
window, a census at midnight, a day partition, ``as_of`` — is a matter of local time: an admission at
03:00 Beijing time is on that Beijing day, not the UTC one before it. Every such quantity is taken here,
in the zone passed (``region.timezone`` of the configuration, ``Asia/Shanghai`` by default), never with a
bare ``to_date``/``trunc`` on an instant in the session's zone. A value that is already a date (a birth
date, a landing day) stays a date.

Column functions built from Spark built-ins only (``from_utc_timestamp``, ``to_utc_timestamp``, epoch
arithmetic): no Python UDF, and a result that does not depend on the session's time zone.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pyspark.sql import Column
from pyspark.sql import functions as F

from healthlake.config import DEFAULT_ZONE, check_zone

__all__ = [
    "DEFAULT_ZONE",
    "age_at",
    "check_zone",
    "local_date",
    "local_days_between",
    "local_instant",
    "local_midnight",
    "local_month",
    "local_time_of_day",
    "local_today",
    "local_year",
    "reading_sources_in",
    "source_zone",
    "today",
]

_DAY_MICROS = 86_400_000_000

_SOURCE_ZONE: ContextVar[str] = ContextVar("healthlake_source_zone", default=DEFAULT_ZONE)


def source_zone() -> str:
    """The zone whose wall clock a source time without an offset is read in (see ``reading_sources_in``).

    ``Asia/Shanghai`` unless a ``reading_sources_in`` block says otherwise: conform reads every source
    in ``region.timezone``, while silver's parsers stay ``DataFrame -> DataFrame`` functions.
    """
    return _SOURCE_ZONE.get()


@contextmanager
def reading_sources_in(zone: str) -> Iterator[str]:
    """Within the block, parsers read local source times (HL7 and CSV wall clocks, FHIR dates) in ``zone``.

    The zone is taken when a parser builds its columns, i.e. while the DataFrame is defined: define it
    (and run its actions, which may re-define it) inside the block.
    """
    token = _SOURCE_ZONE.set(check_zone(zone))
    try:
        yield zone
    finally:
        _SOURCE_ZONE.reset(token)


def _wall_micros(instant: Column, zone: str) -> Column:
    """Microseconds from 1970-01-01 00:00 to the wall-clock time of ``instant`` in ``zone`` (both read
    as UTC): the epoch value of ``from_utc_timestamp``, whatever the session's zone."""
    return F.unix_micros(F.from_utc_timestamp(instant, zone))


def local_date(instant: Column, zone: str) -> Column:
    """The date of an instant (a timestamp) on the calendar of ``zone``; NULL for NULL."""
    return F.date_from_unix_date(F.floor(_wall_micros(instant, zone) / _DAY_MICROS).cast("int"))


def local_month(instant: Column, zone: str) -> Column:
    """The first day of the month of ``zone`` an instant falls in (a date)."""
    return F.trunc(local_date(instant, zone), "month")


def local_year(instant: Column, zone: str) -> Column:
    """The year of ``zone`` an instant falls in (an int)."""
    return F.year(local_date(instant, zone))


def local_days_between(start: Column, end: Column, zone: str) -> Column:
    """Days from the local date of instant ``start`` to that of instant ``end`` (negative when ``end``'s
    day is earlier): 0 within one local day, 1 from 23:59 to 00:01 the next."""
    return F.datediff(local_date(end, zone), local_date(start, zone))


def local_time_of_day(instant: Column, zone: str) -> Column:
    """The wall-clock time of an instant in ``zone`` as ``HH:mm:ss`` text."""
    seconds = F.floor(F.pmod(_wall_micros(instant, zone), F.lit(_DAY_MICROS)) / 1_000_000)
    hours, minutes = F.floor(seconds / 3600), F.floor(seconds / 60) % 60
    clock = F.format_string("%02d:%02d:%02d", hours, minutes, seconds % 60)
    return F.when(seconds.isNotNull(), clock)


def local_midnight(day: Column, zone: str) -> Column:
    """The instant (UTC timestamp) a local day starts: 00:00 of date ``day`` in ``zone``.

    Compare instants with it rather than taking their dates, e.g. ``discharge_time >= local_midnight(d)``
    for "discharged on day ``d`` or later": the comparison stays on the stored column (Delta skips files by
    it) and means the same day. (The source value that is only a date means this instant too.)
    """
    wall = F.timestamp_micros(F.unix_date(day).cast("long") * _DAY_MICROS)
    return F.to_utc_timestamp(wall, zone)


def local_instant(wall_clock: Column, zone: str) -> Column:
    """The instant of a wall-clock time of ``zone``, given as a timestamp whose UTC reading is that wall
    clock (what parsing a text without offset gives in the session's UTC)."""
    return F.to_utc_timestamp(wall_clock, zone)


def age_at(birth_date: Column | str, day: Column | str) -> Column:
    """Completed years between ``birth_date`` and the local day ``day`` (dates); NULL when either is NULL.

    Both are calendar dates already: take ``day`` from an instant with ``local_date`` first.
    """
    birth = F.col(birth_date) if isinstance(birth_date, str) else birth_date
    on = F.col(day) if isinstance(day, str) else day
    return F.floor(F.months_between(on, birth) / 12).cast("int")


def age_band(age: Column | str) -> Column:
    """The 5-year band of an age in completed years: ``00-04`` … ``80-84``, ``85+``; NULL for NULL or < 0."""
    years = F.col(age) if isinstance(age, str) else age
    low = (F.floor(years / 5) * 5).cast("int")
    band = F.concat(F.lpad(low.cast("string"), 2, "0"), F.lit("-"), F.lpad((low + 4).cast("string"), 2, "0"))
    return F.when(years >= 85, F.lit("85+")).when(years >= 0, band)


def today(zone: str) -> Column:
    """Today's date in ``zone`` (a date Column), where ``current_date()`` would give the session's."""
    return local_date(F.current_timestamp(), zone)


def local_today(zone: str) -> dt.date:
    """Today's date in ``zone``, in Python (for the driver; no Spark)."""
    return dt.datetime.now(zoneinfo.ZoneInfo(zone)).date()
