"""Generated regions shared by the synth tests (each is generated once per test module)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from healthlake.config import load_config
from healthlake.synth import generate_region
from tests.synth.landing_reader import LandingFile, read_landing

# Defect rates high enough that every defect shows up often in a small region.
ELEVATED_RATES = {
    "duplicate": 0.05,
    "update": 0.1,
    "cancel": 0.05,
    "name_typo": 0.1,
    "homophone": 0.1,
    "id_transposed": 0.1,
    "id_missing": 0.1,
    "icd_no_dot": 0.3,
    "icd_lower": 0.1,
    "late_file": 0.1,
    "malformed": 0.03,
    "gbk_share": 0.5,
    "mllp_share": 0.5,
    "lf_separator_share": 0.5,
    "ping_no_phone": 0.001,
    "test_no_person": 0.01,
    "pool_size_zero": 0.1,
}


@dataclass
class Generated:
    """A generated region: where it is, its manifest, its files, and its truth tables."""

    landing: Path
    truth: Path
    manifest: dict[str, Any]
    settings: Any
    files: list[LandingFile]

    def truth_table(self, name: str) -> pd.DataFrame:
        """A truth table as pandas."""
        return pd.read_parquet(self.truth / f"{name}.parquet")


def generate(spark: SparkSession, root: Path, **synth: Any) -> Generated:
    """Generate a region under ``root`` with the given ``synth`` settings."""
    settings = load_config(overrides={"synth": synth}).synth
    landing, truth = root / "landing", root / "truth"
    manifest = generate_region(spark, settings, str(landing), str(truth))
    return Generated(landing, truth, manifest, settings, read_landing(landing))


@pytest.fixture(scope="package")
def region(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """A 3,000-person, 10-day region with elevated defect rates."""
    return generate(
        spark,
        tmp_path_factory.mktemp("region"),
        people=3000,
        days=10,
        seed=7,
        persons_per_shard=1000,
        rates=ELEVATED_RATES,
    )
