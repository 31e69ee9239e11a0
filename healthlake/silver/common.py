"""Helpers shared by the silver entity modules: HL7 v2 field access, times, provenance, tokens.

HL7 v2 is parsed with Spark built-ins: a segment's fields come from ``regexp_extract`` + ``split`` on the
message text (segments separated by ``\\r``, as bronze stores them), components on ``^``, repetitions on
``~``, and escape sequences (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``) are decoded after splitting.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

SOURCE_COLUMNS = (
    "institution_id",
    "source_record_id",
    "_event_time",
    "_source_feed",
    "_bronze_table",
    "_bronze_version",
    "_source_file",
    "_record_offset",
    "_ingested_at",
)
"""Key, event time and provenance every silver row carries (back to its bronze row)."""


def hl7_segment(message: Column, name: str) -> Column:
    """The fields of the first ``name`` segment (``PID``, ``PV1`` …) as an array; element n is field n.

    Element 0 is the segment name, so ``try_element_at(fields, n + 1)`` is field n (MSH differs: use
    ``hl7_msh``)."""
    body = F.regexp_extract(message, rf"(?:^|\r){name}(\|[^\r]*)", 1)
    return F.when(body != "", F.split(F.concat(F.lit(name), body), r"\|", -1))


def each_hl7_segment(messages: DataFrame, name: str, alias: str) -> DataFrame:
    """One row per ``name`` segment of each message (every ``DG1``, every ``OBX``): its position in
    ``_n`` (0-based) and its field array in ``alias`` (indexed as in ``hl7_segment``)."""
    bodies = F.regexp_extract_all(F.col("raw"), F.lit(rf"(?:^|\r)({name}\|[^\r]*)"), 1)
    return messages.select("*", F.posexplode(bodies).alias("_n", "_segment_text")).withColumn(
        alias, F.split("_segment_text", r"\|", -1)
    )


def hl7_segment_record_id(parent: Column, name: str, fields: Column) -> Column:
    """The id of one repeated segment of an ``each_hl7_segment`` row: ``<parent>-<name>-<set id>``.

    The set id is field 1 (``DG1-1``, ``OBX-1``); a sender that leaves it empty gets the segment's
    1-based position instead, so the id stays stable when the same message is re-sent.
    """
    set_id = F.coalesce(hl7_field(fields, 1), (F.col("_n") + 1).cast("string"))
    return F.concat_ws("-", parent, F.lit(name), set_id)


def hl7_trigger() -> Column:
    """The trigger event of a message (``A01`` of ``ADT^A01``), from bronze's ``message_type``."""
    return F.regexp_extract(F.col("message_type"), r"\^(\w+)", 1)


def hl7_field(fields: Column, n: int) -> Column:
    """Field ``n`` of a segment's field array (NULL when absent or empty)."""
    value = F.try_element_at(fields, F.lit(n + 1))
    return F.when(value != "", value)


def hl7_component(field: Column, n: int, repetition: int = 1) -> Column:
    """Component ``n`` (1-based) of repetition ``repetition`` of a field, unescaped; NULL when empty."""
    rep = F.try_element_at(F.split(field, "~", -1), F.lit(repetition))
    value = F.try_element_at(F.split(rep, r"\^", -1), F.lit(n))
    return F.when(value != "", hl7_unescape(value))


def hl7_unescape(text: Column) -> Column:
    """Decode HL7 escape sequences: ``\\F\\``→``|``, ``\\S\\``→``^``, ``\\T\\``→``&``, ``\\R\\``→``~``,
    ``\\E\\``→``\\`` (the escape character last, so an escaped escape is not decoded twice)."""
    out = text
    for seq, char in (("\\F\\", "|"), ("\\S\\", "^"), ("\\T\\", "&"), ("\\R\\", "~"), ("\\E\\", "\\")):
        out = F.replace(out, F.lit(seq), F.lit(char))
    return out


def hl7_repetition_with(field: Column, component: int, value: str) -> Column:
    """The first repetition of ``field`` whose component ``component`` equals ``value`` (e.g. PID-3 type
    ``NI``), as a component array."""
    reps = F.transform(F.split(field, "~", -1), lambda r: F.split(r, r"\^", -1))
    return F.try_element_at(
        F.filter(reps, lambda c: F.try_element_at(c, F.lit(component)) == value), F.lit(1)
    )


