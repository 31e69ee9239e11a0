"""Silver tables of public-health and follow-up events: ``nat_test``, ``nat_pool``, ``isolation_order``,
``immunization``, ``medication``, ``chronic_followup`` and ``location_event``.

Sources: CSV ``nat_tests`` and ``nat_pools`` (CDC labs), CSV ``isolation_orders`` (CDC), CSV
``vaccinations`` and FHIR ``Immunization``, FHIR ``MedicationRequest``, CSV ``followups`` (grassroots
chronic-disease follow-ups; their measurements go to ``silver.observation``), and
``bronze.location_pings`` (telecom operator; the phone is tokenised).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from healthlake.catalog import BRONZE_CSV_RECORDS, BRONZE_FHIR_RESOURCES, BRONZE_LOCATION_PINGS
from healthlake.silver.common import bronze_provenance, csv_value, fhir_reference_id, fhir_time, local_time

# Chronic diseases under regular management (national basic public health service) → ICD-10 category.
FOLLOWUP_DISEASES = {"原发性高血压": "I10", "高血压": "I10", "2型糖尿病": "E11", "糖尿病": "E11"}


def _nat_result(value: Column) -> Column:
    v = F.lower(F.trim(value))
    return (
        F.when(v.isin("阳性", "positive", "pos", "+", "detected"), F.lit("positive"))
        .when(v.isin("阴性", "negative", "neg", "-", "not detected"), F.lit("negative"))
        .when(v.isin("无效", "invalid", "inconclusive", "可疑"), F.lit("inconclusive"))
    )


# How senders write a sample's mode: 混管 (a pooled tube, 10 in 1 or 20 in 1) or 单管 (a single tube).
SAMPLE_MODES = {
    "混管": "pooled",
    "混采": "pooled",
    "pooled": "pooled",
    "pool": "pooled",
    "单管": "single",
    "单采": "single",
    "single": "single",
}
# Isolation order categories as the CDC writes them (Chinese or the English codes) → silver's codes.
ISOLATION_CATEGORIES = {
    "确诊": "case",
    "确诊病例": "case",
    "case": "case",
    "密接": "close_contact",
    "密切接触者": "close_contact",
    "close_contact": "close_contact",
    "次密接": "secondary_contact",
    "次密切接触者": "secondary_contact",
    "secondary_contact": "secondary_contact",
    "风险区域": "risk_area",
    "风险区": "risk_area",
    "risk_area": "risk_area",
}
PLACE_TYPES = {
    "集中隔离": "centralized",
    "集中": "centralized",
    "centralized": "centralized",
    "居家隔离": "home",
    "居家": "home",
    "home": "home",
}


def _mapped(value: Column, mapping: dict[str, str]) -> Column:
    """``value`` (trimmed, lower-cased) looked up in ``mapping``; NULL when it is not there."""
    return F.create_map(*[F.lit(x) for kv in mapping.items() for x in kv])[F.lower(F.trim(value))]


def sample_mode(value: Column) -> Column:
    """``single`` or ``pooled`` from the sender's sample mode; none stated is a single tube, an unknown
    value NULL (quarantined by ``sample_mode_known``)."""
    return F.when(value.isNull() | (F.trim(value) == ""), F.lit("single")).otherwise(
        _mapped(value, SAMPLE_MODES)
    )


def nat_tests_from_csv(records: DataFrame) -> DataFrame:
    """Nucleic-acid tests from CSV ``nat_tests`` rows; a pooled member's row has no result of its own."""
    report = local_time(csv_value("report_time"))
    sample = local_time(csv_value("sample_time"))
    return records.where(F.col("extract") == "nat_tests").select(
        F.col("_institution_id").alias("institution_id"),
        csv_value("test_id").alias("source_record_id"),
        csv_value("person_no").alias("source_patient_id"),
        csv_value("sample_type").alias("sample_type"),
        sample_mode(csv_value("sample_mode")).alias("sample_mode"),
        csv_value("pool_id").alias("pool_id"),
        sample.alias("sample_time"),
        report.alias("report_time"),
        csv_value("result").alias("result_original"),
        _nat_result(csv_value("result")).alias("result"),
        csv_value("ct_value").try_cast("double").alias("ct_value"),
        F.coalesce(report, sample, F.col("_ingested_at")).alias("_event_time"),
        *bronze_provenance(BRONZE_CSV_RECORDS),
    )


