"""The model tests' region: generated with two years of inpatient stays, run through every stage to the
feature tables once per test session (one xdist worker holds every ``tests/ml`` module)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from healthlake.config import Config, load_config

MODEL_REGION_SEED = 11
"""The model region's generator seed (its respiratory waves' peaks are drawn from it)."""


@dataclass
class ModelRegion:
    """The generated region up to its feature tables: configuration, truth and the features run."""

    cfg: Config
    truth: Path
    landing: Path
    features: object  # healthlake.pipelines.features.FeaturesResult

    def truth_table(self, name: str) -> pd.DataFrame:
        """A truth table of the generator as pandas."""
        return pd.read_parquet(self.truth / f"{name}.parquet")

    def copy(self, to: Path, **ml: object) -> Config:
        """A copy of the region's lake at ``to`` (for a test that writes), with ``ml`` settings."""
        shutil.copytree(self.cfg.lake_root, to)
        return self.cfg.model_copy(
            update={"lake_root": str(to), "ml": self.cfg.ml.model_copy(update=dict(ml))}
        )


@pytest.fixture(scope="session")
def model_region(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> ModelRegion:
    """1,000 residents, two days, with 730 days of inpatient history (≈ 500 discharges, a quarter of them
    readmitted), 400 days of follow-ups and 365 days of outpatient and emergency visits; no location pings
    (the models do not read them)."""
    from healthlake.pipelines import conform, features, ingest, link, publish
    from tests.synth.conftest import generate

    root = tmp_path_factory.mktemp("model_region")
    gen = generate(
        spark,
        root,
        people=1000,
        days=2,
        seed=MODEL_REGION_SEED,
        persons_per_shard=500,
        ping_share=0.0,
        followup_history_days=400,
        inpatient_history_days=730,
        visit_history_days=365,
    )
    cfg = load_config(overrides={"landing_root": str(gen.landing), "lake_root": str(root / "lake")})
    ingest.run(spark, cfg)
    conform.run(spark, cfg)
    link.run(spark, cfg)
    publish.run(spark, cfg)
    return ModelRegion(cfg, gen.truth, gen.landing, features.run(spark, cfg))


@pytest.fixture
def no_run_left_open() -> Iterator[None]:
    """Fails the test when it leaves an MLflow run open."""
    import mlflow

    yield
    active = mlflow.active_run()
    if active is not None:
        mlflow.end_run()
        pytest.fail(f"MLflow run {active.info.run_id} was left open")
