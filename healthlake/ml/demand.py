"""``gold.demand_features``: per institution, local day and measure, what was known at the day's end, and
the count seven days later: how many patients to expect next week.

**Grain.** One row per (``institution_id``, ``date``, ``measure``): ``measure`` is ``outpatient_visits``
(outpatient encounters starting that local day) or ``admissions`` (inpatient stays starting that day),
counted from ``gold.encounter_facts`` (not cancelled, any patient). Every day from the institution's
first encounter of that measure to ``as_of`` is a row, days without one counting 0.

**The prediction moment is the end of ``date``** (a local day, the forecast's origin); the target is the
count on ``target_date = date + 7``. Every feature is a count of ``date`` or earlier, or a property of the
calendar (the target's weekday, public holiday, season). ``value_ahead`` is the label; NULL while the
target day is after ``as_of``: those rows are next week's forecast.

**The seasonal-naive forecast** of the target day is the count seven days before it: ``value`` (the
origin day's count). The demand model must beat its error.
"""

from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from healthlake.catalog import (
    GOLD_DEMAND_FEATURES,
    GOLD_ENCOUNTER_FACTS,
    SILVER_AREA,
    SILVER_ENCOUNTER,
    SILVER_INSTITUTION,
)
from healthlake.derived import DerivedTable, Inputs
from healthlake.gold.areas import registered_places
from healthlake.holidays import PUBLIC_HOLIDAYS
from healthlake.localtime import local_date

KEY = ("institution_id", "date", "measure")
HORIZON_DAYS = 7
"""Days ahead the model forecasts."""
MEASURES = {"outpatient_visits": "outpatient", "admissions": "inpatient"}
"""Measure → the encounter class it counts."""
FEVER_CLINIC = "发热门诊"
"""The department of fever-clinic visits: the outbreak indicator."""

FEATURE_COLUMNS = (
    "measure",
    "kind",
    "target_weekday",
    "target_is_holiday",
    "target_day_of_year_sin",
    "target_day_of_year_cos",
    "value",
    "lag_1",
    "lag_2",
    "lag_3",
    "lag_4",
    "lag_5",
    "lag_6",
    "lag_7",
    "mean_7",
    "mean_28",
    "same_weekday_mean_4",
    "holidays_last_7",
    "fever_visits_7",
    "city_fever_visits_7",
    "city_code",
)
"""The model's inputs, in order."""


def daily_counts(facts: DataFrame, *, zone: str) -> DataFrame:
    """Encounters per institution, local day and measure: ``institution_id``, ``date``, ``measure``, ``n``."""
    cls = F.create_map(*[F.lit(x) for measure, c in MEASURES.items() for x in (c, measure)])
    return (
        facts.where(F.col("admit_time").isNotNull())
        .select(
            "institution_id",
            local_date(F.col("admit_time"), zone).alias("date"),
            cls[F.col("encounter_class")].alias("measure"),
        )
        .where(F.col("measure").isNotNull())
        .groupBy("institution_id", "date", "measure")
        .agg(F.count("*").alias("n"))
    )


