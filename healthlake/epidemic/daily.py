"""``gold.epidemic_daily``: the epidemic curve per area and local day.

Grain: one row per (``date``, ``level``, ``unit_code``): ``level`` is an area level (``township``,
``county``, ``city``, ``province``) and ``unit_code`` its GB/T 2260 code (``unknown`` for persons whose area
is not known at that level). A test or a case counts in the area the person lives in (``gold.patient_360``),
so a city is the sum of its counties and the province of its cities. Rows exist for the days with any
figure that is not 0, up to ``as_of``.

Measures (days are local days of ``region.timezone``):

* ``tests``: samples taken that day (single tubes and pooled members); ``people_tested``: persons sampled
  that day (linked persons once each; an unlinked source patient counts as one person).
* ``resulted_tests``: single-tube tests sampled that day with a positive or negative result;
  ``positives``: those positive; ``positivity`` = ``positives / resulted_tests``.
* ``new_cases``: cases (``gold.epidemic_cases``: a person's first positive) reported that day.
* ``active_cases``: cases reported on or before the day and not yet over: a case is active for
  ``epidemic.case_active_days`` days from its report.
* ``moving_days`` (``epidemic.moving_days``) and the moving sums over the days ending on the row's day:
  ``moving_tests``, ``moving_resulted_tests``, ``moving_positives``, ``moving_new_cases``, with
  ``moving_positivity`` and ``moving_new_cases_per_day``.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from healthlake import io
from healthlake.catalog import (
    GOLD_EPIDEMIC_CASES,
    GOLD_EPIDEMIC_DAILY,
    GOLD_PATIENT_360,
    SILVER_AREA,
    SILVER_NAT_TEST,
    SILVER_PERSON_XREF,
)
from healthlake.derived import DerivedTable, Inputs, Write, replace_where, unchanged
from healthlake.epidemic.cases import is_positive
from healthlake.epidemic.people import moved_persons, places, roll_up_areas, with_person
from healthlake.gold.areas import PATH_COLUMNS
from healthlake.localtime import local_date

CASE_ACTIVE_DAYS = "epidemic.case_active_days"
MOVING_DAYS = "epidemic.moving_days"
"""Run settings (``Inputs.settings``)."""

DAY_MEASURES = ["tests", "people_tested", "resulted_tests", "positives", "new_cases", "active_cases"]
MOVING = {
    "tests": "moving_tests",
    "resulted_tests": "moving_resulted_tests",
    "positives": "moving_positives",
    "new_cases": "moving_new_cases",
}


def _tests_per_day(
    nat_tests: DataFrame, person_xref: DataFrame, person_places: DataFrame, zone: str
) -> DataFrame:
    """One row per person (or unlinked patient), sample day and home area path, with that day's figures."""
    tests = with_person(nat_tests.where(F.col("sample_time").isNotNull()), person_xref)
    who = F.coalesce(
        F.col("person_id"),
        F.concat(F.lit("unlinked:"), F.col("institution_id"), F.lit("|"), F.col("source_patient_id")),
    )
    result = F.col("result")
    return (
        tests.select(
            who.alias("_who"),
            "person_id",
            local_date(F.col("sample_time"), zone).alias("date"),
            result.isin("positive", "negative").cast("long").alias("resulted_tests"),
            is_positive(result).cast("long").alias("positives"),
        )
        .groupBy("_who", "person_id", "date")
        .agg(
            F.count(F.lit(1)).alias("tests"),
            F.lit(1).cast("long").alias("people_tested"),
            F.sum("resulted_tests").alias("resulted_tests"),
            F.sum("positives").alias("positives"),
        )
        .join(person_places, "person_id", "left")
        .select("date", *PATH_COLUMNS, "tests", "people_tested", "resulted_tests", "positives")
    )


def epidemic_daily(
    nat_tests: DataFrame,
    cases: DataFrame,
    person_xref: DataFrame,
    person_places: DataFrame,
    areas: DataFrame,
    *,
    zone: str,
    as_of: dt.date,
    case_active_days: int = 14,
    moving_days: int = 7,
    since: dt.date | None = None,
) -> DataFrame:
    """The daily figures per area level (see the module).

    Args:
        nat_tests: ``silver.nat_test``.
        cases: ``gold.epidemic_cases``.
        person_xref: ``silver.person_xref``.
        person_places: ``healthlake.epidemic.people.person_places``.
        areas: ``silver.area`` (names).
        zone: The region's time zone.
        as_of: The last day a row is made for.
        case_active_days: Days a case stays active from its report.
        moving_days: Width of the moving sums.
        since: Only rows of this day and later (the inputs may then hold only the tests sampled from
            ``since - moving_days + 1`` and the cases reported from ``since - case_active_days + 1`` on).

    Returns:
        ``date``, ``level``, ``unit_code``, ``unit_name``, the measures and rates.
    """
    tests = _tests_per_day(nat_tests, person_xref, person_places, zone)
    new = cases.where(F.col("report_date").isNotNull()).select(
        F.col("report_date").alias("date"), *PATH_COLUMNS, F.lit(1).cast("long").alias("new_cases")
    )
    active = cases.where(F.col("report_date").isNotNull()).select(
        F.explode(
            F.sequence(F.col("report_date"), F.date_add(F.col("report_date"), case_active_days - 1))
        ).alias("date"),
        *PATH_COLUMNS,
        F.lit(1).cast("long").alias("active_cases"),
    )
    daily = tests.unionByName(new, allowMissingColumns=True).unionByName(active, allowMissingColumns=True)
    # Each day's figures also count in the moving sums of the next moving_days - 1 days.
    shifted = daily.where(F.col("new_cases").isNotNull() | F.col("tests").isNotNull()).select(
        F.explode(F.sequence(F.col("date"), F.date_add(F.col("date"), moving_days - 1))).alias("date"),
        *PATH_COLUMNS,
        *[F.col(m).alias(moving) for m, moving in MOVING.items()],
    )
    rows = daily.unionByName(shifted, allowMissingColumns=True).where(F.col("date") <= F.lit(as_of))
    if since is not None:
        rows = rows.where(F.col("date") >= F.lit(since))
    measures = [*DAY_MEASURES, *MOVING.values()]
    filled = rows.select(
        "date", *PATH_COLUMNS, *[F.coalesce(F.col(m), F.lit(0)).cast("long").alias(m) for m in measures]
    )
    summed = roll_up_areas(filled, ["date"], measures, areas)
    return summed.select(
        "*",
        F.when(F.col("resulted_tests") > 0, F.col("positives") / F.col("resulted_tests")).alias("positivity"),
        F.lit(moving_days).alias("moving_days"),
        F.when(
            F.col("moving_resulted_tests") > 0, F.col("moving_positives") / F.col("moving_resulted_tests")
        ).alias("moving_positivity"),
        (F.col("moving_new_cases") / F.lit(moving_days)).alias("moving_new_cases_per_day"),
    )


