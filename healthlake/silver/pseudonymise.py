"""Replace direct identifiers by keyed tokens; collect the clear values for ``vault.identity``."""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from healthlake.privacy.tokens import tokenizer

VAULT_COLUMNS = ("token", "kind", "value")


def tokenize_columns(df: DataFrame, key: bytes, columns: Mapping[str, str]) -> DataFrame:
    """Add ``<column>_token`` for each identifier column (``column → token kind``); clear columns stay.

    Call ``drop_clear`` once the vault rows are taken.
    """
    return df.withColumns({f"{c}_token": tokenizer(key, kind)(F.col(c)) for c, kind in columns.items()})


def vault_rows(df: DataFrame, columns: Mapping[str, str]) -> DataFrame:
    """One row per distinct (token, kind, clear value) in a ``tokenize_columns`` frame."""
    pairs = F.array(
        *[
            F.struct(F.col(f"{c}_token").alias("token"), F.lit(kind).alias("kind"), F.col(c).alias("value"))
            for c, kind in columns.items()
        ]
    )
    return (
        df.select(F.explode(pairs).alias("_v"))
        .select("_v.*")
        .where(F.col("token").isNotNull())
        .dropDuplicates(["token"])
    )


def drop_clear(df: DataFrame, columns: Mapping[str, str]) -> DataFrame:
    """Drop the clear identifier columns, keeping their tokens."""
    return df.drop(*columns)
