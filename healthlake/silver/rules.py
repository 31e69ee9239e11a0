"""The data-quality rules of each silver table (named Column conditions; NULL counts as failure)."""

from __future__ import annotations

from pyspark.sql import functions as F

from healthlake.silver.quality import Rule

_MIN_BIRTH = "1900-01-01"


def _present(column: str, table: str) -> Rule:
    return Rule(f"{column}_present", "completeness", F.col(column).isNotNull(), f"{table} rows need {column}")


def patient_record_rules() -> list[Rule]:
    """Rules for ``silver.patient_record``."""
    return [
        _present("institution_id", "patient_record"),
        _present("source_record_id", "patient_record"),
        Rule(
            "birth_date_plausible",
            "validity",
            F.col("birth_date").isNull()
            | (
                (F.col("birth_date") >= F.lit(_MIN_BIRTH).cast("date"))
                & (F.col("birth_date") <= F.to_date("_event_time"))
            ),
            "a stated birth date lies between 1900-01-01 and the record's own date (no negative ages)",
        ),
        Rule(
            "sex_valid",
            "validity",
            F.col("sex").isNull() | F.col("sex").isin("M", "F", "U"),
            "sex is M, F or U when stated",
        ),
    ]


def encounter_rules() -> list[Rule]:
    """Rules for ``silver.encounter``."""
    return [
        _present("institution_id", "encounter"),
        _present("source_record_id", "encounter"),
        _present("source_patient_id", "encounter"),
        Rule(
            "encounter_class_known",
            "validity",
            F.col("encounter_class").isin("outpatient", "emergency", "inpatient", "other"),
            "the encounter class maps to outpatient, emergency, inpatient or other",
        ),
        Rule(
            "admit_time_present",
            "completeness",
            F.col("admit_time").isNotNull() | F.col("is_cancelled"),
            "an encounter that is not cancelled has an admit (start) time",
        ),
        Rule(
            "discharge_after_admit",
            "consistency",
            F.col("discharge_time").isNull()
            | F.col("admit_time").isNull()
            | (F.col("discharge_time") >= F.col("admit_time")),
            "discharge is not before admission",
        ),
        Rule(
            "admit_not_after_report",
            "timeliness",
            F.col("admit_time").isNull() | (F.col("admit_time") <= F.col("_ingested_at")),
            "an encounter did not start after the platform received it",
        ),
    ]


def diagnosis_rules() -> list[Rule]:
    """Rules for ``silver.diagnosis``."""
    return [
        _present("institution_id", "diagnosis"),
        _present("source_record_id", "diagnosis"),
        _present("code", "diagnosis"),
        Rule(
            "icd10_code_valid",
            "validity",
            (F.col("code_system") != "ICD-10") | F.col("icd10_code").isNotNull(),
            "an ICD-10 code has the form of one (letter, two characters, up to four more)",
        ),
    ]
