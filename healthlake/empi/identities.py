"""The EMPI's view of silver patient records: tokens joined back to their clear values in the vault.

Only the EMPI reads ``vault.identity``: fuzzy matching cannot work on keyed tokens. What it writes outside
the vault holds tokens and person ids only.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

# patient_record token column → vault kind → clear column of the linkage view.
TOKEN_KINDS = {
    "resident_id_token": ("resident_id", "id_number"),
    "name_token": ("name", "full_name"),
    "phone_token": ("phone", "phone"),
    "address_token": ("address", "address_line"),
}

STRONG_IDENTIFIERS = ("resident_id_token", "insurance_no_token")
"""Tokens that link two records deterministically when equal (a resident ID only when it checks out)."""

IDENTITY_COLUMNS = {
    "record_id": "record_id",
    "full_name": "full_name",
    "birth_date": "birth_date",
    "sex": "sex",
    "id_number": "id_number",
    "phone": "phone",
    "address_line": "address_line",
    "area": "area_code",
}
"""The ``link_persons`` role mapping for the frame ``patient_identities`` returns."""


def patient_identities(patient_record: DataFrame, vault: DataFrame) -> DataFrame:
    """One row per source patient (institution, patient number) with its clear identifiers.

    ``patient_tokens`` followed by ``with_clear_values``.

    Args:
        patient_record: ``silver.patient_record``.
        vault: ``vault.identity`` (token, kind, value).

    Returns:
        ``patient_tokens``'s columns plus the clear ``full_name``, ``id_number``, ``phone`` and
        ``address_line``.
    """
    return with_clear_values(patient_tokens(patient_record), vault)


def patient_tokens(patient_record: DataFrame) -> DataFrame:
    """One row per source patient (institution, patient number): its tokens and coded values, no clear value.

    Args:
        patient_record: ``silver.patient_record``.

    Returns:
        ``record_id`` (``<institution_id>|<source_patient_id>``), ``institution_id``, ``source_patient_id``,
        ``sex``, ``birth_date``, ``area_code``, the tokens, ``insurance_no_token``, ``resident_id_valid``,
        ``birth_date_matches_id``, ``_event_time`` and ``identity_hash`` (a hash of the tokens and coded
        values, to notice a changed record). When several records of one patient exist (registry,
        health record, NAT test …), the one with the most identifiers filled wins, then the latest event.
    """
    # A token is there exactly when its clear value is (conform writes both): the most identifiers
    # filled can be told from the tokens, before any vault join.
    filled = sum((F.col(token).isNotNull().cast("int") for token in TOKEN_KINDS), F.lit(0))
    carried = [
        "sex",
        "birth_date",
        "area_code",
        *TOKEN_KINDS,
        "insurance_no_token",
        "resident_id_valid",
        "birth_date_matches_id",
        "_event_time",
    ]
    best = F.max_by(F.struct(*carried), F.struct(filled, F.col("_event_time")))
    key = ["institution_id", "source_patient_id"]
    # What the EMPI saw of a record, as keyed tokens and coded values (no clear value): a change of it
    # makes the next incremental run link the record again.
    signature = F.sha2(
        F.to_json(F.struct(*TOKEN_KINDS, "insurance_no_token", "sex", "birth_date", "area_code")), 256
    )
    return (
        patient_record.groupBy(*key)
        .agg(best.alias("best"))
        .select(F.concat_ws("|", *key).alias("record_id"), *key, "best.*")
        .withColumn("identity_hash", signature)
    )


def with_clear_values(records: DataFrame, vault: DataFrame) -> DataFrame:
    """Add the clear ``full_name``, ``id_number``, ``phone`` and ``address_line`` of each token.

    Args:
        records: Rows with the token columns of ``TOKEN_KINDS`` (``patient_tokens``, or some of its rows:
            an incremental run joins only the records it links).
        vault: ``vault.identity`` (token, kind, value).
    """
    for token, (kind, clear) in TOKEN_KINDS.items():
        values = vault.where(F.col("kind") == kind).select(
            F.col("token").alias(token), F.col("value").alias(clear)
        )
        records = records.join(values.dropDuplicates([token]), token, "left")
    return records