def demand_features(
    facts: DataFrame,
    encounters: DataFrame,
    institutions: DataFrame,
    places: DataFrame,
    *,
    zone: str,
    as_of: Column,
) -> DataFrame:
    """``gold.demand_features`` (see the module).

    Args:
        facts: ``gold.encounter_facts``.
        encounters: ``silver.encounter`` (its ``department``: fever-clinic visits).
        institutions: ``silver.institution`` (its ``kind``).
        places: ``healthlake.gold.areas.institution_paths``.
        zone: The region's time zone.
        as_of: The last local day (a date Column): the calendar runs to it.

    Returns:
        One row per key: ``target_date``, ``month`` (of ``date``), the ``FEATURE_COLUMNS`` and
        ``value_ahead``.
    """
    counts = daily_counts(facts, zone=zone)
    # A dense calendar per institution and measure, from its first day to as_of.
    spans = counts.groupBy("institution_id", "measure").agg(F.min("date").alias("_first"))
    days = spans.select(
        "institution_id", "measure", F.explode(F.sequence(F.col("_first"), as_of)).alias("date")
    )
    dense = days.join(counts, ["institution_id", "date", "measure"], "left").fillna({"n": 0})
    fever = (
        encounters.where(F.col("department") == FEVER_CLINIC)
        .where(~F.coalesce(F.col("is_cancelled"), F.lit(False)) & F.col("admit_time").isNotNull())
        .groupBy("institution_id", local_date(F.col("admit_time"), zone).alias("date"))
        .agg(F.count("*").alias("_fever"))
    )
    dense = dense.join(fever, ["institution_id", "date"], "left").fillna({"_fever": 0})
    series = Window.partitionBy("institution_id", "measure").orderBy("date")
    holiday_list = sorted(PUBLIC_HOLIDAYS)
    today_holiday = F.col("date").isin(holiday_list).cast("int")
    lags = {f"lag_{k}": F.lag("n", k).over(series) for k in range(1, 8)}
    target = F.date_add(F.col("date"), HORIZON_DAYS)
    angle = 2 * math.pi * (F.dayofyear(target) - 1) / F.lit(365.25)
    features = dense.select(
        "institution_id",
        "date",
        "measure",
        target.alias("target_date"),
        F.trunc("date", "month").alias("month"),
        F.dayofweek(target).alias("_dow"),
        target.isin(holiday_list).alias("target_is_holiday"),
        F.sin(angle).alias("target_day_of_year_sin"),
        F.cos(angle).alias("target_day_of_year_cos"),
        F.col("n").alias("value"),
        *[c.alias(name) for name, c in lags.items()],
        F.avg("n").over(series.rowsBetween(-6, 0)).alias("mean_7"),
        F.avg("n").over(series.rowsBetween(-27, 0)).alias("mean_28"),
        (
            (
                F.col("n")
                + F.coalesce(F.lag("n", 7).over(series), F.col("n"))
                + F.coalesce(F.lag("n", 14).over(series), F.col("n"))
                + F.coalesce(F.lag("n", 21).over(series), F.col("n"))
            )
            / F.lit(4.0)
        ).alias("same_weekday_mean_4"),
        F.sum(today_holiday).over(series.rowsBetween(-6, 0)).alias("holidays_last_7"),
        F.sum("_fever").over(series.rowsBetween(-6, 0)).alias("fever_visits_7"),
        F.lead("n", HORIZON_DAYS).over(series).alias("value_ahead"),
    )
    kinds = institutions.select("institution_id", F.coalesce(F.col("kind"), F.lit("unknown")).alias("kind"))
    cities = places.select("institution_id", "city_code")
    # The city's fever clinics together: a wave seen at the hospitals is ahead of the clinics' visits too,
    # and a clinic has no fever clinic of its own. Each fever day counts in the 7 days ending 0–6 days
    # after it (a city's days without a fever visit have no row to run a window over).
    city_fever = (
        fever.join(F.broadcast(cities), "institution_id")
        .select(
            "city_code",
            F.explode(F.sequence(F.col("date"), F.date_add(F.col("date"), 6))).alias("date"),
            "_fever",
        )
        .groupBy("city_code", "date")
        .agg(F.sum("_fever").alias("_city_fever_7"))
    )
    return (
        features.join(F.broadcast(kinds), "institution_id", "left")
        .join(F.broadcast(cities), "institution_id", "left")
        .join(city_fever, ["city_code", "date"], "left")
        .withColumn(
            "city_fever_visits_7",
            # A day with no fever visit in the last 7 ends no window: count it 0 (a missing city: NULL).
            F.when(F.col("city_code").isNotNull(), F.coalesce(F.col("_city_fever_7"), F.lit(0))),
        )
        .select(
            *KEY,
            "target_date",
            "month",
            # Monday 1 … Sunday 7 (Spark's dayofweek counts from Sunday).
            (F.pmod(F.col("_dow") + 5, 7) + 1).alias("target_weekday"),
            *[c for c in FEATURE_COLUMNS if c not in ("measure", "target_weekday")],
            "value_ahead",
        )
    )


def _build(inputs: Inputs) -> DataFrame:
    return demand_features(
        inputs.read(GOLD_ENCOUNTER_FACTS),
        inputs.read(SILVER_ENCOUNTER),
        inputs.read(SILVER_INSTITUTION),
        registered_places(inputs),
        zone=inputs.zone,
        as_of=F.lit(inputs.as_of),
    )


DEMAND_FEATURES = DerivedTable(
    name=GOLD_DEMAND_FEATURES,
    key=KEY,
    reads=(GOLD_ENCOUNTER_FACTS, SILVER_ENCOUNTER, SILVER_INSTITUTION, SILVER_AREA),
    build=_build,
    partition_by=("month",),
)
"""``gold.demand_features``: one row per institution, local day and measure. Built in full each run."""
