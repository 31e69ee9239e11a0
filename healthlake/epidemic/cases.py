"""``gold.epidemic_cases``: one row per case, a person's first positive nucleic-acid test.

Grain: one row per EMPI person with at least one positive single-tube test (``silver.nat_test``,
``result = 'positive'``; a pooled sample has no result of its own, its pool's positive sends the members to
re-test, ``docs/epidemic.md``). A second positive of the same person is not a new case: it is counted in
``positive_tests``. Tests of source patients the EMPI has not linked yet make no case (their number is
logged after each run, for the linkage to be looked at).

Columns: ``person_id``; ``first_positive_sample_time``, ``first_positive_report_time``,
``first_positive_institution_id``, ``first_positive_test_id`` (the first positive by sample time);
``last_positive_sample_time``, ``positive_tests``; ``onset_time``: the person's first diagnosis of the
outbreak disease (``epidemic.disease_codes``, ``silver.diagnosis``), NULL without one; ``first_known_at``:
the earlier of the first positive sample and the onset (where the infectious window is counted from);
``report_date``: the local date the case became known (the first positive's report, else its sample),
``sample_date``, ``onset_date`` (local dates, ``region.timezone``); the person's home area path and
``age_band`` (``gold.patient_360``).
"""

from __future__ import annotations

import logging

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from healthlake.catalog import (
    GOLD_EPIDEMIC_CASES,
    GOLD_PATIENT_360,
    SILVER_DIAGNOSIS,
    SILVER_NAT_TEST,
    SILVER_PERSON_XREF,
)
from healthlake.derived import DerivedTable, Inputs, Write, merge
from healthlake.epidemic.people import PLACE_COLUMNS, places, with_person
from healthlake.localtime import local_date

log = logging.getLogger(__name__)

DISEASE_CODES = "epidemic.disease_codes"
"""The run setting (``Inputs.settings``): ICD-10 codes or prefixes of the outbreak disease."""


def is_positive(result: Column) -> Column:
    """True for a positive individual result (``silver.nat_test.result``); pooled members have none."""
    return F.coalesce(result == "positive", F.lit(False))


def has_disease_code(icd10_code: Column, codes: tuple[str, ...]) -> Column:
    """True when an ICD-10 code is one of ``codes`` or starts with one (``U07.1`` covers ``U07.100``)."""
    code = F.upper(F.regexp_replace(icd10_code, r"\s", ""))
    test = F.lit(False)
    for c in codes:
        test = test | code.startswith(c.upper())
    return F.coalesce(test, F.lit(False))


def epidemic_cases(
    nat_tests: DataFrame,
    diagnoses: DataFrame,
    person_xref: DataFrame,
    person_places: DataFrame,
    *,
    zone: str,
    disease_codes: tuple[str, ...],
) -> DataFrame:
    """The cases: each linked person's first positive test, with onset, dates and home area.

    Args:
        nat_tests: ``silver.nat_test``.
        diagnoses: ``silver.diagnosis`` (``icd10_code``, ``diagnosis_time``, ``is_cancelled``).
        person_xref: ``silver.person_xref``.
        person_places: ``healthlake.epidemic.people.person_places``.
        zone: The region's time zone.
        disease_codes: ICD-10 codes (or prefixes) of the outbreak disease.

    Returns:
        One row per case (see the module).
    """
    positives = with_person(nat_tests.where(is_positive(F.col("result"))), person_xref).where(
        F.col("person_id").isNotNull()
    )
    # The first positive by sample time; ties broken by report time and test id so a rebuild picks the same.
    first = F.min_by(
        F.struct(
            F.col("sample_time").alias("s"),
            F.col("report_time").alias("r"),
            F.col("institution_id").alias("i"),
            F.col("source_record_id").alias("t"),
        ),
        F.struct("sample_time", "report_time", "institution_id", "source_record_id"),
    )
    per_person = positives.groupBy("person_id").agg(
        first.alias("_first"),
        F.max("sample_time").alias("last_positive_sample_time"),
        F.count(F.lit(1)).alias("positive_tests"),
    )
    onsets = (
        with_person(
            diagnoses.where(
                has_disease_code(F.col("icd10_code"), disease_codes)
                & ~F.coalesce(F.col("is_cancelled"), F.lit(False))
            ),
            person_xref,
        )
        .where(F.col("person_id").isNotNull())
        .groupBy("person_id")
        .agg(F.min("diagnosis_time").alias("onset_time"))
    )
    sample = F.col("_first.s")
    report = F.col("_first.r")
    return (
        per_person.join(onsets, "person_id", "left")
        .join(person_places, "person_id", "left")
        .select(
            "person_id",
            sample.alias("first_positive_sample_time"),
            report.alias("first_positive_report_time"),
            F.col("_first.i").alias("first_positive_institution_id"),
            F.col("_first.t").alias("first_positive_test_id"),
            "last_positive_sample_time",
            F.col("positive_tests").cast("int").alias("positive_tests"),
            "onset_time",
            F.least(sample, F.col("onset_time")).alias("first_known_at"),
            local_date(F.coalesce(report, sample), zone).alias("report_date"),
            local_date(sample, zone).alias("sample_date"),
            local_date(F.col("onset_time"), zone).alias("onset_date"),
            *PLACE_COLUMNS,
            "age_band",
        )
    )


