"""The data-quality rules of each silver table (named Column conditions; NULL counts as failure)."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import functions as F

from healthlake.localtime import local_date, source_zone
from healthlake.silver.quality import Rule

_MIN_BIRTH = "1900-01-01"


@dataclass(frozen=True)
class Limits:
    """The thresholds of the plausibility rules (``conform`` settings).

    Attributes:
        future_tolerance_minutes: How far after its arrival (``_ingested_at``) a source time may lie
            (clocks of senders run a little fast); later is a mistyped date (2204 for 2024), quarantined
            so that it cannot move the region's ``as_of`` or win every later version of its record.
        max_stay_days: The longest plausible stay; a discharge further after the admission is a typo.
    """

    future_tolerance_minutes: int = 60
    max_stay_days: int = 365


DEFAULT_LIMITS = Limits()


def _not_after_arrival(table: str, columns: tuple[str, ...], limits: Limits) -> Rule:
    """``time_not_after_arrival``: each of ``columns`` (and the version's ``_event_time``), when stated,
    is no later than the record's arrival plus the tolerance."""
    latest = F.col("_ingested_at") + F.make_dt_interval(mins=F.lit(limits.future_tolerance_minutes))
    condition = F.lit(True)
    for column in ("_event_time", *columns):
        condition = condition & (F.col(column).isNull() | (F.col(column) <= latest))
    return Rule(
        "time_not_after_arrival",
        "timeliness",
        condition,
        f"no {table} time ({', '.join(columns) or '_event_time'}) lies after the record reached the platform "
        f"(+{limits.future_tolerance_minutes} min)",
    )


def _present(column: str, table: str) -> Rule:
    return Rule(f"{column}_present", "completeness", F.col(column).isNotNull(), f"{table} rows need {column}")


def patient_record_rules(zone: str | None = None, limits: Limits = DEFAULT_LIMITS) -> list[Rule]:
    """Rules for ``silver.patient_record``; a record's own date is the local date of its ``_event_time``
    in ``zone`` (default ``source_zone()``: a birth on the day of a record made at 00:30 local time is no
    negative age)."""
    zone = zone or source_zone()
    return [
        _present("institution_id", "patient_record"),
        _present("source_record_id", "patient_record"),
        Rule(
            "birth_date_plausible",
            "validity",
            F.col("birth_date").isNull()
            | (
                (F.col("birth_date") >= F.lit(_MIN_BIRTH).cast("date"))
                & (F.col("birth_date") <= local_date(F.col("_event_time"), zone))
            ),
            "a stated birth date lies between 1900-01-01 and the record's own date (no negative ages)",
        ),
        Rule(
            "sex_valid",
            "validity",
            F.col("sex").isNull() | F.col("sex").isin("M", "F", "U"),
            "sex is M, F or U when stated",
        ),
        _not_after_arrival("patient_record", (), limits),
    ]


def encounter_rules(limits: Limits = DEFAULT_LIMITS) -> list[Rule]:
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
        _not_after_arrival("encounter", ("admit_time", "discharge_time"), limits),
        Rule(
            "stay_length_plausible",
            "validity",
            F.col("discharge_time").isNull()
            | F.col("admit_time").isNull()
            | (
                F.col("discharge_time")
                <= F.col("admit_time") + F.make_dt_interval(days=F.lit(limits.max_stay_days))
            ),
            f"a stay lasts at most {limits.max_stay_days} days (conform.max_stay_days)",
        ),
    ]


def diagnosis_rules(limits: Limits = DEFAULT_LIMITS) -> list[Rule]:
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
        _not_after_arrival("diagnosis", ("diagnosis_time",), limits),
    ]


def observation_rules(limits: Limits = DEFAULT_LIMITS) -> list[Rule]:
    """Rules for ``silver.observation``."""
    return [
        _present("institution_id", "observation"),
        _present("source_record_id", "observation"),
        _present("source_patient_id", "observation"),
        Rule("value_present", "completeness", F.col("value_original").isNotNull(), "a numeric value"),
        Rule(
            "observation_time_present",
            "completeness",
            F.col("observation_time").isNotNull(),
            "when it was measured",
        ),
        Rule(
            "code_mapped_to_loinc",
            "validity",
            F.col("loinc").isNotNull(),
            "the code is LOINC or a local code the code map (conf/code_maps/lab_codes.csv) knows",
        ),
        Rule(
            "unit_known",
            "validity",
            F.col("unit_known"),
            "the unit is one conf/code_maps/units.csv lists for the LOINC code (when it lists the code)",
        ),
        Rule(
            "value_plausible",
            "validity",
            F.col("value_in_range"),
            "the value, in the canonical unit, lies in conf/code_maps/observation_ranges.csv's range",
        ),
        _not_after_arrival("observation", ("observation_time",), limits),
    ]


