"""Data-quality rules as named Column conditions, and the split of rows into passed and rejected.

A rule is a condition that must hold for a row; a NULL result counts as a failure (an unknown is not a
pass). Each rule has a dimension: completeness, validity, consistency or timeliness. Rejected rows keep
every column plus ``_failed_rules`` (the names of *all* the rules they failed), so one look at
``silver.quarantine`` says everything that is wrong with a record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

DIMENSIONS = ("completeness", "validity", "consistency", "timeliness")
FAILED_RULES = "_failed_rules"


@dataclass(frozen=True)
class Rule:
    """A named condition every row of a table must meet.

    Attributes:
        name: Short snake_case name, shown in ``silver.quarantine`` and ``silver.dq_metrics``.
        dimension: One of ``DIMENSIONS``.
        condition: True for a good row; False or NULL for a bad one.
        description: What the rule checks, in words.
    """

    name: str
    dimension: str
    condition: Column
    description: str = ""

    def __post_init__(self) -> None:
        if self.dimension not in DIMENSIONS:
            raise ValueError(f"rule {self.name}: dimension {self.dimension!r} is not one of {DIMENSIONS}")


def with_failed_rules(df: DataFrame, rules: Sequence[Rule]) -> DataFrame:
    """Add ``_failed_rules``: the names of the rules a row fails (empty when it passes them all)."""
    if not rules:
        return df.withColumn(FAILED_RULES, F.array().cast("array<string>"))
    failed = [
        F.when(F.coalesce(rule.condition, F.lit(False)), F.lit(None)).otherwise(F.lit(rule.name))
        for rule in rules
    ]
    return df.withColumn(FAILED_RULES, F.array_compact(F.array(*failed)))


def passed(df: DataFrame) -> DataFrame:
    """Rows of a ``with_failed_rules`` frame that failed no rule (without ``_failed_rules``)."""
    return df.where(F.size(FAILED_RULES) == 0).drop(FAILED_RULES)


def rejected(df: DataFrame) -> DataFrame:
    """Rows of a ``with_failed_rules`` frame that failed at least one rule."""
    return df.where(F.size(FAILED_RULES) > 0)


def rule_counts(df: DataFrame, rules: Sequence[Rule], by: Sequence[str]) -> DataFrame:
    """Rows checked and rows failed per rule and group: one row per (group, rule).

    Args:
        df: A ``with_failed_rules`` frame.
        rules: The rules it was checked with.
        by: Grouping columns (e.g. ``institution_id``).
    """
    aggs = [F.count("*").alias("rows_checked")]
    aggs += [F.count_if(F.array_contains(FAILED_RULES, r.name)).alias(f"_f{i}") for i, r in enumerate(rules)]
    grouped = df.groupBy(*by).agg(*aggs)
    per_rule = F.array(
        *[
            F.struct(
                F.lit(r.name).alias("rule"),
                F.lit(r.dimension).alias("dimension"),
                F.col(f"_f{i}").alias("rows_failed"),
            )
            for i, r in enumerate(rules)
        ]
    )
    return grouped.select(*by, "rows_checked", F.explode(per_rule).alias("_r")).select(
        *by, "_r.rule", "_r.dimension", "rows_checked", "_r.rows_failed"
    )
