"""Conform: bronze → silver, each bronze row once, every one accounted for.

Per bronze table, a run reads the rows appended since the version the last run finished at (Delta's
change data feed), parses them into each silver entity that feed carries, normalises codes and
identifiers, tokenises direct identifiers (clear values only into ``vault.identity``), checks the data
quality rules and upserts the passing rows with MERGE, latest *event* time winning. Rows failing a rule go
to ``silver.quarantine`` with all the rules they failed.

Reconciliation is row-level: after the writes, each silver row the run parsed is looked up by key in the
silver table it went to. It is *conformed* (silver holds this very row), a *duplicate* (silver holds the
same content from another bronze row), *superseded* (silver holds a later version of its key) or
quarantined; a parsed row whose key silver does not hold is lost, and the run fails (recording nothing as
processed) rather than count it. Each bronze row then takes the best outcome of the silver rows it gave,
or is *not modelled* when no silver table takes it (a well-formed FHIR Claim, an HL7 message type outside
the model): counted per type in the log, not a data-quality failure, and kept in bronze. The run fails too
when those counts don't add up.

A run takes every bronze table's new versions together: per silver table, the rows all bronze tables
give it are classified together and written with one MERGE, and quarantine, metrics and the log are one
append each. A run's fixed costs (Delta commits, Spark jobs, plans) are paid per silver table, not per
silver table and bronze table.

Exactly once: a run's ranges are planned in ``silver.conform_log`` under a run number before any work,
and ``silver.conform_log`` is written last, with the appends to quarantine and metrics made idempotent by
Delta's ``txnAppId``/``txnVersion`` (the run number). A crashed run is re-run first, over exactly its
planned ranges. MERGE needs no such guard: a replayed row carries the same event time and content, so it
changes nothing.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial, reduce
from typing import TYPE_CHECKING, cast

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from healthlake import io
from healthlake.catalog import (
    BRONZE_CSV_RECORDS,
    BRONZE_FHIR_RESOURCES,
    BRONZE_HL7V2_MESSAGES,
    BRONZE_LOCATION_PINGS,
    BRONZE_RECORDS,
    SILVER_ALLERGY,
    SILVER_AREA,
    SILVER_CHRONIC_FOLLOWUP,
    SILVER_CONFORM_LOG,
    SILVER_DIAGNOSIS,
    SILVER_DQ_METRICS,
    SILVER_ENCOUNTER,
    SILVER_IMMUNIZATION,
    SILVER_INSTITUTION,
    SILVER_ISOLATION_ORDER,
    SILVER_LOCATION_EVENT,
    SILVER_MEDICATION,
    SILVER_NAT_POOL,
    SILVER_NAT_TEST,
    SILVER_OBSERVATION,
    SILVER_ORGANIZATION,
    SILVER_PATIENT_RECORD,
    SILVER_PRACTITIONER,
    SILVER_PROCEDURE,
    SILVER_QUARANTINE,
    VAULT_IDENTITY,
)
from healthlake.errors import HealthlakeError
from healthlake.localtime import reading_sources_in
from healthlake.logs import progress
from healthlake.privacy.tokens import load_key
from healthlake.silver import (
    allergy,
    diagnosis,
    encounter,
    events,
    observation,
    patient_record,
    procedure,
    reference,
    registers,
)
from healthlake.silver.common import with_bundle_references
from healthlake.silver.observation import CodeMaps
from healthlake.silver.pseudonymise import drop_clear, tokenize_columns, vault_rows
from healthlake.silver.quality import FAILED_RULES, Rule, rule_counts, with_failed_rules
from healthlake.silver.rules import (
    Limits,
    allergy_rules,
    area_rules,
    chronic_followup_rules,
    diagnosis_rules,
    encounter_rules,
    immunization_rules,
    institution_rules,
    isolation_order_rules,
    location_event_rules,
    medication_rules,
    nat_pool_rules,
    nat_test_rules,
    observation_rules,
    organization_rules,
    patient_record_rules,
    practitioner_rules,
    procedure_rules,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from healthlake.config import Config

log = logging.getLogger(__name__)

KEYS = ("institution_id", "source_record_id")
POINTER = ("_bronze_table", "_bronze_version", "_source_file", "_record_offset")
"""Where a silver row came from: the bronze table, the version that added the row, the file and offset."""
PROVENANCE = ("_source_feed", *POINTER, "_ingested_at")
CDF = io.CHANGE_DATA_FEED
PLANNED, FINISHED = "planned", "finished"
"""``silver.conform_log`` statuses: a range recorded before its work starts, and once it is done."""

BRONZE_INPUTS = BRONZE_RECORDS

# Which bronze rows each input offers to silver (the rest are counted as not in the model).
_TYPE_COLUMN = {
    BRONZE_FHIR_RESOURCES: "resource_type",
    BRONZE_HL7V2_MESSAGES: "message_type",
    BRONZE_CSV_RECORDS: "extract",
    BRONZE_LOCATION_PINGS: "_source_feed",
}


# Done once per bronze table before the entities' parsers run.
_PREPARE: dict[str, Callable[[DataFrame], DataFrame]] = {BRONZE_FHIR_RESOURCES: with_bundle_references}


@dataclass(frozen=True)
class Entity:
    """A silver table: its parsers per bronze table, standardisation, rules and identifiers."""

    table: str
    parsers: dict[str, Callable[[DataFrame], DataFrame]]
    rules: Callable[[], list[Rule]]
    standardize: Callable[[DataFrame], DataFrame] | None = None
    identifiers: dict[str, str] = field(default_factory=dict)
    after_tokens: Callable[[DataFrame], DataFrame] | None = None
    insert_only: bool = False  # immutable events: new keys are inserted, stored ones never change
    precedence: str | None = None
    """SQL rank of a row's source, compared before event time (higher wins; ``{r}`` is the alias prefix
    of the row's columns): a partial record never replaces a fuller one of the same key."""
    key_time: str | None = None
    """A time column the key determines (two rows of one key have the same value): rows stored under a
    batch's keys lie between the batch's earliest and latest value, so classification, MERGE and
    reconciliation read only the files whose statistics overlap that span, not the whole history."""


