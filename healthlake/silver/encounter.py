"""``silver.encounter``: outpatient, emergency and inpatient encounters, whatever feed they came in.

Sources: FHIR ``Encounter`` resources; HL7 v2 ADT messages (A01 admit, A04 register, A02 transfer,
A03 discharge, A08 update, A11 cancel admit; ``PV1``); CSV ``visits`` rows of grassroots clinics. Each new
version of an encounter (a later FHIR ``meta.lastUpdated``, a later ADT message, a CSV row with a later
``updated_at``) replaces the earlier one by event time; cancellations keep the row with
``is_cancelled = true``.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from healthlake.catalog import BRONZE_CSV_RECORDS, BRONZE_FHIR_RESOURCES, BRONZE_HL7V2_MESSAGES
from healthlake.silver.common import (
    bronze_provenance,
    csv_value,
    fhir_reference_id,
    fhir_time,
    hl7_component,
    hl7_field,
    hl7_patient_number,
    hl7_segment,
    hl7_time,
    hl7_trigger,
    local_time,
    with_standard_hl7_delimiters,
)

CLASSES = ("outpatient", "emergency", "inpatient", "other")

FHIR_ENCOUNTER_SCHEMA = (
    "id string, status string, meta struct<lastUpdated: string>, class struct<code: string>, "
    "type array<struct<text: string, coding: array<struct<display: string>>>>, "
    "subject struct<reference: string>, period struct<start: string, end: string>, "
    "hospitalization struct<dischargeDisposition: "
    "struct<text: string, coding: array<struct<code: string>>>>, "
    "serviceProvider struct<reference: string>"
)


def encounter_class(code: Column) -> Column:
    """Map a FHIR v3 ActCode, an HL7 PV1-2 patient class or a Chinese visit type to ``CLASSES``."""
    c = F.upper(F.trim(code))
    return (
        F.when(c.isin("AMB", "O", "门诊", "OUTPATIENT", "VR", "HH", "R"), F.lit("outpatient"))
        .when(c.isin("EMER", "E", "急诊", "EMERGENCY"), F.lit("emergency"))
        .when(c.isin("IMP", "I", "ACUTE", "NONAC", "住院", "INPATIENT", "OBSENC"), F.lit("inpatient"))
        .when(c.isNotNull(), F.lit("other"))
    )


def from_fhir(resources: DataFrame) -> DataFrame:
    """Encounters from ``bronze.fhir_resources`` change rows (``resource_type = 'Encounter'``)."""
    e = F.col("_e")
    kind = F.try_element_at(e["type"], F.lit(1))
    disposition = e["hospitalization"]["dischargeDisposition"]
    return (
        resources.where(F.col("resource_type") == "Encounter")
        .withColumn("_e", F.from_json("raw", FHIR_ENCOUNTER_SCHEMA))
        .select(
            F.col("_institution_id").alias("institution_id"),
            e["id"].alias("source_record_id"),
            fhir_reference_id(e["subject"]["reference"]).alias("source_patient_id"),
            encounter_class(e["class"]["code"]).alias("encounter_class"),
            e["status"].alias("status"),
            e["status"].isin("cancelled", "entered-in-error").alias("is_cancelled"),
            fhir_time(e["period"]["start"]).alias("admit_time"),
            fhir_time(e["period"]["end"]).alias("discharge_time"),
            F.coalesce(kind["text"], F.try_element_at(kind["coding"], F.lit(1))["display"]).alias(
                "department"
            ),
            F.coalesce(F.try_element_at(disposition["coding"], F.lit(1))["code"], disposition["text"]).alias(
                "discharge_disposition"
            ),
            F.coalesce(fhir_time(e["meta"]["lastUpdated"]), F.col("_ingested_at")).alias("_event_time"),
            *bronze_provenance(BRONZE_FHIR_RESOURCES),
        )
    )


# A04 registers an outpatient or emergency visit, which the report of it closes: finished.
_ADT_STATUS = {
    "A01": "in-progress",
    "A02": "in-progress",
    "A03": "finished",
    "A04": "finished",
    "A11": "cancelled",
}


def from_hl7v2(messages: DataFrame) -> DataFrame:
    """Encounters from ADT messages of ``bronze.hl7v2_messages`` change rows (``PV1``)."""
    pv1 = F.col("_pv1")
    trigger = hl7_trigger()
    status = F.lit(None).cast("string")
    for event, value in _ADT_STATUS.items():
        status = F.when(trigger == event, F.lit(value)).otherwise(status)
    # A08 (update) says nothing about the status: finished once the encounter has an end.
    discharge = hl7_time(hl7_field(pv1, 45))
    status = F.coalesce(
        status, F.when(discharge.isNotNull(), F.lit("finished")).otherwise(F.lit("in-progress"))
    )
    return (
        messages.where(F.col("message_type").startswith("ADT^"))
        .transform(with_standard_hl7_delimiters)
        .withColumn("_pv1", hl7_segment(F.col("raw"), "PV1"))
        .where(F.col("_pv1").isNotNull())
        .select(
            F.col("_institution_id").alias("institution_id"),
            hl7_component(hl7_field(pv1, 19), 1).alias("source_record_id"),
            hl7_patient_number(F.col("raw")).alias("source_patient_id"),
            encounter_class(hl7_field(pv1, 2)).alias("encounter_class"),
            status.alias("status"),
            (trigger == "A11").alias("is_cancelled"),
            hl7_time(hl7_field(pv1, 44)).alias("admit_time"),
            discharge.alias("discharge_time"),
            hl7_component(hl7_field(pv1, 10), 1).alias("department"),
            hl7_component(hl7_field(pv1, 36), 1).alias("discharge_disposition"),
            F.coalesce(hl7_time(F.col("message_time")), F.col("_ingested_at")).alias("_event_time"),
            *bronze_provenance(BRONZE_HL7V2_MESSAGES),
        )
    )


def from_csv(records: DataFrame) -> DataFrame:
    """Encounters from ``visits`` rows of ``bronze.csv_records`` change rows."""
    record_status = F.lower(csv_value("record_status"))
    visit_time = local_time(csv_value("visit_time"))
    return records.where(F.col("extract") == "visits").select(
        F.col("_institution_id").alias("institution_id"),
        csv_value("visit_id").alias("source_record_id"),
        csv_value("patient_no").alias("source_patient_id"),
        encounter_class(csv_value("visit_type")).alias("encounter_class"),
        F.when(record_status == "cancelled", F.lit("cancelled")).otherwise(F.lit("finished")).alias("status"),
        (F.coalesce(record_status, F.lit("")) == "cancelled").alias("is_cancelled"),
        visit_time.alias("admit_time"),
        F.lit(None).cast("timestamp").alias("discharge_time"),
        csv_value("department").alias("department"),
        F.lit(None).cast("string").alias("discharge_disposition"),
        F.coalesce(local_time(csv_value("updated_at")), visit_time, F.col("_ingested_at")).alias(
            "_event_time"
        ),
        *bronze_provenance(BRONZE_CSV_RECORDS),
    )
