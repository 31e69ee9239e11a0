"""Disclosure control for research outputs: small-cell suppression and a k-anonymity report.

Pure ``DataFrame -> DataFrame`` functions with Spark built-ins; nothing here runs an action.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BinaryType, MapType, StructType

DEFAULT_THRESHOLD = 5
"""Counts 1-4 are small cells: a published count of 1-4 persons can identify them."""

SUPPRESSED = "suppressed"
"""The flag column ``suppress_small_cells`` adds."""


def is_small(count: Column, threshold: int = DEFAULT_THRESHOLD) -> Column:
    """True for a small cell: ``0 < count < threshold`` (zeros are kept: they disclose no one)."""
    return (count > 0) & (count < threshold)


def suppress_small_cells(
    df: DataFrame,
    count_columns: Sequence[str],
    threshold: int = DEFAULT_THRESHOLD,
    *,
    rates: Mapping[str, tuple[str, str]] | None = None,
    complementary_by: Sequence[str] | None = None,
) -> DataFrame:
    """Set small counts (``0 < count < threshold``) to NULL and flag the rows that lost a cell.

    Primary suppression always. With ``complementary_by`` also complementary suppression, one pass per
    count column: in each group of rows (the same values of ``complementary_by``) where exactly one cell
    of the column was suppressed, the group's smallest remaining positive cell is suppressed too, so the
    suppressed cell cannot be recovered by subtracting the others from the group's total (ties go to the
    first row in the order of the other columns). A group whose only positive cell is small has no
    complement: publish no total for it. Without ``complementary_by`` suppression is primary only.

    Args:
        df: An aggregate table (one row per cell group; never patient-level rows).
        count_columns: Columns holding counts of persons or events.
        threshold: Smallest count that may be shown (5: counts 1-4 are suppressed).
        rates: Derived columns → ``(numerator, denominator)`` count columns; a rate is set to NULL when
            its numerator or denominator was suppressed.
        complementary_by: Columns grouping the cells that add up to a published total.

    Returns:
        ``df`` with suppressed cells NULL and a boolean column ``suppressed``: a cell of the row was
        suppressed (rates follow their counts).

    Raises:
        ValueError: For an unknown column, a rate over a column not in ``count_columns``, a threshold
            below 1, or a frame that already has a ``suppressed`` column.
    """
    counts = list(count_columns)
    rates = dict(rates or {})
    group = list(complementary_by or [])
    if threshold < 1:
        raise ValueError(f"threshold must be at least 1, not {threshold}")
    if SUPPRESSED in df.columns:
        raise ValueError(f"the frame already has a {SUPPRESSED!r} column")
    missing = [c for c in [*counts, *rates, *group] if c not in df.columns]
    if missing:
        raise ValueError(f"no such columns: {', '.join(missing)}")
    for rate, parts in rates.items():
        outside = [c for c in parts if c not in counts]
        if outside:
            raise ValueError(f"rate {rate!r} uses {', '.join(outside)}, which are not count columns")

    flag = {c: f"__suppress_{i}" for i, c in enumerate(counts)}
    out = df.withColumns({flag[c]: F.coalesce(is_small(F.col(c), threshold), F.lit(False)) for c in counts})
    if group:
        out = _complementary(out, counts, flag, group)
    nulls = {c: F.when(~F.col(flag[c]), F.col(c)) for c in counts}
    nulls.update({r: F.when(~(F.col(flag[n]) | F.col(flag[d])), F.col(r)) for r, (n, d) in rates.items()})
    any_flag = F.lit(False)
    for c in counts:
        any_flag = any_flag | F.col(flag[c])
    return out.withColumns(nulls).withColumn(SUPPRESSED, any_flag).drop(*flag.values())


def _orderable(df: DataFrame, exclude: Sequence[str]) -> list[str]:
    # Tie-breaks must be deterministic (a re-run must suppress the same cells); complex types cannot sort.
    unsortable = (MapType, ArrayType, StructType, BinaryType)
    return [
        f.name for f in df.schema.fields if f.name not in exclude and not isinstance(f.dataType, unsortable)
    ]


def _complementary(df: DataFrame, counts: list[str], flag: dict[str, str], group: list[str]) -> DataFrame:
    """Per count column, suppress the smallest positive unsuppressed cell of groups with one suppression."""
    by_group = Window.partitionBy(*group)
    ties = _orderable(df, [*counts, *flag.values()])
    for c in counts:
        candidate = F.coalesce((F.col(c) > 0) & ~F.col(flag[c]), F.lit(False))
        # Candidates first, smallest count first; the rank is taken among candidates only.
        ordered = by_group.orderBy(
            (~candidate).asc(), F.col(c).asc(), *[F.col(t).asc_nulls_first() for t in ties]
        )
        primaries = F.sum(F.col(flag[c]).cast("int")).over(by_group)
        complement = candidate & (primaries == 1) & (F.row_number().over(ordered) == 1)
        df = df.withColumn(flag[c], F.col(flag[c]) | complement)
    return df


def k_anonymity_classes(df: DataFrame, quasi_identifiers: Sequence[str]) -> DataFrame:
    """The equivalence classes of ``quasi_identifiers`` and their sizes.

    Rows with equal values of every quasi-identifier form a class; NULL is a value like any other (rows
    with NULL county and equal other values are one class).

    Returns:
        The quasi-identifier columns and ``class_size`` (long), one row per class.
    """
    qis = _check_qis(df, quasi_identifiers)
    return df.groupBy(*qis).agg(F.count(F.lit(1)).alias("class_size"))


def k_anonymity(df: DataFrame, quasi_identifiers: Sequence[str], k: int = DEFAULT_THRESHOLD) -> DataFrame:
    """A one-row report of how far ``df`` is k-anonymous over ``quasi_identifiers``.

    Returns:
        ``quasi_identifiers`` (the names joined by ``", "``), ``k``, ``records``, ``equivalence_classes``,
        ``min_class_size`` (NULL for an empty frame), ``classes_below_k``, ``records_below_k`` (rows in
        classes smaller than ``k``: those to generalise or suppress) and ``is_k_anonymous`` (no class
        below ``k``; true for an empty frame).

    Raises:
        ValueError: For no or unknown quasi-identifiers, or ``k`` below 1.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    qis = _check_qis(df, quasi_identifiers)
    size = F.col("class_size")
    below = size < k
    report = k_anonymity_classes(df, qis).agg(
        F.coalesce(F.sum(size), F.lit(0)).cast("long").alias("records"),
        F.count(F.lit(1)).alias("equivalence_classes"),
        F.min(size).alias("min_class_size"),
        F.coalesce(F.sum(below.cast("long")), F.lit(0)).cast("long").alias("classes_below_k"),
        F.coalesce(F.sum(F.when(below, size)), F.lit(0)).cast("long").alias("records_below_k"),
    )
    return report.select(
        F.lit(", ".join(qis)).alias("quasi_identifiers"),
        F.lit(k).alias("k"),
        "records",
        "equivalence_classes",
        "min_class_size",
        "classes_below_k",
        "records_below_k",
        (F.col("classes_below_k") == 0).alias("is_k_anonymous"),
    )


def _check_qis(df: DataFrame, quasi_identifiers: Sequence[str]) -> list[str]:
    qis = list(quasi_identifiers)
    if isinstance(quasi_identifiers, str) or not qis:
        raise ValueError("give the quasi-identifiers as a non-empty list of column names")
    missing = [c for c in qis if c not in df.columns]
    if missing:
        raise ValueError(f"no such columns: {', '.join(missing)}")
    return qis
