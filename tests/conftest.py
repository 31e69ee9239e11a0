"""Shared fixtures: one local Spark session with Delta for the whole run, a fresh lake per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession

from healthlake import catalog, io
from healthlake.config import Config, load_config
from healthlake.spark import get_test_spark

# Test modules that share the session's generated region run on one xdist worker (building it once).
REGION_MODULES = (
    "tests/silver/test_conform_region.py",
    "tests/gold/test_gold_region.py",
    "tests/epidemic/test_epidemic_region.py",
    "tests/test_notebooks.py",
)
# The model tests share a region of their own (with a history of inpatient stays): one worker builds it.
ML_PACKAGE = "tests/ml/"
# The slowest groups first, so that under ``pytest -n 2`` neither worker is left with a long one at the end.
SLOWEST_FIRST = (
    "region",
    "ml",
    "tests/empi/test_link_pipeline.py",
    "tests/silver/test_conform.py",
    "tests/silver/test_conform_real_fhir.py",
    "tests/silver/test_conform_crash.py",
    "tests/bronze/test_ingest.py",
    "tests/gold/test_publish.py",
    "tests/omop/test_omop.py",
    "tests/empi/test_linkage.py",
)

# A key for tests only (conform tokenises identifiers with it); real keys come from the environment.
TEST_HMAC_KEY = "healthlake-tests-only-key-0123456789"
os.environ.setdefault("HEALTHLAKE_HMAC_KEY", TEST_HMAC_KEY)
# `publish` rebuilds a lake this small in full (publish.incremental_min_rows); the tests' lakes are small
# and their incremental runs are what they test, so it increments whatever the size unless a test says.
os.environ.setdefault("HEALTHLAKE_PUBLISH__INCREMENTAL_MIN_ROWS", "0")


def _test_group(item: pytest.Item) -> str:
    module = item.nodeid.split("::", 1)[0]
    if module.startswith(ML_PACKAGE):
        return "ml"
    return "region" if module in REGION_MODULES else module


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group tests by module (modules share module-scoped fixtures) for ``--dist loadgroup``, slowest first.

    Runs before xdist's own hook, which turns the ``xdist_group`` marks into work units.
    """
    rank = {group: i for i, group in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(_test_group(item), len(rank)))  # stable: module order kept
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_test_group(item)))


def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """Stop the run when a worker's tests did not take their group (xdist marks their ids ``…@group``).

    Without the groups every worker builds every module's fixtures, the generated region among them, and
    the suite runs far over its time budget while passing.
    """
    if node.config.getvalue("dist") != "loadgroup":
        return
    ungrouped = [nodeid for nodeid in ids if "@" not in nodeid.rpartition("::")[2]]
    if ungrouped:
        pytest.exit(
            f"pytest-xdist did not group {ungrouped[0]} (and {len(ungrouped) - 1} more) for --dist loadgroup:"
            " install the pytest and pytest-xdist versions pyproject.toml pins (`make setup`)",
            returncode=4,
        )


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """The one SparkSession of the test run: local[2], 2 shuffle partitions, AQE and UI off, UTC, Delta."""
    session = get_test_spark(tmp_path_factory.mktemp("spark"))
    yield session
    session.stop()


@pytest.fixture(scope="module", autouse=True)
def _free_the_session_after_each_module() -> Iterator[None]:
    """After each module, drop what the worker's session keeps of it: cached frames and Delta's table states.

    One session runs a worker's whole share of the suite, and Delta keeps the state of every table it has
    read cached. With the epidemic feeds the region's worker filled its 3 GiB heap: the tests after the
    region ran 3-15x slower collecting garbage, and one failed to broadcast a small table for lack of
    memory. The next module reads its tables' logs again, which costs little.
    """
    yield
    session = SparkSession.getActiveSession()
    if session is not None:
        session.catalog.clearCache()
        session._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()  # type: ignore[union-attr]


@pytest.fixture
def lake(tmp_path: Path) -> str:
    """A fresh, empty lake root folder for one test."""
    root = tmp_path / "lake"
    root.mkdir()
    return str(root)


@dataclass
class Conformed:
    """A generated region ingested and conformed: its configuration, truth folder and conform results."""

    cfg: Config
    truth: Path
    landing: Path
    results: list


