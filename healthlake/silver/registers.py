"""Registers senders name in their clinical records: ``silver.practitioner`` and ``silver.organization``.

Sources: FHIR ``Practitioner`` and ``Organization`` resources. ``silver.practitioner`` is a workforce
register of health professionals (doctors, nurses …), not of patients: their names are kept in clear, as
professional registers publish them, and never go to the vault (no address or contact of the person is
taken). ``silver.organization``
holds the organizations a FHIR sender names (hospitals, clinics, payers); the region's own register of
institutions is ``silver.institution`` (reference feed).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from healthlake.catalog import BRONZE_FHIR_RESOURCES
from healthlake.silver.common import bronze_provenance, fhir_time

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
_IDENTIFIERS = "identifier array<struct<system: string, value: string>>"
_CODEABLE = "struct<text: string, coding: array<struct<system: string, code: string, display: string>>>"
FHIR_PRACTITIONER_SCHEMA = (
    f"id string, meta struct<lastUpdated: string>, active boolean, {_IDENTIFIERS}, "
    "name array<struct<text: string, family: string, given: array<string>>>, gender string, "
    f"qualification array<struct<code: {_CODEABLE}>>"
)
FHIR_ORGANIZATION_SCHEMA = (
    f"id string, meta struct<lastUpdated: string>, active boolean, {_IDENTIFIERS}, "
    f"type array<{_CODEABLE}>, name string, telecom array<struct<system: string, value: string>>, "
    "address array<struct<city: string, state: string>>"
)


def _identifier(identifiers: Column) -> Column:
    """The NPI identifier when there is one, else the first (a struct of ``system`` and ``value``)."""
    npi = F.try_element_at(F.filter(identifiers, lambda i: i["system"] == NPI_SYSTEM), F.lit(1))
    return F.coalesce(npi, F.try_element_at(identifiers, F.lit(1)))


def _identifier_system(system: Column) -> Column:
    return F.when(system == NPI_SYSTEM, F.lit("NPI")).otherwise(system)


def _text(concept: Column) -> Column:
    """A CodeableConcept's text, else its first coding's display."""
    return F.coalesce(concept["text"], F.try_element_at(concept["coding"], F.lit(1))["display"])


def practitioners_from_fhir(resources: DataFrame) -> DataFrame:
    """Practitioners from ``bronze.fhir_resources`` change rows (``resource_type = 'Practitioner'``).

    ``name`` is the first name's text, else its given names and family name (a Chinese family name first,
    without a space); ``qualification`` the first qualification's text.
    """
    p = F.col("_p")
    name = F.try_element_at(p["name"], F.lit(1))
    given = F.array_join(F.coalesce(name["given"], F.array()), " ")
    full_name = F.coalesce(
        name["text"],
        F.when(name["family"].rlike(r"^\p{IsHan}"), F.concat_ws("", name["family"], given)).otherwise(
            F.concat_ws(" ", given, name["family"])
        ),
    )
    identifier = _identifier(p["identifier"])
    return (
        resources.where(F.col("resource_type") == "Practitioner")
        .withColumn("_p", F.from_json("raw", FHIR_PRACTITIONER_SCHEMA))
        .select(
            F.col("_institution_id").alias("institution_id"),
            p["id"].alias("source_record_id"),
            _identifier_system(identifier["system"]).alias("identifier_system"),
            identifier["value"].alias("identifier"),
            F.nullif(F.trim(full_name), F.lit("")).alias("name"),
            p["gender"].alias("gender"),
            _text(F.try_element_at(p["qualification"], F.lit(1))["code"]).alias("qualification"),
            p["active"].alias("active"),
            F.coalesce(fhir_time(p["meta"]["lastUpdated"]), F.col("_ingested_at")).alias("_event_time"),
            *bronze_provenance(BRONZE_FHIR_RESOURCES),
        )
    )


def organizations_from_fhir(resources: DataFrame) -> DataFrame:
    """Organizations from ``bronze.fhir_resources`` change rows (``resource_type = 'Organization'``).

    ``organization_type`` is the first type's text; ``city`` and ``state`` those of the first address;
    ``telecom`` the first phone number, else the first contact of any kind.
    """
    o = F.col("_o")
    address = F.try_element_at(o["address"], F.lit(1))
    phone = F.try_element_at(F.filter(o["telecom"], lambda t: t["system"] == "phone"), F.lit(1))
    identifier = _identifier(o["identifier"])
    return (
        resources.where(F.col("resource_type") == "Organization")
        .withColumn("_o", F.from_json("raw", FHIR_ORGANIZATION_SCHEMA))
        .select(
            F.col("_institution_id").alias("institution_id"),
            o["id"].alias("source_record_id"),
            _identifier_system(identifier["system"]).alias("identifier_system"),
            identifier["value"].alias("identifier"),
            o["name"].alias("name"),
            _text(F.try_element_at(o["type"], F.lit(1))).alias("organization_type"),
            address["city"].alias("city"),
            address["state"].alias("state"),
            F.coalesce(phone, F.try_element_at(o["telecom"], F.lit(1)))["value"].alias("telecom"),
            o["active"].alias("active"),
            F.coalesce(fhir_time(o["meta"]["lastUpdated"]), F.col("_ingested_at")).alias("_event_time"),
            *bronze_provenance(BRONZE_FHIR_RESOURCES),
        )
    )
