"""``silver.procedure``: procedures performed on a patient (operations, biopsies, imaging, counselling …).

Sources: FHIR ``Procedure`` resources; ``PR1`` segments of HL7 v2 ADT messages. The code is kept as sent
with its code system's short name (``SNOMED CT``, ``ICD-10-PCS``, ``ICD-9-CM``, ``CPT`` …; see
``healthlake.silver.codes.CODE_SYSTEMS``).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from healthlake.catalog import BRONZE_FHIR_RESOURCES, BRONZE_HL7V2_MESSAGES
from healthlake.silver.codes import code_system_name
from healthlake.silver.common import (
    bronze_provenance,
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
    with_standard_hl7_delimiters,
)

FHIR_PROCEDURE_SCHEMA = (
    "id string, status string, meta struct<lastUpdated: string>, "
    "code struct<text: string, coding: array<struct<system: string, code: string, display: string>>>, "
    "subject struct<reference: string>, encounter struct<reference: string>, "
    "performedDateTime string, performedPeriod struct<start: string, end: string>"
)
CANCELLED_STATUSES = ("entered-in-error", "not-done")
"""FHIR statuses of a procedure that did not take place: the row stays, flagged ``is_cancelled``."""


def from_fhir(resources: DataFrame) -> DataFrame:
    """Procedures from ``bronze.fhir_resources`` change rows (``resource_type = 'Procedure'``).

    The performed time is ``performedDateTime``, else ``performedPeriod.start``; a period's end is
    ``performed_end_time``. Status ``entered-in-error`` or ``not-done`` makes it cancelled.
    """
    p = F.col("_p")
    coding = F.try_element_at(p["code"]["coding"], F.lit(1))
    return (
        resources.where(F.col("resource_type") == "Procedure")
        .withColumn("_p", F.from_json("raw", FHIR_PROCEDURE_SCHEMA))
        .select(
            F.col("_institution_id").alias("institution_id"),
            p["id"].alias("source_record_id"),
            fhir_reference_id(p["subject"]["reference"]).alias("source_patient_id"),
            fhir_reference_id(p["encounter"]["reference"]).alias("source_encounter_id"),
            code_system_name(coding["system"]).alias("code_system"),
            coding["code"].alias("code"),
            F.coalesce(coding["display"], p["code"]["text"]).alias("display"),
            fhir_time(F.coalesce(p["performedDateTime"], p["performedPeriod"]["start"])).alias(
                "performed_time"
            ),
            fhir_time(p["performedPeriod"]["end"]).alias("performed_end_time"),
            p["status"].alias("status"),
            F.coalesce(p["status"].isin(*CANCELLED_STATUSES), F.lit(False)).alias("is_cancelled"),
            F.coalesce(fhir_time(p["meta"]["lastUpdated"]), F.col("_ingested_at")).alias("_event_time"),
            *bronze_provenance(BRONZE_FHIR_RESOURCES),
        )
    )


def from_hl7v2(messages: DataFrame) -> DataFrame:
    """Procedures from the ``PR1`` segments of ADT messages; key: visit number and PR1 set id.

    ``PR1-3`` is the procedure (code, text, coding system; the text else ``PR1-4``), ``PR1-5`` when it
    was performed. A PR1 has no status: it is cancelled when its message is a cancelled admission
    (``A11``) or its action code ``PR1-20`` is ``D`` (delete). Without a visit number (``PV1-19``) the
    procedure has no key and is quarantined (``source_record_id_present``) rather than given one that
    every such procedure of the institution would share.
    """
    pr1 = F.col("_pr1")
    visit = hl7_visit_number(F.col("raw"))
    procedure = hl7_field(pr1, 3)
    return (
        messages.where(F.col("message_type").startswith("ADT^"))
        .transform(with_standard_hl7_delimiters)
        .transform(lambda df: each_hl7_segment(df, "PR1", "_pr1"))
        .select(
            F.col("_institution_id").alias("institution_id"),
            F.when(visit.isNotNull(), hl7_segment_record_id(visit, "PR1", pr1)).alias("source_record_id"),
            hl7_patient_number(F.col("raw")).alias("source_patient_id"),
            visit.alias("source_encounter_id"),
            code_system_name(hl7_component(procedure, 3)).alias("code_system"),
            hl7_component(procedure, 1).alias("code"),
            F.coalesce(hl7_component(procedure, 2), hl7_unescape(hl7_field(pr1, 4))).alias("display"),
            hl7_time(hl7_field(pr1, 5)).alias("performed_time"),
            F.lit(None).cast("timestamp").alias("performed_end_time"),
            F.lit(None).cast("string").alias("status"),
            ((hl7_trigger() == "A11") | F.coalesce(hl7_field(pr1, 20) == "D", F.lit(False))).alias(
                "is_cancelled"
            ),
            F.coalesce(hl7_time(F.col("message_time")), F.col("_ingested_at")).alias("_event_time"),
            *bronze_provenance(BRONZE_HL7V2_MESSAGES),
        )
    )
