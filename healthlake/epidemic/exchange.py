"""Regional joint investigation (区域协查): risk-person lists handed to neighbouring regions, and taken.

A region that finds risk persons who are now elsewhere hands that region a list to find them by. The list
holds what the other region needs and no more: why the person is at risk (category, day, state), where
they were last seen, and who they are (name, resident ID number, phone, sex, birth date) — clear values
read from the vault, as the EMPI review sheet reads them; no diagnosis, test result, internal person id or
other person's name. ``healthlake epidemic export`` writes it (``healthlake.pipelines.exchange``) and logs
the disclosure; ``healthlake epidemic import`` lands a list received from another region in the landing
zone's ``public_health`` feed, so that ingest takes it into ``bronze.csv_records`` like any extract, with
its provenance.
"""

from __future__ import annotations

import re

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from healthlake.empi.identities import patient_tokens, with_clear_values
from healthlake.errors import ConfigError

LIST_EXTRACT = "regional_risk_list"
"""The extract name an imported list lands under (``bronze.csv_records.extract``)."""
LIST_COLUMNS = (
    "list_row",
    "from_region",
    "to_region",
    "category",
    "identified_date",
    "state",
    "last_seen_at",
    "last_seen_area_code",
    "full_name",
    "id_number",
    "phone",
    "sex",
    "birth_date",
)
"""The columns of a list, in order (the header of its CSV)."""
CATEGORY_ORDER = ("case", "close_contact", "secondary_contact", "risk_area")
"""A person listed in several categories is handed over in the first of them (the most urgent)."""


def region_prefix(code: str) -> str:
    """The prefix every area code inside the GB/T 2260 area ``code`` starts with.

    A province (``360000``) → ``36``, a city (``360100``) → ``3601``, a county (``360102``) → itself, a
    township (9 digits) → itself.

    Raises:
        ConfigError: When ``code`` is not a 6-digit area or 9-digit township code.
    """
    if not re.fullmatch(r"\d{6}|\d{9}", code) or code.startswith("00"):
        raise ConfigError(
            f"region code {code!r}: give a GB/T 2260 area code (6 digits, e.g. 360100) or a township's 9"
        )
    if len(code) == 9:
        return code
    prefix = code
    while len(prefix) > 2 and prefix.endswith("00"):
        prefix = prefix[:-2]
    return prefix


def risk_list(
    risk_persons: DataFrame,
    patient_records: DataFrame,
    person_xref: DataFrame,
    vault: DataFrame,
    *,
    from_region: str,
    to_region: str,
) -> DataFrame:
    """The list for ``to_region``: one row per risk person last seen there and not released.

    Args:
        risk_persons: ``gold.risk_persons``.
        patient_records: ``silver.patient_record``.
        person_xref: ``silver.person_xref``.
        vault: ``vault.identity``.
        from_region: This region's area code (``region.code``), written on every row.
        to_region: The receiving region's area code.

    Returns:
        ``LIST_COLUMNS``. ``list_row`` is a key the other region can answer by (a hash of this region's
        code and the person: no internal id leaves). A person's identity is that of their record with the
        most identifiers filled, then the latest.
    """
    prefix = region_prefix(to_region)
    rank = F.array_position(F.array(*[F.lit(c) for c in CATEGORY_ORDER]), F.col("category"))
    there = risk_persons.where(
        F.col("last_seen_area_code").startswith(prefix) & (F.col("state") != "released")
    )
    listed = there.groupBy("person_id").agg(
        F.min_by(
            F.struct("category", "identified_date", "state", "last_seen_at", "last_seen_area_code"),
            F.struct(rank, F.col("identified_date")),
        ).alias("_r")
    )
    keys = ["institution_id", "source_patient_id"]
    theirs = person_xref.select(*keys, "person_id").join(listed.select("person_id"), "person_id", "left_semi")
    records = patient_records.join(theirs.select(*keys), keys, "left_semi")
    filled = sum(
        (F.col(c).isNotNull().cast("int") for c in ("resident_id_token", "name_token", "phone_token")),
        F.lit(0),
    )
    best = (
        patient_tokens(records)
        .join(theirs, keys)
        .groupBy("person_id")
        .agg(
            F.max_by(
                F.struct(
                    "resident_id_token", "name_token", "phone_token", "address_token", "sex", "birth_date"
                ),
                F.struct(filled, F.col("_event_time"), F.col("record_id")),
            ).alias("_b")
        )
        .select("person_id", "_b.*")
    )
    who = with_clear_values(best, vault)
    return (
        listed.join(who, "person_id", "left")
        .select(
            F.substring(F.sha2(F.concat_ws("|", F.lit(from_region), F.col("person_id")), 256), 1, 16).alias(
                "list_row"
            ),
            F.lit(from_region).alias("from_region"),
            F.lit(to_region).alias("to_region"),
            "_r.category",
            "_r.identified_date",
            "_r.state",
            "_r.last_seen_at",
            "_r.last_seen_area_code",
            "full_name",
            "id_number",
            "phone",
            "sex",
            "birth_date",
        )
        .orderBy(rank, "identified_date", "list_row")
    )
