"""``gold.patient_360``: one row per person, the view of a resident across every institution.

Grain: one row per active EMPI person (``silver.person``). Identity is tokenised (the person's keyed
resident-ID token, never a clear value); demographics are generalised for analysis (birth year, age and
5-year age band at the ``as_of`` date); the person's area is given with its county, city and province.
Events of a person are those of every source patient linked to them (``silver.person_xref``). Dates are
local dates of the region's time zone (``region.timezone``); times are instants (UTC).
"""

from __future__ import annotations

import logging

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from healthlake.catalog import (
    GOLD_ENCOUNTER_FACTS,
    GOLD_PATIENT_360,
    SILVER_ALLERGY,
    SILVER_AREA,
    SILVER_CHRONIC_FOLLOWUP,
    SILVER_DIAGNOSIS,
    SILVER_ENCOUNTER,
    SILVER_IMMUNIZATION,
    SILVER_NAT_TEST,
    SILVER_PERSON,
    SILVER_PERSON_XREF,
    SILVER_PROCEDURE,
)
from healthlake.derived import DerivedTable, Inputs, Write, merge, rebuild
from healthlake.gold.areas import area_paths
from healthlake.gold.changes import (
    PATIENT,
    changed_patients,
    link_changes,
    person_changes,
    persons_of,
    relinked_persons,
    union,
)
from healthlake.localtime import age_at, age_band, local_date

log = logging.getLogger(__name__)

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


def chronic_conditions(
    diagnoses: DataFrame, followups: DataFrame, person_xref: DataFrame, *, zone: str
) -> DataFrame:
    """Per person and chronic condition, the first date it was diagnosed or managed.

    Args:
        diagnoses: ``silver.diagnosis`` (``icd10_category``, ``diagnosis_time``).
        followups: ``silver.chronic_followup`` (a resident under chronic-disease management has the
            condition even without a diagnosis record in the lake).
        person_xref: ``silver.person_xref``.
        zone: The region's time zone.

    Returns:
        ``person_id``, ``condition``, ``first_diagnosed`` (local date).
    """
    diagnosed = person_events(_not_cancelled(diagnoses), person_xref).select(
        "person_id",
        condition_of(F.col("icd10_category")).alias("condition"),
        local_date(F.col("diagnosis_time"), zone).alias("d"),
    )
    managed = person_events(followups, person_xref).select(
        "person_id",
        condition_of(F.col("disease_icd10_category")).alias("condition"),
        local_date(F.col("followup_time"), zone).alias("d"),
    )
    return (
        diagnosed.unionByName(managed)
        .where(F.col("condition").isNotNull())
        .groupBy("person_id", "condition")
        .agg(F.min("d").alias("first_diagnosed"))
    )