def _settings(inputs: Inputs) -> tuple[int, int]:
    return int(inputs.settings.get(CASE_ACTIVE_DAYS, 14)), int(inputs.settings.get(MOVING_DAYS, 7))


def _daily(inputs: Inputs, since: dt.date | None) -> DataFrame:
    active_days, moving_days = _settings(inputs)
    tests, cases = inputs.read(SILVER_NAT_TEST), inputs.read(GOLD_EPIDEMIC_CASES)
    if since is not None:
        # Only what can count on `since` or later: prune before the joins, not after.
        first_test = since - dt.timedelta(days=moving_days)  # a day of slack for the local/UTC shift
        tests = tests.where(F.col("sample_time") >= F.lit(dt.datetime.combine(first_test, dt.time())))
        cases = cases.where(
            F.col("report_date") >= F.lit(since - dt.timedelta(days=max(active_days, moving_days)))
        )
    return epidemic_daily(
        tests,
        cases,
        inputs.read(SILVER_PERSON_XREF),
        places(inputs),
        inputs.read(SILVER_AREA),
        zone=inputs.zone,
        as_of=inputs.as_of,
        case_active_days=active_days,
        moving_days=moving_days,
        since=since,
    )


def _build(inputs: Inputs) -> DataFrame:
    return _daily(inputs, None)


def _earliest(frame: DataFrame | None, day: F.Column) -> dt.date | None:
    if frame is None:
        return None
    return io.one_row(frame.agg(F.min(day)))[0]  # one aggregate row


def _update(inputs: Inputs) -> Write:
    """Every day from the first one a change touches, for every area.

    A day's row depends on the tests sampled in the ``moving_days`` ending on it, the cases reported in
    the ``case_active_days`` before it, and the persons' areas: so the days to recompute start at the
    earliest sample day of a changed test, report day of a changed case, activity day of a person who
    moved or was linked anew, or the day after the last run's ``as_of`` (active cases run on).
    """
    zone = inputs.zone
    days: list[dt.date | None] = []
    tests = inputs.changes(SILVER_NAT_TEST)
    days.append(_earliest(tests, local_date(F.col("sample_time"), zone)))
    days.append(_earliest(inputs.changed(GOLD_EPIDEMIC_CASES), F.col("report_date")))
    # Persons whose links or areas moved: their tests (and cases) count elsewhere now, from their first.
    links = inputs.changes(SILVER_PERSON_XREF)
    movers = moved_persons(inputs)
    if links is not None:
        relinked = inputs.read(SILVER_NAT_TEST).join(
            links.select("institution_id", "source_patient_id").distinct(),
            ["institution_id", "source_patient_id"],
            "left_semi",
        )
        days.append(_earliest(relinked, local_date(F.col("sample_time"), zone)))
    moved_tests = with_person(inputs.read(SILVER_NAT_TEST), inputs.read(SILVER_PERSON_XREF)).join(
        movers, "person_id", "left_semi"
    )
    days.append(_earliest(moved_tests, local_date(F.col("sample_time"), zone)))
    moved_cases = inputs.read(GOLD_EPIDEMIC_CASES).join(movers, "person_id", "left_semi")
    days.append(_earliest(moved_cases, F.col("report_date")))
    last_as_of = inputs.last.as_of if inputs.last is not None else inputs.as_of
    if inputs.as_of != last_as_of:
        days.append(min(last_as_of, inputs.as_of) + dt.timedelta(days=1))
    known = [d for d in days if d is not None]
    if not known:
        return unchanged()
    since = min(known)
    return replace_where(_daily(inputs, since), f"date >= '{since.isoformat()}'")


EPIDEMIC_DAILY = DerivedTable(
    name=GOLD_EPIDEMIC_DAILY,
    key=("date", "level", "unit_code"),
    reads=(SILVER_NAT_TEST, GOLD_EPIDEMIC_CASES, SILVER_PERSON_XREF, GOLD_PATIENT_360, SILVER_AREA),
    build=_build,
    update=_update,
    fed_by=(SILVER_NAT_TEST, SILVER_PERSON_XREF),
    rebuild_on=(SILVER_AREA,),
)
