"""``healthlake publish``: silver → gold, the topic library (主题库).

Builds what ``healthlake.gold`` defines so far: ``gold.encounter_facts`` (``docs/gold.md``). Each gold table
is rebuilt whole from pinned silver versions and replaces the previous one in a single Delta commit, so a
re-run after success or after a crash gives the same table and never half of one. (Recomputing only the
partitions a day touched, from silver's change data feed, is still to come.)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from healthlake import io
from healthlake.errors import HealthlakeError
from healthlake.gold.encounters import encounter_facts

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from healthlake.config import Config

log = logging.getLogger(__name__)

ENCOUNTER, XREF = "silver.encounter", "silver.person_xref"
ENCOUNTER_FACTS = "gold.encounter_facts"


class PublishError(HealthlakeError):
    """Publish cannot run: the silver tables it builds from are not in the lake yet."""


@dataclass
class PublishResult:
    """What one ``healthlake publish`` run wrote.

    Attributes:
        tables: Gold table → its rows after the run.
        seconds: Wall time of the run.
    """

    tables: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def run(spark: SparkSession, cfg: Config) -> PublishResult:
    """Rebuild the gold tables from silver.

    Args:
        spark: Session.
        cfg: Configuration (``lake_root``).

    Returns:
        The tables written and their rows.

    Raises:
        PublishError: When ``silver.encounter`` or ``silver.person_xref`` is missing.
    """
    started = time.monotonic()
    lake = cfg.lake_root
    for table, stage in ((ENCOUNTER, "conform"), (XREF, "link")):
        if not io.is_table(spark, lake, table):
            raise PublishError(f"{table} is not in the lake {lake}: run `healthlake {stage}` first")
    # Pinned versions: the gold table is a function of the silver versions it was built from.
    encounters = io.read_table(spark, lake, ENCOUNTER, version=io.latest_version(spark, lake, ENCOUNTER))
    xref = io.read_table(spark, lake, XREF, version=io.latest_version(spark, lake, XREF))
    io.overwrite(encounter_facts(encounters, xref), lake, ENCOUNTER_FACTS)
    result = PublishResult({ENCOUNTER_FACTS: io.read_table(spark, lake, ENCOUNTER_FACTS).count()})
    result.seconds = time.monotonic() - started
    written = ", ".join(f"{table} {rows} rows" for table, rows in result.tables.items())
    log.info("publish: %s in %.1fs", written, result.seconds)
    return result
