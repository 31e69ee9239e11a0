"""HL7 v2 feed → ``bronze.hl7v2_messages``: one row per message, decoded with the charset MSH-18 names.

Handles several messages per file, MLLP framing (0x0B … 0x1C 0x0D), a UTF-8 byte-order mark, and
segment separators ``\\r``, ``\\n`` or ``\\r\\n`` (stored normalised to ``\\r``, the standard one). The MSH
fields are read with the field and component separators the message declares (MSH-1, MSH-2); ``raw`` keeps
the message's own delimiters.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from healthlake.bronze.common import (
    PROVENANCE_COLUMNS,
    bytes_as_latin1,
    decode_as,
    latin1_bytes,
    undecodable,
)

MESSAGE_COLUMNS = [
    "message_type",
    "message_structure",
    "control_id",
    "version_id",
    "sending_facility",
    "message_time",
    "declared_charset",
    "raw",
]

# MSH-18 values (HL7 table 0211 and what Chinese systems write) → Java charset names.
HL7_CHARSETS = {
    "UNICODE UTF-8": "UTF-8",
    "UTF-8": "UTF-8",
    "UTF8": "UTF-8",
    "UNICODE": "UTF-8",
    "GBK": "GBK",
    "GB 18030-2000": "GB18030",
    "GB18030": "GB18030",
    "GB 18030": "GB18030",
    "8859/1": "ISO-8859-1",
    "ASCII": "US-ASCII",
}

_CONTEXT = [*PROVENANCE_COLUMNS[:3], "_batch_id", "_ingested_at", "_landing_day"]
# A message starts with MSH and its field separator (MSH-1): ``|`` nearly always, but any mark may be declared
_MESSAGE_START = r"(?:\r\n|\r|\n)+(?=MSH[^\w\s])"


def _field(fields: Column, n: int) -> Column:
    """MSH-n from the MSH segment split on ``|`` (element 1 is ``MSH``, element n is MSH-n for n ≥ 2)."""
    return F.try_element_at(fields, F.lit(n))


def _literal(char: Column) -> Column:
    """A regex matching ``char`` itself (separators such as ``|`` and ``^`` are regex marks)."""
    return F.concat(F.lit(r"\Q"), char, F.lit(r"\E"))


def _segment_fields(message: Column) -> Column:
    """The fields of a message's first segment (MSH), split on the field separator MSH-1 declares."""
    separator = F.substr(message, F.lit(4), F.lit(1))
    return F.split(F.substring_index(message, "\r", 1), _literal(separator), -1)


def _components(field: Column, fields: Column) -> Column:
    """An MSH field split on the component separator MSH-2 declares (its first character)."""
    separator = F.coalesce(F.nullif(F.substr(_field(fields, 2), F.lit(1), F.lit(1)), F.lit("")), F.lit("^"))
    return F.split(F.coalesce(field, F.lit("")), _literal(separator), -1)


def charset_for(declared: Column, default: str) -> Column:
    """The Java charset for an MSH-18 value; ``default`` when empty; ``UNKNOWN`` when not supported."""
    key = F.upper(F.trim(declared))
    expr = F.when(key.isNull() | (key == ""), F.lit(default))
    for value, charset in HL7_CHARSETS.items():
        expr = expr.when(key == value, F.lit(charset))
    return expr.otherwise(F.lit("UNKNOWN"))


def parse_hl7v2(files: DataFrame, *, default_charset: str = "UTF-8") -> DataFrame:
    """Split HL7 v2 files into messages; rejected ones carry ``_reject_reason``.

    Args:
        files: Landing files with provenance, ``_batch_id`` and ``_ingested_at``.
        default_charset: Charset of messages whose MSH-18 is empty.
    """
    unframed = F.regexp_replace(bytes_as_latin1(F.col("content")), "[\u000b\u001c]", "")
    messages = (
        files.select(
            # outer: an inner explode makes Spark add a filter that splits every file twice
            *_CONTEXT,
            F.posexplode_outer(F.split(unframed, _MESSAGE_START, -1)).alias("_record_offset", "_m"),
        )
        .withColumn("_m", F.regexp_replace(F.col("_m"), r"^[\r\n]+|[\r\n]+$", ""))
        .where(F.col("_m") != "")
        .withColumn("_raw", latin1_bytes(F.col("_m")))
        .withColumn("_msh", _segment_fields(F.regexp_replace("_m", r"\r\n|\n", "\r")))
        .withColumn("declared_charset", _field(F.col("_msh"), 18))
        .withColumn("_charset", charset_for(F.col("declared_charset"), default_charset))
        .withColumn("_text", F.regexp_replace(decode_as(F.col("_raw"), F.col("_charset")), r"\r\n|\n", "\r"))
        .withColumn("_fields", _segment_fields(F.col("_text")))
        .withColumn("_type", _components(_field(F.col("_fields"), 9), F.col("_fields")))
    )
    msh9 = F.coalesce(_field(F.col("_fields"), 9), F.lit(""))
    msh12 = F.coalesce(_field(F.col("_fields"), 12), F.lit(""))
    reason = (
        F.when(~F.col("_m").rlike(r"^MSH[^\w\s]"), F.lit("hl7: no MSH segment at the start (not a message)"))
        .when(
            F.col("_charset") == "UNKNOWN",
            F.concat(F.lit("hl7: unsupported MSH-18 charset "), "declared_charset"),
        )
        .when(undecodable(F.col("_text")), F.concat(F.lit("undecodable: bytes invalid in "), "_charset"))
        .when(msh9 == "", F.lit("hl7: MSH-9 message type missing"))
        .when(msh12 == "", F.lit("hl7: MSH-12 version missing"))
    )
    return messages.select(
        *_CONTEXT,
        "_record_offset",
        F.concat_ws("^", F.try_element_at("_type", F.lit(1)), F.try_element_at("_type", F.lit(2))).alias(
            "message_type"
        ),
        F.try_element_at("_type", F.lit(3)).alias("message_structure"),
        _field(F.col("_fields"), 10).alias("control_id"),
        _field(F.col("_fields"), 12).alias("version_id"),
        _field(F.col("_fields"), 4).alias("sending_facility"),
        _field(F.col("_fields"), 7).alias("message_time"),
        "declared_charset",
        F.col("_text").alias("raw"),
        reason.alias("_reject_reason"),
        "_raw",
    )