def hl7_patient_number(message: Column) -> Column:
    """The institution's patient number: the ``PID-3`` repetition typed ``MR`` (else the first one)."""
    ids = hl7_field(hl7_segment(message, "PID"), 3)
    mrn = F.try_element_at(hl7_repetition_with(ids, 5, "MR"), F.lit(1))
    return hl7_unescape(F.coalesce(mrn, hl7_component(ids, 1)))


def hl7_visit_number(message: Column) -> Column:
    """The visit (encounter) number, ``PV1-19``."""
    return hl7_component(hl7_field(hl7_segment(message, "PV1"), 19), 1)


def hl7_time(value: Column) -> Column:
    """An HL7 TS (``yyyyMMddHHmm[ss][+hhmm]``) as a timestamp; without an offset it is China time."""
    v = F.regexp_replace(value, r"\.\d+", "")  # fractional seconds
    with_offset = F.coalesce(
        F.try_to_timestamp(v, F.lit("yyyyMMddHHmmssZ")),
        F.try_to_timestamp(v, F.lit("yyyyMMddHHmmZ")),
    )
    local = F.coalesce(
        F.try_to_timestamp(v, F.lit("yyyyMMddHHmmss")),
        F.try_to_timestamp(v, F.lit("yyyyMMddHHmm")),
        F.try_to_timestamp(v, F.lit("yyyyMMdd")),
    )
    return F.coalesce(with_offset, F.to_utc_timestamp(local, "Asia/Shanghai"))


def hl7_date(value: Column) -> Column:
    """An HL7 DT/TS as a date (its first eight digits)."""
    return F.try_to_date(F.substring(value, 1, 8), "yyyyMMdd")


def local_time(value: Column, zone: str = "Asia/Shanghai") -> Column:
    """A ``yyyy-MM-dd HH:mm[:ss]`` wall-clock time of ``zone`` (CSV extracts) as a timestamp."""
    ts = F.coalesce(
        F.try_to_timestamp(value, F.lit("yyyy-MM-dd HH:mm:ss")),
        F.try_to_timestamp(value, F.lit("yyyy-MM-dd HH:mm")),
        F.try_to_timestamp(value, F.lit("yyyy-MM-dd")),
    )
    return F.to_utc_timestamp(ts, zone)


def fhir_time(value: Column) -> Column:
    """A FHIR dateTime/instant (ISO 8601, with offset or a bare date) as a timestamp."""
    return F.coalesce(F.try_to_timestamp(value), F.try_to_timestamp(value, F.lit("yyyy-MM-dd'T'HH:mm:ssXXX")))


def fhir_reference_id(reference: Column) -> Column:
    """The id a FHIR reference points to.

    A ``urn:uuid:…`` (or any full URL) of an entry of the same Bundle resolves to that entry's resource
    id through ``_bundle_refs`` (see ``with_bundle_references``); otherwise the id is the reference's last
    part: ``Patient/123`` → ``123``, ``http://x/fhir/Patient/123/_history/2`` → ``123``.
    """
    relative = F.regexp_extract(F.regexp_replace(reference, r"/_history/[^/]+$", ""), r"([^/:]+)$", 1)
    return F.coalesce(F.col("_bundle_refs")[reference], F.nullif(relative, F.lit("")))


def with_bundle_references(resources: DataFrame) -> DataFrame:
    """Add ``_bundle_refs``: for a Bundle entry, its Bundle's map of entry ``fullUrl`` → resource id.

    Transaction Bundles reference each other's entries by ``urn:uuid:`` full URLs, which only the Bundle
    itself can resolve. All entries of a Bundle come from one file, ingested in one bronze commit, so the
    map is built per file from the rows at hand. Rows outside a Bundle get NULL.
    """
    refs = (
        resources.where(F.col("entry_full_url").isNotNull() & F.col("resource_id").isNotNull())
        .groupBy("_source_file")
        .agg(
            F.map_from_entries(F.collect_list(F.struct("entry_full_url", "resource_id"))).alias(
                "_bundle_refs"
            )
        )
    )
    return resources.join(refs, "_source_file", "left")


def csv_value(name: str) -> Column:
    """A CSV field by header name from bronze's ``record`` map, trimmed; empty → NULL."""
    value = F.trim(F.col("record")[name])
    return F.when(value != "", value)


def bronze_provenance(bronze_table: str) -> list[Column]:
    """Provenance columns taken from a bronze change-feed row."""
    return [
        F.col("_source_feed"),
        F.lit(bronze_table).alias("_bronze_table"),
        F.col("_commit_version").alias("_bronze_version"),
        F.col("_source_file"),
        F.col("_record_offset"),
        F.col("_ingested_at"),
    ]
