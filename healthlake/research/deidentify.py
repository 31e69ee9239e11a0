"""De-identification for research extracts: per-extract person keys, generalised quasi-identifiers.

Pure ``DataFrame -> DataFrame`` and ``Column -> Column`` functions: nothing here reads, writes or runs a
Spark action. The rules (also in ``docs/research.md``):

* The person key (the EMPI ``person_id``) is replaced by a keyed HMAC token of the extract's own kind
  (``retokenize``): two extracts give the same person unrelated keys, so extracts cannot be joined to
  each other or to the lake; the same extract re-run with the same key gives the same keys.
* Birth dates become birth years or ages in 5-year bands (``birth_year``, ``age_band``); areas become
  counties (``county_of``).
* Direct identifiers, the lake's keyed identity tokens and the keys that point back into the lake's
  source records are dropped (``drop_direct_identifiers``).
"""

from __future__ import annotations

import logging
import re

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

# Completed years at a local day, re-exported for research users (``healthlake.research.age_at``).
from healthlake.localtime import age_at as age_at
from healthlake.localtime import age_band as age_band
from healthlake.privacy.tokens import extract_kind, load_key, tokenizer

logger = logging.getLogger(__name__)

IDENTIFIER_STEMS = (
    "resident_id",
    "national_id",
    "id_number",
    "id_card",
    "passport_no",
    "insurance_no",
    "medical_record_no",
    "mrn",
    "identity_hash",
    "phone",
    "mobile",
    "telephone",
    "email",
    "address",
)
"""Direct identifiers dropped by name, alone or as a suffix (``home_address``, ``contact_phone``)."""

NAME_COLUMNS = frozenset(
    {
        "name",
        "patient_name",
        "person_name",
        "full_name",
        "given_name",
        "family_name",
        "contact_name",
        "guardian_name",
        "name_pinyin",
    }
)
"""Person names, dropped by exact name only: ``medication_name`` or ``vaccine_name`` are clinical data."""

LINKAGE_COLUMNS = frozenset(
    {"source_patient_id", "source_record_id", "source_encounter_id", "merged_into", "household_id"}
)
"""Keys of the lake's or the institutions' records: they lead back to an identified record."""

_IDENTIFIER = re.compile(r"(^|_)(" + "|".join(IDENTIFIER_STEMS) + r")$")


def _col(column: Column | str) -> Column:
    return F.col(column) if isinstance(column, str) else column


def is_direct_identifier(column_name: str) -> bool:
    """True when ``drop_direct_identifiers`` drops a column of this name (the rule, case-insensitive).

    Dropped: keyed identity tokens (``token`` or ``*_token``); ``IDENTIFIER_STEMS`` alone or as a
    ``_``-suffix; ``NAME_COLUMNS``; ``LINKAGE_COLUMNS``; lineage columns (a leading ``_``: they name the
    landing file and record offset a row came from).
    """
    name = column_name.lower()
    return (
        name == "token"
        or name.endswith("_token")
        or name.startswith("_")
        or name in NAME_COLUMNS
        or name in LINKAGE_COLUMNS
        or _IDENTIFIER.search(name) is not None
    )


def drop_direct_identifiers(df: DataFrame) -> DataFrame:
    """Drop every column that is a direct identifier, a keyed identity token or a link back to a record.

    The rule is ``is_direct_identifier`` on top-level column names. It does not drop ``person_id``: the
    research key is ``person_id`` replaced in place by ``retokenize``, which is to run first. Free text
    (``diagnosis_text``, ``display``) is not inspected; leave it out of extracts.

    Args:
        df: Any frame.

    Returns:
        ``df`` without those columns (the other columns in their order).
    """
    dropped = [c for c in df.columns if is_direct_identifier(c)]
    if dropped:
        logger.debug("dropping identifier columns %s", ", ".join(dropped))
    return df.select(*[df[c] for c in df.columns if c not in dropped])


def retokenize(
    df: DataFrame,
    column: str,
    extract: str,
    key: bytes | None = None,
    *,
    alias: str | None = None,
) -> DataFrame:
    """Replace a person key by its keyed HMAC token for one research extract.

    The token is the hex HMAC-SHA-256 of ``extract:<extract>:<value>`` (``healthlake.privacy.tokens``,
    in a pandas UDF so the key never appears in a query plan). The same person gets unrelated tokens in
    two extracts and the same token whenever the same extract is built with the same key. NULL or empty
    keys stay NULL.

    Args:
        df: Frame with the key column.
        column: The key column (e.g. ``person_id``); cast to string.
        extract: The extract's name (1-64 letters, digits, ``_``, ``.``, ``-``), e.g. ``htn_2026``.
        key: The tokenisation key; ``None`` reads it with ``load_key()``.
        alias: Name of the token column (default: ``column``); it takes the key column's place.

    Returns:
        ``df`` with ``column`` replaced by the token column ``alias`` at the same position.

    Raises:
        ValueError: For a missing column, a bad extract name, or an alias naming another existing column.
    """
    if column not in df.columns:
        raise ValueError(f"retokenize: no column {column!r}")
    name = alias or column
    if name != column and name in df.columns:
        raise ValueError(f"retokenize: alias {name!r} is already a column")
    tokens = tokenizer(key if key is not None else load_key(), extract_kind(extract))
    return df.select(
        *[tokens(df[c].cast("string")).alias(name) if c == column else df[c] for c in df.columns]
    )


def birth_year(birth_date: Column | str) -> Column:
    """The year of a birth date (an int); NULL for NULL."""
    return F.year(_col(birth_date))


def county_of(area_code: Column | str) -> Column:
    """Generalise a GB/T 2260 area code to its county (6 digits).

    Province ``PP0000``, city ``PPCC00`` and county ``PPCCDD`` codes have 6 digits, townships 9
    (``PPCCDDTTT``) and the statistical village codes 12. Township and village codes become their first 6
    digits (the county; a township directly under a city, ``PPCC00TTT``, becomes its city). A 6-digit code
    stays as it is: a county is already a county, and a city or province code is coarser than a county, so
    keeping it is still safe. Anything else (NULL, blank, letters, other lengths) becomes NULL, since an
    unrecognised value cannot be shown to be generalised.
    """
    code = F.trim(_col(area_code).cast("string"))
    return F.when(code.rlike(r"^[0-9]{6}([0-9]{3}){0,2}$"), F.substring(code, 1, 6))