def entities(cfg: Config) -> tuple[Entity, ...]:
    """The silver tables conform writes, with their code maps loaded from the configuration."""
    maps = CodeMaps.load(cfg.conform.code_maps_path())
    observation_entity = Entity(
        SILVER_OBSERVATION,
        {
            BRONZE_FHIR_RESOURCES: observation.from_fhir,
            BRONZE_HL7V2_MESSAGES: observation.from_hl7v2,
            BRONZE_CSV_RECORDS: observation.from_csv,
        },
        observation_rules,
        lambda df: observation.standardize_observations(df, maps),
    )
    limits = Limits(cfg.conform.future_tolerance_minutes, cfg.conform.max_stay_days)
    return tuple(_with_limits(e, limits) for e in (*ENTITIES, observation_entity))


def _with_limits(entity: Entity, limits: Limits) -> Entity:
    """``entity`` with its rules taking the configured plausibility thresholds (when they take any)."""
    if "limits" not in inspect.signature(entity.rules).parameters:
        return entity
    # The signature was just read: these rules take `limits`, which their declared type cannot say.
    rules = cast("Callable[..., list[Rule]]", entity.rules)
    return replace(entity, rules=partial(rules, limits=limits))


def _location_key(df: DataFrame) -> DataFrame:
    # A ping has no id: its key is the phone's token and the time (the clear phone never leaves).
    return df.withColumn(
        "source_record_id", F.concat_ws("|", "phone_token", F.col("event_time").cast("string"))
    )


ENTITIES = (
    Entity(
        SILVER_PATIENT_RECORD,
        {
            BRONZE_FHIR_RESOURCES: patient_record.from_fhir,
            BRONZE_HL7V2_MESSAGES: patient_record.from_hl7v2,
            BRONZE_CSV_RECORDS: patient_record.from_csv,
        },
        patient_record_rules,
        patient_record.standardize_patient_records,
        {
            "resident_id": "resident_id",
            "name": "name",
            "phone": "phone",
            "address": "address",
            "insurance_no": "insurance_no",
        },
        precedence=patient_record.PRECEDENCE,
    ),
    Entity(
        SILVER_ENCOUNTER,
        {
            BRONZE_FHIR_RESOURCES: encounter.from_fhir,
            BRONZE_HL7V2_MESSAGES: encounter.from_hl7v2,
            BRONZE_CSV_RECORDS: encounter.from_csv,
        },
        encounter_rules,
    ),
    Entity(
        SILVER_DIAGNOSIS,
        {
            BRONZE_FHIR_RESOURCES: diagnosis.from_fhir,
            BRONZE_HL7V2_MESSAGES: diagnosis.from_hl7v2,
            BRONZE_CSV_RECORDS: diagnosis.from_csv,
        },
        diagnosis_rules,
    ),
    Entity(SILVER_NAT_TEST, {BRONZE_CSV_RECORDS: events.nat_tests_from_csv}, nat_test_rules),
    Entity(SILVER_NAT_POOL, {BRONZE_CSV_RECORDS: events.nat_pools_from_csv}, nat_pool_rules),
    Entity(
        SILVER_ISOLATION_ORDER, {BRONZE_CSV_RECORDS: events.isolation_orders_from_csv}, isolation_order_rules
    ),
    Entity(
        SILVER_IMMUNIZATION,
        {
            BRONZE_CSV_RECORDS: events.immunizations_from_csv,
            BRONZE_FHIR_RESOURCES: events.immunizations_from_fhir,
        },
        immunization_rules,
    ),
    Entity(SILVER_MEDICATION, {BRONZE_FHIR_RESOURCES: events.medications_from_fhir}, medication_rules),
    Entity(SILVER_CHRONIC_FOLLOWUP, {BRONZE_CSV_RECORDS: events.followups_from_csv}, chronic_followup_rules),
    Entity(SILVER_AREA, {BRONZE_CSV_RECORDS: reference.areas_from_csv}, area_rules),
    Entity(SILVER_INSTITUTION, {BRONZE_CSV_RECORDS: reference.institutions_from_csv}, institution_rules),
    Entity(
        SILVER_LOCATION_EVENT,
        {BRONZE_LOCATION_PINGS: events.location_events_from_pings},
        location_event_rules,
        identifiers={"phone": "phone"},
        after_tokens=_location_key,
        insert_only=True,
        key_time="event_time",  # part of the key (``_location_key``)
    ),
    Entity(
        SILVER_PROCEDURE,
        {BRONZE_FHIR_RESOURCES: procedure.from_fhir, BRONZE_HL7V2_MESSAGES: procedure.from_hl7v2},
        procedure_rules,
    ),
    Entity(
        SILVER_ALLERGY,
        {BRONZE_FHIR_RESOURCES: allergy.from_fhir, BRONZE_HL7V2_MESSAGES: allergy.from_hl7v2},
        allergy_rules,
    ),
    Entity(
        SILVER_PRACTITIONER,
        {BRONZE_FHIR_RESOURCES: registers.practitioners_from_fhir},
        practitioner_rules,
    ),
    Entity(
        SILVER_ORGANIZATION,
        {BRONZE_FHIR_RESOURCES: registers.organizations_from_fhir},
        organization_rules,
    ),
)


