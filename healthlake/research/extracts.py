"""The research zone's tables (``research.*``), built from gold by ``healthlake publish``.

Pure ``DataFrame -> DataFrame`` functions, and the release's tables as derived tables (``release_tables``;
built in full for each release, never incrementally: a release is a fixed extract). ``docs/research.md`` gives
the rules. In short: no direct identifier or keyed identity token; person keys re-tokenised per release
(``research.release``); birth date generalised to year and 5-year age band; area generalised to county; event
times to dates (months for a person's first and last contact), local dates and months of the region's time
zone (``region.timezone``); aggregate tables suppress cells under ``min_cell``; a k-anonymity report on chosen
quasi-identifiers goes with each person-level extract.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from healthlake.catalog import (
    GOLD_CHRONIC_INDICATORS,
    GOLD_ENCOUNTER_FACTS,
    GOLD_PATIENT_360,
    GOLD_UTILIZATION_DAILY,
    RESEARCH_CHRONIC,
    RESEARCH_ENCOUNTERS,
    RESEARCH_K_ANONYMITY,
    RESEARCH_PATIENTS,
    RESEARCH_UTILIZATION,
)
from healthlake.derived import DerivedTable, Inputs
from healthlake.gold.chronic import INDICATOR_MEASURES, INDICATOR_RATES
from healthlake.gold.utilization import ADDITIVE_MEASURES, RATES
from healthlake.gold.utilization import with_rates as _with_rates
from healthlake.localtime import local_date, local_month
from healthlake.research.deidentify import county_of, drop_direct_identifiers, retokenize
from healthlake.research.disclosure import k_anonymity, suppress_small_cells

RESEARCH_ID = "research_id"
PATIENT_QUASI_IDENTIFIERS: tuple[tuple[str, ...], ...] = (
    ("sex", "birth_year", "county_code"),
    ("sex", "age_band", "county_code"),
)
"""The quasi-identifier sets the k-anonymity report checks on ``research.patients``."""
AREA_LEVELS = ("county", "city", "province")
"""Aggregate research tables stop at the county: townships and single institutions are too small."""


def patient_extract(patient_360: DataFrame, release: str, key: bytes, *, zone: str) -> DataFrame:
    """``research.patients``: one row per person of ``gold.patient_360``, de-identified.

    Args:
        patient_360: ``gold.patient_360``.
        release: The research release (its person keys are unrelated to any other release's).
        key: The tokenisation key.
        zone: The region's time zone: times become their local months.
    """
    rows = patient_360.select(
        "person_id",
        "sex",
        "birth_year",
        "age_band",
        county_of(F.col("area_code")).alias("county_code"),
        "city_code",
        "province_code",
        F.transform(
            "chronic_conditions",
            lambda c: F.struct(
                c["condition"].alias("condition"), F.year(c["first_diagnosed"]).alias("first_diagnosed_year")
            ),
        ).alias("chronic_conditions"),
        "has_hypertension",
        "has_diabetes",
        "outpatient_visits",
        "emergency_visits",
        "admissions",
        local_month(F.col("first_encounter_time"), zone).alias("first_encounter_month"),
        local_month(F.col("last_encounter_time"), zone).alias("last_encounter_month"),
        "last_encounter_class",
        "immunizations",
        local_month(F.col("last_nat_test_time"), zone).alias("last_nat_test_month"),
        "last_nat_test_result",
        "institutions",
    )
    return drop_direct_identifiers(retokenize(rows, "person_id", release, key, alias=RESEARCH_ID))


def encounter_extract(encounter_facts: DataFrame, release: str, key: bytes, *, zone: str) -> DataFrame:
    """``research.encounters``: ``gold.encounter_facts`` of linked persons, de-identified (dates, no ids;
    ``discharge_date`` the local date of the discharge in ``zone``, like ``admit_date``)."""
    rows = encounter_facts.where(F.col("person_id").isNotNull()).select(
        "person_id",
        "institution_id",
        "county_code",
        "city_code",
        "encounter_class",
        "admit_date",
        local_date(F.col("discharge_time"), zone).alias("discharge_date"),
        "length_of_stay_days",
        "is_index_stay",
        "readmitted_30d",
        "is_readmission_30d",
        "days_to_next_admission",
    )
    return drop_direct_identifiers(retokenize(rows, "person_id", release, key, alias=RESEARCH_ID))


def utilization_monthly(utilization_daily: DataFrame, min_cell: int) -> DataFrame:
    """``research.utilization_monthly``: ``gold.utilization_daily`` per month, county level and up,
    small cells suppressed (rates recomputed from the monthly sums, then suppressed with their counts)."""
    monthly = (
        utilization_daily.where(F.col("level").isin(*AREA_LEVELS))
        .groupBy(F.trunc("date", "month").alias("month"), "level", "unit_code", "unit_name")
        .agg(*[F.sum(m).alias(m) for m in ADDITIVE_MEASURES])
    )
    return suppress_small_cells(_with_rates(monthly, RATES), list(ADDITIVE_MEASURES), min_cell, rates=RATES)


def chronic_monthly(indicators: DataFrame, min_cell: int) -> DataFrame:
    """``research.chronic_disease_monthly``: ``gold.chronic_disease_indicators`` at county level and up,
    small cells suppressed."""
    rows = indicators.where(F.col("level").isin(*AREA_LEVELS))
    return suppress_small_cells(rows, list(INDICATOR_MEASURES), min_cell, rates=INDICATOR_RATES)


def k_anonymity_report(
    extract: DataFrame, name: str, quasi_identifier_sets: Sequence[Sequence[str]], k: int
) -> DataFrame:
    """``research.k_anonymity``: one row per quasi-identifier set of an extract (see ``k_anonymity``)."""
    reports = [k_anonymity(extract, list(qis), k) for qis in quasi_identifier_sets]
    out = reports[0]
    for report in reports[1:]:
        out = out.unionByName(report)
    return out.select(F.lit(name).alias("extract"), "*")


def release_tables(release: str, key: bytes, *, min_cell: int, k: int) -> tuple[DerivedTable, ...]:
    """The research zone of one release, as derived tables of gold (built in full, in this order).

    Args:
        release: The research release (``research.release``).
        key: The tokenisation key (from the environment).
        min_cell: Aggregate cells under this are suppressed (``research.min_cell``).
        k: The k of the k-anonymity report (``research.k``).
    """

    def patients(inputs: Inputs) -> DataFrame:
        return patient_extract(inputs.read(GOLD_PATIENT_360), release, key, zone=inputs.zone)

    def encounters(inputs: Inputs) -> DataFrame:
        return encounter_extract(inputs.read(GOLD_ENCOUNTER_FACTS), release, key, zone=inputs.zone)

    def utilization(inputs: Inputs) -> DataFrame:
        return utilization_monthly(inputs.read(GOLD_UTILIZATION_DAILY), min_cell)

    def chronic(inputs: Inputs) -> DataFrame:
        return chronic_monthly(inputs.read(GOLD_CHRONIC_INDICATORS), min_cell)

    def report(inputs: Inputs) -> DataFrame:
        extract = inputs.read(RESEARCH_PATIENTS)
        return k_anonymity_report(extract, RESEARCH_PATIENTS, PATIENT_QUASI_IDENTIFIERS, k)

    return (
        DerivedTable(RESEARCH_PATIENTS, (RESEARCH_ID,), (GOLD_PATIENT_360,), patients),
        DerivedTable(RESEARCH_ENCOUNTERS, (), (GOLD_ENCOUNTER_FACTS,), encounters),
        DerivedTable(
            RESEARCH_UTILIZATION, ("month", "level", "unit_code"), (GOLD_UTILIZATION_DAILY,), utilization
        ),
        DerivedTable(
            RESEARCH_CHRONIC, ("month", "disease", "level", "unit_code"), (GOLD_CHRONIC_INDICATORS,), chronic
        ),
        DerivedTable(RESEARCH_K_ANONYMITY, ("extract", "quasi_identifiers"), (RESEARCH_PATIENTS,), report),
    )
