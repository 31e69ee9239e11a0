"""FHIR R4 feed → ``bronze.fhir_resources`` (one row per resource) and ``bronze.fhir_bundles``.

NDJSON files (bulk export) give one resource per line; ``.json`` files are either a Bundle (one row per
entry, the whole Bundle kept once in ``bronze.fhir_bundles``) or a single resource. FHIR is UTF-8 by
specification, so other bytes are quarantined.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from healthlake.bronze.common import (
    PROVENANCE_COLUMNS,
    bytes_as_latin1,
    explode_lines,
    is_valid_utf8,
    latin1_bytes,
    without_cr,
)

RESOURCE_SCHEMA = (
    "resourceType string, id string, meta struct<versionId: string, lastUpdated: string>, "
    "_corrupt_record string"
)
DOCUMENT_SCHEMA = (
    "resourceType string, id string, type string, meta struct<versionId: string, lastUpdated: string>, "
    "entry array<struct<fullUrl: string, resource: string>>, _corrupt_record string"
)
_CORRUPT = {"columnNameOfCorruptRecord": "_corrupt_record", "mode": "PERMISSIVE"}

RESOURCE_COLUMNS = [
    "resource_type",
    "resource_id",
    "version_id",
    "last_updated",
    "bundle_id",
    "bundle_type",
    "entry_full_url",
    "raw",
]
BUNDLE_COLUMNS = ["bundle_id", "bundle_type", "entries", "raw"]

_CONTEXT = [*PROVENANCE_COLUMNS[:3], "_batch_id", "_ingested_at", "_landing_day"]


def _is_document() -> F.Column:
    """``.json`` files hold one document (a Bundle or a resource); anything else is NDJSON."""
    return F.lower(F.col("_file_name")).endswith(".json")


_RESOURCE_FIELDS = ("resource_type", "resource_id", "version_id", "last_updated")


def _resource_fields(parsed: F.Column) -> list[F.Column]:
    """A parsed resource's type, id, version and last update, named as ``_RESOURCE_FIELDS``."""
    meta = parsed["meta"]
    fields = (parsed["resourceType"], parsed["id"], meta["versionId"], meta["lastUpdated"])
    return [field.alias(name) for field, name in zip(fields, _RESOURCE_FIELDS, strict=True)]


def _reason(valid_utf8: F.Column, parsed: F.Column) -> F.Column:
    return (
        F.when(~valid_utf8, F.lit("undecodable: not valid UTF-8"))
        .when(parsed["_corrupt_record"].isNotNull(), F.lit("fhir: invalid JSON"))
        .when(parsed["resourceType"].isNull(), F.lit("fhir: no resourceType (not a FHIR resource)"))
    )


def parse_fhir(files: DataFrame) -> DataFrame:
    """Split FHIR files into resources; rejected ones carry ``_reject_reason``.

    Args:
        files: Landing files with provenance (``landing_batch``).

    Returns:
        One row per resource (or rejected record): ``RESOURCE_COLUMNS``, provenance, ``_reject_reason``,
        the exact bytes ``_raw`` (the decoded text is ``raw``).
    """
    lines = (
        files.where(~_is_document())
        .select(*_CONTEXT, explode_lines(bytes_as_latin1(F.col("content"))))
        .withColumn("_line", without_cr(F.col("_line")))
        .where(F.trim(F.col("_line")) != "")
        .withColumn("_raw", latin1_bytes(F.col("_line")))
        .withColumn("_text", F.decode(F.col("_raw"), "UTF-8"))
        .withColumn("_parsed", F.from_json(F.col("_text"), RESOURCE_SCHEMA, _CORRUPT))
        .select(
            *_CONTEXT,
            "_record_offset",
            *_resource_fields(F.col("_parsed")),
            *[F.lit(None).cast("string").alias(c) for c in ("bundle_id", "bundle_type", "entry_full_url")],
            F.col("_text").alias("raw"),
            _reason(is_valid_utf8(F.col("_raw")), F.col("_parsed")).alias("_reject_reason"),
            "_raw",
            F.lit(False).alias("_bundle_entry"),
        )
    )
    return lines.unionByName(_document_rows(files))


