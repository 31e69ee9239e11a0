"""Person columns in one comparable shape: split names, pinyin, digits-only phones, normalised IDs.

Pure ``DataFrame -> DataFrame`` functions; the one Python UDF (pinyin) is a pandas UDF, because no Spark
built-in turns Chinese characters into their reading.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

ROLES = (
    "record_id",
    "given_name",
    "family_name",
    "full_name",
    "birth_date",
    "sex",
    "id_number",
    "phone",
    "address_line",
    "street_number",
    "locality",
    "postcode",
    "area",
    "state",
)
"""Column roles a person table can map (``record_id`` is required, every other role is optional)."""

# Two-character Chinese surnames; every other Chinese name takes its first character as the surname.
COMPOUND_SURNAMES = (
    "欧阳",
    "司马",
    "诸葛",
    "上官",
    "东方",
    "皇甫",
    "尉迟",
    "公孙",
    "慕容",
    "长孙",
    "宇文",
    "司徒",
    "夏侯",
    "轩辕",
    "令狐",
    "钟离",
    "端木",
    "独孤",
    "南宫",
    "西门",
)

CJK_CHARACTERS = "[\\u3400-\\u9fff]"
"""Regular expression of one Chinese character (CJK unified ideographs and extension A)."""


@functools.lru_cache(maxsize=500_000)
def _pinyin_of(name: str) -> str:
    from pypinyin import lazy_pinyin

    return "".join(lazy_pinyin(name))


def _pinyin_series(names: pd.Series) -> pd.Series:
    # Names repeat (王伟, 张伟 …): each distinct one is read once per Python worker, not once per record.
    return names.map(_pinyin_of, na_action="ignore")


# pyspark's stubs have no overload for this form (the function type read from the type hints, PEP 484
# style, which Spark 3+ recommends); they expect the deprecated functionType argument.
@F.pandas_udf(StringType())  # type: ignore[call-overload]
def pinyin(names: pd.Series) -> pd.Series:
    """Toneless pinyin of each value (``张伟`` → ``zhangwei``); non-Chinese characters pass unchanged."""
    return _pinyin_series(names)


def _clean(col: Column) -> Column:
    """Trimmed, lower-cased, inner spaces removed; empty strings become NULL."""
    value = F.lower(F.regexp_replace(F.trim(col), r"[\s·.\-']+", ""))
    return F.when(value != "", value)


def standardize_person_columns(
    df: DataFrame, columns: Mapping[str, str], *, keep: Sequence[str] = ()
) -> DataFrame:
    """Rename a person table's columns to the linkage roles and derive the comparison columns.

    Args:
        df: Any person table, one row per record.
        columns: Role (see ``ROLES``) → the table's column. ``record_id`` is required; names may come as
            ``given_name`` and ``family_name`` or as one ``full_name`` (Chinese: family name first;
            others: family name last).

    Returns:
        ``unique_id`` (string) and the mapped roles, plus ``name_key`` (whole name, lower case, no
        spaces, family name first for Chinese and given name first otherwise, as written), ``name_pinyin``
        and, when a name is mapped, ``given_name`` and ``family_name`` (derived from ``full_name`` when
        not mapped), and the columns named in ``keep`` unchanged. Other columns of ``df`` are dropped.
    """
    unknown = sorted(set(columns) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown person column roles {unknown}; use some of {list(ROLES)}")
    if "record_id" not in columns:
        raise ValueError("map the record_id role to the column that identifies each record")
    out = df.select(
        F.col(columns["record_id"]).cast("string").alias("unique_id"),
        *[F.col(src).alias(role) for role, src in columns.items() if role != "record_id"],
        *keep,
    )
    derived: dict[str, Column] = {}
    for role in ("given_name", "family_name", "full_name", "address_line", "locality", "state"):
        if role in columns:
            derived[role] = F.when(F.trim(F.col(role)) != "", F.trim(F.col(role)))
    for role in ("sex", "area", "street_number", "postcode"):
        if role in columns:
            value = F.upper(F.trim(F.col(role).cast("string")))
            derived[role] = F.when(value != "", value)
    if "birth_date" in columns:
        # Kept as text, not parsed: a mistyped date (19551192) still counts as one character off.
        if dict(out.dtypes)["birth_date"] in ("date", "timestamp", "timestamp_ntz"):
            derived["birth_date"] = F.date_format("birth_date", "yyyy-MM-dd")
        else:
            text = F.regexp_replace(F.trim(F.col("birth_date").cast("string")), r"[/.]", "-")
            text = F.regexp_replace(text, r"^(\d{4})(\d{2})(\d{2})$", "$1-$2-$3")
            derived["birth_date"] = F.when(text != "", text)
    if "id_number" in columns:
        value = F.upper(F.regexp_replace(F.col("id_number").cast("string"), r"\s", ""))
        derived["id_number"] = F.when(value != "", value)
    if "phone" in columns:
        # Digits only, without a +86 / 0086 country prefix, so that formatting never hides a match.
        digits = F.regexp_replace(F.col("phone").cast("string"), r"\D", "")
        digits = F.regexp_replace(digits, r"^(0086|86)(1\d{10})$", "$2")
        derived["phone"] = F.when(digits != "", digits)
    out = out.withColumns(derived)
    if "full_name" in columns or "given_name" in columns or "family_name" in columns:
        out = out.transform(_names)
    return out


def _names(df: DataFrame) -> DataFrame:
    full = F.col("full_name") if "full_name" in df.columns else F.lit(None).cast("string")
    family = F.col("family_name") if "family_name" in df.columns else F.lit(None).cast("string")
    given = F.col("given_name") if "given_name" in df.columns else F.lit(None).cast("string")
    chinese = F.coalesce(full, family, given).rlike(CJK_CHARACTERS)
    compound = full.substr(1, 2).isin(*COMPOUND_SURNAMES)
    latin_parts = F.split(F.trim(full), r"\s+")
    split_family = (
        F.when(chinese & compound, full.substr(1, 2))
        .when(chinese, full.substr(1, 1))
        .otherwise(F.element_at(latin_parts, -1))
    )
    split_given = (
        F.when(chinese & compound, full.substr(3, 1000))
        .when(chinese, full.substr(2, 1000))
        .otherwise(F.array_join(F.slice(latin_parts, 1, F.size(latin_parts) - 1), " "))
    )
    family = F.coalesce(family, split_family)
    given = F.coalesce(given, F.when(F.length(split_given) > 0, split_given))
    whole = F.coalesce(
        full,
        F.when(chinese, F.concat_ws("", family, given)).otherwise(F.concat_ws(" ", given, family)),
    )
    out = df.withColumns(
        {"family_name": _clean(family), "given_name": _clean(given), "name_key": _clean(whole)}
    )
    return out.withColumn("name_pinyin", pinyin(F.col("name_key"))).drop("full_name")