def visit_summary(encounters: DataFrame) -> DataFrame:
    """Per person, their visits by class, first and last admission, and the last encounter's place and class.

    Args:
        encounters: Encounter rows with ``person_id`` (``gold.encounter_facts``, or new encounters joined to
            their person), ``encounter_class``, ``admit_time``, ``institution_id``, ``source_record_id``.

    Returns:
        ``person_id``, ``outpatient_visits``, ``emergency_visits``, ``admissions``, ``first_encounter_time``,
        ``last_encounter_time`` and ``_last`` (``institution_id``, ``encounter_class`` of the latest
        admission, ties broken by record id).
    """
    cls = F.col("encounter_class")
    return (
        encounters.where(F.col("person_id").isNotNull())
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


def immunization_count(immunizations: DataFrame, person_xref: DataFrame) -> DataFrame:
    """Per person, the immunisations that were not cancelled: ``person_id``, ``immunizations``."""
    return (
        person_events(_not_cancelled(immunizations), person_xref)
        .groupBy("person_id")
        .agg(F.count("*").alias("immunizations"))
    )


def last_test(nat_tests: DataFrame, person_xref: DataFrame) -> DataFrame:
    """Per person, their latest nucleic-acid test.

    Returns:
        ``person_id``, ``last_nat_test_time``, ``last_nat_test_result`` (ties in time broken by record id).
    """
    tested = F.coalesce("sample_time", "report_time")
    return (
        person_events(nat_tests.where(tested.isNotNull()), person_xref)
        .groupBy("person_id")
        .agg(
            F.max(tested).alias("last_nat_test_time"),
            F.max_by("result", F.struct(tested, F.col("source_record_id"))).alias("last_nat_test_result"),
        )
    )


NOT_PERFORMED_STATUSES = ("preparation",)
"""FHIR procedure statuses of a procedure not performed yet (cancelled ones are flagged ``is_cancelled``)."""


def procedure_summary(procedures: DataFrame, person_xref: DataFrame, *, zone: str) -> DataFrame:
    """Per person, the procedures performed (not cancelled, not only in preparation).

    Args:
        procedures: ``silver.procedure`` (``performed_time``, ``status``, ``is_cancelled``).
        person_xref: ``silver.person_xref``.
        zone: The region's time zone.

    Returns:
        ``person_id``, ``procedure_count``, ``last_procedure_date`` (local date of the latest performed
        time).
    """
    performed = ~F.coalesce(F.col("status").isin(*NOT_PERFORMED_STATUSES), F.lit(False))
    return (
        person_events(_not_cancelled(procedures).where(performed), person_xref)
        .groupBy("person_id")
        .agg(
            F.count("*").alias("procedure_count"),
            F.max(local_date(F.col("performed_time"), zone)).alias("last_procedure_date"),
        )
    )


INACTIVE_ALLERGY_STATUSES = ("inactive", "resolved")
"""FHIR clinical statuses of an allergy the patient no longer has."""
NOT_AN_ALLERGY = ("refuted", "entered-in-error")
"""FHIR verification statuses of a record that is no allergy (entered-in-error is also ``is_cancelled``)."""


def allergy_summary(allergies: DataFrame, person_xref: DataFrame) -> DataFrame:
    """Per person, their active allergy records and the distinct substances.

    An allergy is active unless cancelled, its clinical status is inactive or resolved, or its
    verification status refutes it; a record without a status (HL7 v2's AL1 has none) is active.

    Args:
        allergies: ``silver.allergy`` (``code``, ``clinical_status``, ``verification_status``,
            ``is_cancelled``).
        person_xref: ``silver.person_xref``.

    Returns:
        ``person_id``, ``allergy_count`` (records: one allergy recorded by two hospitals counts twice),
        ``allergies`` (sorted distinct substance codes; the free-text display is left out, as text a
        clerk typed may name anything).
    """
    active = ~F.coalesce(
        F.col("clinical_status").isin(*INACTIVE_ALLERGY_STATUSES), F.lit(False)
    ) & ~F.coalesce(F.col("verification_status").isin(*NOT_AN_ALLERGY), F.lit(False))
    return (
        person_events(_not_cancelled(allergies).where(active), person_xref)
        .groupBy("person_id")
        .agg(
            F.count("*").alias("allergy_count"),
            F.array_sort(F.collect_set("code")).alias("allergies"),
        )
    )


_CONDITIONS = "array<struct<condition:string,first_diagnosed:date>>"


def _condition_lists(conditions: DataFrame) -> DataFrame:
    return conditions.groupBy("person_id").agg(
        F.array_sort(F.collect_list(F.struct("condition", "first_diagnosed"))).alias("chronic_conditions")
    )


def patient_360(
    persons: DataFrame,
    person_xref: DataFrame,
    encounter_facts: DataFrame,
    diagnoses: DataFrame,
    followups: DataFrame,
    immunizations: DataFrame,
    nat_tests: DataFrame,
    procedures: DataFrame,
    allergies: DataFrame,
    area_paths: DataFrame,
    as_of: Column,
    *,
    zone: str,
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
        procedures: ``silver.procedure``.
        allergies: ``silver.allergy``.
        area_paths: ``healthlake.gold.areas.area_paths`` of ``silver.area``.
        as_of: The local date ages are computed at (a date Column, e.g. a literal).
        zone: The region's time zone (the conditions' first dates and the last procedure's date are local
            dates).

    Returns:
        ``person_id``, ``resident_id_token``, ``sex``, ``birth_year``, ``age``, ``age_band``, ``area_code``,
        ``township_code``, ``county_code``, ``city_code``, ``province_code``, ``chronic_conditions``
        (array of ``condition``, ``first_diagnosed``, by condition), ``has_hypertension``,
        ``has_diabetes``, ``outpatient_visits``, ``emergency_visits``, ``admissions``,
        ``first_encounter_time``, ``last_encounter_time``, ``last_encounter_institution_id``,
        ``last_encounter_class``, ``immunizations``, ``last_nat_test_time``, ``last_nat_test_result``,
        ``procedure_count``, ``last_procedure_date``, ``allergy_count``, ``allergies`` (sorted substance
        codes), ``source_records``, ``institutions``.
    """
    summaries = (
        visit_summary(encounter_facts)
        .join(
            _condition_lists(chronic_conditions(diagnoses, followups, person_xref, zone=zone)),
            "person_id",
            "full",
        )
        .join(immunization_count(immunizations, person_xref), "person_id", "full")
        .join(last_test(nat_tests, person_xref), "person_id", "full")
        .join(procedure_summary(procedures, person_xref, zone=zone), "person_id", "full")
        .join(allergy_summary(allergies, person_xref), "person_id", "full")
    )
    return _with_person(persons, summaries, area_paths, as_of)


def patient_360_update(
    stored: DataFrame,
    persons: DataFrame,
    visits: DataFrame,
    conditions: DataFrame,
    immunizations: DataFrame,
    tests: DataFrame,
    procedures: DataFrame,
    allergies: DataFrame,
    area_paths: DataFrame,
    as_of: Column,
) -> DataFrame:
    """Stored ``patient_360`` rows brought up to date with events that were only added since.

    Every measure of the view but the latest encounter's and test's place, class and result is a count,
    a minimum, a maximum or a set union, so the stored row combined with the summary of the added events
    equals the row recomputed from the whole history. When an added encounter or test ties the stored
    latest one in time (or has no admission time), the stored row cannot say which of the two is later:
    such a row is flagged, for the caller to recompute from history.

    Args:
        stored: ``gold.patient_360`` rows of the persons to update.
        persons: ``silver.person`` now (demographics, area and record counts are taken from it).
        visits: ``visit_summary`` of the added encounters (not cancelled).
        conditions: ``chronic_conditions`` of the added diagnoses and follow-ups.
        immunizations: ``immunization_count`` of the added immunisations.
        tests: ``last_test`` of the added tests.
        procedures: ``procedure_summary`` of the added procedures.
        allergies: ``allergy_summary`` of the added allergies.
        area_paths: ``healthlake.gold.areas.area_paths`` of ``silver.area``.
        as_of: The date ages are computed at.

    Returns:
        The ``patient_360`` columns of the stored persons still active, and ``_recompute`` (boolean).
    """
    new = "_new_"
    added = (
        visits.select("person_id", *[F.col(c).alias(new + c) for c in visits.columns if c != "person_id"])
        .join(
            conditions.groupBy("person_id").agg(
                F.map_from_entries(F.collect_list(F.struct("condition", "first_diagnosed"))).alias(
                    "_new_conditions"
                )
            ),
            "person_id",
            "full",
        )
        .join(immunizations.withColumnRenamed("immunizations", "_new_immunizations"), "person_id", "full")
        .join(
            tests.select(
                "person_id",
                F.col("last_nat_test_time").alias("_new_test_time"),
                F.col("last_nat_test_result").alias("_new_test_result"),
            ),
            "person_id",
            "full",
        )
        .join(
            procedures.select(
                "person_id",
                F.col("procedure_count").alias("_new_procedure_count"),
                F.col("last_procedure_date").alias("_new_last_procedure_date"),
            ),
            "person_id",
            "full",
        )
        .join(
            allergies.select(
                "person_id",
                F.col("allergy_count").alias("_new_allergy_count"),
                F.col("allergies").alias("_new_allergies"),
            ),
            "person_id",
            "full",
        )
    )
    new_time, old_time = F.col("_new_last_encounter_time"), F.col("last_encounter_time")
    new_visit_later = new_time.isNotNull() & (old_time.isNull() | (new_time > old_time))
    new_visit_earlier = new_time.isNotNull() & old_time.isNotNull() & (new_time < old_time)
    # Added encounters that are neither later nor earlier than the stored latest one: a tie in time, or
    # none of them dated (max_by then orders by record id, which the stored row does not keep).
    visit_unknown = F.col("_new__last").isNotNull() & ~new_visit_later & ~new_visit_earlier
    new_test, old_test = F.col("_new_test_time"), F.col("last_nat_test_time")  # tests are always dated
    new_test_later = new_test.isNotNull() & (old_test.isNull() | (new_test > old_test))
    test_tie = F.coalesce(new_test == old_test, F.lit(False))
    stored_last = F.struct(
        F.col("last_encounter_institution_id").alias("institution_id"),
        F.col("last_encounter_class").alias("encounter_class"),
    )
    # Per condition, the earlier of the stored and the added first date.
    merged = F.map_zip_with(
        F.map_from_entries("chronic_conditions"),
        F.coalesce("_new_conditions", F.create_map().cast("map<string,date>")),
        lambda _, old, new: F.least(old, new),
    )
    entries = F.transform(F.map_entries(merged), lambda e: F.struct(e["key"], e["value"]))
    summaries = stored.join(added, "person_id", "left").select(
        "person_id",
        F.array_sort(entries.cast(_CONDITIONS)).alias("chronic_conditions"),
        *[
            (F.col(c) + F.coalesce(F.col(new + c), F.lit(0))).alias(c)
            for c in ("outpatient_visits", "emergency_visits", "admissions", "immunizations")
        ],
        F.least("first_encounter_time", "_new_first_encounter_time").alias("first_encounter_time"),
        F.greatest(old_time, new_time).alias("last_encounter_time"),
        F.when(new_visit_later, F.col("_new__last")).otherwise(stored_last).alias("_last"),
        F.greatest(old_test, new_test).alias("last_nat_test_time"),
        F.when(new_test_later, F.col("_new_test_result"))
        .otherwise(F.col("last_nat_test_result"))
        .alias("last_nat_test_result"),
        (F.col("procedure_count") + F.coalesce("_new_procedure_count", F.lit(0))).alias("procedure_count"),
        F.greatest("last_procedure_date", "_new_last_procedure_date").alias("last_procedure_date"),
        (F.col("allergy_count") + F.coalesce("_new_allergy_count", F.lit(0))).alias("allergy_count"),
        F.array_sort(
            F.array_union("allergies", F.coalesce("_new_allergies", F.array().cast("array<string>")))
        ).alias("allergies"),
        (visit_unknown | test_tie).alias("_recompute"),
    )
    return _with_person(persons, summaries, area_paths, as_of, how="inner", extra=("_recompute",))


def _with_person(
    persons: DataFrame,
    summaries: DataFrame,
    area_paths: DataFrame,
    as_of: Column,
    *,
    how: str = "left",
    extra: tuple[str, ...] = (),
) -> DataFrame:
    """The view's columns: active persons' demographics and area joined (``how``) to their summaries."""
    active = persons.where(F.col("status") == "active")
    places = area_paths.drop("level", "name")
    has = F.col("chronic_conditions.condition")
    age = age_at(F.col("birth_date"), as_of)
    return (
        active.join(summaries, "person_id", how)
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
            F.coalesce("chronic_conditions", F.array().cast(_CONDITIONS)).alias("chronic_conditions"),
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
            F.coalesce("procedure_count", F.lit(0)).alias("procedure_count"),
            "last_procedure_date",
            F.coalesce("allergy_count", F.lit(0)).alias("allergy_count"),
            F.coalesce("allergies", F.array().cast("array<string>")).alias("allergies"),
            F.col("record_count").alias("source_records"),
            F.col("institution_count").alias("institutions"),
            *extra,
        )
    )


EVENT_TABLES = (
    SILVER_ENCOUNTER,
    SILVER_DIAGNOSIS,
    SILVER_CHRONIC_FOLLOWUP,
    SILVER_IMMUNIZATION,
    SILVER_NAT_TEST,
    SILVER_PROCEDURE,
    SILVER_ALLERGY,
)
"""The silver events the view summarises (their change feeds name the persons a day touches)."""


def _view(inputs: Inputs, persons: DataFrame, xref: DataFrame, facts: DataFrame) -> DataFrame:
    return patient_360(
        persons,
        xref,
        facts,
        inputs.read(SILVER_DIAGNOSIS),
        inputs.read(SILVER_CHRONIC_FOLLOWUP),
        inputs.read(SILVER_IMMUNIZATION),
        inputs.read(SILVER_NAT_TEST),
        inputs.read(SILVER_PROCEDURE),
        inputs.read(SILVER_ALLERGY),
        area_paths(inputs.read(SILVER_AREA)),
        F.lit(inputs.as_of),
        zone=inputs.zone,
    )


def _build(inputs: Inputs) -> DataFrame:
    return _view(
        inputs, inputs.read(SILVER_PERSON), inputs.read(SILVER_PERSON_XREF), inputs.read(GOLD_ENCOUNTER_FACTS)
    )


ADDED_COLUMNS = ("procedure_count", "last_procedure_date", "allergy_count", "allergies")
"""Columns the view gained after lakes had it: a stored view without them cannot be updated, only rebuilt."""


def _update(inputs: Inputs) -> Write:
    """The view of the persons silver changed since the last run.

    Persons with a changed event, link or golden record, or a birthday since the last run. Stored persons
    whose events were only added to are brought up to date from the added events (``patient_360_update``,
    equal to a recomputation because every measure is a count, minimum, maximum or set union); the
    others (links moved, an event revised or removed, no stored row, or a tie the stored row cannot
    settle) are recomputed from their whole history. A view stored before its procedure and allergy
    columns existed is rebuilt.
    """
    if not set(ADDED_COLUMNS) <= set(inputs.stored(GOLD_PATIENT_360).columns):
        return rebuild()  # a view written before its procedure and allergy columns existed
    xref, now = inputs.read(SILVER_PERSON_XREF), inputs.read(SILVER_PERSON)
    day = F.lit(inputs.as_of)
    feeds = {table: inputs.changes(table) for table in EVENT_TABLES}
    event_patients = [changed_patients(inputs)]
    event_patients += [
        rows.select(*PATIENT) for t, rows in feeds.items() if rows is not None and t != SILVER_ENCOUNTER
    ]
    last_day = F.lit(inputs.last.as_of if inputs.last is not None else inputs.as_of)
    aged = now.where(age_at(F.col("birth_date"), last_day) != age_at(F.col("birth_date"), day))
    affected = union(
        [
            persons_of(inputs, union(event_patients).distinct()),
            link_changes(inputs).select("person_id"),
            person_changes(inputs),
            aged.select("person_id"),
        ]
    ).distinct()
    affected = inputs.materialised(affected)
    stored = inputs.materialised(inputs.stored(GOLD_PATIENT_360).join(affected, "person_id", "left_semi"))
    revised = [
        rows.where(F.col("_change_type") != "insert").select(*PATIENT)
        for rows in feeds.values()
        if rows is not None
    ]
    kept_apart = relinked_persons(inputs)
    if revised:
        kept_apart = kept_apart.unionByName(persons_of(inputs, union(revised)))
    addable = inputs.materialised(stored.select("person_id").join(kept_apart, "person_id", "left_anti"))
    addable_xref = inputs.materialised(xref.join(addable, "person_id", "left_semi"))

    def added(table: str) -> DataFrame:
        rows = feeds.get(table)
        return inputs.read(table).limit(0) if rows is None else rows.where(F.col("_change_type") == "insert")

    encounters_added = added(SILVER_ENCOUNTER).where(~F.coalesce(F.col("is_cancelled"), F.lit(False)))
    updated = inputs.materialised(
        patient_360_update(
            stored.join(addable, "person_id", "left_semi"),
            now.join(addable, "person_id", "left_semi"),
            visit_summary(person_events(encounters_added, addable_xref)),
            chronic_conditions(
                added(SILVER_DIAGNOSIS), added(SILVER_CHRONIC_FOLLOWUP), addable_xref, zone=inputs.zone
            ),
            immunization_count(added(SILVER_IMMUNIZATION), addable_xref),
            last_test(added(SILVER_NAT_TEST), addable_xref),
            procedure_summary(added(SILVER_PROCEDURE), addable_xref, zone=inputs.zone),
            allergy_summary(added(SILVER_ALLERGY), addable_xref),
            area_paths(inputs.read(SILVER_AREA)),
            day,
        )
    )
    fresh = updated.where(~F.col("_recompute")).drop("_recompute")
    whole_history = inputs.materialised(affected.join(fresh.select("person_id"), "person_id", "left_anti"))
    if log.isEnabledFor(logging.INFO):
        counts = fresh.count(), whole_history.count()
        log.info("publish: patient view of %d persons updated, of %d recomputed from history", *counts)
    if not whole_history.isEmpty():  # on a day of only new events there is no one: skip the scans
        history_xref = inputs.materialised(xref.join(whole_history, "person_id", "left_semi"))
        facts = inputs.read(GOLD_ENCOUNTER_FACTS)
        recomputed = _view(
            inputs,
            now.join(whole_history, "person_id", "left_semi"),
            history_xref,
            facts.join(whole_history, "person_id", "left_semi"),
        )
        fresh = fresh.unionByName(recomputed)
    return merge(fresh, stored)


PATIENT_360 = DerivedTable(
    name=GOLD_PATIENT_360,
    key=("person_id",),
    reads=(
        SILVER_PERSON,
        SILVER_PERSON_XREF,
        GOLD_ENCOUNTER_FACTS,
        SILVER_DIAGNOSIS,
        SILVER_CHRONIC_FOLLOWUP,
        SILVER_IMMUNIZATION,
        SILVER_NAT_TEST,
        SILVER_PROCEDURE,
        SILVER_ALLERGY,
        SILVER_AREA,
    ),
    build=_build,
    update=_update,
    fed_by=EVENT_TABLES,
    rebuild_on=(SILVER_AREA,),
)
"""``gold.patient_360``: one row per active person. Incremental: the affected persons' rows are updated
from their added events or recomputed from their whole history, and merged by ``person_id``."""