class ReconciliationError(HealthlakeError):
    """Bronze rows in ≠ conformed + quarantined + duplicates."""


@dataclass(frozen=True)
class BronzeRange:
    """The versions ``start..end`` of one bronze table, conformed in one run."""

    bronze_table: str
    start_version: int
    end_version: int


@dataclass(frozen=True)
class PlannedRun:
    """Bronze ranges conformed together, and the Delta ``txn`` their appends are made idempotent by.

    ``run_number`` is the run's number in ``silver.conform_log`` (None for a range a run of an earlier
    release planned alone: it is finished alone, with the ``txn`` that release used).
    """

    ranges: tuple[BronzeRange, ...]
    run_number: int | None

    @property
    def txn(self) -> tuple[str, int]:
        if self.run_number is None:
            (only,) = self.ranges
            return (f"healthlake-conform-{only.bronze_table}", only.end_version)
        return ("healthlake-conform", self.run_number)


@dataclass
class ConformResult:
    """What one run took from one bronze table.

    ``seconds`` is the whole run's: its bronze tables are conformed together.
    """

    bronze_table: str
    start_version: int
    end_version: int
    bronze_rows: int = 0
    conformed: int = 0
    superseded: int = 0
    quarantined: int = 0
    duplicates: int = 0
    not_modelled: int = 0
    seconds: float = 0.0
    not_modelled_types: dict[str, int] = field(default_factory=dict)


def run(spark: SparkSession, cfg: Config) -> list[ConformResult]:
    """Conform every bronze row not conformed yet; returns what each bronze range gave."""
    key = load_key()  # fail before any work when the key is missing
    tables = entities(cfg)
    return [
        result
        for planned in plan_runs(spark, cfg)
        for result in conform_run(spark, cfg, key, planned, tables)
    ]


def plan_runs(spark: SparkSession, cfg: Config) -> list[PlannedRun]:
    """The runs to do now, their ranges recorded in ``silver.conform_log`` before any work.

    Runs that crashed come first, each exactly as planned, even when bronze has grown since: quarantine
    and metrics rows are appended once per run (``txnVersion`` = its number), so a re-run over longer
    ranges would append the crashed part twice. Then one new run takes, per bronze table, whatever is
    newer.
    """
    lake = cfg.lake_root
    unfinished: list[PlannedRun] = []
    last_end: dict[str, int] = {}
    last_run = 0
    if io.is_table(spark, lake, SILVER_CONFORM_LOG):
        logged = io.read_table(spark, lake, SILVER_CONFORM_LOG)
        if "run_number" not in logged.columns:  # a log written before runs were numbered
            logged = logged.withColumn("run_number", F.lit(None).cast(LongType()))
        planned = logged.where(F.col("status") == PLANNED)
        finished = logged.where(F.col("status") == FINISHED)
        ends = ["bronze_table", "end_version"]
        # Small results: one row per bronze table, and the few ranges crashed runs left unfinished.
        left = (
            planned.join(finished.select(*ends), ends, "left_anti")
            .select("run_number", "bronze_table", "start_version", "end_version")
            .collect()
        )
        legacy: list[BronzeRange] = []
        by_run: dict[int, list[BronzeRange]] = {}
        for row in left:
            planned_range = BronzeRange(row[1], int(row[2]), int(row[3]))
            if row[0] is None:
                legacy.append(planned_range)
            else:
                by_run.setdefault(int(row[0]), []).append(planned_range)
        unfinished = [PlannedRun((one,), None) for one in sorted(legacy, key=_bronze_order)]
        unfinished += [PlannedRun(tuple(sorted(by_run[n], key=_bronze_order)), n) for n in sorted(by_run)]
        per_table = logged.groupBy("bronze_table").agg(F.max("end_version"), F.max("run_number")).collect()
        last_end = {row[0]: int(row[1]) for row in per_table}
        last_run = max((int(row[2]) for row in per_table if row[2] is not None), default=0)
    for interrupted in unfinished:
        for r in interrupted.ranges:
            log.warning(
                "conform: finishing %s versions %d-%d of an interrupted run",
                r.bronze_table,
                r.start_version,
                r.end_version,
            )
    new = []
    for bronze in BRONZE_INPUTS:
        if not io.is_table(spark, lake, bronze):
            log.debug("conform: %s does not exist yet, skipped", bronze)
            continue
        latest = io.latest_version(spark, lake, bronze)
        done = last_end.get(bronze, -1)
        if latest > done:
            new.append(BronzeRange(bronze, done + 1, latest))
        else:
            log.debug("conform: %s has nothing new (version %d)", bronze, latest)
    if not new:
        return unfinished
    number = max([last_run, *(p.run_number or 0 for p in unfinished)]) + 1
    _append_log(spark, lake, [(r.bronze_table, r.start_version, r.end_version, number, PLANNED) for r in new])
    return [*unfinished, PlannedRun(tuple(new), number)]