def nat_test_rules(limits: Limits = DEFAULT_LIMITS) -> list[Rule]:
    """Rules for ``silver.nat_test``."""
    pooled = F.col("sample_mode") == "pooled"
    return [
        _present("institution_id", "nat_test"),
        _present("source_record_id", "nat_test"),
        Rule(
            "nat_test_has_person",
            "completeness",
            F.col("source_patient_id").isNotNull(),
            "a test names its person (person_no)",
        ),
        _present("sample_time", "nat_test"),
        Rule(
            "sample_mode_known",
            "validity",
            F.col("sample_mode").isNotNull(),
            "the sample mode is 单管/single, 混管/pooled or not stated (single)",
        ),
        Rule(
            "pooled_test_has_pool",
            "completeness",
            F.coalesce(~pooled, F.lit(True)) | F.col("pool_id").isNotNull(),
            "a pooled (混管) sample names its pool tube",
        ),
        Rule(
            "single_test_has_result",
            "validity",
            F.coalesce(pooled, F.lit(False)) | F.col("result").isNotNull(),
            "a single-tube test has a result (positive, negative, inconclusive); a pooled one, its pool's",
        ),
        Rule(
            "report_after_sample",
            "consistency",
            F.col("report_time").isNull() | (F.col("report_time") >= F.col("sample_time")),
            "a result is reported after its sample was taken",
        ),
        _not_after_arrival("nat_test", ("sample_time", "report_time"), limits),
    ]


def nat_pool_rules(limits: Limits = DEFAULT_LIMITS) -> list[Rule]:
    """Rules for ``silver.nat_pool``."""
    return [
        _present("institution_id", "nat_pool"),
        _present("source_record_id", "nat_pool"),
        _present("sample_time", "nat_pool"),
        Rule("pool_has_members", "validity", F.col("pool_size") > 0, "a pooled tube holds at least one swab"),
        Rule(
            "pool_result_known", "validity", F.col("result").isNotNull(), "positive, negative or inconclusive"
        ),
        Rule(
            "report_after_sample",
            "consistency",
            F.col("report_time").isNull() | (F.col("report_time") >= F.col("sample_time")),
            "a result is reported after the tube was sealed",
        ),
        _not_after_arrival("nat_pool", ("sample_time", "report_time"), limits),
    ]


def isolation_order_rules(limits: Limits = DEFAULT_LIMITS) -> list[Rule]:
    """Rules for ``silver.isolation_order`` (its planned end lies ahead by nature: not a timeliness check)."""
    start = F.col("start_time")
    return [
        _present("institution_id", "isolation_order"),
        _present("source_record_id", "isolation_order"),
        Rule(
            "isolation_order_has_person",
            "completeness",
            F.col("source_patient_id").isNotNull(),
            "an order names its person (person_no)",
        ),
        Rule("isolation_order_has_start", "completeness", start.isNotNull(), "when the isolation starts"),
        Rule(
            "isolation_category_known",
            "validity",
            F.col("category").isNotNull(),
            "a case, a close or secondary contact, or a risk area (确诊, 密接, 次密接, 风险区域)",
        ),
        Rule(
            "place_type_known",
            "validity",
            F.col("place_type_original").isNull() | F.col("place_type").isNotNull(),
            "the place, when stated, is centralized (集中隔离) or home (居家隔离)",
        ),
        Rule(
            "isolation_ends_after_start",
            "consistency",
            start.isNull()  # isolation_order_has_start says so
            | (
                (F.col("planned_end_time").isNull() | (F.col("planned_end_time") >= start))
                & (F.col("released_at").isNull() | (F.col("released_at") >= start))
            ),
            "the planned end and the release are not before the start",
        ),
        _not_after_arrival("isolation_order", ("start_time", "released_at"), limits),
    ]


def immunization_rules(limits: Limits = DEFAULT_LIMITS) -> list[Rule]:
    """Rules for ``silver.immunization``."""
    return [
        _present("institution_id", "immunization"),
        _present("source_record_id", "immunization"),
        _present("source_patient_id", "immunization"),
        _present("vaccine_code", "immunization"),
        _present("vaccinated_at", "immunization"),
        Rule(
            "dose_number_valid",
            "validity",
            F.col("dose_number").isNull() | F.col("dose_number").between(1, 20),
            "a dose number between 1 and 20 when given",
        ),
        _not_after_arrival("immunization", ("vaccinated_at",), limits),
    ]


def medication_rules(limits: Limits = DEFAULT_LIMITS) -> list[Rule]:
    """Rules for ``silver.medication``."""
    return [
        _present("institution_id", "medication"),
        _present("source_record_id", "medication"),
        _present("source_patient_id", "medication"),
        _present("medication_code", "medication"),
        _present("authored_at", "medication"),
        _not_after_arrival("medication", ("authored_at",), limits),
    ]


def chronic_followup_rules(limits: Limits = DEFAULT_LIMITS) -> list[Rule]:
    """Rules for ``silver.chronic_followup``."""
    return [
        _present("institution_id", "chronic_followup"),
        _present("source_record_id", "chronic_followup"),
        _present("source_patient_id", "chronic_followup"),
        _present("followup_time", "chronic_followup"),
        Rule(
            "disease_known",
            "validity",
            F.col("disease_icd10_category").isNotNull(),
            "the disease is one under regular management (hypertension, type 2 diabetes)",
        ),
        _not_after_arrival("chronic_followup", ("followup_time",), limits),
    ]


