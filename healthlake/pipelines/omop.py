"""The OMOP CDM 5.4 export: silver → ``omop.*`` (``docs/omop.md``).

Each OMOP table is rebuilt whole from pinned silver versions and replaces the previous one in one Delta
commit, like gold. Only the id map ``omop.id_map`` grows: it gives every exported source row a BIGINT id
once, so a re-export gives the same ``person_id``, ``visit_occurrence_id``, … to the same source key.

**Id assignment.** A hash of the source key alone is not an id: at the 10-billion-record scale this
platform targets, 64-bit hash collisions are expected. Instead the map holds ``(entity, source_key,
omop_id)``; each run finds the keys it does not hold yet (an anti join) and appends them with
``omop_id = max(omop_id) + 1 + monotonically_increasing_id()``. The maximum is a one-row aggregate joined to
the new keys, so nothing goes through the driver and no step funnels the keys into one partition.
``monotonically_increasing_id`` is unique but not dense (the partition index sits in its upper bits), so
ids have gaps; they are unique across all entities, never reused and never changed. One run appends in one
commit; two exports must not run at the same time (a second writer would read the same maximum).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from healthlake import io
from healthlake.catalog import (
    OMOP_CONDITION_OCCURRENCE,
    OMOP_DRUG_EXPOSURE,
    OMOP_ID_MAP,
    OMOP_MEASUREMENT,
    OMOP_OBSERVATION_PERIOD,
    OMOP_PERSON,
    OMOP_VISIT_OCCURRENCE,
    SILVER_DIAGNOSIS,
    SILVER_ENCOUNTER,
    SILVER_MEDICATION,
    SILVER_OBSERVATION,
    SILVER_PERSON,
    SILVER_PERSON_XREF,
)
from healthlake.errors import HealthlakeError
from healthlake.omop import cdm
from healthlake.privacy.tokens import load_key
from healthlake.research.deidentify import retokenize

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from healthlake.config import Config

log = logging.getLogger(__name__)

INPUTS: dict[str, str] = {
    SILVER_PERSON: "link",
    SILVER_PERSON_XREF: "link",
    SILVER_ENCOUNTER: "conform",
    SILVER_DIAGNOSIS: "conform",
    SILVER_OBSERVATION: "conform",
    SILVER_MEDICATION: "conform",
}
"""Silver inputs → the stage that writes them (named in the error when one is missing)."""

ID_MAP_SCHEMA = StructType(
    [
        StructField("entity", StringType(), False),
        StructField("source_key", StringType(), False),
        StructField("omop_id", LongType(), False),
    ]
)
OMOP_TABLES = tuple(f"omop.{table}" for table in cdm.CDM_COLUMNS)
"""The CDM tables this export writes."""


class OmopError(HealthlakeError):
    """The OMOP export cannot run: a silver table it builds from is not in the lake yet."""


def run(spark: SparkSession, cfg: Config) -> dict[str, int]:
    """Rebuild the ``omop.*`` tables from silver, giving new source rows their ids first.

    Args:
        spark: Session.
        cfg: Configuration (``lake_root``).

    Returns:
        OMOP table name (``omop.person``, …) → its rows after the run.

    Raises:
        OmopError: When one of the silver inputs is missing.
    """
    started = time.monotonic()
    lake = cfg.lake_root
    for table, stage in INPUTS.items():
        if not io.is_table(spark, lake, table):
            raise OmopError(f"{table} is not in the lake {lake}: run `healthlake {stage}` first")
    # Pinned versions: the export is a function of the silver versions it was built from.
    silver = {table: _pinned(spark, lake, table) for table in INPUTS}
    persons, xref, zone = silver[SILVER_PERSON], silver[SILVER_PERSON_XREF], cfg.region.timezone

    id_map = update_id_map(
        spark,
        lake,
        cdm.source_keys(
            persons,
            xref,
            silver[SILVER_ENCOUNTER],
            silver[SILVER_DIAGNOSIS],
            silver[SILVER_OBSERVATION],
            silver[SILVER_MEDICATION],
        ),
    )
    _log_unlinked(silver, xref)

    io.overwrite(
        cdm.visit_occurrence(silver[SILVER_ENCOUNTER], xref, persons, id_map, zone=zone),
        lake,
        OMOP_VISIT_OCCURRENCE,
    )
    # Read back what was written: the event tables point only at exported visits, without recomputing them.
    # (This run is the only writer of omop.*, so the latest version is the one it just wrote.)
    visits = io.read_table(spark, lake, OMOP_VISIT_OCCURRENCE)
    io.overwrite(
        cdm.condition_occurrence(silver[SILVER_DIAGNOSIS], xref, persons, id_map, visits, zone=zone),
        lake,
        OMOP_CONDITION_OCCURRENCE,
    )
    io.overwrite(
        cdm.measurement(silver[SILVER_OBSERVATION], xref, persons, id_map, visits, zone=zone),
        lake,
        OMOP_MEASUREMENT,
    )
    io.overwrite(
        cdm.drug_exposure(silver[SILVER_MEDICATION], xref, persons, id_map, visits, zone=zone),
        lake,
        OMOP_DRUG_EXPOSURE,
    )
    periods = cdm.observation_period(
        visits,
        io.read_table(spark, lake, OMOP_CONDITION_OCCURRENCE),
        io.read_table(spark, lake, OMOP_MEASUREMENT),
        io.read_table(spark, lake, OMOP_DRUG_EXPOSURE),
    )
    io.overwrite(periods, lake, OMOP_OBSERVATION_PERIOD)
    # Last: only persons with time in observation. person_source_value is the research release's key
    # (research.patients' research_id), not the EMPI id, so the export joins the release's extracts but
    # not the lake.
    periods = io.read_table(spark, lake, OMOP_OBSERVATION_PERIOD)
    io.overwrite(
        retokenize(
            cdm.person(persons, id_map, periods), "person_source_value", cfg.research.release, load_key()
        ),
        lake,
        OMOP_PERSON,
    )

    rows = {table: io.read_table(spark, lake, table).count() for table in OMOP_TABLES}
    written = ", ".join(f"{table} {count} rows" for table, count in rows.items())
    log.debug("omop: %s in %.1fs", written, time.monotonic() - started)
    return rows


def update_id_map(spark: SparkSession, lake: str, keys: DataFrame) -> DataFrame:
    """Give the keys ``omop.id_map`` does not hold yet new ids, append them, and return the map.

    Args:
        spark: Session.
        lake: Lake root.
        keys: ``entity``, ``source_key`` pairs (distinct) that need an id.

    Returns:
        The whole id map at the version this call wrote (``entity``, ``source_key``, ``omop_id``).
    """
    io.create_table(spark, lake, OMOP_ID_MAP, ID_MAP_SCHEMA)
    existing = _pinned(spark, lake, OMOP_ID_MAP)
    new = keys.join(existing.select("entity", "source_key"), ["entity", "source_key"], "left_anti")
    # A one-row frame joined to every new key: no value comes back to the driver.
    top = existing.agg(F.coalesce(F.max("omop_id"), F.lit(0)).cast("bigint").alias("_max"))
    assigned = new.crossJoin(top).select(
        "entity",
        "source_key",
        (F.col("_max") + F.lit(1) + F.monotonically_increasing_id()).alias("omop_id"),
    )
    io.append(assigned, lake, OMOP_ID_MAP)
    return _pinned(spark, lake, OMOP_ID_MAP)


def _pinned(spark: SparkSession, lake: str, name: str) -> DataFrame:
    """Table ``name`` at its latest version, fixed so that writes during the run do not change it."""
    return io.read_table(spark, lake, name, version=io.latest_version(spark, lake, name))


def _log_unlinked(silver: dict[str, DataFrame], xref: DataFrame) -> None:
    """Log how many rows of each event table are left out for want of an EMPI link (counts only)."""
    links = xref.select("institution_id", "source_patient_id")
    parts = [
        frame.where(~F.coalesce(F.col("is_cancelled"), F.lit(False)))
        .join(links, ["institution_id", "source_patient_id"], "left_anti")
        .select(F.lit(table).alias("table"))
        for table, frame in silver.items()
        if table in (SILVER_ENCOUNTER, SILVER_DIAGNOSIS, SILVER_OBSERVATION, SILVER_MEDICATION)
    ]
    unlinked = parts[0]
    for part in parts[1:]:
        unlinked = unlinked.unionByName(part)
    # One small job; at most four rows come back, whatever the size of the region.
    counts = {row["table"]: row["count"] for row in unlinked.groupBy("table").count().collect()}
    if counts:
        left_out = ", ".join(f"{table} {count}" for table, count in sorted(counts.items()))
        log.debug("omop: rows without a linked patient left out: %s", left_out)
