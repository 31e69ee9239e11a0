"""``gold.chronic_control_features``: per managed hypertension or diabetes follow-up, the patient's history
known then, and whether the next follow-up's reading is over target.

**The prediction moment is the follow-up** (``followup_time``, its reading just taken). Every feature comes
from records timed at or before it: this and earlier follow-ups of the same person and disease (any
institution, through the EMPI), diagnoses, and prescriptions. The label is the only column that looks
ahead: ``uncontrolled_next``, the reading of the person's next follow-up of the same disease is over
target (blood pressure ≥ 140/90 mmHg, fasting glucose ≥ 7.0 mmol/L: ``healthlake.gold.chronic``); NULL
until that follow-up (with a reading) is in the lake.

**Grain.** One row per follow-up of a registry disease (``healthlake.gold.chronic.DISEASES``) of a linked
person that carries a reading, key ``institution_id``, ``source_record_id`` (``silver.chronic_followup``).

**Days are local** (``region.timezone``): the 12-month windows, the age, the month the time split uses.

**Treatment** is a prescription for the disease in the 365 days up to the follow-up: a
``silver.medication`` row (not cancelled) whose code starts with one of the disease's prefixes in
``conf/code_maps/treatments.csv`` (ATC groups, and the generated region's local formulary).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from healthlake.catalog import (
    GOLD_CHRONIC_CONTROL_FEATURES,
    SILVER_AREA,
    SILVER_CHRONIC_FOLLOWUP,
    SILVER_DIAGNOSIS,
    SILVER_INSTITUTION,
    SILVER_MEDICATION,
    SILVER_OBSERVATION,
    SILVER_PERSON,
    SILVER_PERSON_XREF,
)
from healthlake.derived import DerivedTable, Inputs
from healthlake.gold.areas import registered_places
from healthlake.gold.chronic import DBP_TARGET, GLUCOSE_TARGET, SBP_TARGET, followup_readings
from healthlake.gold.patients import CHRONIC_CONDITIONS, person_events
from healthlake.localtime import age_at, age_band, local_date
from healthlake.ml.readmission import known_conditions

KEY = ("institution_id", "source_record_id")
TREATMENTS = "treatments"
"""``Inputs.settings`` key: disease → (code system or ``*``, code prefix) pairs of its treatments."""
TREATMENTS_FILE = "treatments.csv"

FEATURE_COLUMNS = (
    "disease",
    "age",
    "sex",
    "sbp",
    "dbp",
    "fasting_glucose",
    "severity",
    "uncontrolled_now",
    "uncontrolled_last",
    "mean_severity_last_3",
    "readings_12m",
    "uncontrolled_share_12m",
    "followups_12m",
    "days_since_last_followup",
    "treated",
    "other_conditions",
    *(f"has_{name}" for name in CHRONIC_CONDITIONS),
    "city_code",
)
"""The model's inputs, in order."""


def load_treatments(code_maps: Path) -> dict[str, list[tuple[str, str]]]:
    """``conf/code_maps/treatments.csv`` as disease → [(code system or ``*``, code prefix)]."""
    import csv

    out: dict[str, list[tuple[str, str]]] = {}
    with (code_maps / TREATMENTS_FILE).open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            out.setdefault(row["condition"], []).append((row["code_system"], row["code_prefix"]))
    return out


def severity(disease: Column, sbp: Column, dbp: Column, glucose: Column) -> Column:
    """How far a reading is from its target, as a ratio (≥ 1: over target): the larger of sbp/140 and
    dbp/90 for hypertension, fasting glucose/7.0 for diabetes; NULL without a reading."""
    pressure = F.greatest(sbp / F.lit(SBP_TARGET), dbp / F.lit(DBP_TARGET))
    return F.when(disease == "hypertension", pressure).otherwise(glucose / F.lit(GLUCOSE_TARGET))