def _bronze_order(r: BronzeRange) -> tuple[int, int]:
    return BRONZE_INPUTS.index(r.bronze_table), r.start_version


def _append_log(
    spark: SparkSession, lake: str, rows: list[tuple], txn: tuple[str, int] | None = None
) -> None:
    """Append ``(bronze_table, start, end, run_number, status[, counts…, seconds, types])`` log rows."""
    width = len(_LOG_SCHEMA.fields) - 1  # all but logged_at
    padded = [tuple(row) + (None,) * (width - len(row)) for row in rows]
    df = spark.createDataFrame(padded, StructType(_LOG_SCHEMA.fields[:-1])).withColumn(
        "logged_at", F.current_timestamp()
    )
    _ensure(spark, lake, SILVER_CONFORM_LOG, _LOG_SCHEMA)
    # mergeSchema: a log begun before ``superseded``, ``not_modelled`` or runs were counted gains the columns.
    io.append(df, lake, SILVER_CONFORM_LOG, txn=txn, merge_schema=True)


def conform_run(
    spark: SparkSession,
    cfg: Config,
    key: bytes,
    planned: PlannedRun,
    tables: Sequence[Entity] = ENTITIES,
) -> list[ConformResult]:
    """Conform the rows that the run's bronze ranges appended, all bronze tables together.

    Per silver table, the rows every bronze table gives it are classified together (bronze tables in
    ``BRONZE_INPUTS`` order, then bronze order within each) and written with one MERGE; quarantine,
    metrics and the log are one append each. Each run's fixed costs (a Delta commit, a Spark job) are
    paid once per silver table, not once per silver table and bronze table.

    Source times without an offset (HL7 and CSV wall clocks, FHIR dates) are read in ``region.timezone``.
    """
    with reading_sources_in(cfg.region.timezone):  # the parsers build their time columns in it
        started = time.monotonic()
        lake = cfg.lake_root
        txn = planned.txn
        order = {r.bronze_table: BRONZE_INPUTS.index(r.bronze_table) for r in planned.ranges}
        changes = {
            r.bronze_table: io.read_changes(spark, lake, r.bronze_table, r.start_version, r.end_version)
            .where(F.col("_change_type") == "insert")
            .drop("_change_type", "_commit_timestamp")
            .transform(_PREPARE.get(r.bronze_table, lambda df: df))
            .persist()
            for r in planned.ranges
        }
        cached: list[DataFrame] = list(changes.values())
        try:
            parsers = [
                (entity, bronze, entity.parsers[bronze])
                for entity in tables
                for bronze in changes
                if bronze in entity.parsers
            ]
            # One job fills the bronze caches (every later step reads them) and counts their rows.
            bronze_rows = _bronze_counts(changes, order)
            work: list[tuple[Entity, DataFrame, KeySpan | None]] = []
            # Tables this run created hold no files: their first write appends without asking Delta.
            created: set[str] = set()
            for entity in tables:
                parts = [
                    _prepare(changes[bronze].transform(parse), entity, key).withColumn(
                        "_bronze_order", F.lit(order[bronze])
                    )
                    for e, bronze, parse in parsers
                    if e is entity
                ]
                if not parts:
                    continue  # no bronze table of the run feeds this silver table
                if _ensure(spark, lake, entity.table, _silver_rows(parts[0], entity).schema, CDF):
                    created.add(entity.table)
                # A local checkpoint, not a cache: the silver write below would drop a cache of rows
                # whose plan reads that table (Spark refreshes caches by the paths written), and each
                # later step would classify them again against the table just written.
                checked = reduce(DataFrame.unionByName, parts)
                span = _key_span(checked, entity.key_time)
                classified = _classify(
                    spark, lake, entity.table, checked, entity.precedence, span
                ).localCheckpoint(eager=False)
                work.append((entity, classified, span))
            # One job fills every checkpoint and says which writes each table needs: each skipped write
            # (an empty MERGE, append or check) saves seconds of fixed cost.
            counts = _outcome_counts(work)
            work = [w for w in work if counts.get(w[0].table)]
            vault = [vault_rows(c, e.identifiers) for e, c, _ in work if e.identifiers]
            if vault:  # before silver: no token reaches silver without its clear value in the vault
                rows = reduce(DataFrame.unionByName, vault).dropDuplicates(["token"])
                if _ensure(spark, lake, VAULT_IDENTITY, rows.schema):
                    created.add(VAULT_IDENTITY)
                _write_vault(spark, lake, rows, VAULT_IDENTITY in created)
            outcomes, quarantine_parts, metric_parts = [], [], []
            for entity, classified, span in work:
                if counts[entity.table].get("conformed"):
                    _write_silver(
                        spark,
                        lake,
                        entity,
                        classified.where(F.col("_rank") == 1),
                        span,
                        empty=entity.table in created,
                    )
                if counts[entity.table].get("quarantined"):
                    quarantine_parts.append(_quarantine_rows(classified, entity))
                metric_parts.append(_metrics(classified, entity, planned))  # one row per checked row
                # Row-level reconciliation: where each parsed row is now, read back from the table written.
                verified = _verify(spark, lake, entity.table, classified, span)
                outcomes.append(
                    verified.select(
                        *_row_key(
                            F.col("_bronze_order"),
                            F.col("_bronze_version"),
                            F.col("_source_file"),
                            F.col("_record_offset"),
                        ),
                        _outcome_code("_outcome").alias("_code"),
                    )
                )
            # Per bronze row, its best outcome over every silver table it fed: one grouping of all of them,
            # with the bronze rows themselves as code 0, i.e. taken by no table (not in the silver model).
            # Grouped on fixed-width keys (the file name hashed): shuffling the paths costs far more.
            bronze_keys = [
                rows.select(
                    *_row_key(
                        F.lit(order[bronze]),
                        F.col("_commit_version"),
                        F.col("_source_file"),
                        F.col("_record_offset"),
                    ),
                    F.lit(0).alias("_code"),
                )
                for bronze, rows in changes.items()
            ]
            per_row = (
                reduce(DataFrame.unionByName, [*outcomes, *bronze_keys])
                .groupBy(*_ROW_KEY)
                .agg(F.max("_code").alias("_code"), F.count_if(F.col("_code") == _LOST).alias("_lost"))
                .persist()
            )
            cached.append(per_row)
            # Small results: a row per (bronze table, outcome), a row per bronze table.
            tally = {
                (row["_k_bronze"], row["_code"]): (int(row["n"]), int(row["lost"] or 0))
                for row in per_row.groupBy("_k_bronze", "_code")
                .agg(F.count("*").alias("n"), F.sum("_lost").alias("lost"))
                .collect()
            }
            lost = sum(n_lost for _, n_lost in tally.values())
            if lost:
                raise ReconciliationError(
                    f"conform run {txn[1]} ({_ranges_text(planned)}): {lost} parsed records are in no "
                    "silver table, no quarantine and no counted duplicate; nothing was marked as processed "
                    "(a defect of conform: report it with the lake's silver.conform_log)"
                )
            results = []
            for r in planned.ranges:
                k = order[r.bronze_table]

                def count(code: int, k: int = k) -> int:
                    return tally.get((k, code), (0, 0))[0]

                result = ConformResult(
                    r.bronze_table,
                    r.start_version,
                    r.end_version,
                    bronze_rows=bronze_rows.get(k, 0),
                    conformed=count(_CODES["conformed"]),
                    superseded=count(_CODES["superseded"]),
                    quarantined=count(_CODES["quarantined"]),
                    duplicates=count(_CODES["duplicate"]),
                    not_modelled=count(0),
                )
                if result.not_modelled:
                    result.not_modelled_types = _not_modelled_types(
                        changes[r.bronze_table], per_row, r.bronze_table, k
                    )
                accounted = (
                    result.conformed
                    + result.superseded
                    + result.quarantined
                    + result.duplicates
                    + result.not_modelled
                )
                if result.bronze_rows != accounted:
                    raise ReconciliationError(
                        f"conform {r.bronze_table} versions {r.start_version}-{r.end_version}: "
                        f"{result.bronze_rows} bronze rows but {result.conformed} conformed + "
                        f"{result.superseded} superseded + {result.quarantined} quarantined + "
                        f"{result.duplicates} duplicates + {result.not_modelled} not modelled; nothing was "
                        "marked as processed, fix and re-run"
                    )
                results.append(result)
            # With a change feed, publish reads only the rows each run appended (their files' volumes).
            _ensure(spark, lake, SILVER_QUARANTINE, _QUARANTINE_SCHEMA, CDF)
            if quarantine_parts:
                io.append(reduce(DataFrame.unionByName, quarantine_parts), lake, SILVER_QUARANTINE, txn=txn)
            if metric_parts:
                metrics = reduce(DataFrame.unionByName, metric_parts)
                _ensure(spark, lake, SILVER_DQ_METRICS, metrics.schema)
                io.append(metrics, lake, SILVER_DQ_METRICS, txn=txn)
            seconds = time.monotonic() - started
            for result in results:
                result.seconds = seconds
            _append_log(
                spark,
                lake,
                [
                    (
                        r.bronze_table,
                        r.start_version,
                        r.end_version,
                        planned.run_number,
                        FINISHED,
                        r.bronze_rows,
                        r.conformed,
                        r.superseded,
                        r.quarantined,
                        r.duplicates,
                        r.not_modelled,
                        r.seconds,
                        r.not_modelled_types,
                    )
                    for r in results
                ],
                txn=txn,
            )
        finally:
            for df in cached:
                df.unpersist()
        for result in results:
            log.info(
                "conform %s v%d-%d: %s records; %s conformed, %s superseded, %s quarantined, %s duplicates, "
                "%s not modelled",
                result.bronze_table,
                result.start_version,
                result.end_version,
                f"{result.bronze_rows:,}",
                f"{result.conformed:,}",
                f"{result.superseded:,}",
                f"{result.quarantined:,}",
                f"{result.duplicates:,}",
                f"{result.not_modelled:,}",
            )
        total = sum(r.bronze_rows for r in results)
        progress(log, "conform", total, seconds, f"{len(results)} bronze ranges together")
        return results


