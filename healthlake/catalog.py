"""The lake's table names, each defined once: import the constant, never spell the name.

A table is ``layer.table`` and lives in ``<lake_root>/<layer>/<table>`` (``healthlake.naming``). Free of
pyspark. The derived tables' definitions (grain, key, rules) live in their modules
(``healthlake.gold.registry`` lists the gold ones); this module only names them.
"""

from __future__ import annotations

# Bronze: raw records as received, with their provenance (``docs/bronze.md``).
BRONZE_CSV_RECORDS = "bronze.csv_records"
BRONZE_FHIR_RESOURCES = "bronze.fhir_resources"
BRONZE_FHIR_BUNDLES = "bronze.fhir_bundles"
BRONZE_HL7V2_MESSAGES = "bronze.hl7v2_messages"
BRONZE_LOCATION_PINGS = "bronze.location_pings"
BRONZE_QUARANTINE = "bronze.quarantine"
BRONZE_INGEST_LOG = "bronze.ingest_log"
BRONZE_RECORDS = (BRONZE_FHIR_RESOURCES, BRONZE_HL7V2_MESSAGES, BRONZE_CSV_RECORDS, BRONZE_LOCATION_PINGS)
"""The bronze tables of received records, one per feed format (what conform reads, what exchange counts)."""
BRONZE_RECORD_CONTENTS = "bronze.record_contents"
"""Publish's index of the distinct record contents bronze holds (what a day's records are compared with)."""

# Silver: conformed, tokenised records (``docs/silver.md``).
SILVER_PATIENT_RECORD = "silver.patient_record"
SILVER_ENCOUNTER = "silver.encounter"
SILVER_DIAGNOSIS = "silver.diagnosis"
SILVER_OBSERVATION = "silver.observation"
SILVER_IMMUNIZATION = "silver.immunization"
SILVER_MEDICATION = "silver.medication"
SILVER_PROCEDURE = "silver.procedure"
SILVER_ALLERGY = "silver.allergy"
SILVER_NAT_TEST = "silver.nat_test"
SILVER_NAT_POOL = "silver.nat_pool"
SILVER_ISOLATION_ORDER = "silver.isolation_order"
SILVER_CHRONIC_FOLLOWUP = "silver.chronic_followup"
SILVER_LOCATION_EVENT = "silver.location_event"
SILVER_AREA = "silver.area"
SILVER_INSTITUTION = "silver.institution"
SILVER_PRACTITIONER = "silver.practitioner"
SILVER_ORGANIZATION = "silver.organization"
SILVER_QUARANTINE = "silver.quarantine"
SILVER_CONFORM_LOG = "silver.conform_log"
SILVER_DQ_METRICS = "silver.dq_metrics"
# The EMPI's tables (``docs/empi.md``).
SILVER_PERSON = "silver.person"
SILVER_PERSON_XREF = "silver.person_xref"
SILVER_EMPI_REVIEW = "silver.empi_review"
SILVER_EMPI_MODEL = "silver.empi_model"
SILVER_EMPI_AUDIT = "silver.empi_audit"

# Gold: the topic library (``docs/gold.md``).
GOLD_ENCOUNTER_FACTS = "gold.encounter_facts"
GOLD_UTILIZATION_DAILY = "gold.utilization_daily"
GOLD_PATIENT_360 = "gold.patient_360"
GOLD_CHRONIC_REGISTRY = "gold.chronic_disease_registry"
GOLD_CHRONIC_MONTHLY = "gold.chronic_disease_monthly"
GOLD_CHRONIC_INDICATORS = "gold.chronic_disease_indicators"
GOLD_EXCHANGE_VOLUME = "gold.exchange_volume_daily"
GOLD_PUBLISH_LOG = "gold.publish_log"

# Gold: epidemic control (``docs/epidemic.md``), kept by ``healthlake epidemic``.
GOLD_EPIDEMIC_CASES = "gold.epidemic_cases"
GOLD_EPIDEMIC_DAILY = "gold.epidemic_daily"
GOLD_VACCINATION_COVERAGE = "gold.vaccination_coverage"
GOLD_NAT_POOL_FOLLOWUP = "gold.nat_pool_followup"
GOLD_NAT_SCREENING_DAILY = "gold.nat_screening_daily"
GOLD_CLOSE_CONTACTS = "gold.close_contacts"
GOLD_ISOLATION = "gold.isolation"
GOLD_CASE_CLUSTERS = "gold.case_clusters"
GOLD_HEALTH_CODE = "gold.health_code"
GOLD_RISK_AREA_DAILY = "gold.risk_area_daily"
GOLD_RISK_PERSONS = "gold.risk_persons"
GOLD_CONTACT_TRACING_DAILY = "gold.contact_tracing_daily"
GOLD_EPIDEMIC_LOG = "gold.epidemic_log"

# Gold: models (``docs/models.md``): point-in-time features kept by ``healthlake features``, predictions and
# their monitoring written by ``healthlake score``.
GOLD_READMISSION_FEATURES = "gold.readmission_features"
GOLD_CHRONIC_CONTROL_FEATURES = "gold.chronic_control_features"
GOLD_DEMAND_FEATURES = "gold.demand_features"
GOLD_FEATURES_LOG = "gold.features_log"
GOLD_MODEL_MONITORING = "gold.model_monitoring"


def predictions_table(model: str) -> str:
    """``gold.predictions_<model>``: the scores ``healthlake score <model>`` writes."""
    return f"gold.predictions_{model}"


# Research zone: a release's de-identified extracts (``docs/research.md``).
RESEARCH_PATIENTS = "research.patients"
RESEARCH_ENCOUNTERS = "research.encounters"
RESEARCH_UTILIZATION = "research.utilization_monthly"
RESEARCH_CHRONIC = "research.chronic_disease_monthly"
RESEARCH_K_ANONYMITY = "research.k_anonymity"

# OMOP CDM export (``docs/omop.md``); the CDM tables are ``omop.<cdm table>`` (``healthlake.omop.cdm``).
OMOP_ID_MAP = "omop.id_map"
OMOP_PERSON = "omop.person"
OMOP_VISIT_OCCURRENCE = "omop.visit_occurrence"
OMOP_CONDITION_OCCURRENCE = "omop.condition_occurrence"
OMOP_MEASUREMENT = "omop.measurement"
OMOP_DRUG_EXPOSURE = "omop.drug_exposure"
OMOP_OBSERVATION_PERIOD = "omop.observation_period"

# Vault: the clear identifiers, kept apart from the tokenised lake (``docs/silver.md``, ``docs/empi.md``).
VAULT_IDENTITY = "vault.identity"
VAULT_LINK_FEATURES = "vault.link_features"
"""The EMPI's standardised comparison features, derived from the vault's clear values."""
VAULT_DISCLOSURE_LOG = "vault.disclosure_log"
"""Every list of clear identities handed outside the lake (`healthlake epidemic export`): when, who, whom."""
