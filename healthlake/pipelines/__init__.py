"""Pipeline stages that ``healthlake run`` executes in order (read → transform chain → write)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from healthlake.config import Config


class Stage(NamedTuple):
    """One step of the pipeline.

    Attributes:
        name: The stage's name, also its CLI verb (``ingest``, ``conform``, …).
        run: ``run(spark, cfg)``: read its inputs from the lake, transform, write its outputs.
    """

    name: str
    run: Callable[[SparkSession, Config], object]


def _ingest(spark: SparkSession, cfg: Config) -> object:
    from healthlake.pipelines import ingest

    return ingest.run(spark, cfg)


def _conform(spark: SparkSession, cfg: Config) -> object:
    from healthlake.pipelines import conform

    return conform.run(spark, cfg)


STAGES: list[Stage] = [
    Stage("ingest", _ingest),  # landing → bronze
    Stage("conform", _conform),  # bronze → silver
    # Next, in order: link (EMPI), publish (silver → gold, research, omop).
]
"""The stages ``healthlake run`` executes, in order."""