def _ranges_text(planned: PlannedRun) -> str:
    return ", ".join(f"{r.bronze_table} versions {r.start_version}-{r.end_version}" for r in planned.ranges)


def _bronze_counts(changes: dict[str, DataFrame], order: dict[str, int]) -> dict[int, int]:
    """Rows per bronze table of the run (keyed by its place in ``BRONZE_INPUTS``), in one job."""
    per_table = [rows.select(F.lit(order[bronze]).alias("_k_bronze")) for bronze, rows in changes.items()]
    grouped = reduce(DataFrame.unionByName, per_table).groupBy("_k_bronze").count().collect()
    return {int(row[0]): int(row[1]) for row in grouped}


def _write_silver(
    spark: SparkSession,
    lake: str,
    entity: Entity,
    latest: DataFrame,
    span: KeySpan | None = None,
    *,
    empty: bool = False,
) -> None:
    """Offer each key's rank-1 row to the silver table: MERGE, latest event winning.

    ``empty``: the table is known to hold no files (this run created it), so Delta is not asked.
    """
    if empty or io.holds_no_files(spark, lake, entity.table):
        # Nothing to match yet: a plain append is the same result without MERGE's joins. A crash after it
        # leaves rows, so the re-run takes the MERGE path and adds nothing twice.
        io.append(_silver_rows(latest, entity), lake, entity.table)
    elif entity.insert_only:
        io.insert_new(
            _silver_rows(latest, entity),
            lake,
            entity.table,
            list(KEYS),
            target_condition=None if span is None else span.sql("t"),
        )
    else:
        io.upsert(
            _silver_rows(latest, entity),
            lake,
            entity.table,
            list(KEYS),
            update_condition=_newer(entity.precedence),
        )


