"""``gold.utilization_daily``: hospital activity per day, per institution and rolled up to every area level.

Grain: one row per (``date``, ``level``, ``unit_code``) with any activity, where ``level`` is
``institution`` (``unit_code`` the institution id) or an area level (``township``, ``county``, ``city``,
``province``; ``unit_code`` the GB/T 2260 code). An area's row counts every institution under it
(``healthlake.gold.areas``), so for every additive measure a province equals the sum of its cities, and a
city the sum of its counties plus the institutions directly under the city (likewise a county: its
townships plus its county-level institutions). Rates are recomputed from the summed numerators and
denominators at each level, never averaged.

Days are local days of the region's time zone (``region.timezone``): ``date`` is a local date, and the
census is taken at each local midnight.

Measures (from ``gold.encounter_facts``):

* ``outpatient_visits``, ``emergency_visits``: encounters of that class starting that day.
* ``admissions``: inpatient stays starting that day. ``discharges``: inpatient stays ending that day.
* ``discharged_bed_days``: the bed-days of the stays discharged that day (出院者占用总床日数): discharge date
  minus admission date, a same-day stay counting one day. ``average_length_of_stay`` =
  ``discharged_bed_days / discharges``.
* ``occupied_bed_days``: the midnight census (实际占用床日数): stays in a bed at the local midnight that ends
  the day, i.e. admitted on or before the day and discharged after it (a stay without discharge counts up
  to the last day of activity in the data).
* ``index_stays``: stays of linked persons discharged that day (the readmission denominator);
  ``readmissions_30d``: those followed by an inpatient admission of the same person at any institution
  1–30 days later; ``readmission_rate_30d`` = ``readmissions_30d / index_stays``. Discharges of the last 30
  days are provisional: a readmission may still come.
"""

from __future__ import annotations

import datetime as dt
import logging

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from healthlake import io
from healthlake.catalog import GOLD_ENCOUNTER_FACTS, GOLD_UTILIZATION_DAILY, SILVER_AREA, SILVER_INSTITUTION
from healthlake.derived import DerivedTable, Inputs, Write, replace_where, unchanged
from healthlake.gold.areas import ROLLUP_LEVELS, registered_places, roll_up
from healthlake.localtime import local_date, local_midnight

log = logging.getLogger(__name__)

ADDITIVE_MEASURES = (
    "outpatient_visits",
    "emergency_visits",
    "admissions",
    "discharges",
    "discharged_bed_days",
    "occupied_bed_days",
    "index_stays",
    "readmissions_30d",
)
RATES = {
    "average_length_of_stay": ("discharged_bed_days", "discharges"),
    "readmission_rate_30d": ("readmissions_30d", "index_stays"),
}
"""Each rate and its (numerator, denominator): recomputed at every level from the sums."""

LEVELS = ("institution", *ROLLUP_LEVELS)


def _events(facts: DataFrame, through: Column, zone: str, max_open_nights: int) -> DataFrame:
    """One row per (institution, day, contribution): visits and admissions on their day, discharges on
    theirs, one census row per night a stay occupies a bed (local days of ``zone``); a stay without a
    discharge occupies at most ``max_open_nights`` nights."""
    cls = F.col("encounter_class")
    inpatient = cls == "inpatient"
    discharge_date = local_date(F.col("discharge_time"), zone)
    starts = facts.where(F.col("admit_date").isNotNull()).select(
        "institution_id",
        F.col("admit_date").alias("date"),
        (cls == "outpatient").cast("long").alias("outpatient_visits"),
        (cls == "emergency").cast("long").alias("emergency_visits"),
        inpatient.cast("long").alias("admissions"),
    )
    ended = facts.where(inpatient & F.col("length_of_stay_days").isNotNull()).select(
        "institution_id",
        discharge_date.alias("date"),
        F.lit(1).cast("long").alias("discharges"),
        F.greatest(F.col("length_of_stay_days"), F.lit(1)).cast("long").alias("discharged_bed_days"),
        F.col("is_index_stay").cast("long").alias("index_stays"),
        F.coalesce(F.col("readmitted_30d"), F.lit(False)).cast("long").alias("readmissions_30d"),
    )
    # Midnight census: the nights from admission up to the night before discharge (or up to `through`).
    # Local dates make it the census at local midnight: in a bed at the midnight that ends day d means
    # admitted on d or before and discharged on d + 1 or after.
    # A stay still open is counted up to `through`, but no longer than the longest plausible stay: an
    # admission whose discharge never came (a lost A03) would otherwise fill a bed for years.
    open_until = F.least(through, F.date_add(F.col("admit_date"), max_open_nights - 1))
    last_night = F.coalesce(F.date_sub(discharge_date, 1), open_until)
    census = facts.where(
        inpatient & F.col("admit_date").isNotNull() & (last_night >= F.col("admit_date"))
    ).select(
        "institution_id",
        F.explode(F.sequence(F.col("admit_date"), last_night)).alias("date"),
        F.lit(1).cast("long").alias("occupied_bed_days"),
    )
    return starts.unionByName(ended, allowMissingColumns=True).unionByName(census, allowMissingColumns=True)


def with_rates(df: DataFrame, rates: dict[str, tuple[str, str]]) -> DataFrame:
    """Add each rate as numerator / denominator (NULL when the denominator is 0)."""
    columns = [
        F.when(F.col(den) > 0, F.col(num) / F.col(den)).alias(rate) for rate, (num, den) in rates.items()
    ]
    return df.select("*", *columns)


