"""``healthlake publish``: silver → gold, the topic library (主题库).

Builds the gold tables ``healthlake.gold`` defines (``docs/gold.md``) from pinned versions of their silver
inputs, and releases the research zone (``docs/research.md``) and the OMOP CDM export (``docs/omop.md``)
when one is due. Each table is written in a single Delta commit (an overwrite, a ``replaceWhere`` or a
MERGE), and the log row that ends a run comes last, so a re-run after success or after a crash gives the
same tables and never half of one.

``as_of`` (ages, the registry's 12-month window, the census end) is the last day of clinical activity in
the pinned silver, not the wall clock: the same silver versions always give the same gold.

Every day, month and age is local to the region's time zone (``region.timezone``; ``healthlake.localtime``):
``as_of`` is a local date, and so are the days gold is partitioned and replaced by.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from healthlake import io
from healthlake.catalog import (
    BRONZE_INGEST_LOG,
    BRONZE_QUARANTINE,
    GOLD_PUBLISH_LOG,
    SILVER_ALLERGY,
    SILVER_AREA,
    SILVER_CHRONIC_FOLLOWUP,
    SILVER_DIAGNOSIS,
    SILVER_ENCOUNTER,
    SILVER_IMMUNIZATION,
    SILVER_INSTITUTION,
    SILVER_MEDICATION,
    SILVER_NAT_TEST,
    SILVER_OBSERVATION,
    SILVER_PATIENT_RECORD,
    SILVER_PERSON,
    SILVER_PERSON_XREF,
    SILVER_PROCEDURE,
    SILVER_QUARANTINE,
)
from healthlake.derived import DerivedTable, Inputs, LastRun, refresh
from healthlake.errors import HealthlakeError
from healthlake.gold.exchange import BRONZE_DATA, SILVER_EVENTS
from healthlake.gold.patients import EVENT_TABLES
from healthlake.gold.registry import GOLD
from healthlake.gold.utilization import MAX_OPEN_NIGHTS
from healthlake.localtime import DEFAULT_ZONE, local_date
from healthlake.logs import progress
from healthlake.pipelines import omop
from healthlake.privacy.tokens import load_key
from healthlake.research.extracts import release_tables

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession

    from healthlake.config import Config

log = logging.getLogger(__name__)

GOLD_TABLES = tuple(t.name for t in GOLD if t.name.startswith("gold."))
"""The gold tables a run keeps (the registry also keeps ``bronze.record_contents``, publish's own index)."""
REQUIRED = {SILVER_ENCOUNTER: "conform", SILVER_PERSON_XREF: "link", SILVER_PERSON: "link"}
SIZED_BY = (*EVENT_TABLES, SILVER_OBSERVATION)
"""The silver event tables whose rows ``publish.incremental_min_rows`` is compared with."""

# Empty stand-ins for silver tables a lake may lack (a region without that feed): the gold tables are
# still built, with no rows from that source.
EMPTY = {
    SILVER_AREA: "area_code string, name string, level string, parent_code string",
    SILVER_INSTITUTION: "institution_id string, name string, area_code string",
    SILVER_DIAGNOSIS: (
        "institution_id string, source_patient_id string, icd10_category string, diagnosis_time timestamp, "
        "is_cancelled boolean"
    ),
    SILVER_CHRONIC_FOLLOWUP: (
        "institution_id string, source_record_id string, source_patient_id string, followup_time timestamp, "
        "disease_icd10_category string"
    ),
    SILVER_OBSERVATION: (
        "institution_id string, source_patient_id string, loinc string, value double, "
        "observation_time timestamp, is_cancelled boolean"
    ),
    SILVER_IMMUNIZATION: "institution_id string, source_patient_id string, is_cancelled boolean",
    SILVER_NAT_TEST: (
        "institution_id string, source_record_id string, source_patient_id string, sample_time timestamp, "
        "report_time timestamp, result string"
    ),
    SILVER_PROCEDURE: (
        "institution_id string, source_record_id string, source_patient_id string, performed_time timestamp, "
        "status string, is_cancelled boolean"
    ),
    SILVER_ALLERGY: (
        "institution_id string, source_record_id string, source_patient_id string, code string, "
        "clinical_status string, verification_status string, is_cancelled boolean"
    ),
    SILVER_QUARANTINE: (
        "_source_file string, _record_offset int, silver_table string, failed_rules array<string>"
    ),
    BRONZE_QUARANTINE: "_source_file string, _record_offset int, reason string",
}
REGISTERS = (SILVER_AREA, SILVER_INSTITUTION)
"""Small inputs every roll-up level joins: kept as local checkpoints instead of a Delta scan per join."""
INPUTS = tuple(
    dict.fromkeys((*REQUIRED, *EMPTY, *BRONZE_DATA, *SILVER_EVENTS, BRONZE_INGEST_LOG, SILVER_MEDICATION))
)
"""Every table a run may read (the OMOP inputs are among them), pinned when the run starts."""


class PublishError(HealthlakeError):
    """Publish cannot run: the silver tables it builds from are not in the lake yet."""


@dataclass
class PublishResult:
    """What one ``healthlake publish`` run wrote.

    Attributes:
        tables: Gold table → its rows after the run.
        as_of: The last day of clinical activity in the silver versions used.
        versions: Silver table → the version read.
        mode: ``full`` (everything rebuilt), ``incremental`` or ``unchanged`` (silver had not moved).
        release: The research release whose extracts (research zone and OMOP export) this run rebuilt,
            None when it left them as they were.
        steps: Seconds per step of the run (one per table, then research, omop and row counts).
        seconds: Wall time of the run.
        written: Derived table → its version when the run ended (the next incremental run compares with it).
        built: Derived table → what the run did to it (``full``, ``incremental``, ``unchanged``, ``absent``).
    """

    tables: dict[str, int] = field(default_factory=dict)
    as_of: dt.date | None = None
    versions: dict[str, int] = field(default_factory=dict)
    mode: str = "full"
    release: str | None = None
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    built: dict[str, str] = field(default_factory=dict)


def inputs_of(
    spark: SparkSession,
    lake: str,
    versions: dict[str, int] | None = None,
    *,
    zone: str = DEFAULT_ZONE,
    last: LastRun | None = None,
    max_open_nights: int = 365,
    derived: tuple[DerivedTable, ...] = GOLD,
) -> Inputs:
    """The inputs of a publish run: silver (and bronze) pinned at ``versions``, the registry's tables."""
    return Inputs(
        spark,
        lake,
        versions or {},
        zone,
        last=last,
        settings={MAX_OPEN_NIGHTS: max_open_nights},
        empty=EMPTY,
        derived=[t.name for t in derived],
        cached=REGISTERS,
    )


def _as_of(inputs: Inputs) -> dt.date:
    """The last (local) day of clinical activity: admissions, discharges, follow-ups and observations.

    From silver's accepted rows only (a mistyped 2204 is quarantined by ``time_not_after_arrival`` and never
    reaches here), and never from the wall clock: the same silver gives the same ``as_of``. A silver with no
    clinical activity yet is as of the last day it received a patient record; with none either, there is
    nothing to publish.
    """

    def day(column: str) -> Column:
        return local_date(F.col(column), inputs.zone)

    days = [
        inputs.read(SILVER_ENCOUNTER).select(F.greatest(day("admit_time"), day("discharge_time")).alias("d")),
        inputs.read(SILVER_CHRONIC_FOLLOWUP).select(day("followup_time").alias("d")),
        inputs.read(SILVER_OBSERVATION).select(day("observation_time").alias("d")),
    ]
    union = days[0].unionByName(days[1]).unionByName(days[2])
    last = io.one_row(union.agg(F.max("d")))[0]  # one aggregate row
    if last is None and inputs.has(SILVER_PATIENT_RECORD):
        received = inputs.read(SILVER_PATIENT_RECORD).select(day("_ingested_at").alias("d"))
        last = io.one_row(received.agg(F.max("d")))[0]
    if last is None:
        raise PublishError(
            "silver holds no patient record or clinical event yet: run `healthlake conform` first"
        )
    return last


def run(
    spark: SparkSession, cfg: Config, *, full: bool = False, extracts: bool | None = None
) -> PublishResult:
    """Bring the gold tables up to date with silver, and release the research extracts when due.

    The first run, or ``full=True``, rebuilds every table of the registry (``healthlake.gold.registry``).
    Later runs ask each table for what silver changed since the last run (``gold.publish_log`` holds the
    silver versions each run read, and each table's version): the tables' own incremental rules
    (``healthlake.derived``; ``docs/gold.md``).

    The research zone and the OMOP export are a *release* (``research.release``): fixed extracts a study
    cites, rebuilt from the gold of the day on the first and on every full run, when the configured
    release changes, or when ``extracts=True``; a daily incremental run leaves them as they are.

    Args:
        spark: Session.
        cfg: Configuration (``lake_root``, ``region``, ``research``).
        full: Rebuild everything, whatever the log says.
        extracts: Rebuild the research zone and the OMOP export (True), leave them (False), or decide as
            above (None).

    Returns:
        The tables and their rows, the ``as_of`` day, the silver versions read, the mode and the release.

    Raises:
        PublishError: When ``silver.encounter``, ``silver.person_xref`` or ``silver.person`` is missing.
    """
    started = time.monotonic()
    lake = cfg.lake_root
    for table, stage in REQUIRED.items():
        if not io.is_table(spark, lake, table):
            raise PublishError(f"{table} is not in the lake {lake}: run `healthlake {stage}` first")
    previous = _logged_run(spark, lake)
    logged = None if full else previous
    # Pin every input at its version now: the run reads one state of silver, and the log records it.
    inputs = inputs_of(
        spark,
        lake,
        _input_versions(spark, lake),
        zone=cfg.region.timezone,
        last=logged.last if logged is not None else None,
        max_open_nights=cfg.conform.max_stay_days,
    )
    release = cfg.research.release
    if extracts is None:
        extracts = logged is None or (previous is not None and previous.release != release)
    if logged is not None and logged.last.versions == inputs.versions and not extracts:
        # Nothing in silver moved since the last run: its tables stand as they are.
        log.debug("publish: silver unchanged since the last run (as of %s), nothing to do", logged.last.as_of)
        return PublishResult(dict(logged.tables), logged.last.as_of, dict(logged.last.versions), "unchanged")
    result = PublishResult(tables=dict(logged.tables) if logged is not None else {})
    steps = result.steps

    def step(name: str) -> _Step:
        return _Step(steps, name)

    if logged is not None and logged.last.versions == inputs.versions:
        result.mode, as_of = "unchanged", logged.last.as_of
    else:
        with step("as_of"):
            as_of = _as_of(inputs)
        inputs.as_of = as_of
        incremental = logged is not None and _worth_incrementing(inputs, cfg.publish.incremental_min_rows)
        result.built = refresh(inputs, GOLD, full=not incremental, step=step)
        # A run whose every table had to be rebuilt (a new area register, say) was a full one.
        updated = any(how in ("incremental", "unchanged") for how in result.built.values())
        result.mode = "incremental" if incremental and updated else "full"
    result.as_of = as_of
    if extracts:
        result.release = release
        with step("research") as research:
            research.records = _rows_of(_publish_research(spark, cfg, as_of), result.tables)
        missing = [table for table in omop.INPUTS if not inputs.has(table)]
        if missing:
            log.info("publish: OMOP export skipped, the lake has no %s", ", ".join(missing))
        else:
            with step("omop") as export:
                export.records = _rows_of(omop.run(spark, cfg), result.tables)
    with step("row_counts"):
        for table in GOLD_TABLES:
            if io.is_table(spark, lake, table):
                result.tables[table] = io.read_table(spark, lake, table).count()
    result.versions = dict(inputs.versions)
    result.written = {
        t.name: io.latest_version(spark, lake, t.name) for t in GOLD if io.is_table(spark, lake, t.name)
    }
    result.seconds = time.monotonic() - started
    _log_run(spark, lake, result)  # the commit point: the next run increments from these versions
    written = ", ".join(f"{table} {rows} rows" for table, rows in result.tables.items())
    log.debug("publish %s (as of %s): %s in %.1fs", result.mode, as_of, written, result.seconds)
    if result.release is not None:
        log.debug("publish: research and OMOP extracts of release %s rebuilt", result.release)
    log.debug("publish steps (s): %s", ", ".join(f"{k} {v}" for k, v in result.steps.items()))
    return result


def _publish_research(spark: SparkSession, cfg: Config, as_of: dt.date) -> dict[str, int]:
    """Rebuild the research zone of the configured release from the gold tables just written
    (``docs/research.md``); returns each table's rows."""
    settings = cfg.research
    tables = release_tables(settings.release, load_key(), min_cell=settings.min_cell, k=settings.k)
    inputs = inputs_of(spark, cfg.lake_root, zone=cfg.region.timezone, derived=(*GOLD, *tables))
    inputs.as_of = as_of
    refresh(inputs, tables, full=True)
    return {t.name: io.read_table(spark, cfg.lake_root, t.name).count() for t in tables}


class _Step:
    """Times one step of a run into ``steps`` and logs its progress line (with ``records`` when set)."""

    def __init__(self, steps: dict[str, float], name: str) -> None:
        self.steps, self.name = steps, name
        self.records: int | None = None

    def __enter__(self) -> _Step:
        self.started = time.monotonic()
        return self

    def __exit__(self, error: type[BaseException] | None, *exc: object) -> None:
        seconds = time.monotonic() - self.started
        self.steps[self.name] = round(seconds, 2)
        if error is None:
            progress(log, f"publish {self.name}", self.records, seconds)


def _rows_of(written: dict[str, int], tables: dict[str, int]) -> int:
    """Add the tables a step ``written`` (table → rows) to ``tables``; return their rows."""
    tables.update(written)
    return sum(written.values())


def _input_versions(spark: SparkSession, lake: str) -> dict[str, int]:
    """The latest version of every input table the lake holds."""
    return {t: io.latest_version(spark, lake, t) for t in INPUTS if io.is_table(spark, lake, t)}


@dataclass(frozen=True)
class _LoggedRun:
    """The last finished run's log row: what the tables' rules compare with, and what it reported."""

    last: LastRun
    tables: dict[str, int]
    release: str | None  # the research release of the last run that rebuilt the extracts


def _logged_run(spark: SparkSession, lake: str) -> _LoggedRun | None:
    """The silver versions, gold versions and ``as_of`` of the last finished publish, if any."""
    if not io.is_table(spark, lake, GOLD_PUBLISH_LOG):
        return None
    logged = io.read_table(spark, lake, GOLD_PUBLISH_LOG)
    rows = logged.orderBy(F.desc("finished_at")).limit(1).collect()
    if not rows:
        return None
    release = None
    if "release" in logged.columns:  # logs written before releases were recorded lack it
        built = logged.where(F.col("release").isNotNull()).orderBy(F.desc("finished_at")).limit(1)
        release = next((r["release"] for r in built.collect()), None)
    written = dict(rows[0]["written"] or {}) if "written" in logged.columns else {}
    last = LastRun(rows[0]["as_of"], dict(rows[0]["versions"]), written)
    return _LoggedRun(last, dict(rows[0]["tables"]), release)


def _worth_incrementing(inputs: Inputs, min_rows: int) -> bool:
    """Whether silver's event tables hold ``min_rows`` rows or more (``publish.incremental_min_rows``).

    Under that size a full rebuild costs less than the incremental rules' fixed part. The rows are counted
    from the Delta log's file statistics, not by scanning the tables.
    """
    if min_rows == 0:
        return True
    rows = sum(inputs.read(t).count() for t in SIZED_BY if inputs.has(t))
    if rows < min_rows:
        log.info(
            "publish: silver holds %d event rows, under publish.incremental_min_rows (%d): "
            "rebuilding gold in full, which costs less at this size",
            rows,
            min_rows,
        )
    return rows >= min_rows


_LOG_SCHEMA = (
    "mode string, as_of date, versions map<string,bigint>, tables map<string,bigint>, seconds double, "
    "finished_at timestamp, release string, written map<string,bigint>"
)


def _log_run(spark: SparkSession, lake: str, result: PublishResult) -> None:
    row = (
        result.mode,
        result.as_of,
        result.versions,
        result.tables,
        result.seconds,
        dt.datetime.now(dt.UTC),
        result.release,
        result.written,
    )
    # mergeSchema: a log begun before releases or gold versions were recorded gains the column.
    io.append(spark.createDataFrame([row], _LOG_SCHEMA), lake, GOLD_PUBLISH_LOG, merge_schema=True)
