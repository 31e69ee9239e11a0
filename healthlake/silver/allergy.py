"""``silver.allergy``: a patient's allergies and intolerances (drugs, food, environment).

Sources: FHIR ``AllergyIntolerance`` resources; ``AL1`` segments of HL7 v2 ADT messages. An allergy
belongs to the patient, not to a visit: its HL7 key is the patient number and the AL1 set id. Values are
in FHIR's vocabularies (``category`` food | medication | environment | biologic, ``allergy_type``
allergy | intolerance, ``severity`` mild | moderate | severe); HL7's codes are mapped to them.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
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
    with_standard_hl7_delimiters,
)

_CODING = "struct<text: string, coding: array<struct<system: string, code: string, display: string>>>"
FHIR_ALLERGY_SCHEMA = (
    "id string, meta struct<lastUpdated: string>, "
    "clinicalStatus struct<coding: array<struct<code: string>>>, "
    "verificationStatus struct<coding: array<struct<code: string>>>, "
    f"type string, category array<string>, criticality string, code {_CODING}, "
    "patient struct<reference: string>, encounter struct<reference: string>, "
    "onsetDateTime string, onsetPeriod struct<start: string>, recordedDate string, "
    f"reaction array<struct<severity: string, manifestation: array<{_CODING}>>>"
)

HL7_ALLERGEN_CATEGORIES = {
    "DA": "medication",  # drug allergy
    "FA": "food",  # food allergy
    "EA": "environment",  # environmental allergy
    "AA": "environment",  # animal allergy
    "PA": "environment",  # plant allergy
    "LA": "environment",  # pollen allergy
}
"""HL7 table 0127 allergen types → FHIR category (MA miscellaneous allergy and MC miscellaneous
contraindication have none)."""
HL7_ALLERGY_TYPES = ("DA", "FA", "EA", "AA", "PA", "LA", "MA")
"""Allergen types of table 0127 that name an allergy (``allergy_type = allergy``; not MC, a
contraindication)."""
HL7_SEVERITIES = {"SV": "severe", "MO": "moderate", "MI": "mild"}
"""HL7 table 0128 allergy severity → FHIR reaction severity (U, unknown, gives NULL)."""


def _lookup(mapping: dict[str, str], key: Column) -> Column:
    return F.create_map(*[F.lit(x) for kv in mapping.items() for x in kv])[F.upper(key)]


def from_fhir(resources: DataFrame) -> DataFrame:
    """Allergies from ``bronze.fhir_resources`` change rows (``resource_type = 'AllergyIntolerance'``).

    The category is the first one listed; severity and reaction are those of the first reaction (its first
    manifestation's text, else its display). Verification status ``entered-in-error`` cancels it.
    """
    a = F.col("_a")
    coding = F.try_element_at(a["code"]["coding"], F.lit(1))
    reaction = F.try_element_at(a["reaction"], F.lit(1))
    manifestation = F.try_element_at(reaction["manifestation"], F.lit(1))
    verification = F.try_element_at(a["verificationStatus"]["coding"], F.lit(1))["code"]
    return (
        resources.where(F.col("resource_type") == "AllergyIntolerance")
        .withColumn("_a", F.from_json("raw", FHIR_ALLERGY_SCHEMA))
        .select(
            F.col("_institution_id").alias("institution_id"),
            a["id"].alias("source_record_id"),
            fhir_reference_id(a["patient"]["reference"]).alias("source_patient_id"),
            fhir_reference_id(a["encounter"]["reference"]).alias("source_encounter_id"),
            code_system_name(coding["system"]).alias("code_system"),
            coding["code"].alias("code"),
            F.coalesce(coding["display"], a["code"]["text"]).alias("display"),
            F.try_element_at(a["category"], F.lit(1)).alias("category"),
            a["type"].alias("allergy_type"),
            a["criticality"].alias("criticality"),
            reaction["severity"].alias("severity"),
            F.coalesce(
                manifestation["text"], F.try_element_at(manifestation["coding"], F.lit(1))["display"]
            ).alias("reaction"),
            F.try_element_at(a["clinicalStatus"]["coding"], F.lit(1))["code"].alias("clinical_status"),
            verification.alias("verification_status"),
            fhir_time(F.coalesce(a["onsetDateTime"], a["onsetPeriod"]["start"])).alias("onset_time"),
            fhir_time(a["recordedDate"]).alias("recorded_time"),
            (F.coalesce(verification, F.lit("")) == "entered-in-error").alias("is_cancelled"),
            F.coalesce(fhir_time(a["meta"]["lastUpdated"]), F.col("_ingested_at")).alias("_event_time"),
            *bronze_provenance(BRONZE_FHIR_RESOURCES),
        )
    )


def from_hl7v2(messages: DataFrame) -> DataFrame:
    """Allergies from the ``AL1`` segments of ADT messages; key: patient number and AL1 set id.

    ``AL1-2`` allergen type (table 0127 → category and type), ``AL1-3`` allergen (code, text, coding
    system), ``AL1-4`` severity (table 0128), ``AL1-5`` reaction (first one), ``AL1-6`` identification
    date (FHIR's onset, "when the allergy was identified"). An AL1 is never cancelled by its message: an
    ``A11`` cancels the admission, not the patient's allergy.
    """
    al1 = F.col("_al1")
    patient = hl7_patient_number(F.col("raw"))
    allergen = hl7_field(al1, 3)
    allergen_type = hl7_component(hl7_field(al1, 2), 1)
    reaction = hl7_field(al1, 5)
    return (
        messages.where(F.col("message_type").startswith("ADT^"))
        .transform(with_standard_hl7_delimiters)
        .transform(lambda df: each_hl7_segment(df, "AL1", "_al1"))
        .select(
            F.col("_institution_id").alias("institution_id"),
            F.when(patient.isNotNull(), hl7_segment_record_id(patient, "AL1", al1)).alias("source_record_id"),
            patient.alias("source_patient_id"),
            F.lit(None).cast("string").alias("source_encounter_id"),
            code_system_name(hl7_component(allergen, 3)).alias("code_system"),
            hl7_component(allergen, 1).alias("code"),
            hl7_component(allergen, 2).alias("display"),
            _lookup(HL7_ALLERGEN_CATEGORIES, allergen_type).alias("category"),
            F.when(F.upper(allergen_type).isin(*HL7_ALLERGY_TYPES), F.lit("allergy")).alias("allergy_type"),
            F.lit(None).cast("string").alias("criticality"),
            _lookup(HL7_SEVERITIES, hl7_component(hl7_field(al1, 4), 1)).alias("severity"),
            # AL1-5 comes as plain text or coded (code^text^system): the text component, else the value.
            F.coalesce(hl7_component(reaction, 2), hl7_component(reaction, 1)).alias("reaction"),
            F.lit(None).cast("string").alias("clinical_status"),
            F.lit(None).cast("string").alias("verification_status"),
            hl7_time(hl7_field(al1, 6)).alias("onset_time"),
            F.lit(None).cast("timestamp").alias("recorded_time"),
            F.lit(False).alias("is_cancelled"),
            F.coalesce(hl7_time(F.col("message_time")), F.col("_ingested_at")).alias("_event_time"),
            *bronze_provenance(BRONZE_HL7V2_MESSAGES),
        )
    )
