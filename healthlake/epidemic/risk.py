"""``gold.risk_area_daily`` and ``gold.risk_persons``: where the risk is, and who is at risk.

``gold.risk_area_daily`` — grain: one row per (township ``area_code``, local ``date``), every township of
``silver.area`` on every day from the first case's report day to ``as_of`` (no rows before any case).
``cases_in_window``: cases living in the township (``gold.epidemic_cases``' home township) reported in the
``epidemic.risk_area_days`` days ending on the day; ``new_cases``: reported that day; ``risk_level``:
``high`` from ``epidemic.high_risk_cases`` cases in the window, ``medium`` from one, else ``low``;
``level_since``: the first day of the run of consecutive days at that level (the series' first day at the
latest); ``last_case_date``; the township's ``county_code``, ``city_code``, ``province_code``.

``gold.risk_persons`` — grain: one row per (``person_id``, ``category``), the list an epidemic command
centre works from ("how many, who, where, in what state"). Categories:

* ``case``: a case (``gold.epidemic_cases``), identified on its report day; exposure: first known.
* ``close_contact`` / ``secondary_contact``: a person among a case's contacts of degree 1 / 2
  (``gold.close_contacts``; contacts known only by a phone no single person holds stay there), identified
  when the case was reported or the contact took place, whichever is later; the earliest identification
  gives the row's case, place and exposure (``last_contact_at``), ``sources`` counts the cases.
* ``risk_area``: a person whose phone pinged in a township on a day it was a risk area (``risk_level``
  medium or high), identified that day; the earliest such day gives the row's area and exposure (the last
  ping in the area that day), ``sources`` counts the township-days. A ping is in the township whose centroid
  is nearest (the same rule as ``gold.close_contacts``' place), looked for among the townships whose
  centroids lie in the same or a neighbouring ``AREA_BUCKET_DEGREES`` square: a ping farther than that from
  every township centroid is in none.

Columns: ``person_id``, ``category``, ``identified_date``, ``exposure_at``, ``source_case_person_id``
(NULL for cases and risk-area visits), ``exposure_area_code``, ``sources``, ``reason`` (why, in words: the
case's report day, or the contact's or visit's place and day); ``state`` on ``as_of``: ``in_isolation``
(an isolation order open on ``as_of``, overdue ones too), ``released`` (released from an order that started
on or after the identification day's eve), ``tested`` (a single-tube test sampled since the identification
day), else ``to_test``; ``last_test_time``, ``last_test_result`` and ``first_negative_at`` (the sample time
of the first negative one) of the single-tube tests sampled since the identification day; ``last_seen_at``,
``last_seen_area_code`` (the person's last ping up to the end of ``as_of`` and its township: where they are
now); the home area path (``gold.patient_360``).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from healthlake.catalog import (
    GOLD_CLOSE_CONTACTS,
    GOLD_EPIDEMIC_CASES,
    GOLD_ISOLATION,
    GOLD_PATIENT_360,
    GOLD_RISK_AREA_DAILY,
    GOLD_RISK_PERSONS,
    SILVER_AREA,
    SILVER_LOCATION_EVENT,
    SILVER_NAT_TEST,
    SILVER_PATIENT_RECORD,
    SILVER_PERSON_XREF,
)
from healthlake.derived import DerivedTable, Inputs, Write, merge
from healthlake.epidemic.contacts import phone_owners
from healthlake.epidemic.people import PLACE_COLUMNS, places, with_person
from healthlake.gold.areas import area_paths
from healthlake.localtime import local_date, local_midnight

RISK_AREA_DAYS = "epidemic.risk_area_days"
"""The run setting (``Inputs.settings``): days a reported case keeps its township a risk area."""
HIGH_RISK_CASES = "epidemic.high_risk_cases"
"""The run setting: cases in the window from which a township is a high-risk area."""
AREA_BUCKET_DEGREES = 0.1
"""Side (degrees) of the squares townships are looked up in: a ping is compared with the townships whose
centroids lie in its square and the 8 around it (±0.1° is 11 km north-south), not with all of them."""
HIGH, MEDIUM, LOW = "high", "medium", "low"
CATEGORIES = ("case", "close_contact", "secondary_contact", "risk_area")


def risk_area_daily(
    cases: DataFrame, areas: DataFrame, *, as_of: dt.date, window_days: int = 14, high_cases: int = 3
) -> DataFrame:
    """Each township's risk level, day by day (see the module).

    Args:
        cases: ``gold.epidemic_cases`` (``report_date``, ``township_code``).
        areas: ``silver.area``.
        as_of: The last day.
        window_days: ``epidemic.risk_area_days``.
        high_cases: ``epidemic.high_risk_cases``.
    """
    reported = cases.where(F.col("report_date").isNotNull() & (F.col("report_date") <= F.lit(as_of)))
    start = reported.agg(F.min("report_date").alias("_start"))
    townships = area_paths(areas).where(F.col("level") == "township")
    grid = townships.crossJoin(start).select(
        "area_code",
        "county_code",
        "city_code",
        "province_code",
        F.explode(F.sequence(F.col("_start"), F.lit(as_of))).alias("date"),
    )
    # Each case counts on every day of the window that starts on its report day.
    counted = (
        reported.where(F.col("township_code").isNotNull())
        .select(
            F.col("township_code").alias("area_code"),
            "report_date",
            F.explode(
                F.sequence(
                    F.col("report_date"), F.least(F.date_add("report_date", window_days - 1), F.lit(as_of))
                )
            ).alias("date"),
        )
        .groupBy("area_code", "date")
        .agg(
            F.count(F.lit(1)).alias("cases_in_window"),
            F.count(F.when(F.col("report_date") == F.col("date"), 1)).alias("new_cases"),
            F.max("report_date").alias("last_case_date"),
        )
    )
    in_window = F.coalesce(F.col("cases_in_window"), F.lit(0)).cast("long")
    level = (
        F.when(in_window >= high_cases, F.lit(HIGH)).when(in_window >= 1, F.lit(MEDIUM)).otherwise(F.lit(LOW))
    )
    daily = grid.join(counted, ["area_code", "date"], "left").select(
        "area_code",
        "date",
        in_window.alias("cases_in_window"),
        F.coalesce(F.col("new_cases"), F.lit(0)).cast("long").alias("new_cases"),
        level.alias("risk_level"),
        "last_case_date",
        "county_code",
        "city_code",
        "province_code",
    )
    # Consecutive days at one level form a run (gaps and islands); its first day is the level's "since".
    same = Window.partitionBy("area_code", "risk_level").orderBy("date")
    island = F.date_sub(F.col("date"), F.row_number().over(same))
    run = Window.partitionBy("area_code", "risk_level", "_island")
    # A case's window can end before a later case's window starts: last_case_date carries the latest case.
    latest = Window.partitionBy("area_code").orderBy("date").rowsBetween(Window.unboundedPreceding, 0)
    return (
        daily.withColumn("_island", island)
        .withColumn("level_since", F.min("date").over(run))
        .withColumn("last_case_date", F.max("last_case_date").over(latest))
        .select(
            "area_code",
            "date",
            "risk_level",
            "level_since",
            "cases_in_window",
            "new_cases",
            "last_case_date",
            "county_code",
            "city_code",
            "province_code",
        )
    )


def nearest_township(points: DataFrame, areas: DataFrame) -> DataFrame:
    """``points`` (with ``lat``, ``lon``) and ``area_code``: the township whose centroid is nearest.

    Townships are compared only in the point's ``AREA_BUCKET_DEGREES`` square and the 8 around it, so the
    work grows with the points, not with points × townships; a point with no township centroid there gets
    NULL. Distances on the equirectangular projection about the pair's mean latitude (as
    ``gold.close_contacts``' place).
    """
    if not {"lat", "lon", "level"} <= set(areas.columns):  # a register without positions places nothing
        return points.withColumn("area_code", F.lit(None).cast("string"))
    b = AREA_BUCKET_DEGREES
    centroids = areas.where(
        (F.col("level") == "township") & F.col("lat").isNotNull() & F.col("lon").isNotNull()
    ).select(
        "area_code",
        F.col("lat").alias("_a_lat"),
        F.col("lon").alias("_a_lon"),
        F.floor(F.col("lat") / b).alias("_a_by"),
        F.floor(F.col("lon") / b).alias("_a_bx"),
    )
    # Each township is listed in its square and the 8 around it: a point's square finds all nine.
    offsets = F.array(*[F.lit(d) for d in (-1, 0, 1)])
    spread = (
        centroids.withColumn("_dy", F.explode(offsets))
        .withColumn("_dx", F.explode(offsets))
        .select(
            "area_code",
            "_a_lat",
            "_a_lon",
            (F.col("_a_by") + F.col("_dy")).alias("_by"),
            (F.col("_a_bx") + F.col("_dx")).alias("_bx"),
        )
    )
    places = points.select("lat", "lon").distinct()
    mid = F.radians((F.col("lat") + F.col("_a_lat")) / 2)
    dx = F.radians(F.col("_a_lon") - F.col("lon")) * F.cos(mid)
    dy = F.radians(F.col("_a_lat") - F.col("lat"))
    nearest = (
        places.withColumn("_by", F.floor(F.col("lat") / b))
        .withColumn("_bx", F.floor(F.col("lon") / b))
        .join(F.broadcast(spread), ["_by", "_bx"])
        .groupBy("lat", "lon")
        .agg(F.min_by("area_code", F.struct(dx * dx + dy * dy, F.col("area_code"))).alias("area_code"))
    )
    return points.join(nearest, ["lat", "lon"], "left")


def _located_pings(location_events: DataFrame, owners: DataFrame, zone: str) -> DataFrame:
    """Pings of phones a person holds: ``person_id``, ``event_time``, ``date`` (local), ``lat``, ``lon``."""
    return (
        location_events.where(
            F.col("phone_token").isNotNull()
            & F.col("event_time").isNotNull()
            & F.col("lat").isNotNull()
            & F.col("lon").isNotNull()
        )
        .join(owners, "phone_token")
        .select("person_id", "event_time", local_date(F.col("event_time"), zone).alias("date"), "lat", "lon")
    )


def risk_persons(
    cases: DataFrame,
    contacts: DataFrame,
    risk_days: DataFrame,
    location_events: DataFrame,
    owners: DataFrame,
    areas: DataFrame,
    isolation: DataFrame,
    nat_tests: DataFrame,
    person_xref: DataFrame,
    person_places: DataFrame,
    *,
    zone: str,
    as_of: dt.date,
) -> DataFrame:
    """The risk persons on ``as_of`` (see the module).

    Args:
        cases: ``gold.epidemic_cases``.
        contacts: ``gold.close_contacts``.
        risk_days: ``gold.risk_area_daily``.
        location_events: ``silver.location_event``.
        owners: ``phone_owners``.
        areas: ``silver.area`` with township centroids (``lat``, ``lon``); without them no ping is placed.
        isolation: ``gold.isolation``.
        nat_tests: ``silver.nat_test``.
        person_xref: ``silver.person_xref``.
        person_places: ``person_places`` (home area path).
        zone: The region's time zone.
        as_of: The day the states are as of.
    """
    end_of_as_of = local_midnight(F.lit(as_of + dt.timedelta(days=1)), zone)
    case_rows = cases.where(F.col("report_date") <= F.lit(as_of)).select(
        "person_id",
        F.lit("case").alias("category"),
        F.col("report_date").alias("identified_date"),
        F.col("first_known_at").alias("exposure_at"),
        F.lit(None).cast("string").alias("source_case_person_id"),
        F.col("township_code").alias("exposure_area_code"),
        F.lit(1).cast("long").alias("sources"),
        F.concat(F.lit("positive nucleic-acid test reported on "), F.col("report_date").cast("string")).alias(
            "reason"
        ),
    )
    reports = cases.select(
        F.col("person_id").alias("case_person_id"), F.col("report_date").alias("_reported")
    )
    found = (
        contacts.where(F.col("contact_person_id").isNotNull())
        .join(reports, "case_person_id")
        .select(
            F.col("contact_person_id").alias("person_id"),
            F.when(F.col("degree") == 1, F.lit("close_contact"))
            .otherwise(F.lit("secondary_contact"))
            .alias("category"),
            F.greatest(F.col("_reported"), local_date(F.col("first_contact_at"), zone)).alias(
                "identified_date"
            ),
            F.col("last_contact_at").alias("exposure_at"),
            "case_person_id",
            F.col("place_area_code").alias("exposure_area_code"),
            F.concat(
                F.lit("contact of a case for "),
                F.col("exposure_minutes").cast("string"),
                F.lit(" minutes, last on "),
                local_date(F.col("last_contact_at"), zone).cast("string"),
                F.when(
                    F.col("place_area_code").isNotNull(),
                    F.concat(F.lit(" in area "), F.col("place_area_code")),
                ).otherwise(F.lit("")),
            ).alias("reason"),
        )
        .where(F.col("identified_date") <= F.lit(as_of))
    )
    contact_rows = _earliest(found, "case_person_id").select(
        "person_id",
        "category",
        "identified_date",
        "exposure_at",
        F.col("case_person_id").alias("source_case_person_id"),
        "exposure_area_code",
        "sources",
        "reason",
    )
    pings = _located_pings(location_events, owners, zone).where(F.col("event_time") < end_of_as_of)
    at_risk = risk_days.where(F.col("risk_level") != LOW).select("area_code", "date", "risk_level")
    risk_dates = at_risk.select("date").distinct()
    # Only pings of days some township was at risk are placed: outside an outbreak that is none.
    visits = (
        nearest_township(pings.join(F.broadcast(risk_dates), "date"), areas)
        .join(at_risk, ["area_code", "date"])
        .groupBy("person_id", "area_code", "date", "risk_level")
        .agg(F.max("event_time").alias("exposure_at"))
        .select(
            "person_id",
            F.lit("risk_area").alias("category"),
            F.col("date").alias("identified_date"),
            "exposure_at",
            F.col("area_code").alias("exposure_area_code"),
            F.concat(
                F.lit("in "),
                F.col("risk_level"),
                F.lit("-risk area "),
                F.col("area_code"),
                F.lit(" on "),
                F.col("date").cast("string"),
            ).alias("reason"),
        )
    )
    visit_rows = _earliest(visits, "exposure_area_code").select(
        "person_id",
        "category",
        "identified_date",
        "exposure_at",
        F.lit(None).cast("string").alias("source_case_person_id"),
        "exposure_area_code",
        "sources",
        "reason",
    )
    listed = case_rows.unionByName(contact_rows).unionByName(visit_rows)
    return _with_state(listed, pings, areas, isolation, nat_tests, person_xref, zone=zone, as_of=as_of).join(
        person_places.select("person_id", *PLACE_COLUMNS), "person_id", "left"
    )


def _earliest(found: DataFrame, source: str) -> DataFrame:
    """One row per (person, category): the earliest identification (then exposure, then ``source``), and
    ``sources``: how many rows it stands for."""
    fields = list(dict.fromkeys(("identified_date", "exposure_at", source, "exposure_area_code", "reason")))
    return (
        found.groupBy("person_id", "category")
        .agg(F.min(F.struct(*fields)).alias("_f"), F.count(F.lit(1)).alias("sources"))
        .select(
            "person_id",
            "category",
            *[F.col(f"_f.{name}").alias(name) for name in fields],
            F.col("sources").cast("long").alias("sources"),
        )
    )


def _with_state(
    listed: DataFrame,
    pings: DataFrame,
    areas: DataFrame,
    isolation: DataFrame,
    nat_tests: DataFrame,
    person_xref: DataFrame,
    *,
    zone: str,
    as_of: dt.date,
) -> DataFrame:
    """``state``, the last test since identification and where each listed person was last seen."""
    persons = listed.select("person_id", "identified_date")
    orders = (
        isolation.where(F.col("person_id").isNotNull())
        .select("person_id", "start_date", "status")
        .join(persons, "person_id")
        # An order from the eve of the identification on is this listing's (a contact is often
        # quarantined the evening the case is reported); an older one is about something else.
        .where(F.col("start_date") >= F.date_sub(F.col("identified_date"), 1))
        .groupBy("person_id", "identified_date")
        .agg(
            F.max(F.col("status").isin("in_isolation", "overdue")).alias("_isolated"),
            F.max(F.col("status") == "released").alias("_released"),
        )
    )
    tests = (
        with_person(nat_tests.where(F.col("sample_time").isNotNull()), person_xref)
        .where(F.col("person_id").isNotNull() & (F.col("sample_mode") == "single"))
        .select("person_id", "sample_time", "result")
        .join(persons, "person_id")
        .where(local_date(F.col("sample_time"), zone) >= F.col("identified_date"))
    )
    last_test = (
        tests.groupBy("person_id", "identified_date")
        .agg(
            F.max_by(F.struct("sample_time", "result"), "sample_time").alias("_t"),
            F.min(F.when(F.col("result") == "negative", F.col("sample_time"))).alias("first_negative_at"),
        )
        .select(
            "person_id",
            "identified_date",
            F.col("_t.sample_time").alias("last_test_time"),
            F.col("_t.result").alias("last_test_result"),
            "first_negative_at",
        )
    )
    seen = (
        pings.join(F.broadcast(persons.select("person_id").distinct()), "person_id")
        .groupBy("person_id")
        .agg(F.max_by(F.struct("event_time", "lat", "lon"), "event_time").alias("_s"))
        .select(
            "person_id",
            F.col("_s.event_time").alias("last_seen_at"),
            F.col("_s.lat").alias("lat"),
            F.col("_s.lon").alias("lon"),
        )
    )
    where = nearest_township(seen, areas).select(
        "person_id", "last_seen_at", F.col("area_code").alias("last_seen_area_code")
    )
    state: Column = (
        F.when(F.col("_isolated"), F.lit("in_isolation"))
        .when(F.col("_released"), F.lit("released"))
        .when(F.col("last_test_time").isNotNull(), F.lit("tested"))
        .otherwise(F.lit("to_test"))
    )
    return (
        listed.join(orders, ["person_id", "identified_date"], "left")
        .join(last_test, ["person_id", "identified_date"], "left")
        .join(where, "person_id", "left")
        .select(
            "person_id",
            "category",
            "identified_date",
            "exposure_at",
            "source_case_person_id",
            "exposure_area_code",
            "sources",
            "reason",
            state.alias("state"),
            "last_test_time",
            "last_test_result",
            "first_negative_at",
            "last_seen_at",
            "last_seen_area_code",
        )
    )


def _settings(inputs: Inputs) -> tuple[int, int]:
    return int(inputs.settings.get(RISK_AREA_DAYS, 14)), int(inputs.settings.get(HIGH_RISK_CASES, 3))


def _build_areas(inputs: Inputs) -> DataFrame:
    window_days, high_cases = _settings(inputs)
    return risk_area_daily(
        inputs.read(GOLD_EPIDEMIC_CASES),
        inputs.read(SILVER_AREA),
        as_of=inputs.as_of,
        window_days=window_days,
        high_cases=high_cases,
    )


def _update_areas(inputs: Inputs) -> Write:
    """Every township-day recomputed, the rows that differ written: townships × days of an outbreak are
    few (thousands × hundreds), and a late case moves every day of its window."""
    return merge(_build_areas(inputs), inputs.stored(GOLD_RISK_AREA_DAILY))


RISK_AREA_DAILY = DerivedTable(
    name=GOLD_RISK_AREA_DAILY,
    key=("area_code", "date"),
    reads=(GOLD_EPIDEMIC_CASES, SILVER_AREA),
    build=_build_areas,
    update=_update_areas,
)


def _build_persons(inputs: Inputs) -> DataFrame:
    return risk_persons(
        inputs.read(GOLD_EPIDEMIC_CASES),
        inputs.read(GOLD_CLOSE_CONTACTS),
        inputs.read(GOLD_RISK_AREA_DAILY),
        inputs.read(SILVER_LOCATION_EVENT),
        phone_owners(inputs.read(SILVER_PATIENT_RECORD), inputs.read(SILVER_PERSON_XREF)),
        inputs.read(SILVER_AREA),
        inputs.read(GOLD_ISOLATION),
        inputs.read(SILVER_NAT_TEST),
        inputs.read(SILVER_PERSON_XREF),
        places(inputs),
        zone=inputs.zone,
        as_of=inputs.as_of,
    )


def _update_persons(inputs: Inputs) -> Write:
    """Every risk person recomputed, the rows that differ written: the list is the outbreak's (cases,
    their contacts, the risk areas' visitors), and each state moves with ``as_of``, orders and tests."""
    return merge(_build_persons(inputs), inputs.stored(GOLD_RISK_PERSONS))


RISK_PERSONS = DerivedTable(
    name=GOLD_RISK_PERSONS,
    key=("person_id", "category"),
    reads=(
        GOLD_EPIDEMIC_CASES,
        GOLD_CLOSE_CONTACTS,
        GOLD_RISK_AREA_DAILY,
        SILVER_LOCATION_EVENT,
        SILVER_PATIENT_RECORD,
        SILVER_PERSON_XREF,
        SILVER_AREA,
        GOLD_ISOLATION,
        SILVER_NAT_TEST,
        GOLD_PATIENT_360,
    ),
    build=_build_persons,
    update=_update_persons,
)
