"""Shared bronze transformations: landing provenance, byte-exact record splitting, decoding, quarantine.

Files arrive as raw bytes (Spark's ``binaryFile`` source). Records are split on ASCII delimiters *before*
decoding, by viewing the bytes as ISO-8859-1 (one character per byte, lossless): record separators
(``\\n``, ``\\r``, MLLP's 0x0B/0x1C) never occur inside a UTF-8, GBK or GB18030 character, so each
record's exact bytes are recovered with ``encode(…, 'ISO-8859-1')`` and then decoded with its own
charset. Undecodable bytes become U+FFFD (``spark.sql.legacy.codingErrorAction``), which sends the
record to quarantine. Everything runs in the JVM with Spark built-ins.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

LATIN1 = "ISO-8859-1"
REPLACEMENT_CHAR = "\ufffd"
UTF8_BOM_LATIN1 = "\u00ef\u00bb\u00bf"  # the bytes EF BB BF seen as ISO-8859-1

PROVENANCE_COLUMNS = (
    "_source_feed",
    "_institution_id",
    "_source_file",
    "_record_offset",
    "_batch_id",
    "_ingested_at",
)
"""Provenance every bronze row carries (design §1)."""

QUARANTINE_COLUMNS = (*PROVENANCE_COLUMNS, "_landing_day", "reason", "raw_text", "raw_base64")

CHARSETS = ("UTF-8", "GBK", "GB18030", "ISO-8859-1", "US-ASCII")
"""Charsets a record can be decoded with (each needs its own literal in ``decode``)."""


def with_landing_provenance(files: DataFrame) -> DataFrame:
    """Add feed, institution, landing day and file name from ``<landing>/<feed>/<inst>/<day>/<file>``."""
    parts = F.split(F.col("path"), "/")
    return files.select(
        F.element_at(parts, -4).alias("_source_feed"),
        F.element_at(parts, -3).alias("_institution_id"),
        F.element_at(parts, -2).alias("_landing_day"),
        F.col("path").alias("_source_file"),
        F.element_at(parts, -1).alias("_file_name"),
        F.col("length").alias("_file_size"),
        F.col("modificationTime").alias("_file_modified"),
        F.col("content"),
    )


def landing_batch(files: DataFrame, batch_id: str) -> DataFrame:
    """Landing files with their provenance, tagged with ``_batch_id`` and this run's ``_ingested_at``.

    What every feed's parser takes (``binaryFile`` rows in, see ``with_landing_provenance``).
    """
    return files.transform(with_landing_provenance).withColumns(
        {"_batch_id": F.lit(batch_id), "_ingested_at": F.current_timestamp()}
    )


def bytes_as_latin1(content: Column) -> Column:
    """View bytes as ISO-8859-1 text: one character per byte, so splitting and re-encoding are exact."""
    return _without_prefix(F.decode(content, LATIN1), UTF8_BOM_LATIN1)


def utf8_text(content: Column) -> Column:
    """Decode UTF-8 bytes, dropping a byte-order mark."""
    return _without_prefix(F.decode(content, "UTF-8"), "\ufeff")


def _without_prefix(text: Column, prefix: str) -> Column:
    # A prefix test, not an anchored regex replace: that scans and copies every file's whole text
    # (Spark evaluates the repeated `text` once: common subexpressions are computed once per row).
    rest = text.substr(F.lit(len(prefix) + 1), F.length(text))
    return F.when(text.startswith(prefix), rest).otherwise(text)


def split_lines(text: Column) -> Column:
    """A text's lines, split on ``\\n``; a line's ending ``\\r`` (CRLF files) is left to ``without_cr``.

    A one-character literal takes Java's split fast path; the regex ``\\r?\\n`` cost a third of a
    ping file's whole parse.
    """
    return F.split(text, "\n", -1)


def without_cr(line: Column) -> Column:
    """A line of ``split_lines`` without the ``\\r`` of a CRLF line ending."""
    return F.when(line.endswith("\r"), line.substr(F.lit(1), F.length(line) - 1)).otherwise(line)


def latin1_bytes(text: Column) -> Column:
    """The exact bytes behind a ISO-8859-1 view."""
    return F.encode(text, LATIN1)


def decode_as(raw: Column, charset: Column) -> Column:
    """Decode bytes with a charset chosen per row (one of ``CHARSETS``; anything else gives NULL)."""
    expr = F.when(charset == CHARSETS[0], F.decode(raw, CHARSETS[0]))
    for name in CHARSETS[1:]:
        expr = expr.when(charset == name, F.decode(raw, name))
    return expr


def is_valid_utf8(raw: Column) -> Column:
    """True when the bytes are well-formed UTF-8."""
    return F.call_function("is_valid_utf8", raw.cast("string"))


def undecodable(text: Column) -> Column:
    """True when decoding replaced bytes it could not map (the text holds U+FFFD)."""
    return F.instr(text, REPLACEMENT_CHAR) > 0


def explode_lines(latin1_text: Column) -> Column:
    """Split text into lines (``split_lines``): a ``posexplode`` giving ``_record_offset, _line``.

    Callers drop a CRLF line's ``\\r`` with ``without_cr``. The outer form gives a NULL line for a NULL
    text, which callers' line filters drop; the inner form would make Spark add a filter on the split,
    splitting every file twice.
    """
    return F.posexplode_outer(split_lines(latin1_text)).alias("_record_offset", "_line")


def quarantine_rows(df: DataFrame) -> DataFrame:
    """The rejected records of a parsed batch, in the shape of ``bronze.quarantine``.

    ``df`` must carry the provenance columns, ``_landing_day``, ``_reject_reason``, the record's exact
    bytes in ``_raw`` and its best-effort text in ``raw``.
    """
    return df.where(F.col("_reject_reason").isNotNull()).select(
        *PROVENANCE_COLUMNS,
        "_landing_day",
        F.col("_reject_reason").alias("reason"),
        F.coalesce(F.col("raw"), F.decode(F.col("_raw"), LATIN1)).alias("raw_text"),
        F.base64(F.col("_raw")).alias("raw_base64"),
    )


def raw_bytes_of_rejects(df: DataFrame) -> DataFrame:
    """Keep the exact bytes ``_raw`` of rejected records only (accepted ones keep their text in ``raw``).

    A parsed batch is cached once and read three times; without this every record's content would be
    cached twice (as text and as bytes) although only quarantined records need their bytes.
    """
    return df.withColumn("_raw", F.when(F.col("_reject_reason").isNotNull(), F.col("_raw")))


def accepted(df: DataFrame, columns: list[str]) -> DataFrame:
    """The records that passed, with ``columns`` then the provenance and landing day."""
    return df.where(F.col("_reject_reason").isNull()).select(*columns, *PROVENANCE_COLUMNS, "_landing_day")