def nat_pools_from_csv(records: DataFrame) -> DataFrame:
    """Pooled tubes' results from CSV ``nat_pools`` rows (the lab reports each tube once)."""
    report = local_time(csv_value("report_time"))
    sample = local_time(csv_value("sample_time"))
    return records.where(F.col("extract") == "nat_pools").select(
        F.col("_institution_id").alias("institution_id"),
        csv_value("pool_id").alias("source_record_id"),
        csv_value("pool_id").alias("pool_id"),
        sample.alias("sample_time"),
        report.alias("report_time"),
        csv_value("pool_size").try_cast("int").alias("pool_size"),
        csv_value("result").alias("result_original"),
        _nat_result(csv_value("result")).alias("result"),
        csv_value("ct_value").try_cast("double").alias("ct_value"),
        F.coalesce(report, sample, F.col("_ingested_at")).alias("_event_time"),
        *bronze_provenance(BRONZE_CSV_RECORDS),
    )


def isolation_orders_from_csv(records: DataFrame) -> DataFrame:
    """Isolation orders from CSV ``isolation_orders`` rows (CDC); a release is a later version of one."""
    start = local_time(csv_value("start_time"))
    released = local_time(csv_value("released_at"))
    return records.where(F.col("extract") == "isolation_orders").select(
        F.col("_institution_id").alias("institution_id"),
        csv_value("order_id").alias("source_record_id"),
        csv_value("person_no").alias("source_patient_id"),
        csv_value("category").alias("category_original"),
        _mapped(csv_value("category"), ISOLATION_CATEGORIES).alias("category"),
        csv_value("place_type").alias("place_type_original"),
        _mapped(csv_value("place_type"), PLACE_TYPES).alias("place_type"),
        start.alias("start_time"),
        local_time(csv_value("planned_end_time")).alias("planned_end_time"),
        released.alias("released_at"),
        F.coalesce(released, start, F.col("_ingested_at")).alias("_event_time"),
        *bronze_provenance(BRONZE_CSV_RECORDS),
    )


def immunizations_from_csv(records: DataFrame) -> DataFrame:
    """Vaccinations from CSV ``vaccinations`` rows (vaccination sites)."""
    when = local_time(csv_value("vaccinated_at"))
    return records.where(F.col("extract") == "vaccinations").select(
        F.col("_institution_id").alias("institution_id"),
        csv_value("vaccination_id").alias("source_record_id"),
        csv_value("person_no").alias("source_patient_id"),
        F.lit(None).cast("string").alias("source_encounter_id"),
        F.lit("local").alias("vaccine_code_system"),
        csv_value("vaccine_code").alias("vaccine_code"),
        csv_value("vaccine_name").alias("vaccine_name"),
        csv_value("dose_number").try_cast("int").alias("dose_number"),
        csv_value("lot_no").alias("lot_number"),
        when.alias("vaccinated_at"),
        F.lit(False).alias("is_cancelled"),
        F.coalesce(when, F.col("_ingested_at")).alias("_event_time"),
        *bronze_provenance(BRONZE_CSV_RECORDS),
    )


FHIR_IMMUNIZATION_SCHEMA = (
    "id string, status string, meta struct<lastUpdated: string>, "
    "vaccineCode struct<text: string, coding: array<struct<system: string, code: string, display: string>>>, "
    "patient struct<reference: string>, encounter struct<reference: string>, occurrenceDateTime string, "
    "lotNumber string, protocolApplied array<struct<doseNumberPositiveInt: int>>"
)


def immunizations_from_fhir(resources: DataFrame) -> DataFrame:
    """Vaccinations from FHIR ``Immunization`` resources."""
    i = F.col("_i")
    coding = F.try_element_at(i["vaccineCode"]["coding"], F.lit(1))
    system = coding["system"]
    when = fhir_time(i["occurrenceDateTime"])
    return (
        resources.where(F.col("resource_type") == "Immunization")
        .withColumn("_i", F.from_json("raw", FHIR_IMMUNIZATION_SCHEMA))
        .select(
            F.col("_institution_id").alias("institution_id"),
            i["id"].alias("source_record_id"),
            fhir_reference_id(i["patient"]["reference"]).alias("source_patient_id"),
            fhir_reference_id(i["encounter"]["reference"]).alias("source_encounter_id"),
            F.when(system == "http://hl7.org/fhir/sid/cvx", F.lit("CVX"))
            .otherwise(system)
            .alias("vaccine_code_system"),
            coding["code"].alias("vaccine_code"),
            F.coalesce(coding["display"], i["vaccineCode"]["text"]).alias("vaccine_name"),
            F.try_element_at(i["protocolApplied"], F.lit(1))["doseNumberPositiveInt"].alias("dose_number"),
            i["lotNumber"].alias("lot_number"),
            when.alias("vaccinated_at"),
            i["status"].isin("entered-in-error", "not-done").alias("is_cancelled"),
            F.coalesce(fhir_time(i["meta"]["lastUpdated"]), when, F.col("_ingested_at")).alias("_event_time"),
            *bronze_provenance(BRONZE_FHIR_RESOURCES),
        )
    )


