"""``gold.readmission_features``: one row per inpatient discharge, its point-in-time features and its label.

**The prediction moment is the discharge** (``discharge_time``, a UTC instant). Every feature is computed
only from records whose clinical time is at or before that instant: the stay itself, the person's earlier
encounters at any institution (through the EMPI), diagnoses, follow-ups and observations. Nothing dated
after the discharge moves a feature; ``tests/ml/test_features.py`` proves it by cutting every input at a
moment and comparing. The label ``readmitted_30d`` is the only column that looks ahead.

**Days are local** (``region.timezone``): the discharge date, the 6- and 12-month windows (calendar months
back from the local discharge date), the age in completed years on that date, and the month the model's
time split uses.

**Cohort.** Index stays of ``gold.encounter_facts`` (inpatient, ended, of a linked person) whose patient was
discharged alive: an in-hospital death cannot be readmitted, and leaving it in would let the model score
itself on the disposition alone (the usual exclusion of readmission measures).

**Label** (``readmitted_30d``): True when the person's next inpatient admission, at any institution, starts
1–30 local days after the discharge date (``gold.encounter_facts``); False once 30 days have passed
(``discharge_date + 30 <= as_of``) without one; NULL while it is not known yet.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from healthlake.catalog import (
    GOLD_ENCOUNTER_FACTS,
    GOLD_READMISSION_FEATURES,
    SILVER_CHRONIC_FOLLOWUP,
    SILVER_DIAGNOSIS,
    SILVER_ENCOUNTER,
    SILVER_OBSERVATION,
    SILVER_PERSON,
    SILVER_PERSON_XREF,
)
from healthlake.derived import DerivedTable, Inputs
from healthlake.gold.encounters import READMISSION_DAYS
from healthlake.gold.patients import CHRONIC_CONDITIONS, condition_of, person_events
from healthlake.localtime import age_at, age_band, local_date

KEY = ("institution_id", "source_record_id")

LAST_VALUES: dict[str, str] = {
    "sbp": "8480-6",
    "dbp": "8462-4",
    "heart_rate": "8867-4",
    "temperature": "8310-5",
    "glucose": "14749-6",
    "hba1c": "4548-4",
    "creatinine": "14682-9",
    "cholesterol": "14647-2",
    "wbc": "6690-2",
}
"""Feature ``last_<name>`` → the LOINC code (canonical unit, ``silver.observation.loinc``) of its value."""

DISPOSITIONS: dict[str, str] = {
    # FHIR discharge-disposition codes
    "home": "home",
    "other-hcf": "transfer",
    "hosp": "transfer",
    "snf": "transfer",
    "rehab": "transfer",
    "long": "transfer",
    "exp": "died",
    "aadvice": "against_advice",
    # HL7 v2 table 0112
    "01": "home",
    "02": "transfer",
    "03": "transfer",
    "20": "died",
    "07": "against_advice",
}
"""Discharge disposition as sent (FHIR or HL7 v2 code) → ``home``, ``transfer``, ``died``,
``against_advice``."""

LOOKBACK_MONTHS = (6, 12)
"""Windows (local calendar months before the discharge date) of the prior-utilisation counts."""


def disposition_of(code: Column) -> Column:
    """The normalised discharge disposition of a FHIR or HL7 v2 code; ``other`` for an unknown code,
    NULL when none was sent."""
    pairs = [F.lit(x) for sent, norm in DISPOSITIONS.items() for x in (sent, norm)]
    known = F.create_map(*pairs)[F.lower(F.trim(code))]
    return F.when(code.isNotNull(), F.coalesce(known, F.lit("other")))


def index_stays(facts: DataFrame, encounters: DataFrame, persons: DataFrame, *, zone: str) -> DataFrame:
    """The cohort: index stays of living discharges, with the stay's own features.

    Args:
        facts: ``gold.encounter_facts``.
        encounters: ``silver.encounter`` (its ``discharge_disposition``).
        persons: ``silver.person`` (``birth_date``, ``sex``).
        zone: The region's time zone.

    Returns:
        One row per stay: the key, ``person_id``, ``admit_time``, ``discharge_time``, ``discharge_date``,
        ``discharge_month``, ``age``, ``age_band``, ``sex``, ``city_code``, ``county_code`` (the hospital's),
        ``length_of_stay_days``, ``was_readmission``, ``discharge_disposition`` and the label's inputs.
    """
    disposition = encounters.select(*KEY, disposition_of(F.col("discharge_disposition")).alias("_disp"))
    stays = (
        facts.where(F.col("is_index_stay"))
        .join(disposition, list(KEY), "left")
        .where(F.coalesce(F.col("_disp"), F.lit("")) != "died")
        .join(persons.select("person_id", "birth_date", "sex"), "person_id", "left")
    )
    discharged = local_date(F.col("discharge_time"), zone)
    age = age_at(F.col("birth_date"), discharged)
    return stays.select(
        *KEY,
        "person_id",
        "admit_time",
        "discharge_time",
        discharged.alias("discharge_date"),
        F.trunc(discharged, "month").alias("discharge_month"),
        age.alias("age"),
        age_band(age).alias("age_band"),
        F.coalesce(F.col("sex"), F.lit("U")).alias("sex"),
        "city_code",
        "county_code",
        "length_of_stay_days",
        F.coalesce(F.col("is_readmission_30d"), F.lit(False)).alias("was_readmission"),
        F.coalesce(F.col("_disp"), F.lit("unknown")).alias("discharge_disposition"),
        F.col("readmitted_30d").alias("_readmitted"),
    )


def _within(months: int, event_time: str = "_t") -> Column:
    """The event is before the discharge moment and on or after the local date ``months`` months back."""
    return (F.col(event_time) <= F.col("discharge_time")) & (
        F.col("_d") >= F.add_months(F.col("discharge_date"), -months)
    )


def prior_utilisation(stays: DataFrame, facts: DataFrame, *, zone: str) -> DataFrame:
    """Per stay, the person's encounters (any institution) in the 6 and 12 months before the discharge.

    Returns:
        The key, ``admissions_<m>m`` (other inpatient stays admitted in the window), ``visits_<m>m``
        (outpatient and emergency visits) and ``emergency_visits_12m``.
    """
    history = facts.where(F.col("person_id").isNotNull()).select(
        "person_id",
        F.col("institution_id").alias("_inst"),
        F.col("source_record_id").alias("_rec"),
        "encounter_class",
        F.col("admit_time").alias("_t"),
        local_date(F.col("admit_time"), zone).alias("_d"),
    )
    joined = stays.select(*KEY, "person_id", "discharge_time", "discharge_date").join(history, "person_id")
    itself = (F.col("_inst") == F.col("institution_id")) & (F.col("_rec") == F.col("source_record_id"))
    cls = F.col("encounter_class")
    counts = []
    for months in LOOKBACK_MONTHS:
        window = _within(months) & ~itself
        counts += [
            F.count_if(window & (cls == "inpatient")).alias(f"admissions_{months}m"),
            F.count_if(window & cls.isin("outpatient", "emergency")).alias(f"visits_{months}m"),
        ]
    counts.append(F.count_if(_within(12) & ~itself & (cls == "emergency")).alias("emergency_visits_12m"))
    return joined.groupBy(*KEY).agg(*counts)


def known_conditions(
    rows: DataFrame,
    diagnoses: DataFrame,
    followups: DataFrame,
    person_xref: DataFrame,
    *,
    moment: str = "discharge_time",
    key: tuple[str, ...] = KEY,
) -> DataFrame:
    """Per row, the person's chronic conditions diagnosed (any institution, not cancelled) or managed in a
    follow-up at or before the row's ``moment`` (a timestamp column).

    Returns:
        ``key``, ``chronic_conditions`` (how many) and ``has_<condition>`` for each of
        ``healthlake.gold.patients.CHRONIC_CONDITIONS``; rows of persons with none are absent.
    """
    diagnosed = person_events(
        diagnoses.where(~F.coalesce(F.col("is_cancelled"), F.lit(False))), person_xref
    ).select(
        "person_id", condition_of(F.col("icd10_category")).alias("_c"), F.col("diagnosis_time").alias("_t")
    )
    managed = person_events(followups, person_xref).select(
        "person_id",
        condition_of(F.col("disease_icd10_category")).alias("_c"),
        F.col("followup_time").alias("_t"),
    )
    known = (
        rows.select(*key, "person_id", F.col(moment).alias("_moment"))
        .join(diagnosed.unionByName(managed).where(F.col("_c").isNotNull()), "person_id")
        .where(F.col("_t") <= F.col("_moment"))
        .groupBy(*key)
        .agg(F.collect_set("_c").alias("_set"))
    )
    flags = [F.array_contains("_set", name).alias(f"has_{name}") for name in CHRONIC_CONDITIONS]
    return known.select(*key, F.size("_set").alias("chronic_conditions"), *flags)


def primary_diagnosis(stays: DataFrame, diagnoses: DataFrame) -> DataFrame:
    """Per stay, the ICD-10 category of its primary diagnosis (else its first by time) and its chapter
    letter: ``diagnosis_category``, ``diagnosis_chapter``."""
    dx = diagnoses.where(
        ~F.coalesce(F.col("is_cancelled"), F.lit(False)) & F.col("icd10_category").isNotNull()
    ).select(
        "institution_id",
        F.col("source_encounter_id").alias("source_record_id"),
        "icd10_category",
        F.struct(
            F.coalesce(F.col("is_primary"), F.lit(False)).alias("p"),
            (-F.unix_micros(F.col("diagnosis_time"))).alias("t"),
            F.col("source_record_id").alias("r"),
        ).alias("_rank"),
    )
    first = (
        stays.select(*KEY)
        .join(dx, list(KEY))
        .groupBy(*KEY)
        .agg(F.max_by("icd10_category", "_rank").alias("diagnosis_category"))
    )
    return first.withColumn("diagnosis_chapter", F.substring("diagnosis_category", 1, 1))


def last_values(stays: DataFrame, observations: DataFrame, person_xref: DataFrame) -> DataFrame:
    """Per stay, the person's latest value of each ``LAST_VALUES`` code in the 12 months up to the discharge
    moment (any institution, not cancelled): ``last_<name>``."""
    codes = F.create_map(*[F.lit(x) for name, loinc in LAST_VALUES.items() for x in (loinc, name)])
    obs = (
        person_events(observations.where(~F.coalesce(F.col("is_cancelled"), F.lit(False))), person_xref)
        .select(
            "person_id",
            codes[F.col("loinc")].alias("_name"),
            "value",
            F.col("observation_time").alias("_t"),
            F.col("source_record_id").alias("_rec"),
        )
        .where(F.col("_name").isNotNull() & F.col("value").isNotNull())
    )
    latest = (
        stays.select(*KEY, "person_id", "discharge_time")
        .join(obs, "person_id")
        .where(
            (F.col("_t") <= F.col("discharge_time"))
            & (F.col("_t") >= F.col("discharge_time") - F.expr("INTERVAL 365 DAYS"))
        )
        .groupBy(*KEY, "_name")
        .agg(F.max_by("value", F.struct("_t", "_rec")).alias("_v"))
    )
    pivoted = latest.groupBy(*KEY).pivot("_name", list(LAST_VALUES)).agg(F.first("_v"))
    return pivoted.select(*KEY, *[F.col(name).alias(f"last_{name}") for name in LAST_VALUES])


def readmission_label(as_of: Column) -> Column:
    """``readmitted_30d`` as known on the local day ``as_of`` (see the module): True, False or NULL."""
    closed = F.date_add(F.col("discharge_date"), READMISSION_DAYS) <= as_of
    return F.when(F.col("_readmitted"), F.lit(True)).when(closed, F.lit(False))


FEATURE_COLUMNS = (
    "age",
    "sex",
    "length_of_stay_days",
    "was_readmission",
    "discharge_disposition",
    "diagnosis_chapter",
    "diagnosis_category",
    "admissions_6m",
    "admissions_12m",
    "visits_6m",
    "visits_12m",
    "emergency_visits_12m",
    "chronic_conditions",
    *(f"has_{name}" for name in CHRONIC_CONDITIONS),
    *(f"last_{name}" for name in LAST_VALUES),
    "city_code",
)
"""The model's inputs, in order."""


def readmission_features(
    facts: DataFrame,
    encounters: DataFrame,
    diagnoses: DataFrame,
    observations: DataFrame,
    followups: DataFrame,
    person_xref: DataFrame,
    persons: DataFrame,
    *,
    zone: str,
    as_of: Column,
) -> DataFrame:
    """``gold.readmission_features`` from its inputs (see the module for the moment, cohort and label).

    Args:
        facts: ``gold.encounter_facts``.
        encounters: ``silver.encounter``.
        diagnoses: ``silver.diagnosis``.
        observations: ``silver.observation``.
        followups: ``silver.chronic_followup``.
        person_xref: ``silver.person_xref``.
        persons: ``silver.person``.
        zone: The region's time zone.
        as_of: The local day the label is known on (a date Column).

    Returns:
        One row per stay: the key, ``person_id``, ``admit_time``, ``discharge_time``, ``discharge_date``,
        ``discharge_month``, ``age_band``, ``county_code``, the ``FEATURE_COLUMNS`` and ``readmitted_30d``.
        Counts are 0 and flags False where the person has no such record; last values NULL.
    """
    stays = index_stays(facts, encounters, persons, zone=zone)
    counts = prior_utilisation(stays, facts, zone=zone)
    conditions = known_conditions(stays, diagnoses, followups, person_xref)
    zero = {c: 0 for c in counts.columns if c not in KEY} | {"chronic_conditions": 0}
    no = {f"has_{name}": False for name in CHRONIC_CONDITIONS}
    joined = (
        stays.join(counts, list(KEY), "left")
        .join(conditions, list(KEY), "left")
        .join(primary_diagnosis(stays, diagnoses), list(KEY), "left")
        .join(last_values(stays, observations, person_xref), list(KEY), "left")
        .fillna({**zero, **no})
    )
    ordered = [c for c in FEATURE_COLUMNS]
    return joined.select(
        *KEY,
        "person_id",
        "admit_time",
        "discharge_time",
        "discharge_date",
        "discharge_month",
        "age_band",
        "county_code",
        *ordered,
        readmission_label(as_of).alias("readmitted_30d"),
    )


def _build(inputs: Inputs) -> DataFrame:
    return readmission_features(
        inputs.read(GOLD_ENCOUNTER_FACTS),
        inputs.read(SILVER_ENCOUNTER),
        inputs.read(SILVER_DIAGNOSIS),
        inputs.read(SILVER_OBSERVATION),
        inputs.read(SILVER_CHRONIC_FOLLOWUP),
        inputs.read(SILVER_PERSON_XREF),
        inputs.read(SILVER_PERSON),
        zone=inputs.zone,
        as_of=F.lit(inputs.as_of),
    )


READMISSION_FEATURES = DerivedTable(
    name=GOLD_READMISSION_FEATURES,
    key=KEY,
    reads=(
        GOLD_ENCOUNTER_FACTS,
        SILVER_ENCOUNTER,
        SILVER_DIAGNOSIS,
        SILVER_OBSERVATION,
        SILVER_CHRONIC_FOLLOWUP,
        SILVER_PERSON_XREF,
        SILVER_PERSON,
    ),
    build=_build,
    partition_by=("discharge_month",),
)
"""``gold.readmission_features``: one row per index stay discharged alive. Built in full each run: a
stay's features read the person's whole history and its label moves with ``as_of``."""
