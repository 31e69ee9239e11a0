"""Shared fixtures: one local Spark session with Delta for the whole run, a fresh lake per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from healthlake.spark import get_test_spark

# A key for tests only (conform tokenises identifiers with it); real keys come from the environment.
TEST_HMAC_KEY = "healthlake-tests-only-key-0123456789"
os.environ.setdefault("HEALTHLAKE_HMAC_KEY", TEST_HMAC_KEY)


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """The one SparkSession of the test run: local[2], 2 shuffle partitions, AQE and UI off, UTC, Delta."""
    session = get_test_spark(tmp_path_factory.mktemp("spark"))
    yield session
    session.stop()


@pytest.fixture
def lake(tmp_path: Path) -> str:
    """A fresh, empty lake root folder for one test."""
    root = tmp_path / "lake"
    root.mkdir()
    return str(root)