FHIR_MEDICATION_REQUEST_SCHEMA = (
    "id string, status string, intent string, meta struct<lastUpdated: string>, "
    "medicationCodeableConcept struct<text: string, "
    "coding: array<struct<system: string, code: string, display: string>>>, "
    "subject struct<reference: string>, encounter struct<reference: string>, authoredOn string, "
    "dosageInstruction array<struct<text: string>>"
)
_DRUG_SYSTEMS = {"http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm", "urn:healthlake:code:drug": "local"}


def medications_from_fhir(resources: DataFrame) -> DataFrame:
    """Prescriptions from FHIR ``MedicationRequest`` resources (coded medications)."""
    m = F.col("_m")
    coding = F.try_element_at(m["medicationCodeableConcept"]["coding"], F.lit(1))
    system = coding["system"]
    for uri, name in _DRUG_SYSTEMS.items():
        system = F.when(coding["system"] == uri, F.lit(name)).otherwise(system)
    authored = fhir_time(m["authoredOn"])
    return (
        resources.where(F.col("resource_type") == "MedicationRequest")
        .withColumn("_m", F.from_json("raw", FHIR_MEDICATION_REQUEST_SCHEMA))
        .select(
            F.col("_institution_id").alias("institution_id"),
            m["id"].alias("source_record_id"),
            fhir_reference_id(m["subject"]["reference"]).alias("source_patient_id"),
            fhir_reference_id(m["encounter"]["reference"]).alias("source_encounter_id"),
            system.alias("medication_code_system"),
            coding["code"].alias("medication_code"),
            F.coalesce(coding["display"], m["medicationCodeableConcept"]["text"]).alias("medication_name"),
            F.try_element_at(m["dosageInstruction"], F.lit(1))["text"].alias("dosage_text"),
            authored.alias("authored_at"),
            m["status"].alias("status"),
            (F.coalesce(m["status"], F.lit("")) == "entered-in-error").alias("is_cancelled"),
            F.coalesce(fhir_time(m["meta"]["lastUpdated"]), authored, F.col("_ingested_at")).alias(
                "_event_time"
            ),
            *bronze_provenance(BRONZE_FHIR_RESOURCES),
        )
    )


def followups_from_csv(records: DataFrame) -> DataFrame:
    """Chronic-disease follow-ups from CSV ``followups`` rows (their measurements: ``silver.observation``)."""
    when = local_time(csv_value("followup_date"))
    disease = csv_value("disease")
    category = F.create_map(*[F.lit(x) for kv in FOLLOWUP_DISEASES.items() for x in kv])[disease]
    return records.where(F.col("extract") == "followups").select(
        F.col("_institution_id").alias("institution_id"),
        csv_value("followup_id").alias("source_record_id"),
        csv_value("patient_no").alias("source_patient_id"),
        when.alias("followup_time"),
        disease.alias("disease"),
        category.alias("disease_icd10_category"),
        F.try_to_date(csv_value("next_followup_date")).alias("next_followup_date"),
        F.coalesce(when, F.col("_ingested_at")).alias("_event_time"),
        *bronze_provenance(BRONZE_CSV_RECORDS),
    )


def location_events_from_pings(pings: DataFrame) -> DataFrame:
    """Location events from ``bronze.location_pings``; key: phone and time (a ping has no id of its own).

    The source record id is built from the phone *token* later (``phone`` is tokenised like every direct
    identifier); here it is the clear ``phone|ts`` and is replaced before anything is written.
    """
    ts = local_time(F.trim("ts"))
    return pings.select(
        F.col("_institution_id").alias("institution_id"),
        F.concat_ws("|", F.trim("phone"), F.trim("ts")).alias("source_record_id"),
        F.regexp_replace(F.trim("phone"), r"\D", "").alias("phone"),
        ts.alias("event_time"),
        F.col("lat").try_cast("double").alias("lat"),
        F.col("lon").try_cast("double").alias("lon"),
        F.col("accuracy_m").try_cast("double").alias("accuracy_m"),
        F.coalesce(ts, F.col("_ingested_at")).alias("_event_time"),
        F.col("_source_feed"),
        F.lit(BRONZE_LOCATION_PINGS).alias("_bronze_table"),
        F.col("_commit_version").alias("_bronze_version"),
        F.col("_source_file"),
        F.col("_record_offset"),
        F.col("_ingested_at"),
    )