def _newer(precedence: str | None) -> str:
    """The MERGE condition under which an incoming row ``s`` replaces the stored row ``t`` of its key.

    Never when it is the same content (a re-sent record, or this run replayed after a crash); otherwise
    when its source ranks higher (``precedence``), or ranks the same and it is a later event, ties broken
    by bronze order.
    """
    later = (
        "(s._event_time > t._event_time OR (s._event_time = t._event_time AND "
        "(s._bronze_version > t._bronze_version OR (s._bronze_version = t._bronze_version AND "
        "(s._source_file > t._source_file OR (s._source_file = t._source_file AND "
        "s._record_offset > t._record_offset))))))"
    )
    if precedence is not None:
        source, stored = precedence.format(r="s."), precedence.format(r="t.")
        later = f"(({source}) > ({stored}) OR (({source}) = ({stored}) AND {later}))"
    return f"s._row_hash <> t._row_hash AND {later}"


def _prepare(parsed: DataFrame, entity: Entity, key: bytes) -> DataFrame:
    """Standardise, tokenise and check one entity's parsed rows.

    The clear identifier columns stay (for the vault rows) until ``_silver_rows`` / ``_quarantine_rows``
    drop them; the row hash covers the tokens, not the clear values.
    """
    if entity.standardize is not None:
        parsed = parsed.transform(entity.standardize)
    if entity.identifiers:
        parsed = tokenize_columns(parsed, key, entity.identifiers)
    if entity.after_tokens is not None:
        parsed = parsed.transform(entity.after_tokens)
    content = [c for c in parsed.columns if c not in PROVENANCE and c not in entity.identifiers]
    return with_failed_rules(parsed, entity.rules()).withColumn(
        "_row_hash", F.sha2(F.to_json(F.struct(*content)), 256)
    )


_CODES = {"conformed": 5, "quarantined": 4, "duplicate": 3, "superseded": 2}
"""A bronze row's outcome is the best over the silver rows it gave; 0 is "taken by no silver table".

A re-sent row stays a duplicate though a part of it (a visit's mention of its patient) is superseded by a
fuller record: superseded ranks last."""
_LOST = 1
"""A parsed row whose key no silver table holds after the run: never counted, the run fails."""


def _outcome_code(outcome: str) -> Column:
    code = F.when(F.col(outcome) == "lost", _LOST)
    for name, value in _CODES.items():
        code = code.when(F.col(outcome) == name, value)
    return code.otherwise(0)


@dataclass(frozen=True)
class KeySpan:
    """The earliest and latest ``key_time`` of a batch (epoch microseconds; None: the batch has none)."""

    column: str
    first: int | None
    last: int | None

    def column_filter(self) -> Column:
        """Rows of the span, as a filter Delta's data skipping can use (a column against literals)."""
        if self.first is None or self.last is None:
            return F.lit(False)
        # timestamp_micros of a literal folds to a literal before Delta prunes files by their statistics.
        return F.col(self.column).between(
            F.timestamp_micros(F.lit(self.first)), F.timestamp_micros(F.lit(self.last))
        )

    def sql(self, alias: str) -> str:
        """The same filter as SQL on table alias ``alias`` (for a MERGE condition)."""
        if self.first is None or self.last is None:
            return "false"
        column = f"{alias}.`{self.column}`"
        return f"{column} >= timestamp_micros({self.first}) AND {column} <= timestamp_micros({self.last})"


def _key_span(checked: DataFrame, key_time: str | None) -> KeySpan | None:
    """The span of ``key_time`` over the batch's rows (one small job), or None without a ``key_time``."""
    if key_time is None:
        return None
    first, last = checked.agg(
        F.min(F.unix_micros(F.col(key_time))), F.max(F.unix_micros(F.col(key_time)))
    ).first() or (None, None)
    return KeySpan(key_time, None if first is None else int(first), None if last is None else int(last))


