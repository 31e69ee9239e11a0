"""``silver.diagnosis``: diagnoses (ICD-10 and other code systems) linked to their encounter.

Sources: FHIR ``Condition`` resources; ``DG1`` segments of HL7 v2 ADT messages; the diagnosis columns of
CSV ``visits`` rows. ICD-10 codes are normalised (dot, case, Chinese clinical extensions such as
``I10.x00``) to ``icd10_code`` and ``icd10_category``; the code as sent is kept in ``code``.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from healthlake.catalog import BRONZE_CSV_RECORDS, BRONZE_FHIR_RESOURCES, BRONZE_HL7V2_MESSAGES
from healthlake.silver.codes import icd10_category, icd10_code
from healthlake.silver.common import (
    bronze_provenance,
    csv_value,
    each_hl7_segment,
    fhir_reference_id,
    fhir_time,
    hl7_component,
    hl7_field,
    hl7_patient_number,
    hl7_segment_record_id,
    hl7_time,
    hl7_trigger,
    hl7_unescape,
    hl7_visit_number,
    local_time,
    with_standard_hl7_delimiters,
)

ICD10 = "ICD-10"
_SYSTEMS = {
    "http://hl7.org/fhir/sid/icd-10": ICD10,
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://snomed.info/sct": "SNOMED CT",
    "I10": ICD10,  # HL7 table 0396
    "ICD10": ICD10,
    "SCT": "SNOMED CT",
}

FHIR_CONDITION_SCHEMA = (
    "id string, meta struct<lastUpdated: string>, "
    "code struct<text: string, coding: array<struct<system: string, code: string, display: string>>>, "
    "subject struct<reference: string>, encounter struct<reference: string>, "
    "verificationStatus struct<coding: array<struct<code: string>>>, "
    "onsetDateTime string, recordedDate string"
)
ENCOUNTER_DIAGNOSIS_SCHEMA = "diagnosis array<struct<condition: struct<reference: string>, rank: int>>"


def code_system(system: Column) -> Column:
    """A short name for a code system URI or HL7 coding-system id (the value itself when unknown)."""
    out = system
    for uri, name in _SYSTEMS.items():
        out = F.when(system == uri, F.lit(name)).otherwise(out)
    return out


def _with_codes(df: DataFrame) -> DataFrame:
    is_icd = F.col("code_system") == ICD10
    return df.withColumns(
        {
            "icd10_code": F.when(is_icd, icd10_code(F.col("code"))),
            "icd10_category": F.when(is_icd, icd10_category(F.col("code"))),
        }
    )


def from_fhir(resources: DataFrame) -> DataFrame:
    """Diagnoses from ``bronze.fhir_resources`` change rows (``resource_type = 'Condition'``).

    FHIR ranks diagnoses on the Encounter (``Encounter.diagnosis.rank``), not on the Condition: a
    Condition is primary when an Encounter of the same rows ranks it 1 (NULL when none ranks it).
    """
    c = F.col("_c")
    # Prefer an ICD-10 coding when the resource carries several.
    codings = c["code"]["coding"]
    icd = F.try_element_at(F.filter(codings, lambda x: code_system(x["system"]) == ICD10), F.lit(1))
    coding = F.coalesce(icd, F.try_element_at(codings, F.lit(1)))
    status = F.try_element_at(c["verificationStatus"]["coding"], F.lit(1))["code"]
    ranks = (
        resources.where(F.col("resource_type") == "Encounter")
        .select(
            "_institution_id",
            F.explode(F.from_json("raw", ENCOUNTER_DIAGNOSIS_SCHEMA)["diagnosis"]).alias("_d"),
            "_bundle_refs",
        )
        .select(
            F.col("_institution_id").alias("_rank_institution"),
            fhir_reference_id(F.col("_d")["condition"]["reference"]).alias("_rank_condition"),
            F.col("_d")["rank"].alias("_rank"),
        )
        .groupBy("_rank_institution", "_rank_condition")
        .agg(F.min("_rank").alias("_rank"))
    )
    conditions = (
        resources.where(F.col("resource_type") == "Condition")
        .withColumn("_c", F.from_json("raw", FHIR_CONDITION_SCHEMA))
        .select(
            F.col("_institution_id").alias("institution_id"),
            c["id"].alias("source_record_id"),
            fhir_reference_id(c["subject"]["reference"]).alias("source_patient_id"),
            fhir_reference_id(c["encounter"]["reference"]).alias("source_encounter_id"),
            code_system(coding["system"]).alias("code_system"),
            coding["code"].alias("code"),
            F.coalesce(coding["display"], c["code"]["text"]).alias("diagnosis_text"),
            fhir_time(F.coalesce(c["recordedDate"], c["onsetDateTime"])).alias("diagnosis_time"),
            (F.coalesce(status, F.lit("")) == "entered-in-error").alias("is_cancelled"),
            F.coalesce(fhir_time(c["meta"]["lastUpdated"]), F.col("_ingested_at")).alias("_event_time"),
            *bronze_provenance(BRONZE_FHIR_RESOURCES),
        )
    )
    on = (F.col("institution_id") == F.col("_rank_institution")) & (
        F.col("source_record_id") == F.col("_rank_condition")
    )
    return (
        conditions.join(ranks, on, "left")
        .withColumn("is_primary", F.when(F.col("_rank").isNotNull(), F.col("_rank") == 1))
        .drop("_rank_institution", "_rank_condition", "_rank")
        .transform(_with_codes)
    )


def from_hl7v2(messages: DataFrame) -> DataFrame:
    """Diagnoses from the ``DG1`` segments of ADT messages; key: visit number and DG1 set id."""
    dg1 = F.col("_dg1")
    visit = hl7_visit_number(F.col("raw"))
    trigger = hl7_trigger()
    priority = hl7_field(dg1, 15)
    return (
        messages.where(F.col("message_type").startswith("ADT^"))
        .transform(with_standard_hl7_delimiters)
        .transform(lambda df: each_hl7_segment(df, "DG1", "_dg1"))
        .select(
            F.col("_institution_id").alias("institution_id"),
            hl7_segment_record_id(visit, "DG1", dg1).alias("source_record_id"),
            hl7_patient_number(F.col("raw")).alias("source_patient_id"),
            visit.alias("source_encounter_id"),
            code_system(hl7_component(hl7_field(dg1, 3), 3)).alias("code_system"),
            hl7_component(hl7_field(dg1, 3), 1).alias("code"),
            F.coalesce(hl7_component(hl7_field(dg1, 3), 2), hl7_unescape(hl7_field(dg1, 4))).alias(
                "diagnosis_text"
            ),
            # DG1-15 priority 1 is the primary diagnosis; without it, the first DG1 is.
            F.coalesce(priority == "1", F.col("_n") == 0).alias("is_primary"),
            hl7_time(hl7_field(dg1, 5)).alias("diagnosis_time"),
            (trigger == "A11").alias("is_cancelled"),
            F.coalesce(hl7_time(F.col("message_time")), F.col("_ingested_at")).alias("_event_time"),
            *bronze_provenance(BRONZE_HL7V2_MESSAGES),
        )
        .transform(_with_codes)
    )


def _csv_secondary(codes: Column) -> Column:
    return F.filter(F.split(F.coalesce(codes, F.lit("")), r"[;|；、\s]+"), lambda c: c != "")


def from_csv(records: DataFrame) -> DataFrame:
    """Diagnoses from the ``diagnosis_code`` and ``secondary_diagnosis_codes`` of CSV ``visits`` rows."""
    visits = records.where(F.col("extract") == "visits")
    codes = F.concat(
        F.array(csv_value("diagnosis_code")), _csv_secondary(csv_value("secondary_diagnosis_codes"))
    )
    record_status = F.coalesce(F.lower(csv_value("record_status")), F.lit(""))
    visit_time = local_time(csv_value("visit_time"))
    return (
        visits.select("*", F.posexplode(codes).alias("_n", "_code"))
        .where(F.col("_code").isNotNull())
        .select(
            F.col("_institution_id").alias("institution_id"),
            F.concat(csv_value("visit_id"), F.lit("-dx"), (F.col("_n") + 1).cast("string")).alias(
                "source_record_id"
            ),
            csv_value("patient_no").alias("source_patient_id"),
            csv_value("visit_id").alias("source_encounter_id"),
            F.lit(ICD10).alias("code_system"),
            F.col("_code").alias("code"),
            F.when(F.col("_n") == 0, csv_value("diagnosis_name")).alias("diagnosis_text"),
            (F.col("_n") == 0).alias("is_primary"),
            visit_time.alias("diagnosis_time"),
            (record_status == "cancelled").alias("is_cancelled"),
            F.coalesce(local_time(csv_value("updated_at")), visit_time, F.col("_ingested_at")).alias(
                "_event_time"
            ),
            *bronze_provenance(BRONZE_CSV_RECORDS),
        )
        .transform(_with_codes)
    )
