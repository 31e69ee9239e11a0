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

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from healthlake.gold.areas import ROLLUP_LEVELS, roll_up
from healthlake.localtime import local_date

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