def _outcome_counts(work: Sequence[tuple[Entity, DataFrame, KeySpan | None]]) -> dict[str, dict[str, int]]:
    """Rows per silver table and outcome, in one job that also fills every table's cache.

    A table absent from the result holds nothing from this run.
    """
    if not work:
        return {}
    grouped = [
        classified.groupBy("_outcome").count().select(F.lit(entity.table).alias("table"), "_outcome", "count")
        for entity, classified, _ in work
    ]
    counts: dict[str, dict[str, int]] = {}
    for row in reduce(DataFrame.unionByName, grouped).collect():  # a row per table and outcome
        counts.setdefault(row["table"], {})[row["_outcome"]] = int(row["count"])
    return counts


def _write_vault(spark: SparkSession, lake: str, rows: DataFrame, empty: bool = False) -> None:
    """Add the (token, kind, clear value) rows the vault (which exists) does not hold yet.

    ``empty``: the vault is known to hold no files (this run created it), so Delta is not asked.
    """
    if empty or io.holds_no_files(spark, lake, VAULT_IDENTITY):
        io.append(rows, lake, VAULT_IDENTITY)
    else:
        io.insert_new(rows, lake, VAULT_IDENTITY, ["token"])


def _classify(
    spark: SparkSession,
    lake: str,
    table: str,
    checked: DataFrame,
    precedence: str | None = None,
    span: KeySpan | None = None,
) -> DataFrame:
    """Label each row conformed, quarantined or duplicate, and rank the conformed rows of one key.

    A duplicate is a row whose exact content another row of the same key already has: an earlier row
    of this run (the first copy in bronze order, bronze tables in ``_bronze_order``, stays the
    candidate), or the row silver holds from an earlier bronze row. ``_rank`` orders the other rows that
    pass the rules (one per distinct content) by source precedence, then event order: rank 1 is the one
    row per key offered to the table's MERGE (the order ``_newer`` compares them by)."""
    first_of_content = Window.partitionBy(*KEYS, "_row_hash").orderBy(
        "_bronze_order", "_bronze_version", "_source_file", "_record_offset"
    )
    order = Window.partitionBy(*KEYS, "_outcome").orderBy(
        *([F.expr(precedence.format(r="")).desc()] if precedence else []),
        F.col("_event_time").desc_nulls_last(),
        F.col("_bronze_version").desc(),
        F.col("_source_file").desc(),
        F.col("_record_offset").desc(),
    )
    stored = _stored(spark, lake, table, span).select(
        *KEYS, F.col("_row_hash").alias("_stored_hash"), F.struct(*POINTER).alias("_stored_pointer")
    )
    good = F.size(FAILED_RULES) == 0
    with_keys = F.col("institution_id").isNotNull() & F.col("source_record_id").isNotNull()
    already_stored = (F.col("_stored_hash") == F.col("_row_hash")) & (
        F.col("_stored_pointer") != F.struct(*POINTER)
    )
    outcome = (
        F.when(~good, F.lit("quarantined"))
        .when((F.col("_nth_copy") > 1) | F.coalesce(already_stored, F.lit(False)), F.lit("duplicate"))
        .otherwise(F.lit("conformed"))
    )
    return (
        checked.withColumn("_nth_copy", F.when(good & with_keys, F.row_number().over(first_of_content)))
        .join(stored, list(KEYS), "left")
        .withColumn("_outcome", outcome)
        .withColumn(
            "_rank", F.when((F.col("_outcome") == "conformed") & with_keys, F.row_number().over(order))
        )
        .drop("_stored_hash", "_stored_pointer", "_nth_copy")
    )


def _stored(spark: SparkSession, lake: str, table: str, span: KeySpan | None) -> DataFrame:
    """The silver rows that may share a key with the batch: all of them, or those of the key span."""
    rows = io.read_table(spark, lake, table)
    return rows if span is None else rows.where(span.column_filter())


def _verify(
    spark: SparkSession, lake: str, table: str, classified: DataFrame, span: KeySpan | None = None
) -> DataFrame:
    """Each parsed row's outcome as the silver table now holds it: the row-level reconciliation.

    Rows that passed the rules are looked up by key in ``table`` as just written: *lost* when it holds no
    row of the key; *conformed* when it holds this very bronze row; *duplicate* when the row is a copy of
    another (``_classify``) or silver holds its content from another bronze row; else *superseded*
    (silver holds another version of the key). Quarantined rows keep their outcome (they are appended to
    ``silver.quarantine`` in this run).
    """
    now = _stored(spark, lake, table, span).select(
        *KEYS, F.col("_row_hash").alias("_now_hash"), F.struct(*POINTER).alias("_now_pointer")
    )
    outcome = (
        F.when(F.col("_outcome") == "quarantined", F.col("_outcome"))
        .when(F.col("_now_hash").isNull(), F.lit("lost"))
        .when(F.col("_now_pointer") == F.struct(*POINTER), F.lit("conformed"))
        .when(
            (F.col("_outcome") == "duplicate") | (F.col("_now_hash") == F.col("_row_hash")),
            F.lit("duplicate"),
        )
        .otherwise(F.lit("superseded"))
    )
    rows = classified.select(*KEYS, "_row_hash", "_outcome", "_bronze_order", *POINTER)
    return rows.join(now, list(KEYS), "left").withColumn("_outcome", outcome)