def location_event_rules(limits: Limits = DEFAULT_LIMITS) -> list[Rule]:
    """Rules for ``silver.location_event``."""
    return [
        _present("institution_id", "location_event"),
        Rule(
            "location_event_has_phone",
            "completeness",
            F.col("phone_token").isNotNull(),
            "the phone the ping came from",
        ),
        _present("event_time", "location_event"),
        Rule(
            "coordinates_valid",
            "validity",
            F.col("lat").between(-90, 90) & F.col("lon").between(-180, 180),
            "latitude and longitude on the globe",
        ),
        Rule(
            "accuracy_valid",
            "validity",
            F.col("accuracy_m").isNull() | (F.col("accuracy_m") >= 0),
            "a non-negative accuracy when given",
        ),
        _not_after_arrival("location_event", ("event_time",), limits),
    ]


def area_rules() -> list[Rule]:
    """Rules for ``silver.area`` (GB/T 2260 codes)."""
    code = F.col("area_code")
    return [
        _present("institution_id", "area"),
        Rule(
            "area_code_valid",
            "validity",
            code.rlike(r"^\d{6}$") | ((F.col("level") == "township") & code.rlike(r"^\d{9}$")),
            "a 6-digit GB/T 2260 code (9 digits for a township)",
        ),
        Rule(
            "area_level_known",
            "validity",
            F.col("level").isin("province", "city", "county", "township"),
            "level is province, city, county or township",
        ),
        Rule(
            "area_parent_present",
            "completeness",
            (F.col("level") == "province") | F.col("parent_code").isNotNull(),
            "every area below the province names its parent",
        ),
    ]


def institution_rules() -> list[Rule]:
    """Rules for ``silver.institution``."""
    return [
        _present("institution_id", "institution"),
        _present("kind", "institution"),
        Rule(
            "institution_area_valid",
            "validity",
            F.col("area_code").rlike(r"^\d{6}(\d{3})?$"),
            "the area the institution sits in: a GB/T 2260 code (6 digits, 9 for a township)",
        ),
        _present("city_code", "institution"),
    ]


def procedure_rules(limits: Limits = DEFAULT_LIMITS) -> list[Rule]:
    """Rules for ``silver.procedure``."""
    return [
        _present("institution_id", "procedure"),
        _present("source_record_id", "procedure"),
        _present("source_patient_id", "procedure"),
        _present("code", "procedure"),
        Rule(
            "performed_time_present",
            "completeness",
            F.col("performed_time").isNotNull()
            | F.col("is_cancelled")
            | (F.coalesce(F.col("status"), F.lit("")) == "preparation"),
            "a procedure that took place (not cancelled, not only in preparation) says when",
        ),
        Rule(
            "performed_end_after_start",
            "consistency",
            F.col("performed_end_time").isNull()
            | F.col("performed_time").isNull()
            | (F.col("performed_end_time") >= F.col("performed_time")),
            "a procedure does not end before it starts",
        ),
        _not_after_arrival("procedure", ("performed_time", "performed_end_time"), limits),
    ]


def allergy_rules(limits: Limits = DEFAULT_LIMITS) -> list[Rule]:
    """Rules for ``silver.allergy`` (no time is required: an allergy's onset is often unknown)."""
    return [
        _present("institution_id", "allergy"),
        _present("source_record_id", "allergy"),
        _present("source_patient_id", "allergy"),
        Rule(
            "allergen_present",
            "completeness",
            F.col("code").isNotNull() | F.col("display").isNotNull(),
            "the substance is named (a code or a text)",
        ),
        Rule(
            "criticality_valid",
            "validity",
            F.col("criticality").isNull() | F.col("criticality").isin("low", "high", "unable-to-assess"),
            "criticality is low, high or unable-to-assess when given",
        ),
        Rule(
            "severity_valid",
            "validity",
            F.col("severity").isNull() | F.col("severity").isin("mild", "moderate", "severe"),
            "a reaction's severity is mild, moderate or severe when given",
        ),
        _not_after_arrival("allergy", (), limits),
    ]


def practitioner_rules() -> list[Rule]:
    """Rules for ``silver.practitioner``."""
    return [
        _present("institution_id", "practitioner"),
        _present("source_record_id", "practitioner"),
        _present("name", "practitioner"),
        Rule(
            "gender_valid",
            "validity",
            F.col("gender").isNull() | F.col("gender").isin("male", "female", "other", "unknown"),
            "gender is male, female, other or unknown when given (FHIR administrative gender)",
        ),
    ]


def organization_rules() -> list[Rule]:
    """Rules for ``silver.organization``."""
    return [
        _present("institution_id", "organization"),
        _present("source_record_id", "organization"),
        _present("name", "organization"),
    ]