def utilization_daily(
    facts: DataFrame,
    institution_paths: DataFrame,
    areas: DataFrame,
    through: Column,
    *,
    zone: str,
    max_open_nights: int = 365,
) -> DataFrame:
    """Daily activity per institution and per area at every level.

    Args:
        facts: ``gold.encounter_facts``.
        institution_paths: ``healthlake.gold.areas.institution_paths`` (institution → area codes).
        areas: ``silver.area`` (the areas' names).
        through: The last day of activity in the data (a local date Column): stays without a discharge
            are counted in the census up to it.
        zone: The region's time zone (``admit_date`` of the facts is a local date of it already).
        max_open_nights: The most census nights a stay without a discharge counts (from its admission
            date; ``conform.max_stay_days``, the longest plausible stay).

    Returns:
        ``date``, ``level``, ``unit_code``, ``unit_name``, the additive measures and the
        rates (see the module).
    """
    per_day = (
        _events(facts, through, zone, max_open_nights)
        .groupBy("institution_id", "date")
        .agg(*[F.sum(F.coalesce(F.col(m), F.lit(0))).alias(m) for m in ADDITIVE_MEASURES])
    )
    return with_rates(roll_up(per_day, ["date"], ADDITIVE_MEASURES, institution_paths, areas), RATES)


MAX_OPEN_NIGHTS = "max_open_nights"
"""The run setting (``Inputs.settings``) of the most census nights a stay without a discharge counts."""


def _daily(inputs: Inputs, facts: DataFrame) -> DataFrame:
    return utilization_daily(
        facts,
        registered_places(inputs),
        inputs.read(SILVER_AREA),
        F.lit(inputs.as_of),
        zone=inputs.zone,
        max_open_nights=inputs.settings.get(MAX_OPEN_NIGHTS, 365),
    )


def _build(inputs: Inputs) -> DataFrame:
    return _daily(inputs, inputs.read(GOLD_ENCOUNTER_FACTS))


def _update(inputs: Inputs) -> Write:
    """Every day from the first one a changed encounter fact touches, for all institutions of that day.

    The census of open stays moves with ``as_of``, so a later ``as_of`` also recomputes the days after the
    last run's. A day's rows depend only on the facts of stays and visits on it, so recomputing every day
    from the first touched one from the facts as they are now equals a full build.
    """
    days: list[dt.date] = []
    changed = inputs.changed(GOLD_ENCOUNTER_FACTS)
    if changed is not None:
        earliest = F.least(F.min("admit_date"), F.min(local_date(F.col("discharge_time"), inputs.zone)))
        first = io.one_row(changed.agg(earliest.alias("d")))[0]  # one aggregate row
        if first:
            days.append(first)
    last_as_of = inputs.last.as_of if inputs.last is not None else inputs.as_of
    if inputs.as_of != last_as_of:
        days.append(min(last_as_of, inputs.as_of) + dt.timedelta(days=1))
    if not days:
        return unchanged()
    since = min(days)
    facts = inputs.read(GOLD_ENCOUNTER_FACTS)
    relevant = facts.where(
        (F.col("admit_date") >= F.lit(since))
        | (F.col("discharge_time") >= local_midnight(F.lit(since), inputs.zone))  # discharged `since` on
        | ((F.col("encounter_class") == "inpatient") & F.col("discharge_time").isNull())
    )
    recent = _daily(inputs, relevant).where(F.col("date") >= F.lit(since))
    return replace_where(recent, f"date >= '{since.isoformat()}'")


def report_long_open_stays(inputs: Inputs) -> None:
    """Say how many stays without a discharge are older than the longest plausible stay.

    The census counts such a stay for its first ``conform.max_stay_days`` nights only (a discharge message
    that never came must not fill a bed for years); the stays are named by number only, for the senders to
    be asked.
    """
    nights = inputs.settings.get(MAX_OPEN_NIGHTS, 365)
    oldest = F.lit(inputs.as_of - dt.timedelta(days=nights - 1))
    capped = (
        inputs.read(GOLD_ENCOUNTER_FACTS)
        .where(
            (F.col("encounter_class") == "inpatient")
            & F.col("discharge_time").isNull()
            & (F.col("admit_date") < oldest)
        )
        .groupBy("institution_id")
        .count()
        .collect()  # one row per institution with such stays
    )
    if capped:
        per_institution = ", ".join(f"{r['institution_id']} {r['count']:,}" for r in sorted(capped))
        log.warning(
            "publish: %s stays without a discharge are older than conform.max_stay_days (%d); the bed "
            "census counts each for its first %d nights only (%s)",
            f"{sum(r['count'] for r in capped):,}",
            nights,
            nights,
            per_institution,
        )


UTILIZATION_DAILY = DerivedTable(
    name=GOLD_UTILIZATION_DAILY,
    key=("date", "level", "unit_code"),
    reads=(GOLD_ENCOUNTER_FACTS, SILVER_INSTITUTION, SILVER_AREA),
    build=_build,
    update=_update,
    rebuild_on=(SILVER_AREA, SILVER_INSTITUTION),
    audit=report_long_open_stays,
)
"""``gold.utilization_daily``: one row per (``date``, ``level``, ``unit_code``). Incremental: the days from
the first one a changed encounter fact touches (or after the last run's ``as_of``) are replaced whole."""
