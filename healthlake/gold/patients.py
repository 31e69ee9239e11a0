"""``gold.patient_360``: one row per person, the view of a resident across every institution.

Grain: one row per active EMPI person (``silver.person``). Identity is tokenised (the person's keyed
resident-ID token, never a clear value); demographics are generalised for analysis (birth year, age and
5-year age band at the ``as_of`` date); the person's area is given with its county, city and province.
Events of a person are those of every source patient linked to them (``silver.person_xref``).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from healthlake.research.deidentify import age_at, age_band

CHRONIC_CONDITIONS: dict[str, tuple[str, ...]] = {
    "hypertension": ("I10", "I11", "I12", "I13", "I15"),
    "diabetes": ("E10", "E11", "E12", "E13", "E14"),
    "coronary_heart_disease": ("I20", "I21", "I22", "I23", "I24", "I25"),
    "stroke": ("I60", "I61", "I62", "I63", "I64"),
    "copd": ("J44",),
    "chronic_kidney_disease": ("N18",),
}
"""Chronic conditions tracked per person and the ICD-10 categories that establish each."""


def condition_of(icd10_category: Column) -> Column:
    """The chronic condition (a key of ``CHRONIC_CONDITIONS``) an ICD-10 category establishes, else NULL."""
    pairs = [F.lit(x) for name, cats in CHRONIC_CONDITIONS.items() for cat in cats for x in (cat, name)]
    return F.create_map(*pairs)[icd10_category]


def person_events(events: DataFrame, person_xref: DataFrame) -> DataFrame:
    """Source-patient events with their EMPI ``person_id`` (events of unlinked patients are left out)."""
    persons = person_xref.select("institution_id", "source_patient_id", "person_id")
    return events.join(persons, ["institution_id", "source_patient_id"])


def _not_cancelled(df: DataFrame) -> DataFrame:
    return df.where(~F.coalesce(F.col("is_cancelled"), F.lit(False)))


def chronic_conditions(diagnoses: DataFrame, followups: DataFrame, person_xref: DataFrame) -> DataFrame:
    """Per person and chronic condition, the first date it was diagnosed or managed.

    Args:
        diagnoses: ``silver.diagnosis`` (``icd10_category``, ``diagnosis_time``).
        followups: ``silver.chronic_followup`` (a resident under chronic-disease management has the
            condition even without a diagnosis record in the lake).
        person_xref: ``silver.person_xref``.

    Returns:
        ``person_id``, ``condition``, ``first_diagnosed`` (date).
    """
    diagnosed = person_events(_not_cancelled(diagnoses), person_xref).select(
        "person_id",
        condition_of(F.col("icd10_category")).alias("condition"),
        F.to_date("diagnosis_time").alias("d"),
    )
    managed = person_events(followups, person_xref).select(
        "person_id",
        condition_of(F.col("disease_icd10_category")).alias("condition"),
        F.to_date("followup_time").alias("d"),
    )
    return (
        diagnosed.unionByName(managed)
        .where(F.col("condition").isNotNull())
        .groupBy("person_id", "condition")
        .agg(F.min("d").alias("first_diagnosed"))
    )


def patient_360(
    persons: DataFrame,
    person_xref: DataFrame,
    encounter_facts: DataFrame,
    diagnoses: DataFrame,
    followups: DataFrame,
    immunizations: DataFrame,
    nat_tests: DataFrame,
    area_paths: DataFrame,
    as_of: Column,
) -> DataFrame:
    """One row per active person with demographics, conditions, utilisation and latest results.

    Args:
        persons: ``silver.person``.
        person_xref: ``silver.person_xref``.
        encounter_facts: ``gold.encounter_facts``.
        diagnoses: ``silver.diagnosis``.
        followups: ``silver.chronic_followup``.
        immunizations: ``silver.immunization``.
        nat_tests: ``silver.nat_test``.
        area_paths: ``healthlake.gold.areas.area_paths`` of ``silver.area``.
        as_of: The date ages are computed at (a date Column, e.g. a literal).

    Returns:
        ``person_id``, ``resident_id_token``, ``sex``, ``birth_year``, ``age``, ``age_band``, ``area_code``,
        ``township_code``, ``county_code``, ``city_code``, ``province_code``, ``chronic_conditions``
        (array of ``condition``, ``first_diagnosed``, by condition), ``has_hypertension``,
        ``has_diabetes``, ``outpatient_visits``, ``emergency_visits``, ``admissions``,
        ``first_encounter_time``, ``last_encounter_time``, ``last_encounter_institution_id``,
        ``last_encounter_class``, ``immunizations``, ``last_nat_test_time``, ``last_nat_test_result``,
        ``source_records``, ``institutions``.
    """
    active = persons.where(F.col("status") == "active")
    cls = F.col("encounter_class")
    visits = (
        encounter_facts.where(F.col("person_id").isNotNull())
        .groupBy("person_id")
        .agg(
            F.count_if(cls == "outpatient").alias("outpatient_visits"),
            F.count_if(cls == "emergency").alias("emergency_visits"),
            F.count_if(cls == "inpatient").alias("admissions"),
            F.min("admit_time").alias("first_encounter_time"),
            F.max("admit_time").alias("last_encounter_time"),
            F.max_by(
                F.struct("institution_id", "encounter_class"), F.struct("admit_time", "source_record_id")
            ).alias("_last"),
        )
    )
    conditions = (
        chronic_conditions(diagnoses, followups, person_xref)
        .groupBy("person_id")
        .agg(
            F.array_sort(F.collect_list(F.struct("condition", "first_diagnosed"))).alias("chronic_conditions")
        )
    )
    shots = (
        person_events(_not_cancelled(immunizations), person_xref)
        .groupBy("person_id")
        .agg(F.count("*").alias("immunizations"))
    )
    tested = F.coalesce("sample_time", "report_time")
    tests = (
        person_events(nat_tests.where(tested.isNotNull()), person_xref)
        .groupBy("person_id")
        .agg(
            F.max(tested).alias("last_nat_test_time"),
            F.max_by("result", F.struct(tested, F.col("source_record_id"))).alias("last_nat_test_result"),
        )
    )
    places = area_paths.drop("level", "name")
    has = F.col("chronic_conditions.condition")
    age = age_at(F.col("birth_date"), as_of)
    return (
        active.join(visits, "person_id", "left")
        .join(conditions, "person_id", "left")
        .join(shots, "person_id", "left")
        .join(tests, "person_id", "left")
        .join(F.broadcast(places), "area_code", "left")
        .select(
            "person_id",
            "resident_id_token",
            "sex",
            F.year("birth_date").alias("birth_year"),
            age.alias("age"),
            age_band(age).alias("age_band"),
            "area_code",
            "township_code",
            "county_code",
            "city_code",
            "province_code",
            F.coalesce(
                "chronic_conditions", F.array().cast("array<struct<condition:string,first_diagnosed:date>>")
            ).alias("chronic_conditions"),
            F.coalesce(F.array_contains(has, "hypertension"), F.lit(False)).alias("has_hypertension"),
            F.coalesce(F.array_contains(has, "diabetes"), F.lit(False)).alias("has_diabetes"),
            *[
                F.coalesce(c, F.lit(0)).alias(c)
                for c in ("outpatient_visits", "emergency_visits", "admissions")
            ],
            "first_encounter_time",
            "last_encounter_time",
            F.col("_last.institution_id").alias("last_encounter_institution_id"),
            F.col("_last.encounter_class").alias("last_encounter_class"),
            F.coalesce("immunizations", F.lit(0)).alias("immunizations"),
            "last_nat_test_time",
            "last_nat_test_result",
            F.col("record_count").alias("source_records"),
            F.col("institution_count").alias("institutions"),
        )
    )
