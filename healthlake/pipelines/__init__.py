"""Pipeline stages that ``healthlake run`` executes in order (read → transform chain → write)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from healthlake import catalog

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


def _link(spark: SparkSession, cfg: Config) -> object:
    from healthlake import io
    from healthlake.pipelines import link

    if not io.is_table(spark, cfg.lake_root, catalog.SILVER_PATIENT_RECORD):
        return None  # no patient records conformed yet: nothing to link
    return link.run(spark, cfg)


def _publish(spark: SparkSession, cfg: Config) -> object:
    from healthlake import io
    from healthlake.pipelines import publish

    if not all(
        io.is_table(spark, cfg.lake_root, t) for t in (catalog.SILVER_ENCOUNTER, catalog.SILVER_PERSON_XREF)
    ):
        return None  # no encounters or no persons yet: nothing to publish
    return publish.run(spark, cfg)


def _epidemic(spark: SparkSession, cfg: Config) -> object:
    from healthlake import io
    from healthlake.pipelines import epidemic

    lake = cfg.lake_root
    if not io.is_table(spark, lake, catalog.GOLD_PATIENT_360) or not any(
        io.is_table(spark, lake, t) for t in (catalog.SILVER_NAT_TEST, catalog.SILVER_IMMUNIZATION)
    ):
        return None  # no persons published or no testing and vaccination yet: nothing to report
    return epidemic.run(spark, cfg)


def _features(spark: SparkSession, cfg: Config) -> object:
    from healthlake import io
    from healthlake.pipelines import features

    if not io.is_table(spark, cfg.lake_root, catalog.GOLD_PUBLISH_LOG):
        return None  # gold not published yet: no features to build
    return features.run(spark, cfg)


STAGES: list[Stage] = [
    Stage("ingest", _ingest),  # landing → bronze
    Stage("conform", _conform),  # bronze → silver
    Stage("link", _link),  # silver.patient_record + vault → silver.person* (EMPI)
    Stage("publish", _publish),  # silver → gold (healthlake.gold.registry), research and omop releases
    Stage("epidemic", _epidemic),  # silver + gold → epidemic control (healthlake.epidemic.registry)
    Stage("features", _features),  # gold + silver → the models' feature tables (healthlake.ml.registry)
]
"""The stages ``healthlake run`` executes, in order."""