def _document_rows(files: DataFrame) -> DataFrame:
    """``.json`` files: a Bundle gives one row per entry; any other document, or a rejected file, one row.

    Each document is parsed once, in one branch: two branches (Bundles, other documents) with filters on
    the parsed document would each parse it again for their filter.
    """
    doc = F.col("_doc")
    bundle = F.col("_reject_reason").isNull() & (doc["resourceType"] == "Bundle")
    per_document = _documents(files).select(
        *_CONTEXT,
        "_reject_reason",
        bundle.alias("_bundle_entry"),
        *_resource_fields(doc),
        F.when(bundle, doc["id"]).alias("bundle_id"),
        F.when(bundle, doc["type"]).alias("bundle_type"),
        # A Bundle's whole text and bytes are not carried along: each of its entry rows would copy them.
        F.when(~bundle, F.col("_text")).alias("_doc_text"),
        F.when(~bundle, F.col("_raw")).alias("_doc_raw"),
        F.when(bundle, doc["entry"]).alias("_entries"),
    )
    entry = F.col("_entry")
    in_bundle = F.col("_bundle_entry")
    parsed = F.col("_parsed")
    return (
        per_document.select(
            *[c for c in per_document.columns if c != "_entries"],
            F.posexplode_outer("_entries").alias("_position", "_entry"),
        )
        .where(~in_bundle | F.col("_position").isNotNull())  # an empty Bundle holds no resource
        .withColumn("_parsed", F.when(in_bundle, F.from_json(entry["resource"], RESOURCE_SCHEMA, _CORRUPT)))
        .select(
            *_CONTEXT,
            F.coalesce("_position", F.lit(0)).alias("_record_offset"),
            *[
                F.when(in_bundle, field).otherwise(F.col(name)).alias(name)
                for field, name in zip(_resource_fields(parsed), _RESOURCE_FIELDS, strict=True)
            ],
            "bundle_id",
            "bundle_type",
            entry["fullUrl"].alias("entry_full_url"),
            F.when(in_bundle, entry["resource"]).otherwise(F.col("_doc_text")).alias("raw"),
            F.when(
                in_bundle,
                F.when(entry["resource"].isNull(), F.lit("fhir: bundle entry without a resource")).otherwise(
                    _reason(F.lit(True), parsed)
                ),
            )
            .otherwise(F.col("_reject_reason"))
            .alias("_reject_reason"),
            F.when(in_bundle, F.encode(F.to_json(entry), "UTF-8")).otherwise(F.col("_doc_raw")).alias("_raw"),
            "_bundle_entry",
        )
    )


def _document_text() -> F.Column:
    """A whole file's text (UTF-8, byte-order mark dropped)."""
    return F.decode(latin1_bytes(bytes_as_latin1(F.col("content"))), "UTF-8")


def _documents(files: DataFrame) -> DataFrame:
    """Whole ``.json`` files parsed as one FHIR document each."""
    return (
        files.where(_is_document())
        .withColumn("_raw", F.col("content"))
        .withColumn("_text", _document_text())
        .withColumn("_doc", F.from_json(F.col("_text"), DOCUMENT_SCHEMA, _CORRUPT))
        .withColumn("_reject_reason", _reason(is_valid_utf8(F.col("content")), F.col("_doc")))
    )


def fhir_bundles(parsed: DataFrame, files: DataFrame) -> DataFrame:
    """One row per Bundle file with entries, with its exact text: what an institution sent, byte for byte.

    Bundle id, type and entry count come from the already parsed entries (``parse_fhir``'s output), so
    the Bundle's JSON is not parsed a second time.

    Args:
        parsed: ``parse_fhir(files)``.
        files: The same landing files.
    """
    per_file = (
        parsed.where(F.col("_bundle_entry"))
        .groupBy("_source_file")
        .agg(
            F.first("bundle_id").alias("bundle_id"),
            F.first("bundle_type").alias("bundle_type"),
            F.count("*").alias("entries"),
        )
    )
    # One row per Bundle file of the batch: small next to the files themselves.
    return files.join(F.broadcast(per_file), "_source_file").select(
        "bundle_id",
        "bundle_type",
        F.col("entries").cast("int").alias("entries"),
        _document_text().alias("raw"),
        *_CONTEXT,
        F.lit(0).alias("_record_offset"),
    )
