"""The derived-table contract (``healthlake.derived``): run order, and for every gold table, an incremental
update after a day of changes equal to a full build (``tests/derived_check.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from healthlake.derived import DerivedTable, dependency_order
from healthlake.gold.registry import GOLD
from healthlake.gold.utilization import MAX_OPEN_NIGHTS
from healthlake.pipelines import publish
from tests.derived_check import assert_update_equals_build, lake_versions
from tests.gold.test_publish import _day1, _day2


def _table(name: str, *reads: str) -> DerivedTable:
    return DerivedTable(name=name, key=("k",), reads=reads, build=lambda inputs: inputs.read(name))


def test_tables_run_after_the_tables_they_read_and_otherwise_in_registry_order() -> None:
    a, b, c = _table("gold.a", "silver.x"), _table("gold.b", "gold.c"), _table("gold.c", "gold.a")
    assert [t.name for t in dependency_order([a, b, c])] == ["gold.a", "gold.c", "gold.b"]
    assert [t.name for t in dependency_order([b, c, a])] == ["gold.a", "gold.c", "gold.b"]
    with pytest.raises(ValueError, match="read each other: gold.a, gold.b"):
        dependency_order([_table("gold.a", "gold.b"), _table("gold.b", "gold.a")])


def test_the_gold_registry_is_in_the_order_it_runs() -> None:
    assert dependency_order(GOLD) == list(GOLD)
    assert len({t.name for t in GOLD}) == len(GOLD)


def test_every_gold_table_updated_after_a_day_equals_a_full_build(
    spark: SparkSession, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    _day1(spark, str(lake))
    day1 = lake_versions(spark, str(lake))
    _day2(spark, str(lake))
    day2 = lake_versions(spark, str(lake))
    as_of = tuple(publish._as_of(publish.inputs_of(spark, str(lake), v)) for v in (day1, day2))
    assert as_of[0] < as_of[1]
    done = assert_update_equals_build(
        spark,
        lake,
        GOLD,
        day1=day1,
        day2=day2,
        as_of=(as_of[0], as_of[1]),
        work=tmp_path / "full",
        settings={MAX_OPEN_NIGHTS: 365},
        empty=publish.EMPTY,
    )
    # Every table the silver of these two days feeds was updated, none rebuilt; the exchange volumes need
    # bronze (tests/gold/test_gold_region.py checks them on a generated region's re-sent day).
    fed = {t.name for t in GOLD if not t.requires}
    assert {name: done[name] for name in fed} == dict.fromkeys(fed, "incremental")
    assert {done[t.name] for t in GOLD if t.requires} == {"absent"}
