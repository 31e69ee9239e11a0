"""The area hierarchy gold rolls up through: each area's and each institution's path to the province.

GB/T 2260 areas nest province → city → county → township (``silver.area``); an institution sits in one
of them (``silver.institution.area_code``): a township for clinics, a county for county hospitals, a city for
city hospitals and centres that no county administers ("city-direct"). Roll-ups group by the path codes, so
a city's figure covers every institution under it, whether in one of its counties or directly under it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from healthlake.catalog import SILVER_AREA, SILVER_INSTITUTION
from healthlake.derived import Inputs

ROLLUP_LEVELS = ("township", "county", "city", "province")
"""Area levels gold rolls up to, from the bottom (institutions sit below townships)."""

PATH_COLUMNS = tuple(f"{level}_code" for level in ROLLUP_LEVELS)


def area_paths(areas: DataFrame) -> DataFrame:
    """Each area with the codes of itself and its ancestors, one column per level.

    Args:
        areas: ``silver.area`` (``area_code``, ``level``, ``parent_code``).

    Returns:
        ``area_code``, ``level``, ``name`` and ``township_code``, ``county_code``, ``city_code``,
        ``province_code`` (NULL for levels above the area's own: a county has no township).
    """
    nodes = areas.select("area_code", "level", "parent_code", "name")
    path = nodes.select(
        "area_code",
        "level",
        "name",
        F.col("parent_code").alias("_up1"),
        *[F.when(F.col("level") == lvl, F.col("area_code")).alias(f"{lvl}_code") for lvl in ROLLUP_LEVELS],
    )
    # The hierarchy has four levels, so three steps up reach the province from any area.
    for step in (1, 2, 3):
        parent = nodes.select(
            F.col("area_code").alias(f"_up{step}"),
            F.col("level").alias("_plevel"),
            F.col("parent_code").alias(f"_up{step + 1}"),
        )
        path = path.join(F.broadcast(parent), f"_up{step}", "left").select(
            "area_code",
            "level",
            "name",
            f"_up{step + 1}",
            *[
                F.coalesce(F.col(f"{lvl}_code"), F.when(F.col("_plevel") == lvl, F.col(f"_up{step}"))).alias(
                    f"{lvl}_code"
                )
                for lvl in ROLLUP_LEVELS
            ],
        )
    return path.drop("_up4")


def institution_paths(institutions: DataFrame, areas: DataFrame) -> DataFrame:
    """Each institution with its area path (``township_code`` … ``province_code``) and name.

    Args:
        institutions: ``silver.institution``.
        areas: ``silver.area``.

    Returns:
        ``institution_id``, ``institution_name``, ``institution_area_code`` and the path columns; an
        institution whose area is not in ``silver.area`` keeps NULL path codes (it still counts at the
        institution level).
    """
    paths = area_paths(areas).drop("level", "name")
    return (
        institutions.select(
            "institution_id",
            F.col("name").alias("institution_name"),
            F.col("area_code").alias("institution_area_code"),
        )
        .join(F.broadcast(paths), F.col("institution_area_code") == F.col("area_code"), "left")
        .drop("area_code")
    )


def roll_up(
    per_institution: DataFrame,
    keys: Sequence[str],
    measures: Sequence[str],
    institution_paths: DataFrame,
    areas: DataFrame,
) -> DataFrame:
    """Additive measures per institution, and summed to every area level above it.

    Args:
        per_institution: One row per (``institution_id``, ``keys``) with the additive ``measures``.
        keys: The other grouping columns (e.g. ``date``).
        measures: Additive measure columns (summed; never rates).
        institution_paths: ``institution_paths`` (institution → area codes).
        areas: ``silver.area`` (names).

    Returns:
        ``keys``, ``level`` (``institution`` or a ``ROLLUP_LEVELS`` level), ``unit_code``, ``unit_name`` and
        the measures. An institution missing from the register appears at the institution level only.
    """
    placed = per_institution.join(F.broadcast(institution_paths), "institution_id", "left")
    names = areas.select(F.col("area_code").alias("unit_code"), F.col("name").alias("unit_name"))
    rows = placed.select(
        *keys,
        F.lit("institution").alias("level"),
        F.col("institution_id").alias("unit_code"),
        F.col("institution_name").alias("unit_name"),
        *measures,
    )
    for level in ROLLUP_LEVELS:
        summed = (
            placed.where(F.col(f"{level}_code").isNotNull())
            .groupBy(*keys, F.col(f"{level}_code").alias("unit_code"))
            .agg(*[F.sum(m).alias(m) for m in measures])
            .join(F.broadcast(names), "unit_code", "left")
        )
        rows = rows.unionByName(summed.withColumn("level", F.lit(level)))
    return rows


def registered_places(inputs: Inputs) -> DataFrame:
    """``institution_paths`` of the run's institution and area registers (made once per run)."""
    return inputs.once(
        "gold.areas.places",
        lambda: institution_paths(inputs.read(SILVER_INSTITUTION), inputs.read(SILVER_AREA)),
    )
