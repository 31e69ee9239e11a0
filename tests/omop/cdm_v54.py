"""The OMOP CDM v5.4 columns healthlake exports, as the specification states them.

Transcribed by hand from the OHDSI Common Data Model v5.4 table definitions (the PostgreSQL DDL of
``OHDSI/CommonDataModel``, ``inst/ddl/5.4``): each table's columns in the specification's order with
their SQL types. The tests compare the exported tables against this, not against the column lists of
``healthlake.omop`` they check.
"""

from __future__ import annotations

SPEC: dict[str, tuple[tuple[str, str], ...]] = {
    "person": (
        ("person_id", "integer"),
        ("gender_concept_id", "integer"),
        ("year_of_birth", "integer"),
        ("month_of_birth", "integer"),
        ("day_of_birth", "integer"),
        ("birth_datetime", "timestamp"),
        ("race_concept_id", "integer"),
        ("ethnicity_concept_id", "integer"),
        ("location_id", "integer"),
        ("provider_id", "integer"),
        ("care_site_id", "integer"),
        ("person_source_value", "varchar(50)"),
        ("gender_source_value", "varchar(50)"),
        ("gender_source_concept_id", "integer"),
        ("race_source_value", "varchar(50)"),
        ("race_source_concept_id", "integer"),
        ("ethnicity_source_value", "varchar(50)"),
        ("ethnicity_source_concept_id", "integer"),
    ),
    "observation_period": (
        ("observation_period_id", "integer"),
        ("person_id", "integer"),
        ("observation_period_start_date", "date"),
        ("observation_period_end_date", "date"),
        ("period_type_concept_id", "integer"),
    ),
    "visit_occurrence": (
        ("visit_occurrence_id", "integer"),
        ("person_id", "integer"),
        ("visit_concept_id", "integer"),
        ("visit_start_date", "date"),
        ("visit_start_datetime", "timestamp"),
        ("visit_end_date", "date"),
        ("visit_end_datetime", "timestamp"),
        ("visit_type_concept_id", "integer"),
        ("provider_id", "integer"),
        ("care_site_id", "integer"),
        ("visit_source_value", "varchar(50)"),
        ("visit_source_concept_id", "integer"),
        ("admitted_from_concept_id", "integer"),
        ("admitted_from_source_value", "varchar(50)"),
        ("discharged_to_concept_id", "integer"),
        ("discharged_to_source_value", "varchar(50)"),
        ("preceding_visit_occurrence_id", "integer"),
    ),
    "condition_occurrence": (
        ("condition_occurrence_id", "integer"),
        ("person_id", "integer"),
        ("condition_concept_id", "integer"),
        ("condition_start_date", "date"),
        ("condition_start_datetime", "timestamp"),
        ("condition_end_date", "date"),
        ("condition_end_datetime", "timestamp"),
        ("condition_type_concept_id", "integer"),
        ("condition_status_concept_id", "integer"),
        ("stop_reason", "varchar(20)"),
        ("provider_id", "integer"),
        ("visit_occurrence_id", "integer"),
        ("visit_detail_id", "integer"),
        ("condition_source_value", "varchar(50)"),
        ("condition_source_concept_id", "integer"),
        ("condition_status_source_value", "varchar(50)"),
    ),
    "drug_exposure": (
        ("drug_exposure_id", "integer"),
        ("person_id", "integer"),
        ("drug_concept_id", "integer"),
        ("drug_exposure_start_date", "date"),
        ("drug_exposure_start_datetime", "timestamp"),
        ("drug_exposure_end_date", "date"),
        ("drug_exposure_end_datetime", "timestamp"),
        ("verbatim_end_date", "date"),
        ("drug_type_concept_id", "integer"),
        ("stop_reason", "varchar(20)"),
        ("refills", "integer"),
        ("quantity", "numeric"),
        ("days_supply", "integer"),
        ("sig", "text"),
        ("route_concept_id", "integer"),
        ("lot_number", "varchar(50)"),
        ("provider_id", "integer"),
        ("visit_occurrence_id", "integer"),
        ("visit_detail_id", "integer"),
        ("drug_source_value", "varchar(50)"),
        ("drug_source_concept_id", "integer"),
        ("route_source_value", "varchar(50)"),
        ("dose_unit_source_value", "varchar(50)"),
    ),
    "measurement": (
        ("measurement_id", "integer"),
        ("person_id", "integer"),
        ("measurement_concept_id", "integer"),
        ("measurement_date", "date"),
        ("measurement_datetime", "timestamp"),
        ("measurement_time", "varchar(10)"),
        ("measurement_type_concept_id", "integer"),
        ("operator_concept_id", "integer"),
        ("value_as_number", "numeric"),
        ("value_as_concept_id", "integer"),
        ("unit_concept_id", "integer"),
        ("range_low", "numeric"),
        ("range_high", "numeric"),
        ("provider_id", "integer"),
        ("visit_occurrence_id", "integer"),
        ("visit_detail_id", "integer"),
        ("measurement_source_value", "varchar(50)"),
        ("measurement_source_concept_id", "integer"),
        ("unit_source_value", "varchar(50)"),
        ("unit_source_concept_id", "integer"),
        ("value_source_value", "varchar(50)"),
        ("measurement_event_id", "integer"),
        ("meas_event_field_concept_id", "integer"),
    ),
}


def spark_type(column: str, sql_type: str) -> str:
    """The Spark type healthlake writes for a CDM column of ``sql_type``.

    The CDM's ``integer`` is Spark's ``int``, except the row identifiers and their references (``*_id``
    that is not a ``*_concept_id``): a region has more than 2^31 events over the years, so they are
    ``bigint`` (the CDM's own guidance for large databases). ``numeric`` is ``double``, text ``string``.
    """
    if sql_type == "integer":
        return "bigint" if column.endswith("_id") and not column.endswith("concept_id") else "int"
    if sql_type.startswith("varchar") or sql_type == "text":
        return "string"
    return {"numeric": "double", "date": "date", "timestamp": "timestamp"}[sql_type]