def _treatment_of(
    system: Column, code: Column, treatments: Mapping[str, Sequence[tuple[str, str]]]
) -> Column:
    """The disease a medication treats (the first of ``treatments``' prefixes it matches), else NULL.

    One flat CASE: a chain of ``when(...).otherwise(previous)`` repeats the previous branches in each, and
    ten prefixes made generated code past the JVM's 64 KB limit."""
    branches = [
        (code.startswith(prefix) & (F.lit(True) if code_system == "*" else system == code_system), disease)
        for disease, pairs in treatments.items()
        for code_system, prefix in pairs
    ]
    if not branches:
        return F.lit(None).cast("string")
    case = F.when(branches[0][0], F.lit(branches[0][1]))
    for condition, disease in branches[1:]:
        case = case.when(condition, F.lit(disease))
    return case


def chronic_control_features(
    followups: DataFrame,
    observations: DataFrame,
    diagnoses: DataFrame,
    medications: DataFrame,
    person_xref: DataFrame,
    persons: DataFrame,
    institution_paths: DataFrame,
    *,
    treatments: Mapping[str, Sequence[tuple[str, str]]],
    zone: str,
) -> DataFrame:
    """``gold.chronic_control_features`` (see the module).

    Args:
        followups: ``silver.chronic_followup``.
        observations: ``silver.observation`` (the follow-ups' readings).
        diagnoses: ``silver.diagnosis``.
        medications: ``silver.medication``.
        person_xref: ``silver.person_xref``.
        persons: ``silver.person``.
        institution_paths: ``healthlake.gold.areas.institution_paths``.
        treatments: Disease → (code system or ``*``, code prefix) of its treatments.
        zone: The region's time zone.

    Returns:
        One row per follow-up with a reading: the key, ``person_id``, ``followup_time``, ``followup_date``,
        ``followup_month``, ``age_band``, the ``FEATURE_COLUMNS`` and ``uncontrolled_next``.
    """
    readings = (
        followup_readings(followups, observations, person_xref, with_values=True)
        .where(F.col("controlled").isNotNull())
        .withColumn("_sev", severity(F.col("disease"), F.col("sbp"), F.col("dbp"), F.col("fasting_glucose")))
        .withColumn("_day", local_date(F.col("followup_time"), zone))
    )
    # Within a person's follow-ups of one disease, in time order: the last ones and the next one.
    series = Window.partitionBy("person_id", "disease").orderBy(
        "followup_time", "institution_id", "source_record_id"
    )
    last_3 = series.rowsBetween(-2, 0)
    ordered = readings.select(
        *KEY,
        "person_id",
        "disease",
        "followup_time",
        "_day",
        "sbp",
        "dbp",
        "fasting_glucose",
        F.col("_sev").alias("severity"),
        (~F.col("controlled")).alias("uncontrolled_now"),
        F.coalesce(~F.lag("controlled").over(series), F.lit(False)).alias("uncontrolled_last"),
        F.avg("_sev").over(last_3).alias("mean_severity_last_3"),
        F.datediff(F.col("_day"), F.lag("_day").over(series)).alias("days_since_last_followup"),
        (~F.lead("controlled").over(series)).alias("uncontrolled_next"),
    )
    # The 12 local months up to each follow-up (its own reading included).
    earlier = readings.select(
        "person_id", "disease", F.col("followup_time").alias("_t"), F.col("_day").alias("_d"), "controlled"
    )
    window = (
        ordered.select(*KEY, "person_id", "disease", "followup_time", "_day")
        .join(earlier, ["person_id", "disease"])
        .where((F.col("_t") <= F.col("followup_time")) & (F.col("_d") > F.add_months(F.col("_day"), -12)))
        .groupBy(*KEY)
        .agg(
            F.count("*").alias("readings_12m"),
            F.avg((~F.col("controlled")).cast("double")).alias("uncontrolled_share_12m"),
        )
    )
    all_followups = person_events(followups.where(F.col("followup_time").isNotNull()), person_xref).select(
        "person_id", F.col("followup_time").alias("_t"), local_date(F.col("followup_time"), zone).alias("_d")
    )
    visits = (
        ordered.select(*KEY, "person_id", "followup_time", "_day")
        .join(all_followups, "person_id")
        .where((F.col("_t") <= F.col("followup_time")) & (F.col("_d") > F.add_months(F.col("_day"), -12)))
        .groupBy(*KEY)
        .agg(F.countDistinct("_t").alias("followups_12m"))
    )
    treated = _treated(ordered, medications, person_xref, treatments)
    conditions = known_conditions(
        ordered, diagnoses, followups, person_xref, moment="followup_time", key=KEY
    ).drop("chronic_conditions")
    people = persons.select("person_id", "birth_date", "sex")
    places = institution_paths.select("institution_id", "city_code")
    age = age_at(F.col("birth_date"), F.col("_day"))
    flags = {f"has_{name}": False for name in CHRONIC_CONDITIONS}
    joined = (
        ordered.join(window, list(KEY), "left")
        .join(visits, list(KEY), "left")
        .join(treated, list(KEY), "left")
        .join(conditions, list(KEY), "left")
        .join(people, "person_id", "left")
        .join(F.broadcast(places), "institution_id", "left")
        .fillna({"treated": False, **flags})
    )
    own = F.col("disease")
    others = sum(
        (F.when(F.col(f"has_{name}") & (own != F.lit(name)), 1).otherwise(0) for name in CHRONIC_CONDITIONS),
        F.lit(0),
    )
    columns = {
        "age": age,
        "sex": F.coalesce(F.col("sex"), F.lit("U")),
        "other_conditions": others,
        "followups_12m": F.coalesce(F.col("followups_12m"), F.lit(0)),
    }
    return joined.withColumns(columns).select(
        *KEY,
        "person_id",
        "followup_time",
        F.col("_day").alias("followup_date"),
        F.trunc(F.col("_day"), "month").alias("followup_month"),
        age_band(age).alias("age_band"),
        *FEATURE_COLUMNS,
        "uncontrolled_next",
    )