def case_windows(cases: DataFrame, isolation: DataFrame, *, days_before: int) -> DataFrame:
    """Each case's infectious window, the time its contacts are looked for in.

    From ``days_before`` days before the case was first known (the earlier of the first positive sample
    and the onset) until the case was isolated (the start of its first isolation order) or, without an
    order, until its first positive was reported (a reported case is isolated the same day). A case
    isolated before it was known (a contact in quarantine who tests positive) has a window that ends at
    its isolation.

    Args:
        cases: ``gold.epidemic_cases``.
        isolation: ``gold.isolation`` (``person_id``, ``start_time``).
        days_before: ``epidemic.contacts.window_days_before``.

    Returns:
        ``case_person_id``, ``window_start``, ``window_end`` (instants).
    """
    isolated = (
        isolation.where(F.col("person_id").isNotNull())
        .groupBy("person_id")
        .agg(F.min("start_time").alias("_isolated"))
    )
    start = F.col("first_known_at") - F.make_dt_interval(F.lit(days_before))
    end = F.coalesce(
        F.col("_isolated"), F.col("first_positive_report_time"), F.col("first_positive_sample_time")
    )
    return cases.join(isolated, "person_id", "left").select(
        F.col("person_id").alias("case_person_id"),
        start.alias("window_start"),
        end.alias("window_end"),
    )


def _build(inputs: Inputs) -> DataFrame:
    return epidemic_cases(
        inputs.read(SILVER_NAT_TEST),
        inputs.read(SILVER_DIAGNOSIS),
        inputs.read(SILVER_PERSON_XREF),
        places(inputs),
        zone=inputs.zone,
        disease_codes=tuple(inputs.settings.get(DISEASE_CODES, ("U07.1",))),
    )


def _update(inputs: Inputs) -> Write:
    """Every case recomputed, only the rows that differ written.

    Positive tests are a small share of all tests (a mass screening finds a handful in millions), and
    the scan reads two columns before the filter: recomputing every case costs less than tracing which
    persons a day of test, diagnosis, link and area changes touched, and equals a full build by definition.
    """
    return merge(_build(inputs), inputs.stored(GOLD_EPIDEMIC_CASES))


def report_unlinked_positives(inputs: Inputs) -> None:
    """Say how many positive tests belong to source patients the EMPI has not linked (no case yet)."""
    tests = with_person(
        inputs.read(SILVER_NAT_TEST).where(is_positive(F.col("result"))), inputs.read(SILVER_PERSON_XREF)
    )
    unlinked = tests.where(F.col("person_id").isNull()).count()
    if unlinked:
        log.warning(
            "%s: %d positive tests belong to source patients not linked to a person yet (no case made): "
            "run `healthlake link`, then `healthlake epidemic`",
            GOLD_EPIDEMIC_CASES,
            unlinked,
        )


EPIDEMIC_CASES = DerivedTable(
    name=GOLD_EPIDEMIC_CASES,
    key=("person_id",),
    reads=(SILVER_NAT_TEST, SILVER_DIAGNOSIS, SILVER_PERSON_XREF, GOLD_PATIENT_360),
    build=_build,
    update=_update,
    audit=report_unlinked_positives,
)