def _silver_rows(df: DataFrame, entity: Entity) -> DataFrame:
    """The columns a silver table stores: no working columns, no clear identifiers."""
    drop = [c for c in (FAILED_RULES, "_rank", "_outcome", "_bronze_order") if c in df.columns]
    return drop_clear(df.drop(*drop), entity.identifiers).withColumn("_conformed_at", F.current_timestamp())


def _quarantine_rows(classified: DataFrame, entity: Entity) -> DataFrame:
    """Rows that failed a rule, with all the rules they failed and a pointer to their bronze row.

    The record is kept as JSON with tokens only: the clear identifiers never leave the vault.
    """
    working = (FAILED_RULES, "_rank", "_outcome", "_row_hash", "_bronze_order", *entity.identifiers)
    content = [c for c in classified.columns if c not in working]
    return classified.where(F.col("_outcome") == "quarantined").select(
        *POINTER,
        "_source_feed",
        "institution_id",
        F.lit(entity.table).alias("silver_table"),
        "source_record_id",
        F.col(FAILED_RULES).alias("failed_rules"),
        F.lit(None).cast("string").alias("detail"),
        F.to_json(F.struct(*content)).alias("record"),
    )


_ROW_KEY = ("_k_bronze", "_k_version", "_k_file", "_k_offset")


def _row_key(bronze_order: Column, version: Column, source_file: Column, offset: Column) -> list[Column]:
    """A bronze row's place as four numbers: the file name as a 64-bit hash (files per run: thousands)."""
    return [
        bronze_order.alias("_k_bronze"),
        version.alias("_k_version"),
        F.xxhash64(source_file).alias("_k_file"),
        offset.alias("_k_offset"),
    ]


def _not_modelled_types(changes: DataFrame, per_row: DataFrame, bronze: str, order: int) -> dict[str, int]:
    """Bronze rows no silver table took, per record type (a FHIR resource type, an HL7 message type)."""
    keyed = changes.select(
        *_row_key(F.lit(order), F.col("_commit_version"), F.col("_source_file"), F.col("_record_offset")),
        F.coalesce(_TYPE_COLUMN[bronze], F.lit("?")).alias("_type"),
    )
    untaken = keyed.join(per_row.where(F.col("_code") == 0), list(_ROW_KEY), "left_semi")
    # One row per record type: bounded by the formats' vocabularies, not by the region.
    return {r["_type"]: int(r["count"]) for r in untaken.groupBy("_type").count().collect()}


_LOG_SCHEMA = StructType(
    [
        StructField("bronze_table", StringType()),
        StructField("start_version", LongType()),
        StructField("end_version", LongType()),
        StructField("run_number", LongType()),
        StructField("status", StringType()),
        *(
            StructField(name, LongType())
            for name in (
                "bronze_rows",
                "conformed",
                "superseded",
                "quarantined",
                "duplicates",
                "not_modelled",
            )
        ),
        StructField("seconds", DoubleType()),
        StructField("not_modelled_types", MapType(StringType(), LongType())),
        StructField("logged_at", TimestampType()),
    ]
)

_QUARANTINE_SCHEMA = StructType(
    [
        StructField("_bronze_table", StringType()),
        StructField("_bronze_version", LongType()),
        StructField("_source_file", StringType()),
        StructField("_record_offset", IntegerType()),
        *(
            StructField(name, StringType())
            for name in ("_source_feed", "institution_id", "silver_table", "source_record_id")
        ),
        StructField("failed_rules", ArrayType(StringType())),
        StructField("detail", StringType()),
        StructField("record", StringType()),
    ]
)


def _metrics(checked: DataFrame, entity: Entity, planned: PlannedRun) -> DataFrame:
    """Rows checked and failed per bronze table, institution and rule, with the median arrival lag.

    ``run_id`` is ``<bronze table>@<end version>``: the range of that bronze table the rows came from.
    """
    by = ["_bronze_table", "institution_id"]
    counts = rule_counts(checked, entity.rules(), by)
    lag = checked.groupBy(*by).agg(
        F.percentile_approx(
            F.col("_ingested_at").cast("double") - F.col("_event_time").cast("double"), 0.5
        ).alias("arrival_lag_p50_s")
    )
    end_version = F.lit(None).cast(LongType())
    for r in planned.ranges:
        end_version = F.when(F.col("_bronze_table") == r.bronze_table, r.end_version).otherwise(end_version)
    return counts.join(lag, by, "left").select(
        F.concat_ws("@", "_bronze_table", end_version.cast("string")).alias("run_id"),
        F.current_timestamp().alias("run_at"),
        F.col("_bronze_table").alias("bronze_table"),
        F.lit(entity.table).alias("silver_table"),
        "institution_id",
        "rule",
        "dimension",
        F.col("rows_checked").cast("long").alias("rows_checked"),
        F.col("rows_failed").cast("long").alias("rows_failed"),
        "arrival_lag_p50_s",
    )


def _ensure(
    spark: SparkSession, lake: str, name: str, schema, properties: dict[str, str] | None = None
) -> bool:
    """Create the table unless it exists; True when this call created it."""
    return io.create_table(spark, lake, name, schema, properties=properties)


def conformed_tables() -> Sequence[str]:
    """The silver tables conform writes."""
    return [*(e.table for e in ENTITIES), SILVER_OBSERVATION]  # observation: see entities()
