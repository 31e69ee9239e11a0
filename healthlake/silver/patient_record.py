"""``silver.patient_record``: one row per source patient record (an institution's own patient number).

Sources: FHIR ``Patient`` resources; the ``PID`` segment of HL7 v2 ADT messages; CSV health records, the
population registry, nucleic-acid tests, isolation orders and vaccinations (public-health bodies have no
separate patient file: each row names its person); and the clinic visits and chronic-disease follow-ups,
whose rows name their patient (number, name, ID number) too. Those two are *partial* records (no sex,
birth date or address): they make a patient known to the EMPI when nothing fuller came, and never replace
a fuller record of the same patient number (``PRECEDENCE``). Identifiers are validated here and then
replaced by tokens (``healthlake.privacy``); the clear values go to ``vault.identity`` only.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from healthlake.catalog import BRONZE_CSV_RECORDS, BRONZE_FHIR_RESOURCES, BRONZE_HL7V2_MESSAGES
from healthlake.silver.common import (
    bronze_provenance,
    case_of,
    csv_value,
    fhir_time,
    hl7_component,
    hl7_date,
    hl7_field,
    hl7_repetition_with,
    hl7_segment,
    hl7_time,
    hl7_value,
    local_time,
    with_standard_hl7_delimiters,
)
from healthlake.silver.identifiers import (
    birth_date_from_resident_id,
    normalize_phone,
    normalize_resident_id,
    normalize_sex,
    resident_id_problem,
    sex_from_resident_id,
)

IDENTIFIER_COLUMNS = ("resident_id", "name", "phone", "address", "insurance_no")
"""Direct identifiers: tokenised in silver, clear only in ``vault.identity``."""

PARSED_COLUMNS = (
    "institution_id",
    "source_record_id",
    "record_source",
    *IDENTIFIER_COLUMNS,
    "sex",
    "birth_date",
    "area_code",
    "_event_time",
)

FHIR_PATIENT_SCHEMA = (
    "id string, meta struct<lastUpdated: string>, active boolean, gender string, birthDate string, "
    "identifier array<struct<system: string, value: string, "
    "type: struct<coding: array<struct<code: string>>>>>, "
    "name array<struct<use: string, text: string, family: string, given: array<string>>>, "
    "telecom array<struct<system: string, value: string>>, "
    "address array<struct<text: string, line: array<string>, district: string, city: string, "
    "postalCode: string, "
    "extension: array<struct<url: string, valueString: string>>>>"
)
RESIDENT_ID_SYSTEM = "urn:healthlake:id:cn-resident"
INSURANCE_SYSTEM = "urn:healthlake:id:cn-medical-insurance"
AREA_CODE_EXTENSION = "urn:healthlake:fhir:area-code"


def _identifier(identifiers: Column, system: str, type_code: str) -> Column:
    """The value of the first identifier with this system or this v2-0203 type code."""
    match = F.filter(
        identifiers,
        lambda i: (
            (i["system"] == system) | (F.try_element_at(i["type"]["coding"], F.lit(1))["code"] == type_code)
        ),
    )
    return F.try_element_at(match, F.lit(1))["value"]


def from_fhir(resources: DataFrame) -> DataFrame:
    """Patient records from ``bronze.fhir_resources`` change rows (``resource_type = 'Patient'``)."""
    p = F.col("_p")
    name = F.try_element_at(p["name"], F.lit(1))
    address = F.try_element_at(p["address"], F.lit(1))
    phones = F.filter(p["telecom"], lambda t: t["system"] == "phone")
    area = F.try_element_at(
        F.filter(address["extension"], lambda e: e["url"] == AREA_CODE_EXTENSION), F.lit(1)
    )
    given = F.array_join(F.coalesce(name["given"], F.array()), " ")
    full_name = F.coalesce(
        name["text"],
        # Chinese names are written family name first without a space; others given name first.
        F.when(F.col("_family_is_cjk"), F.concat_ws("", name["family"], given)).otherwise(
            F.concat_ws(" ", given, name["family"])
        ),
    )
    return (
        resources.where(F.col("resource_type") == "Patient")
        .withColumn("_p", F.from_json("raw", FHIR_PATIENT_SCHEMA))
        .withColumn("_family_is_cjk", F.try_element_at(p["name"], F.lit(1))["family"].rlike(r"^\p{IsHan}"))
        .select(
            F.col("_institution_id").alias("institution_id"),
            p["id"].alias("source_record_id"),
            F.lit("fhir_patient").alias("record_source"),
            _identifier(p["identifier"], RESIDENT_ID_SYSTEM, "NI").alias("resident_id"),
            F.nullif(full_name, F.lit("")).alias("name"),
            F.try_element_at(phones, F.lit(1))["value"].alias("phone"),
            F.coalesce(address["text"], F.array_join(address["line"], " ")).alias("address"),
            _identifier(p["identifier"], INSURANCE_SYSTEM, "SN").alias("insurance_no"),
            normalize_sex(p["gender"]).alias("sex"),
            F.try_to_date(p["birthDate"]).alias("birth_date"),
            area["valueString"].alias("area_code"),
            F.coalesce(fhir_time(p["meta"]["lastUpdated"]), F.col("_ingested_at")).alias("_event_time"),
            *bronze_provenance(BRONZE_FHIR_RESOURCES),
        )
    )


def from_hl7v2(messages: DataFrame) -> DataFrame:
    """Patient records from the ``PID`` segment of ADT messages in ``bronze.hl7v2_messages`` change rows.

    Only ADT messages (admit, register, update, …) state demographics; the ``PID`` of a result message
    (ORU) identifies the patient and may be sparse, so it must not overwrite the record.
    """
    pid = F.col("_pid")
    ids = hl7_field(pid, 3)
    mrn = hl7_repetition_with(ids, 5, "MR")
    ni = hl7_repetition_with(ids, 5, "NI")
    sn = hl7_repetition_with(ids, 5, "SN")
    family = hl7_component(hl7_field(pid, 5), 1)
    given = hl7_component(hl7_field(pid, 5), 2)
    family_is_cjk = family.rlike(r"^\p{IsHan}")
    street = hl7_component(hl7_field(pid, 11), 1)
    return (
        messages.where(F.col("message_type").startswith("ADT^"))
        .transform(with_standard_hl7_delimiters)
        .withColumn("_pid", hl7_segment(F.col("raw"), "PID"))
        .where(F.col("_pid").isNotNull())
        .select(
            F.col("_institution_id").alias("institution_id"),
            # PID-3 repetition typed MR is the institution's patient number; else the first repetition.
            F.coalesce(hl7_value(F.try_element_at(mrn, F.lit(1))), hl7_component(ids, 1)).alias(
                "source_record_id"
            ),
            F.lit("hl7_pid").alias("record_source"),
            hl7_value(F.try_element_at(ni, F.lit(1))).alias("resident_id"),
            F.when(family_is_cjk, F.concat_ws("", family, given))
            .otherwise(F.nullif(F.concat_ws(" ", given, family), F.lit("")))
            .alias("name"),
            hl7_component(hl7_field(pid, 13), 1).alias("phone"),
            street.alias("address"),
            hl7_value(F.try_element_at(sn, F.lit(1))).alias("insurance_no"),
            normalize_sex(hl7_field(pid, 8)).alias("sex"),
            hl7_date(hl7_field(pid, 7)).alias("birth_date"),
            # PID-11.9 county/parish code: the area code in Chinese HL7 profiles.
            hl7_component(hl7_field(pid, 11), 9).alias("area_code"),
            F.coalesce(hl7_time(F.col("message_time")), F.col("_ingested_at")).alias("_event_time"),
            *bronze_provenance(BRONZE_HL7V2_MESSAGES),
        )
    )


_CSV_SOURCES: dict[str, tuple[str, str, str | tuple[str, ...] | None]] = {
    # extract: (record id column, record_source, event time column(s), the first stated)
    "health_records": ("patient_no", "csv_health_record", "updated_at"),
    "population_registry": ("registry_no", "csv_registry", None),
    # A pooled member's row has no report time of its own: its sampling time is the record's time.
    "nat_tests": ("person_no", "csv_nat_test", ("report_time", "sample_time")),
    "vaccinations": ("person_no", "csv_vaccination", "vaccinated_at"),
    "isolation_orders": ("person_no", "csv_isolation_order", "start_time"),
    "visits": ("patient_no", "csv_visit", "updated_at"),
    "followups": ("patient_no", "csv_followup", "followup_date"),
}
PARTIAL_SOURCES = ("csv_visit", "csv_followup")
"""Record sources that name a patient in passing (an event row), not a patient file."""
PRECEDENCE = f"CASE WHEN {{r}}record_source IN {PARTIAL_SOURCES} THEN 0 ELSE 1 END"
"""A fuller record outranks a partial one of the same key whatever their times (``Entity.precedence``)."""


def from_csv(records: DataFrame) -> DataFrame:
    """Patient records from ``bronze.csv_records`` change rows of the extracts that name persons.

    One projection over all those extracts (their id, source and time columns chosen per row by
    ``extract``), not a union of one per extract: the standardisation, tokens and rules after it would
    be planned, generated and JIT-compiled once per branch of a union.
    """
    extract = F.col("extract")
    times = {
        name: (time_cols,) if isinstance(time_cols, str) else time_cols or ()
        for name, (_, _, time_cols) in _CSV_SOURCES.items()
    }
    event = case_of(
        extract,
        {
            name: F.coalesce(*(local_time(csv_value(c)) for c in names), F.lit(None).cast("timestamp"))
            for name, names in times.items()
        },
    )
    return records.where(extract.isin(*_CSV_SOURCES)).select(
        F.col("_institution_id").alias("institution_id"),
        case_of(extract, {name: csv_value(id_col) for name, (id_col, _, _) in _CSV_SOURCES.items()}).alias(
            "source_record_id"
        ),
        case_of(extract, {name: F.lit(source) for name, (_, source, _) in _CSV_SOURCES.items()}).alias(
            "record_source"
        ),
        csv_value("id_number").alias("resident_id"),
        csv_value("name").alias("name"),
        csv_value("phone").alias("phone"),
        csv_value("address").alias("address"),
        csv_value("insurance_no").alias("insurance_no"),
        normalize_sex(csv_value("sex")).alias("sex"),
        F.try_to_date(csv_value("birth_date")).alias("birth_date"),
        csv_value("township_code").alias("area_code"),
        F.coalesce(event, F.col("_ingested_at")).alias("_event_time"),
        *bronze_provenance(BRONZE_CSV_RECORDS),
    )


def standardize_patient_records(parsed: DataFrame) -> DataFrame:
    """Normalise identifiers and check them against the stated sex and birth date.

    Adds ``resident_id_valid``, ``resident_id_problem``, ``birth_date_matches_id`` and
    ``sex_matches_id`` (NULL when either side is unknown). Identifiers stay in clear: tokenise next.
    """
    rid = F.col("resident_id")
    return (
        parsed.withColumn("resident_id", normalize_resident_id(rid))
        .withColumn("phone", normalize_phone(F.col("phone")))
        .withColumn("name", F.nullif(F.regexp_replace(F.trim("name"), r"\s+", " "), F.lit("")))
        .withColumn("address", F.nullif(F.trim("address"), F.lit("")))
        .withColumn("insurance_no", F.nullif(F.upper(F.trim("insurance_no")), F.lit("")))
        .withColumn("resident_id_problem", resident_id_problem(rid))
        .withColumn("resident_id_valid", F.col("resident_id_problem").isNull())
        .withColumn(
            "birth_date_matches_id",
            F.when(F.col("resident_id_valid"), F.col("birth_date") == birth_date_from_resident_id(rid)),
        )
        .withColumn(
            "sex_matches_id", F.when(F.col("resident_id_valid"), F.col("sex") == sex_from_resident_id(rid))
        )
        .withColumn("source_patient_id", F.col("source_record_id"))
    )