@pytest.fixture(scope="session")
def conformed_region(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Conformed:
    """A region with every defect on, generated, ingested and conformed once for the silver and gold tests.

    Tests that write to the lake work on a copy (``shutil.copytree``) so the others see it unchanged.
    """
    from healthlake.pipelines import conform, ingest
    from tests.synth.conftest import generate

    root = tmp_path_factory.mktemp("conform_region")
    # Default rates (every defect on) with more malformed records, duplicates, updates and cancellations.
    rates = {
        "malformed": 0.02,
        "duplicate": 0.03,
        "update": 0.05,
        "cancel": 0.03,
        # The epidemic feeds' defects, often enough to show up in a small region.
        "ping_no_phone": 0.001,
        "test_no_person": 0.05,
        "pool_size_zero": 0.5,
    }
    # A year of follow-up history gives the 12-month chronic-disease indicators something to grade, and
    # allergies more common than residents have them give the region's few hospital patients some.
    gen = generate(
        spark,
        root,
        people=300,
        days=2,
        seed=5,
        persons_per_shard=300,
        rates=rates,
        followup_history_days=400,
        allergy_share=0.5,
    )
    cfg = load_config(overrides={"landing_root": str(gen.landing), "lake_root": str(root / "lake")})
    ingest.run(spark, cfg)
    return Conformed(cfg, gen.truth, gen.landing, conform.run(spark, cfg))


@dataclass
class Published:
    """The conformed region linked and published, on a copy of its lake."""

    cfg: Config
    truth: Path
    reference: Path
    result: object  # healthlake.pipelines.publish.PublishResult

    def gold(self, spark: SparkSession, table: str) -> pd.DataFrame:
        """A table of the published lake as pandas (small tables only)."""
        return io.read_table(spark, self.cfg.lake_root, table).toPandas()

    def truth_table(self, name: str) -> pd.DataFrame:
        """A truth table of the generator as pandas."""
        return pd.read_parquet(self.truth / f"{name}.parquet")


def assert_gold_equals_a_full_rebuild(
    spark: SparkSession, cfg: Config, rebuilt_lake: Path, result: object
) -> dict[str, DataFrame]:
    """Every gold table of ``cfg``'s lake equals that of a full rebuild of a copy; returns the tables.

    ``result`` is the ``PublishResult`` of the run that left the lake so. The research extracts are
    compared too when that run released them (``cfg`` names the release); otherwise they are older on
    purpose, and the rebuild does not release them.
    """
    from pyspark.testing import assertDataFrameEqual

    from healthlake.pipelines import publish

    shutil.copytree(cfg.lake_root, rebuilt_lake)
    released = result.release is not None
    rebuilt = publish.run(
        spark, cfg.model_copy(update={"lake_root": str(rebuilt_lake)}), full=True, extracts=released
    )
    assert rebuilt.mode == "full"
    names = (*publish.GOLD_TABLES, catalog.RESEARCH_PATIENTS, catalog.RESEARCH_ENCOUNTERS)
    names = names if released else publish.GOLD_TABLES
    tables = {}
    for name in names:
        if io.is_table(spark, cfg.lake_root, name):
            tables[name] = io.read_table(spark, cfg.lake_root, name)
            assertDataFrameEqual(tables[name], io.read_table(spark, str(rebuilt_lake), name))
            assert rebuilt.tables.get(name) == result.tables.get(name), name
    assert len(tables) >= 5
    return tables


@pytest.fixture(scope="session")
def published_region(
    spark: SparkSession, conformed_region: Conformed, tmp_path_factory: pytest.TempPathFactory
) -> Published:
    """``conformed_region`` linked and published (gold, research, OMOP) on a copy of its lake."""
    from healthlake.pipelines import link, publish

    lake = tmp_path_factory.mktemp("gold_region") / "lake"
    shutil.copytree(conformed_region.cfg.lake_root, lake)
    cfg = conformed_region.cfg.model_copy(update={"lake_root": str(lake)})
    link.run(spark, cfg)
    reference = next(conformed_region.landing.glob("reference/*/*"))
    return Published(cfg, conformed_region.truth, reference, publish.run(spark, cfg))
