"""The derived-table contract (``healthlake.derived``): run order. (That every gold table updated after a day
of changes equals a full build is checked by ``tests/gold/test_publish.py`` on the same two days, through
the publish stage; ``tests/derived_check.py`` checks the epidemic registry directly.)"""

from __future__ import annotations

import pytest

from healthlake.derived import DerivedTable, dependency_order
from healthlake.gold.registry import GOLD


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