def _treated(
    ordered: DataFrame,
    medications: DataFrame,
    person_xref: DataFrame,
    treatments: Mapping[str, Sequence[tuple[str, str]]],
) -> DataFrame:
    """Per follow-up, ``treated``: a prescription for its disease in the 365 days up to it."""
    prescribed = (
        person_events(medications.where(~F.coalesce(F.col("is_cancelled"), F.lit(False))), person_xref)
        .select(
            "person_id",
            _treatment_of(F.col("medication_code_system"), F.col("medication_code"), treatments).alias(
                "disease"
            ),
            F.col("authored_at").alias("_t"),
        )
        .where(F.col("disease").isNotNull() & F.col("_t").isNotNull())
    )
    return (
        ordered.select(*KEY, "person_id", "disease", "followup_time")
        .join(prescribed, ["person_id", "disease"])
        .where(
            (F.col("_t") <= F.col("followup_time"))
            & (F.col("_t") >= F.col("followup_time") - F.expr("INTERVAL 365 DAYS"))
        )
        .groupBy(*KEY)
        .agg(F.lit(True).alias("treated"))
    )


def _build(inputs: Inputs) -> DataFrame:
    return chronic_control_features(
        inputs.read(SILVER_CHRONIC_FOLLOWUP),
        inputs.read(SILVER_OBSERVATION),
        inputs.read(SILVER_DIAGNOSIS),
        inputs.read(SILVER_MEDICATION),
        inputs.read(SILVER_PERSON_XREF),
        inputs.read(SILVER_PERSON),
        registered_places(inputs),
        treatments=inputs.settings[TREATMENTS],
        zone=inputs.zone,
    )


CHRONIC_CONTROL_FEATURES = DerivedTable(
    name=GOLD_CHRONIC_CONTROL_FEATURES,
    key=KEY,
    reads=(
        SILVER_CHRONIC_FOLLOWUP,
        SILVER_OBSERVATION,
        SILVER_DIAGNOSIS,
        SILVER_MEDICATION,
        SILVER_PERSON_XREF,
        SILVER_PERSON,
        SILVER_INSTITUTION,
        SILVER_AREA,
    ),
    build=_build,
    partition_by=("followup_month",),
)
"""``gold.chronic_control_features``: one row per managed follow-up with a reading. Built in full each run
(a follow-up's label arrives with the next one)."""
