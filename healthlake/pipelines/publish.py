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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyspark.sql import functions as F
from pyspark.sql.types import MapType

from healthlake import io
from healthlake.errors import HealthlakeError
from healthlake.gold.areas import area_paths, institution_paths
from healthlake.gold.chronic import (
    CONTROL_LOINC,
    chronic_disease_monthly,
    followup_readings,
    indicators_from_monthly,
    registry_from_readings,
    registry_window_moved,
)
from healthlake.gold.encounters import (
    encounter_facts,
    recompute_bounds,
    recompute_scope,
    replaced_scope,
    with_institution_area,
)
from healthlake.gold.exchange import (
    CONTENT_KEY,
    GRAIN,
    duplicate_records,
    exchange_volume_daily,
    record_contents,
)
from healthlake.gold.patients import (
    chronic_conditions,
    immunization_count,
    last_test,
    patient_360,
    patient_360_update,
    person_events,
    visit_summary,
)
from healthlake.gold.utilization import utilization_daily
from healthlake.localtime import DEFAULT_ZONE, age_at, local_date, local_midnight
from healthlake.logs import progress
from healthlake.pipelines import omop
from healthlake.privacy.tokens import load_key
from healthlake.research import extracts
from healthlake.spark import local_checkpoint

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from healthlake.config import Config

log = logging.getLogger(__name__)

ENCOUNTER, XREF, PERSON = "silver.encounter", "silver.person_xref", "silver.person"
ENCOUNTER_FACTS = "gold.encounter_facts"
UTILIZATION_DAILY = "gold.utilization_daily"
PATIENT_360 = "gold.patient_360"
CHRONIC_REGISTRY = "gold.chronic_disease_registry"
CHRONIC_MONTHLY = "gold.chronic_disease_monthly"
CHRONIC_INDICATORS = "gold.chronic_disease_indicators"
EXCHANGE_VOLUME = "gold.exchange_volume_daily"
PUBLISH_LOG = "gold.publish_log"
INGEST_LOG = "bronze.ingest_log"
RECORD_CONTENTS = "bronze.record_contents"
"""Publish's own index of the contents bronze holds, what a day's new records are compared with."""
# A day's MERGE updates stored inpatient stays (the readmission of the stay before a new admission) and
# adds new encounters. With the stays in files of their own it rewrites those files only, and writes the
# day's clinic and emergency visits as new files, instead of rewriting every file of the lake's encounters.
ENCOUNTER_FACTS_PARTITIONS = ("encounter_class",)
GOLD_TABLES = (
    ENCOUNTER_FACTS,
    UTILIZATION_DAILY,
    PATIENT_360,
    CHRONIC_REGISTRY,
    CHRONIC_MONTHLY,
    CHRONIC_INDICATORS,
    EXCHANGE_VOLUME,
)
# A day's follow-ups change the persons' rows of their own month (and later ones): with a partition per
# month, the MERGE rewrites that month's files only, and the indicators read the months they recount.
CHRONIC_MONTHLY_PARTITIONS = ("month",)
_MONTHLY_KEY = ["person_id", "disease", "month"]
_REGISTRY_KEY = ["person_id", "disease"]
FOLLOWUP, OBSERVATION = "silver.chronic_followup", "silver.observation"
REQUIRED = {ENCOUNTER: "conform", XREF: "link", PERSON: "link"}
REGISTERS = ("silver.area", "silver.institution")

# Empty stand-ins for silver tables a lake may lack (a region without that feed): the gold tables are
# still built, with no rows from that source.
_EMPTY = {
    "silver.area": "area_code string, name string, level string, parent_code string",
    "silver.institution": "institution_id string, name string, area_code string",
    "silver.diagnosis": (
        "institution_id string, source_patient_id string, icd10_category string, diagnosis_time timestamp, "
        "is_cancelled boolean"
    ),
    "silver.chronic_followup": (
        "institution_id string, source_record_id string, source_patient_id string, followup_time timestamp, "
        "disease_icd10_category string"
    ),
    "silver.observation": (
        "institution_id string, source_patient_id string, loinc string, value double, "
        "observation_time timestamp, is_cancelled boolean"
    ),
    "silver.immunization": "institution_id string, source_patient_id string, is_cancelled boolean",
    "silver.nat_test": (
        "institution_id string, source_record_id string, source_patient_id string, sample_time timestamp, "
        "report_time timestamp, result string"
    ),
    "silver.quarantine": (
        "_source_file string, _record_offset int, silver_table string, failed_rules array<string>"
    ),
    "bronze.quarantine": "_source_file string, _record_offset int, reason string",
}
BRONZE_DATA = (
    "bronze.fhir_resources",
    "bronze.hl7v2_messages",
    "bronze.csv_records",
    "bronze.location_pings",
)
SILVER_EVENTS = (
    "silver.patient_record",
    "silver.encounter",
    "silver.diagnosis",
    "silver.observation",
    "silver.immunization",
    "silver.medication",
    "silver.nat_test",
    "silver.chronic_followup",
    "silver.location_event",
    "silver.area",
    "silver.institution",
)


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
        steps: Seconds per step of the run.
        seconds: Wall time of the run.
        written: Gold table → its version when the run ended (the next incremental run compares with it).
    """

    tables: dict[str, int] = field(default_factory=dict)
    as_of: dt.date | None = None
    versions: dict[str, int] = field(default_factory=dict)
    mode: str = "full"
    release: str | None = None
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)


class _Silver:
    """Silver (and bronze) inputs pinned at their version when first read, so one run sees one state; and
    the region's time zone (``zone``), whose calendar gives every day the run derives from them."""

    def __init__(
        self,
        spark: SparkSession,
        lake: str,
        versions: dict[str, int],
        zone: str = DEFAULT_ZONE,
        max_open_nights: int = 365,
    ) -> None:
        self.spark, self.lake, self.zone = spark, lake, zone
        # The most census nights a stay without a discharge counts (conform.max_stay_days).
        self.max_open_nights = max_open_nights
        self.versions: dict[str, int] = dict(versions)
        self._frames: dict[str, DataFrame] = {}

    def has(self, name: str) -> bool:
        return name in self.versions or io.is_table(self.spark, self.lake, name)

    def version(self, name: str) -> int:
        """The version this run reads of ``name`` (pinned on first use)."""
        if name not in self.versions:
            self.versions[name] = io.latest_version(self.spark, self.lake, name)
        return self.versions[name]

    def read(self, name: str) -> DataFrame:
        """``name`` at its pinned version; the same frame on every call, the registers read once.

        One frame per table, because Delta resolves a pinned version's snapshot each time a frame of it is
        made. The area and institution registers are small and joined into every roll-up level, each
        join another Delta scan of them: they are kept as local checkpoints instead.
        """
        if name not in self._frames:
            if name not in self.versions and not self.has(name):
                if name not in _EMPTY:
                    raise PublishError(f"{name} is not in the lake {self.lake}")
                frame = self.spark.createDataFrame([], _EMPTY[name])
            else:
                frame = io.read_table(self.spark, self.lake, name, version=self.version(name))
            self._frames[name] = local_checkpoint(frame) if name in REGISTERS else frame
        return self._frames[name]

    def read_at(self, name: str, version: int) -> DataFrame:
        """``name`` at an earlier ``version`` (the one the last run read), one frame per version."""
        return self._once(
            f"{name}@{version}", lambda: io.read_table(self.spark, self.lake, name, version=version)
        )

    def changes(self, name: str, start: int) -> DataFrame:
        """``name``'s change feed from ``start`` to its pinned version, one frame shared by every step."""
        end = self.version(name)
        return self._once(f"{name}#{start}", lambda: io.read_changes(self.spark, self.lake, name, start, end))

    def _once(self, key: str, make: Callable[[], DataFrame]) -> DataFrame:
        if key not in self._frames:
            self._frames[key] = make()
        return self._frames[key]


