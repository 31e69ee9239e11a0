"""``healthlake features``: gold and silver → the models' point-in-time feature tables (``docs/models.md``).

Runs after ``publish`` (it reads ``gold.encounter_facts``) and ``epidemic`` when there is one. The tables
are the registry ``healthlake.ml.registry.FEATURES`` on the derived-table contract: pinned inputs, one
Delta commit per table, and the log row (``gold.features_log``) written last, so a re-run after success or
after a crash gives the same tables.

``as_of`` is the ``as_of`` of the last publish (the last local day of clinical activity in silver): the
day labels are known on. The same inputs give the same tables.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from healthlake import io
from healthlake.catalog import (
    GOLD_ENCOUNTER_FACTS,
    GOLD_FEATURES_LOG,
    GOLD_PUBLISH_LOG,
    SILVER_AREA,
    SILVER_CHRONIC_FOLLOWUP,
    SILVER_DIAGNOSIS,
    SILVER_ENCOUNTER,
    SILVER_INSTITUTION,
    SILVER_MEDICATION,
    SILVER_OBSERVATION,
    SILVER_PERSON,
    SILVER_PERSON_XREF,
)
from healthlake.derived import Inputs, last_logged_run, log_run, refresh, rows_and_versions
from healthlake.errors import HealthlakeError
from healthlake.logs import timed
from healthlake.ml.chronic_control import TREATMENTS, load_treatments
from healthlake.ml.registry import FEATURES

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from healthlake.config import Config

log = logging.getLogger(__name__)

TABLES = tuple(t.name for t in FEATURES)
INPUTS = tuple(dict.fromkeys(name for t in FEATURES for name in t.reads if name not in TABLES))
"""Every table a run reads, pinned when it starts."""
REQUIRED = {GOLD_ENCOUNTER_FACTS: "publish", SILVER_PERSON_XREF: "link", SILVER_PERSON: "link"}
EMPTY = {
    SILVER_AREA: "area_code string, name string, level string, parent_code string",
    SILVER_INSTITUTION: "institution_id string, name string, area_code string, kind string",
    SILVER_DIAGNOSIS: (
        "institution_id string, source_record_id string, source_patient_id string, "
        "source_encounter_id string, icd10_category string, is_primary boolean, diagnosis_time timestamp, "
        "is_cancelled boolean"
    ),
    SILVER_CHRONIC_FOLLOWUP: (
        "institution_id string, source_record_id string, source_patient_id string, followup_time timestamp, "
        "disease_icd10_category string"
    ),
    SILVER_OBSERVATION: (
        "institution_id string, source_record_id string, source_patient_id string, loinc string, "
        "value double, observation_time timestamp, is_cancelled boolean"
    ),
    SILVER_MEDICATION: (
        "institution_id string, source_patient_id string, medication_code_system string, "
        "medication_code string, authored_at timestamp, is_cancelled boolean"
    ),
    SILVER_ENCOUNTER: (
        "institution_id string, source_record_id string, discharge_disposition string, department string, "
        "admit_time timestamp, is_cancelled boolean"
    ),
}
"""Empty stand-ins for inputs a lake may lack (a region without that feed)."""


class FeaturesError(HealthlakeError):
    """The features stage cannot run: what it builds from is not in the lake yet."""


@dataclass
class FeaturesResult:
    """What one ``healthlake features`` run wrote.

    Attributes:
        tables: Table → its rows after the run.
        as_of: The local day labels are known on.
        mode: ``full`` or ``unchanged`` (nothing it reads moved).
        built: Table → what the run did to it.
        versions: Input → the version read.
        seconds: Wall time.
    """

    tables: dict[str, int] = field(default_factory=dict)
    as_of: dt.date | None = None
    mode: str = "full"
    built: dict[str, str] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def published_as_of(spark: SparkSession, lake: str) -> dt.date:
    """The ``as_of`` of the last finished publish.

    Raises:
        FeaturesError: When gold was never published.
    """
    if io.is_table(spark, lake, GOLD_PUBLISH_LOG):
        rows = io.read_table(spark, lake, GOLD_PUBLISH_LOG).orderBy(F.desc("finished_at")).limit(1).collect()
        if rows:
            return rows[0]["as_of"]
    raise FeaturesError(f"gold is not published in the lake {lake}: run `healthlake publish` first")


def features_as_of(spark: SparkSession, lake: str) -> dt.date:
    """The ``as_of`` of the last finished features run (the day its labels are known on).

    Raises:
        FeaturesError: When the features stage never ran.
    """
    logged = last_logged_run(spark, lake, GOLD_FEATURES_LOG)
    if logged is None:
        raise FeaturesError(f"no feature table in the lake {lake}: run `healthlake features` first")
    return logged[0].as_of


def run(spark: SparkSession, cfg: Config, *, full: bool = False) -> FeaturesResult:
    """Bring the feature tables up to date with gold and silver.

    Args:
        spark: Session.
        cfg: Configuration (``lake_root``, ``region``).
        full: Rebuild every table, whatever the log says.

    Returns:
        The tables and their rows, ``as_of`` and the mode.

    Raises:
        FeaturesError: When gold was never published or an input is missing.
    """
    started = time.monotonic()
    lake = cfg.lake_root
    as_of = published_as_of(spark, lake)
    for table, stage in REQUIRED.items():
        if not io.is_table(spark, lake, table):
            raise FeaturesError(f"{table} is not in the lake {lake}: run `healthlake {stage}` first")
    logged = None if full else last_logged_run(spark, lake, GOLD_FEATURES_LOG)
    versions = {
        name: io.latest_version(spark, lake, name) for name in INPUTS if io.is_table(spark, lake, name)
    }
    result = FeaturesResult(as_of=as_of, versions=dict(versions))
    if logged is not None and logged[0].versions == versions and logged[0].as_of == as_of:
        result.mode, result.tables = "unchanged", dict(logged[1])
        return result
    inputs = Inputs(
        spark,
        lake,
        versions,
        cfg.region.timezone,
        as_of=as_of,
        last=logged[0] if logged else None,
        settings={TREATMENTS: load_treatments(cfg.conform.code_maps_path())},
        empty=EMPTY,
        cached=(SILVER_AREA, SILVER_INSTITUTION),
    )

    def step(name: str) -> AbstractContextManager[None]:
        return timed(log, f"features {name}")

    result.built = refresh(inputs, FEATURES, full=logged is None, step=step)
    result.mode = "incremental" if any(h == "incremental" for h in result.built.values()) else "full"
    rows, written = rows_and_versions(spark, lake, TABLES)
    result.tables.update(rows)
    result.seconds = time.monotonic() - started
    log_run(
        spark,
        lake,
        GOLD_FEATURES_LOG,
        mode=result.mode,
        as_of=as_of,
        versions=versions,
        tables=result.tables,
        seconds=result.seconds,
        written=written,
    )
    return result