def _as_of(silver: _Silver) -> dt.date:
    """The last (local) day of clinical activity: admissions, discharges, follow-ups and observations.

    From silver's accepted rows only (a mistyped 2204 is quarantined by ``time_not_after_arrival`` and never
    reaches here), and never from the wall clock: the same silver gives the same ``as_of``. A silver with no
    clinical activity yet is as of the last day it received a patient record; with none either, there is
    nothing to publish.
    """

    def day(column: str) -> Column:
        return local_date(F.col(column), silver.zone)

    days = [
        silver.read(ENCOUNTER).select(F.greatest(day("admit_time"), day("discharge_time")).alias("d")),
        silver.read("silver.chronic_followup").select(day("followup_time").alias("d")),
        silver.read("silver.observation").select(day("observation_time").alias("d")),
    ]
    union = days[0].unionByName(days[1]).unionByName(days[2])
    last = io.one_row(union.agg(F.max("d")))[0]  # one aggregate row
    if last is None and silver.has("silver.patient_record"):
        received = silver.read("silver.patient_record").select(day("_ingested_at").alias("d"))
        last = io.one_row(received.agg(F.max("d")))[0]
    if last is None:
        raise PublishError(
            "silver holds no patient record or clinical event yet: run `healthlake conform` first"
        )
    return last


def _bronze_records(silver: _Silver) -> DataFrame:
    cols = ("_source_file", "_source_feed", "_institution_id", "_record_offset", "_ingested_at", "raw")
    return _union([silver.read(t).select(*cols) for t in BRONZE_DATA if silver.has(t)])


def _silver_events(silver: _Silver) -> DataFrame:
    return _union(
        [silver.read(t).select("_source_file", "_event_time") for t in SILVER_EVENTS if silver.has(t)]
    )


def run(
    spark: SparkSession, cfg: Config, *, full: bool = False, extracts: bool | None = None
) -> PublishResult:
    """Bring the gold tables up to date with silver, and release the research extracts when due.

    The first run, or ``full=True``, rebuilds every table. Later runs recompute only what silver changed
    since the last run (``gold.publish_log`` holds the silver versions each run read): the encounters and
    patients the change data feeds name, the days of ``gold.utilization_daily`` they touch, the
    chronic-disease rows of the persons and months they touch, and the exchange volumes of the
    (day, institution, feed) keys of the files they touch (``docs/gold.md``).

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
    # Pin every input at its version now: the run reads one state of silver, and the log records it.
    silver = _Silver(
        spark, lake, _input_versions(spark, lake), cfg.region.timezone, cfg.conform.max_stay_days
    )
    previous = _last_run(spark, lake)
    last = None if full else previous
    release = cfg.research.release
    if extracts is None:
        extracts = last is None or last.release != release
    if last is not None and last.versions == silver.versions and not extracts:
        # Nothing in silver moved since the last run: its tables stand as they are.
        log.debug("publish: silver unchanged since the last run (as of %s), nothing to do", last.as_of)
        return PublishResult(dict(last.tables), last.as_of, dict(last.versions), "unchanged")
    result = PublishResult(tables=dict(last.tables) if last is not None else {})
    steps = result.steps

    def step(name: str) -> _Step:
        return _Step(steps, name)

    if last is not None and last.versions == silver.versions:
        result.mode, as_of = "unchanged", last.as_of
    else:
        with step("as_of"):
            as_of = _as_of(silver)
        if (
            last is not None
            and _can_increment(silver, last)
            and _worth_incrementing(silver, cfg.publish.incremental_min_rows)
        ):
            result.mode = "incremental"
            _publish_incremental(silver, last, as_of, step)
            with step("exchange"):
                cached = _publish_exchange_incremental(silver, last)
            for frame in cached:
                frame.unpersist()
        else:
            with step("full"):
                _publish_full(silver, as_of)
            with step("chronic"):
                _publish_chronic_full(silver, as_of)
            with step("exchange"):
                _publish_exchange_full(silver)
    result.as_of = as_of
    if extracts:
        result.release = release
        with step("research") as research:
            research.records = _rows_of(_publish_research(spark, cfg), result.tables)
        missing = [table for table in omop.INPUTS if not silver.has(table)]
        if missing:
            log.info("publish: OMOP export skipped, the lake has no %s", ", ".join(missing))
        else:
            with step("omop") as export:
                export.records = _rows_of(omop.run(spark, cfg), result.tables)
    with step("row_counts"):
        for table in GOLD_TABLES:
            if io.is_table(spark, lake, table):
                result.tables[table] = io.read_table(spark, lake, table).count()
    result.versions = dict(silver.versions)
    result.written = {
        t: io.latest_version(spark, lake, t)
        for t in (*GOLD_TABLES, RECORD_CONTENTS)
        if io.is_table(spark, lake, t)
    }
    result.seconds = time.monotonic() - started
    _log_run(spark, lake, result)  # the commit point: the next run increments from these versions
    written = ", ".join(f"{table} {rows} rows" for table, rows in result.tables.items())
    log.debug("publish %s (as of %s): %s in %.1fs", result.mode, as_of, written, result.seconds)
    if result.release is not None:
        log.debug("publish: research and OMOP extracts of release %s rebuilt", result.release)
    log.debug("publish steps (s): %s", ", ".join(f"{k} {v}" for k, v in result.steps.items()))
    return result


def _publish_full(silver: _Silver, as_of: dt.date) -> None:
    """Rebuild the encounter facts, the daily utilisation and the patient view from all of silver."""
    lake, day, zone = silver.lake, F.lit(as_of), silver.zone
    places, areas = _places(silver), silver.read("silver.area")
    facts = encounter_facts(silver.read(ENCOUNTER), silver.read(XREF), zone=zone).transform(
        lambda df: with_institution_area(df, places)
    )
    io.overwrite(facts, lake, ENCOUNTER_FACTS, partition_by=ENCOUNTER_FACTS_PARTITIONS)
    facts = io.read_table(silver.spark, lake, ENCOUNTER_FACTS)  # later tables build on the written facts
    _report_long_open_stays(silver, facts, as_of)
    utilization = utilization_daily(
        facts, places, areas, day, zone=zone, max_open_nights=silver.max_open_nights
    )
    io.overwrite(utilization, lake, UTILIZATION_DAILY)
    io.overwrite(_patient_360(silver, silver.read(PERSON), silver.read(XREF), facts, day), lake, PATIENT_360)


def _report_long_open_stays(silver: _Silver, facts: DataFrame, as_of: dt.date) -> None:
    """Say how many stays without a discharge are older than the longest plausible stay.

    ``gold.utilization_daily`` counts such a stay for its first ``conform.max_stay_days`` nights only (a
    discharge message that never came must not fill a bed for years); the stays are named by number
    only, for the senders to be asked.
    """
    oldest = F.lit(as_of - dt.timedelta(days=silver.max_open_nights - 1))
    capped = (
        facts.where(
            (F.col("encounter_class") == "inpatient")
            & F.col("discharge_time").isNull()
            & (F.col("admit_date") < oldest)
        )
        .groupBy("institution_id")
        .count()
        .collect()  # one row per institution with such stays
    )
    if capped:
        per_institution = ", ".join(f"{r['institution_id']} {r['count']:,}" for r in sorted(capped))
        log.warning(
            "publish: %s stays without a discharge are older than conform.max_stay_days (%d); the bed "
            "census counts each for its first %d nights only (%s)",
            f"{sum(r['count'] for r in capped):,}",
            silver.max_open_nights,
            silver.max_open_nights,
            per_institution,
        )


def _publish_chronic_full(silver: _Silver, as_of: dt.date) -> None:
    """Rebuild the chronic-disease registry, monthly states and indicators from all of silver."""
    lake, day, zone = silver.lake, F.lit(as_of), silver.zone
    readings = followup_readings(silver.read(FOLLOWUP), silver.read(OBSERVATION), silver.read(XREF)).cache()
    io.overwrite(registry_from_readings(readings, day, zone=zone), lake, CHRONIC_REGISTRY)
    monthly = chronic_disease_monthly(readings, day, zone=zone)
    io.overwrite(monthly, lake, CHRONIC_MONTHLY, partition_by=CHRONIC_MONTHLY_PARTITIONS)
    readings.unpersist()
    monthly = io.read_table(silver.spark, lake, CHRONIC_MONTHLY)
    io.overwrite(
        indicators_from_monthly(monthly, _places(silver), silver.read("silver.area")),
        lake,
        CHRONIC_INDICATORS,
    )


def _publish_exchange_full(silver: _Silver) -> None:
    """Rebuild the exchange volumes, and the index of bronze contents, from bronze and silver (a lake
    without bronze has neither)."""
    if not silver.has(INGEST_LOG):
        return
    contents = record_contents(_bronze_records(silver))
    exchange = exchange_volume_daily(
        silver.read(INGEST_LOG),
        duplicate_records(contents),
        silver.read("bronze.quarantine"),
        silver.read("silver.quarantine"),
        _silver_events(silver),
        zone=silver.zone,
    )
    io.overwrite(exchange, silver.lake, EXCHANGE_VOLUME)
    io.overwrite(contents.select(*CONTENT_KEY).distinct(), silver.lake, RECORD_CONTENTS)


RESEARCH_PATIENTS, RESEARCH_ENCOUNTERS = "research.patients", "research.encounters"
RESEARCH_UTILIZATION, RESEARCH_CHRONIC = "research.utilization_monthly", "research.chronic_disease_monthly"
RESEARCH_K_ANONYMITY = "research.k_anonymity"


def _publish_research(spark: SparkSession, cfg: Config) -> dict[str, int]:
    """Rebuild the research zone from the gold tables just written (``docs/research.md``)."""
    lake, settings, zone = cfg.lake_root, cfg.research, cfg.region.timezone
    key = load_key()
    gold = {t: io.read_table(spark, lake, t) for t in GOLD_TABLES if io.is_table(spark, lake, t)}
    io.overwrite(
        extracts.patient_extract(gold[PATIENT_360], settings.release, key, zone=zone), lake, RESEARCH_PATIENTS
    )
    patients = io.read_table(spark, lake, RESEARCH_PATIENTS)
    io.overwrite(
        extracts.encounter_extract(gold[ENCOUNTER_FACTS], settings.release, key, zone=zone),
        lake,
        RESEARCH_ENCOUNTERS,
    )
    io.overwrite(
        extracts.utilization_monthly(gold[UTILIZATION_DAILY], settings.min_cell), lake, RESEARCH_UTILIZATION
    )
    io.overwrite(
        extracts.chronic_monthly(gold[CHRONIC_INDICATORS], settings.min_cell), lake, RESEARCH_CHRONIC
    )
    report = extracts.k_anonymity_report(
        patients, RESEARCH_PATIENTS, extracts.PATIENT_QUASI_IDENTIFIERS, settings.k
    )
    io.overwrite(report, lake, RESEARCH_K_ANONYMITY)
    tables = (
        RESEARCH_PATIENTS,
        RESEARCH_ENCOUNTERS,
        RESEARCH_UTILIZATION,
        RESEARCH_CHRONIC,
        RESEARCH_K_ANONYMITY,
    )
    return {t: io.read_table(spark, lake, t).count() for t in tables}


def _places(silver: _Silver) -> DataFrame:
    return institution_paths(silver.read("silver.institution"), silver.read("silver.area"))


def _patient_360(
    silver: _Silver, persons: DataFrame, xref: DataFrame, facts: DataFrame, day: Column
) -> DataFrame:
    return patient_360(
        persons,
        xref,
        facts,
        silver.read("silver.diagnosis"),
        silver.read("silver.chronic_followup"),
        silver.read("silver.immunization"),
        silver.read("silver.nat_test"),
        area_paths(silver.read("silver.area")),
        day,
        zone=silver.zone,
    )


# ---------------------------------------------------------------------------------------------------------
# Incremental publish


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


INPUTS = (
    *REQUIRED,
    *_EMPTY,
    *BRONZE_DATA,
    *SILVER_EVENTS,
    "bronze.ingest_log",
    "silver.medication",
)
"""Every table a run may read (the OMOP inputs are among them)."""


def _input_versions(spark: SparkSession, lake: str) -> dict[str, int]:
    """The latest version of every input table the lake holds."""
    return {
        t: io.latest_version(spark, lake, t) for t in dict.fromkeys(INPUTS) if io.is_table(spark, lake, t)
    }


@dataclass(frozen=True)
class _LastRun:
    as_of: dt.date
    versions: dict[str, int]
    tables: dict[str, int]
    release: str | None  # the research release of the last run that rebuilt the extracts
    written: dict[str, int]  # gold table → its version when that run ended (empty in older logs)

    def stored(self, spark: SparkSession, lake: str, table: str) -> DataFrame:
        """``table`` as the last run left it.

        Not its latest version: when a run dies between two of its writes, the re-run starts from the same
        log row and must find the same differences, though some of them were already merged. Merging them
        again changes nothing, so the re-run ends with the tables the first attempt would have written.
        """
        version = self.written.get(table)
        if version is None:  # a log written before gold versions were recorded
            version = io.latest_version(spark, lake, table)
        return io.read_table(spark, lake, table, version=version)


def _last_run(spark: SparkSession, lake: str) -> _LastRun | None:
    """The silver versions and ``as_of`` of the last finished publish, if any."""
    if not io.is_table(spark, lake, PUBLISH_LOG):
        return None
    logged = io.read_table(spark, lake, PUBLISH_LOG)
    rows = logged.orderBy(F.desc("finished_at")).limit(1).collect()
    if not rows:
        return None
    release = None
    if "release" in logged.columns:  # logs written before releases were recorded lack it
        built = logged.where(F.col("release").isNotNull()).orderBy(F.desc("finished_at")).limit(1)
        release = next((r["release"] for r in built.collect()), None)
    written = dict(rows[0]["written"] or {}) if "written" in logged.columns else {}
    return _LastRun(rows[0]["as_of"], dict(rows[0]["versions"]), dict(rows[0]["tables"]), release, written)


def _can_increment(silver: _Silver, last: _LastRun) -> bool:
    """Whether this run can build on the last one: its tables exist and the event feeds record changes."""
    spark, lake = silver.spark, silver.lake
    if not all(io.is_table(spark, lake, t) for t in (ENCOUNTER_FACTS, UTILIZATION_DAILY, PATIENT_360)):
        return False
    if any(name not in last.versions for name in (ENCOUNTER, XREF, PERSON)):
        return False
    # A new register of areas or institutions moves rows between areas everywhere: rebuild.
    for reference in ("silver.area", "silver.institution"):
        if silver.has(reference) and last.versions.get(reference) != silver.version(reference):
            return False
    fed = (*_EVENT_TABLES, OBSERVATION)  # the patient view's events and the chronic-disease readings
    return all(io.has_change_feed(spark, lake, t) for t in fed if silver.has(t))


def _worth_incrementing(silver: _Silver, min_rows: int) -> bool:
    """Whether silver's event tables hold ``min_rows`` rows or more (``publish.incremental_min_rows``).

    Under that size a full rebuild costs less than the incremental steps' fixed part. The rows are
    counted from the Delta log's file statistics, not by scanning the tables.
    """
    if min_rows == 0:
        return True
    rows = sum(silver.read(t).count() for t in (*_EVENT_TABLES, OBSERVATION) if silver.has(t))
    if rows < min_rows:
        log.info(
            "publish: silver holds %d event rows, under publish.incremental_min_rows (%d): "
            "rebuilding gold in full, which costs less at this size",
            rows,
            min_rows,
        )
    return rows >= min_rows


_EVENT_TABLES = (
    ENCOUNTER,
    "silver.diagnosis",
    "silver.chronic_followup",
    "silver.immunization",
    "silver.nat_test",
)
_PATIENT = ["institution_id", "source_patient_id"]
_KEY = ["institution_id", "source_record_id"]


def _changes(silver: _Silver, last: _LastRun, table: str) -> DataFrame | None:
    """Rows of ``table`` changed since the last run (its change feed), or None when nothing changed."""
    if not silver.has(table):
        return None
    end = silver.version(table)
    start = last.versions.get(table, -1) + 1  # a table new since the last run: all of it
    if start > end:
        return None
    return silver.changes(table, start)


def _link_changes(silver: _Silver, last: _LastRun) -> DataFrame:
    """``(institution_id, source_patient_id, person_id)`` links added or removed since the last run.

    From the xref's change feed when it has one (``healthlake link`` creates it so): rows whose link did
    not move come along too (an update's two images), which only widens what is recomputed. Otherwise
    the two versions are compared in full.
    """
    cols = [*_PATIENT, "person_id"]
    if io.has_change_feed(silver.spark, silver.lake, XREF):
        return _fed_changes(silver, last, XREF, cols)
    before = silver.read_at(XREF, last.versions[XREF]).select(cols)
    now = silver.read(XREF).select(cols)
    return now.subtract(before).unionByName(before.subtract(now))


def _fed_changes(silver: _Silver, last: _LastRun, table: str, cols: list[str]) -> DataFrame:
    """``cols`` of the rows ``table``'s change feed holds since the last run (none when it did not move)."""
    feed = _changes(silver, last, table)
    return (feed if feed is not None else silver.read(table).limit(0)).select(cols)


_PERSON_COLUMNS = [
    "person_id",
    "status",
    "resident_id_token",
    "sex",
    "birth_date",
    "area_code",
    "record_count",
    "institution_count",
]


def _person_changes(silver: _Silver, last: _LastRun) -> DataFrame:
    """``person_id`` of the golden records changed since the last run (change feed, else a comparison)."""
    if io.has_change_feed(silver.spark, silver.lake, PERSON):
        return _fed_changes(silver, last, PERSON, ["person_id"])
    before = silver.read_at(PERSON, last.versions[PERSON])
    before, now = before.select(_PERSON_COLUMNS), silver.read(PERSON).select(_PERSON_COLUMNS)
    return now.subtract(before).select("person_id").unionByName(before.subtract(now).select("person_id"))


def _union(frames: list[DataFrame]) -> DataFrame:
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def _persons_of(patients: DataFrame, silver: _Silver, last: _LastRun) -> DataFrame:
    """The persons (before and now) of some source patients."""
    before = silver.read_at(XREF, last.versions[XREF])
    return _union(
        [x.join(patients, _PATIENT, "left_semi").select("person_id") for x in (silver.read(XREF), before)]
    )


def _materialised(df: DataFrame) -> DataFrame:
    """``df`` computed and kept on the executors (a local checkpoint), so the planner knows its real size.

    The persons and patients a day touches are a small share of the lake: once their size is known, Spark
    broadcasts them (below ``spark.sql.autoBroadcastJoinThreshold``) and filters the large event tables
    as it scans them, instead of shuffling those tables whole to join them. A large day still joins by
    shuffle, as before.

    A checkpoint rather than a cache, because it also cuts the plan: a frame built on cached ones still
    carries every plan below them, repeated wherever each is used, and in the patient step such plans grew
    so large that rendering them for every query stage took most of the step (``BENCHMARKS.md``).
    """
    return local_checkpoint(df)


def _delta_rows(new: DataFrame, old: DataFrame, key: list[str]) -> DataFrame:
    """Changes for ``io.merge_changes``: new rows unlike the old, and a delete for each old key now gone.

    A recomputed row equal to the stored one is left out, so MERGE rewrites only files that change. Map
    columns are compared as their sorted entries (Spark cannot compare maps).
    """
    gone = old.join(new.select(key), key, "left_anti").select(
        *[F.col(c) for c in new.columns], F.lit(True).alias("_delete")
    )
    maps = [f.name for f in new.schema.fields if isinstance(f.dataType, MapType)]

    def comparable(df: DataFrame) -> DataFrame:
        return df.withColumns({c: F.array_sort(F.map_entries(c)) for c in maps}) if maps else df

    differ = comparable(new).subtract(comparable(old.select(*new.columns)))
    differ = differ.withColumns({c: F.map_from_entries(c) for c in maps}) if maps else differ
    return differ.withColumn("_delete", F.lit(False)).unionByName(gone)


def _publish_incremental(
    silver: _Silver, last: _LastRun, as_of: dt.date, step: Callable[[str], _Step]
) -> None:
    """Recompute the encounters, days and persons silver changed since the last run, and merge them in."""
    spark, lake, day, zone = silver.spark, silver.lake, F.lit(as_of), silver.zone
    with step("changes"):
        links = _link_changes(silver, last).cache()
        encounter_changes = _changes(silver, last, ENCOUNTER)
        patients = [links.select(*_PATIENT)]
        if encounter_changes is not None:
            encounter_changes = encounter_changes.select(*_KEY, *_PATIENT, "admit_time").cache()
            patients.append(encounter_changes.select(*_PATIENT))
        changed_patients = _union(patients).distinct().cache()
        # Persons whose links moved are recomputed whole; the others from their first changed encounter.
        relinked = _union([_persons_of(links.select(*_PATIENT), silver, last), links.select("person_id")])
        relinked = _materialised(relinked.where(F.col("person_id").isNotNull()).distinct())
        xref = silver.read(XREF)
        old_all = last.stored(spark, lake, ENCOUNTER_FACTS)
        if encounter_changes is not None:
            changed_encounters = encounter_changes
        else:
            changed_encounters = links.select(*_PATIENT, F.lit(None).cast("timestamp").alias("admit_time"))
            changed_encounters = changed_encounters.limit(0)
        bounds = _materialised(recompute_bounds(changed_encounters, xref, old_all, relinked))
        # The earliest changed admission: what a dated bound recomputes is an inpatient stay or admitted
        # from then on, so the encounters and facts are narrowed by it before they are joined.
        first_change = io.one_row(changed_encounters.agg(F.min("admit_time")))[0]  # one aggregate row
        if log.isEnabledFor(logging.INFO):  # counting is an action: only when someone reads it
            counts = changed_patients.count(), bounds.count()
            log.info("publish: %d source patients, %d persons changed", *counts)

    with step("encounter_facts"):
        # Each affected person's encounters in their recompute scope, and every encounter of a changed
        # patient that has no person. Persons recomputed whole (links moved, an undated change) are apart
        # from those with a dated bound, so that each set is joined at its own size.
        unlinked = changed_patients.join(xref, _PATIENT, "left_anti")
        whole = _materialised(bounds.where(F.col("changed_from").isNull()).select("person_id"))
        whole_scope = _materialised(
            xref.join(whole, "person_id").select(*_PATIENT).unionByName(unlinked.select(*_PATIENT))
        )
        encounters, inpatient = silver.read(ENCOUNTER), F.col("encounter_class") == "inpatient"
        recompute = [encounters.join(whole_scope, _PATIENT)]
        touched = [old_all.join(whole, "person_id")]
        scopes = [whole, whole_scope]
        if first_change is not None:
            dated = _materialised(bounds.where(F.col("changed_from").isNotNull()))
            dated_scope = _materialised(
                xref.join(dated, "person_id").select(*_PATIENT, "recompute_from", "changed_from")
            )
            scopes += [dated, dated_scope]
            candidate = inpatient | (F.col("admit_time") >= F.lit(first_change))
            recompute.append(
                encounters.where(candidate)
                .join(dated_scope, _PATIENT)
                .where(recompute_scope())
                .select(*encounters.columns)
            )
            touched.append(old_all.where(candidate).join(dated, "person_id").where(replaced_scope()))
        places = _places(silver)
        new_facts = (
            encounter_facts(_union(recompute), xref, zone=zone)
            .join(bounds.select("person_id", "keep_from", "changed_from"), "person_id", "left")
            .where(replaced_scope())
            .transform(lambda df: with_institution_area(df, places))
        )
        if encounter_changes is not None:
            # The stored facts of changed encounters whose person is in no bound (unlinked before).
            dated_or_undated = F.col("admit_time").isNull()
            if first_change is not None:
                dated_or_undated = dated_or_undated | (F.col("admit_time") >= F.lit(first_change))
            touched.append(
                old_all.where(dated_or_undated).join(
                    encounter_changes.select(*_KEY).distinct(), _KEY, "left_semi"
                )
            )
        old_facts = _union([t.select(*old_all.columns) for t in touched]).distinct().cache()
        new_facts = new_facts.select(*old_all.columns).cache()
        changed = new_facts.subtract(old_facts).unionByName(old_facts.subtract(new_facts))
        first_day = io.one_row(
            changed.agg(
                F.least(F.min("admit_date"), F.min(local_date(F.col("discharge_time"), zone))).alias("d")
            )
        )[0]  # one aggregate row
        io.merge_changes(_delta_rows(new_facts, old_facts, _KEY), lake, ENCOUNTER_FACTS, _KEY, "_delete")
        new_facts.unpersist()
        old_facts.unpersist()

    with step("utilization_daily"):
        # Every day from the first one a changed encounter touches (the census of open stays moves with
        # as_of), recomputed for all institutions of that day, replaces the stored days.
        days = [first_day] if first_day else []
        if as_of != last.as_of:
            days.append(min(last.as_of, as_of) + dt.timedelta(days=1))
        if days:
            since = min(days)
            facts = io.read_table(spark, lake, ENCOUNTER_FACTS)
            relevant = facts.where(
                (F.col("admit_date") >= F.lit(since))
                | (F.col("discharge_time") >= local_midnight(F.lit(since), zone))  # discharged `since` on
                | ((F.col("encounter_class") == "inpatient") & F.col("discharge_time").isNull())
            )
            _report_long_open_stays(silver, facts, as_of)
            recent = utilization_daily(
                relevant,
                places,
                silver.read("silver.area"),
                day,
                zone=zone,
                max_open_nights=silver.max_open_nights,
            ).where(F.col("date") >= F.lit(since))
            io.replace_where(recent, lake, UTILIZATION_DAILY, f"date >= '{since.isoformat()}'")

    with step("patient_360"):
        scopes += _publish_patient_360(silver, last, day, changed_patients, links, relinked)

    with step("chronic"):
        scopes += _publish_chronic_incremental(silver, last, as_of, relinked)
    for frame in (bounds, changed_patients, links, relinked, encounter_changes, *scopes):
        if frame is not None:
            frame.unpersist()


def _publish_patient_360(
    silver: _Silver,
    last: _LastRun,
    day: Column,
    changed_patients: DataFrame,
    links: DataFrame,
    relinked: DataFrame,
) -> list[DataFrame]:
    """Merge the patient view of the persons silver changed since the last run; returns the frames cached.

    Persons with a changed event, link or golden record, or a birthday since the last run. Stored persons
    whose events were only added to are brought up to date from the added events
    (``patient_360_update``); the others (links moved, an event revised or removed, no stored row, or a
    tie the stored row cannot settle) are recomputed from their whole history.
    """
    spark, lake, xref = silver.spark, silver.lake, silver.read(XREF)
    feeds = {table: _changes(silver, last, table) for table in _EVENT_TABLES}
    event_patients = [changed_patients]
    event_patients += [
        rows.select(*_PATIENT) for t, rows in feeds.items() if rows is not None and t != ENCOUNTER
    ]
    now = silver.read(PERSON)
    aged = now.where(age_at(F.col("birth_date"), F.lit(last.as_of)) != age_at(F.col("birth_date"), day))
    affected = _union(
        [
            _persons_of(_union(event_patients).distinct(), silver, last),
            links.select("person_id"),
            _person_changes(silver, last),
            aged.select("person_id"),
        ]
    ).distinct()
    affected = _materialised(affected)
    stored = _materialised(last.stored(spark, lake, PATIENT_360).join(affected, "person_id", "left_semi"))
    revised = [
        rows.where(F.col("_change_type") != "insert").select(*_PATIENT)
        for rows in feeds.values()
        if rows is not None
    ]
    kept_apart = relinked
    if revised:
        kept_apart = kept_apart.unionByName(_persons_of(_union(revised), silver, last))
    addable = _materialised(stored.select("person_id").join(kept_apart, "person_id", "left_anti"))
    addable_xref = _materialised(xref.join(addable, "person_id", "left_semi"))

    def added(table: str) -> DataFrame:
        rows = feeds.get(table)
        return silver.read(table).limit(0) if rows is None else rows.where(F.col("_change_type") == "insert")

    encounters_added = added(ENCOUNTER).where(~F.coalesce(F.col("is_cancelled"), F.lit(False)))
    updated = _materialised(
        patient_360_update(
            stored.join(addable, "person_id", "left_semi"),
            now.join(addable, "person_id", "left_semi"),
            visit_summary(person_events(encounters_added, addable_xref)),
            chronic_conditions(
                added("silver.diagnosis"), added("silver.chronic_followup"), addable_xref, zone=silver.zone
            ),
            immunization_count(added("silver.immunization"), addable_xref),
            last_test(added("silver.nat_test"), addable_xref),
            area_paths(silver.read("silver.area")),
            day,
        )
    )
    fresh = updated.where(~F.col("_recompute")).drop("_recompute")
    whole_history = _materialised(affected.join(fresh.select("person_id"), "person_id", "left_anti"))
    cached = [affected, stored, addable, addable_xref, updated, whole_history]
    if log.isEnabledFor(logging.INFO):
        counts = fresh.count(), whole_history.count()
        log.info("publish: patient view of %d persons updated, of %d recomputed from history", *counts)
    if not whole_history.isEmpty():  # on a day of only new events there is no one: skip the scans
        history_xref = _materialised(xref.join(whole_history, "person_id", "left_semi"))
        cached.append(history_xref)
        facts = io.read_table(spark, lake, ENCOUNTER_FACTS)
        recomputed = _patient_360(
            silver,
            now.join(whole_history, "person_id", "left_semi"),
            history_xref,
            facts.join(whole_history, "person_id", "left_semi"),
            day,
        )
        fresh = fresh.unionByName(recomputed)
    io.merge_changes(_delta_rows(fresh, stored, ["person_id"]), lake, PATIENT_360, ["person_id"], "_delete")
    return cached


def _publish_chronic_incremental(
    silver: _Silver, last: _LastRun, as_of: dt.date, relinked: DataFrame
) -> list[DataFrame]:
    """Merge the chronic-disease rows of the persons silver changed since the last run; returns the frames
    cached.

    The persons of changed follow-ups and control readings, whose links moved, or with a follow-up that
    entered or left the registry's 12-month window, are recomputed from all their follow-ups; their
    monthly and registry rows are merged, and the indicators of every month from the first one whose
    rows changed are recounted from ``gold.chronic_disease_monthly``. A run in a new month (every
    registered person gains a row) or on a lake without those tables rebuilds them instead.
    """
    spark, lake, day, zone = silver.spark, silver.lake, F.lit(as_of), silver.zone
    if (as_of.year, as_of.month) != (last.as_of.year, last.as_of.month) or any(
        t not in last.written for t in (CHRONIC_REGISTRY, CHRONIC_MONTHLY, CHRONIC_INDICATORS)
    ):
        _publish_chronic_full(silver, as_of)
        return []
    followups, observations, xref = silver.read(FOLLOWUP), silver.read(OBSERVATION), silver.read(XREF)
    patients = [_fed_changes(silver, last, FOLLOWUP, _PATIENT)]
    readings_changed = _changes(silver, last, OBSERVATION)
    if readings_changed is not None:
        patients.append(readings_changed.where(F.col("loinc").isin(*CONTROL_LOINC)).select(*_PATIENT))
    if as_of != last.as_of:
        window_moved = registry_window_moved(F.col("followup_time"), F.lit(last.as_of), day, zone=zone)
        patients.append(followups.where(window_moved).select(*_PATIENT))
    persons = _union([_persons_of(_union(patients).distinct(), silver, last), relinked])
    persons = _materialised(persons.where(F.col("person_id").isNotNull()).distinct())
    if persons.isEmpty():
        return [persons]
    xref_p = _materialised(xref.join(persons, "person_id", "left_semi"))
    patients_p = xref_p.select(*_PATIENT)
    readings = followup_readings(
        followups.join(patients_p, _PATIENT, "left_semi"),
        observations.join(patients_p, _PATIENT, "left_semi"),
        xref_p,
    ).cache()
    cached = [persons, xref_p, readings]

    def stored(table: str, columns: list[str]) -> DataFrame:
        rows = last.stored(spark, lake, table).join(persons, "person_id", "left_semi").select(*columns)
        cached.append(rows.cache())
        return rows

    monthly = chronic_disease_monthly(readings, day, zone=zone)
    moved = _delta_rows(monthly, stored(CHRONIC_MONTHLY, monthly.columns), _MONTHLY_KEY).cache()
    cached.append(moved)
    since = io.one_row(moved.agg(F.min("month")))[0]  # one aggregate row: the first month that changed
    io.merge_changes(moved, lake, CHRONIC_MONTHLY, _MONTHLY_KEY, "_delete")
    if since is not None:
        recount = io.read_table(spark, lake, CHRONIC_MONTHLY).where(F.col("month") >= F.lit(since))
        indicators = indicators_from_monthly(recount, _places(silver), silver.read("silver.area"))
        io.replace_where(indicators, lake, CHRONIC_INDICATORS, f"month >= '{since.isoformat()}'")
    registry = registry_from_readings(readings, day, zone=zone)
    old_registry = stored(CHRONIC_REGISTRY, registry.columns)
    io.merge_changes(
        _delta_rows(registry, old_registry, _REGISTRY_KEY), lake, CHRONIC_REGISTRY, _REGISTRY_KEY, "_delete"
    )
    if log.isEnabledFor(logging.INFO):
        log.info("publish: chronic-disease rows of %d persons recomputed, from %s", persons.count(), since)
    return cached


_EXCHANGE_SOURCES = (INGEST_LOG, "bronze.quarantine", "silver.quarantine", *SILVER_EVENTS)
"""Tables whose changed rows name the files whose (day, institution, feed) rows move."""


def _publish_exchange_incremental(silver: _Silver, last: _LastRun) -> list[DataFrame]:
    """Merge the exchange volumes of the (day, institution, feed) keys whose files changed; returns the
    frames cached.

    A key moves when one of its files is new, or has new quarantined or silver rows. Its measures are
    recounted from its files, except the duplicates: records in bronze before the last run keep their
    status, so the key's stored count grows by the day's new records that repeat a content sent before
    (``bronze.record_contents``) or earlier the same day. A lake whose inputs lack a change feed, or
    without those tables yet, is rebuilt instead.
    """
    spark, lake = silver.spark, silver.lake
    if not silver.has(INGEST_LOG):
        return []
    sources = [t for t in (*_EXCHANGE_SOURCES, *BRONZE_DATA) if silver.has(t)]
    unfed = [t for t in sources if not io.has_change_feed(spark, lake, t)]
    missing = [t for t in (EXCHANGE_VOLUME, RECORD_CONTENTS) if t not in last.written]
    if unfed or missing:
        why = f"{', '.join(unfed)} without a change feed" if unfed else f"no {', '.join(missing)} yet"
        log.info("publish: exchange volumes rebuilt in full (%s)", why)
        _publish_exchange_full(silver)
        return []
    files = silver.read(INGEST_LOG)
    touched = _union(
        [_fed_changes(silver, last, t, ["_source_file"]) for t in _EXCHANGE_SOURCES if silver.has(t)]
    ).distinct()
    grain = {
        "date": F.to_date("_landing_day"),
        "institution_id": F.col("_institution_id"),
        "feed": F.col("_source_feed"),
    }
    keys = _materialised(
        files.join(touched, "_source_file", "left_semi")
        .select(*[c.alias(k) for k, c in grain.items()])
        .distinct()
    )
    cached = [keys]
    if keys.isEmpty():
        return cached
    scope = _materialised(
        files.withColumns(grain).join(keys, list(GRAIN), "left_semi").select(*files.columns)
    )
    cached.append(scope)
    in_scope = scope.select("_source_file")
    new_records = []
    for table in BRONZE_DATA:
        changes = _changes(silver, last, table)
        if changes is not None:
            new_records.append(changes.where(F.col("_change_type") == "insert"))
    known = last.stored(spark, lake, RECORD_CONTENTS)
    if new_records:
        cols = ("_source_file", "_source_feed", "_institution_id", "_record_offset", "_ingested_at", "raw")
        contents = record_contents(_union([r.select(*cols) for r in new_records])).cache()
        cached.append(contents)
        duplicates = duplicate_records(contents, known)
    else:
        contents, duplicates = None, files.select("_source_file").limit(0)
    old = last.stored(spark, lake, EXCHANGE_VOLUME).join(keys, list(GRAIN), "left_semi").cache()
    cached.append(old)
    fresh = exchange_volume_daily(
        scope,
        duplicates,
        silver.read("bronze.quarantine").join(in_scope, "_source_file", "left_semi"),
        silver.read("silver.quarantine").join(in_scope, "_source_file", "left_semi"),
        _silver_events(silver).join(in_scope, "_source_file", "left_semi"),
        zone=silver.zone,
    )
    before = old.select(*GRAIN, F.col("duplicates").alias("_before"))
    fresh = (
        fresh.join(before, list(GRAIN), "left")
        .withColumn("duplicates", F.col("duplicates") + F.coalesce("_before", F.lit(0)))
        .select(*old.columns)
    )
    io.merge_changes(_delta_rows(fresh, old, list(GRAIN)), lake, EXCHANGE_VOLUME, list(GRAIN), "_delete")
    if contents is not None:
        unseen = contents.select(*CONTENT_KEY).distinct().join(known, list(CONTENT_KEY), "left_anti")
        # Idempotent per ingest-log version: a re-run after a crash does not add the contents twice.
        txn = ("healthlake-publish", silver.version(INGEST_LOG))
        io.append(unseen, lake, RECORD_CONTENTS, txn=txn)
    if log.isEnabledFor(logging.INFO):
        log.info("publish: exchange volumes of %d (day, institution, feed) keys recounted", keys.count())
    return cached


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
    io.append(spark.createDataFrame([row], _LOG_SCHEMA), lake, PUBLISH_LOG, merge_schema=True)
