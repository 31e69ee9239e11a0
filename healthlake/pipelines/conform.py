"""Conform: bronze → silver, each bronze row once, every one accounted for.

Per bronze table, a run reads the rows appended since the version the last run finished at (Delta's
change data feed), parses them into each silver entity that feed carries, normalises codes and
identifiers, tokenises direct identifiers (clear values only into ``vault.identity``), checks the data
quality rules and upserts the passing rows with MERGE, latest *event* time winning. Rows failing a rule go
to ``silver.quarantine`` with all the rules they failed; bronze rows that no silver table takes (a
resource type outside the model) go there too, so nothing disappears.

Reconciliation: every bronze row of the run ends as exactly one of conformed, quarantined or duplicate;
the run fails (and records nothing as processed) when the counts don't add up.

Exactly once: ``silver.conform_log`` is written last, with the appends to quarantine and metrics made
idempotent by Delta's ``txnAppId``/``txnVersion`` (the bronze end version). MERGE needs no such guard: a
replayed row carries the same event time and content, so it changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from healthlake import io
from healthlake.errors import HealthlakeError
from healthlake.privacy.tokens import load_key
from healthlake.silver import diagnosis, encounter, events, observation, patient_record
from healthlake.silver.common import with_bundle_references
from healthlake.silver.observation import CodeMaps
from healthlake.silver.pseudonymise import drop_clear, tokenize_columns, vault_rows
from healthlake.silver.quality import FAILED_RULES, Rule, rule_counts, with_failed_rules
from healthlake.silver.rules import (
    chronic_followup_rules,
    diagnosis_rules,
    encounter_rules,
    immunization_rules,
    location_event_rules,
    medication_rules,
    nat_test_rules,
    observation_rules,
    patient_record_rules,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from healthlake.config import Config

log = logging.getLogger(__name__)

QUARANTINE = "silver.quarantine"
DQ_METRICS = "silver.dq_metrics"
CONFORM_LOG = "silver.conform_log"
VAULT = "vault.identity"
KEYS = ("institution_id", "source_record_id")
POINTER = ("_bronze_table", "_bronze_version", "_source_file", "_record_offset")
"""Where a silver row came from: the bronze table, the version that added the row, the file and offset."""
PROVENANCE = ("_source_feed", *POINTER, "_ingested_at")
NOT_IN_MODEL = "record_type_in_silver_model"
CDF = {"delta.enableChangeDataFeed": "true"}

BRONZE_INPUTS = (
    "bronze.fhir_resources",
    "bronze.hl7v2_messages",
    "bronze.csv_records",
    "bronze.location_pings",
)

# Which bronze rows each input offers to silver (the rest are counted as not in the model).
_TYPE_COLUMN = {
    "bronze.fhir_resources": "resource_type",
    "bronze.hl7v2_messages": "message_type",
    "bronze.csv_records": "extract",
    "bronze.location_pings": "_source_feed",
}


# Done once per bronze table before the entities' parsers run.
_PREPARE: dict[str, Callable[[DataFrame], DataFrame]] = {"bronze.fhir_resources": with_bundle_references}


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


def entities(cfg: Config) -> tuple[Entity, ...]:
    """The silver tables conform writes, with their code maps loaded from the configuration."""
    maps = CodeMaps.load(cfg.conform.code_maps_path())
    observation_entity = Entity(
        "silver.observation",
        {
            "bronze.fhir_resources": observation.from_fhir,
            "bronze.hl7v2_messages": observation.from_hl7v2,
            "bronze.csv_records": observation.from_csv,
        },
        observation_rules,
        lambda df: observation.standardize_observations(df, maps),
    )
    return (*ENTITIES, observation_entity)


def _location_key(df: DataFrame) -> DataFrame:
    # A ping has no id: its key is the phone's token and the time (the clear phone never leaves).
    return df.withColumn(
        "source_record_id", F.concat_ws("|", "phone_token", F.col("event_time").cast("string"))
    )


ENTITIES = (
    Entity(
        "silver.patient_record",
        {
            "bronze.fhir_resources": patient_record.from_fhir,
            "bronze.hl7v2_messages": patient_record.from_hl7v2,
            "bronze.csv_records": patient_record.from_csv,
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
    ),
    Entity(
        "silver.encounter",
        {
            "bronze.fhir_resources": encounter.from_fhir,
            "bronze.hl7v2_messages": encounter.from_hl7v2,
            "bronze.csv_records": encounter.from_csv,
        },
        encounter_rules,
    ),
    Entity(
        "silver.diagnosis",
        {
            "bronze.fhir_resources": diagnosis.from_fhir,
            "bronze.hl7v2_messages": diagnosis.from_hl7v2,
            "bronze.csv_records": diagnosis.from_csv,
        },
        diagnosis_rules,
    ),
    Entity("silver.nat_test", {"bronze.csv_records": events.nat_tests_from_csv}, nat_test_rules),
    Entity(
        "silver.immunization",
        {
            "bronze.csv_records": events.immunizations_from_csv,
            "bronze.fhir_resources": events.immunizations_from_fhir,
        },
        immunization_rules,
    ),
    Entity("silver.medication", {"bronze.fhir_resources": events.medications_from_fhir}, medication_rules),
    Entity(
        "silver.chronic_followup", {"bronze.csv_records": events.followups_from_csv}, chronic_followup_rules
    ),
    Entity(
        "silver.location_event",
        {"bronze.location_pings": events.location_events_from_pings},
        location_event_rules,
        identifiers={"phone": "phone"},
        after_tokens=_location_key,
        insert_only=True,
    ),
)


class ReconciliationError(HealthlakeError):
    """Bronze rows in ≠ conformed + quarantined + duplicates."""


@dataclass
class ConformResult:
    """What one run took from one bronze table."""

    bronze_table: str
    start_version: int
    end_version: int
    bronze_rows: int = 0
    conformed: int = 0
    quarantined: int = 0
    duplicates: int = 0
    seconds: float = 0.0


def run(spark: SparkSession, cfg: Config) -> list[ConformResult]:
    """Conform every bronze row not conformed yet; returns what each bronze table gave."""
    key = load_key()  # fail before any work when the key is missing
    tables = entities(cfg)
    results = []
    for bronze in BRONZE_INPUTS:
        if not io.is_table(spark, cfg.lake_root, bronze):
            log.info("conform: %s does not exist yet, skipped", bronze)
            continue
        start = _last_version(spark, cfg, bronze) + 1
        end = io.latest_version(spark, cfg.lake_root, bronze)
        if end < start:
            log.info("conform: %s has nothing new (version %d)", bronze, end)
            continue
        results.append(conform_versions(spark, cfg, key, bronze, start, end, tables))
    return results


def conform_versions(
    spark: SparkSession,
    cfg: Config,
    key: bytes,
    bronze: str,
    start: int,
    end: int,
    tables: Sequence[Entity] = ENTITIES,
) -> ConformResult:
    """Conform the rows that versions ``start..end`` of ``bronze`` appended."""
    started = time.monotonic()
    lake = cfg.lake_root
    txn = (f"healthlake-conform-{bronze}", end)
    result = ConformResult(bronze, start, end)
    changes = (
        io.read_changes(spark, lake, bronze, start, end)
        .where(F.col("_change_type") == "insert")
        .drop("_change_type", "_commit_timestamp")
        .transform(_PREPARE.get(bronze, lambda df: df))
        .persist()
    )
    cached: list[DataFrame] = [changes]
    try:
        outcomes = []
        quarantine_parts = []
        metric_parts = []
        for entity in tables:
            parse = entity.parsers.get(bronze)
            if parse is None:
                continue
            checked, vault = _prepare(changes.transform(parse), entity, key)
            checked = checked.persist()
            cached.append(checked)
            if checked.isEmpty():  # this batch holds nothing for this table: skip its reads and MERGEs
                continue
            _ensure(spark, lake, entity.table, _silver_rows(checked).schema, CDF)
            classified = _classify(spark, lake, entity.table, checked).persist()
            cached.append(classified)
            latest = classified.where(F.col("_outcome") == "conformed").where(F.col("_rank") == 1)
            # A MERGE costs seconds even when it has nothing to do; checking first costs a fraction.
            if vault is not None and not vault.isEmpty():
                _ensure(spark, lake, VAULT, vault.schema)
                io.insert_new(vault, lake, VAULT, ["token"])
            if latest.isEmpty():
                pass
            elif io.holds_no_files(spark, lake, entity.table):
                # Nothing to match yet: a plain append is the same result without MERGE's joins. A crash
                # after it leaves rows, so the re-run takes the MERGE path and adds nothing twice.
                io.append(_silver_rows(latest), lake, entity.table)
            elif entity.insert_only:
                io.insert_new(_silver_rows(latest), lake, entity.table, list(KEYS))
            else:
                io.upsert(_silver_rows(latest), lake, entity.table, list(KEYS), update_condition=_NEWER)
            quarantine_parts.append(_quarantine_rows(classified, entity.table))
            metric_parts.append(_metrics(checked, entity, bronze, txn))
            outcomes.append(classified.select(*POINTER, "_outcome"))
        unmapped = changes.select(
            F.lit(bronze).alias("_bronze_table"),
            F.col("_commit_version").alias("_bronze_version"),
            "_source_file",
            "_record_offset",
            "_source_feed",
            F.col("_institution_id").alias("institution_id"),
            F.col(_TYPE_COLUMN[bronze]).alias("_type"),
        )
        if outcomes:
            taken = reduce(DataFrame.unionByName, outcomes).select(*POINTER).distinct()
            unmapped = unmapped.join(taken, list(POINTER), "left_anti")
        quarantine_parts.append(
            unmapped.select(
                *POINTER,
                "_source_feed",
                "institution_id",
                F.lit(None).cast("string").alias("silver_table"),
                F.lit(None).cast("string").alias("source_record_id"),
                F.array(F.lit(NOT_IN_MODEL)).alias("failed_rules"),
                F.concat(F.lit("not in the silver model: "), F.coalesce("_type", F.lit("?"))).alias("detail"),
                F.lit(None).cast("string").alias("record"),
            )
        )
        per_row = (
            reduce(
                DataFrame.unionByName,
                [*outcomes, unmapped.select(*POINTER, F.lit("quarantined").alias("_outcome"))],
            )
            .groupBy(*POINTER)
            .agg(
                F.when(F.max(F.col("_outcome") == "conformed"), "conformed")
                .when(F.max(F.col("_outcome") == "quarantined"), "quarantined")
                .otherwise("duplicate")
                .alias("_outcome")
            )
        )
        tally = {
            row["_outcome"]: row["n"]
            for row in per_row.groupBy("_outcome").agg(F.count("*").alias("n")).collect()
        }
        result.bronze_rows = changes.count()
        result.conformed = tally.get("conformed", 0)
        result.quarantined = tally.get("quarantined", 0)
        result.duplicates = tally.get("duplicate", 0)
        if result.bronze_rows != result.conformed + result.quarantined + result.duplicates:
            raise ReconciliationError(
                f"conform {bronze} versions {start}-{end}: {result.bronze_rows} bronze rows but "
                f"{result.conformed} conformed + {result.quarantined} quarantined + {result.duplicates} "
                "duplicates; nothing was marked as processed, fix and re-run"
            )
        quarantine = reduce(DataFrame.unionByName, quarantine_parts)
        _ensure(spark, lake, QUARANTINE, quarantine.schema)
        if not quarantine.isEmpty():
            io.append(quarantine, lake, QUARANTINE, txn=txn)
        if metric_parts:
            metrics = reduce(DataFrame.unionByName, metric_parts)
            _ensure(spark, lake, DQ_METRICS, metrics.schema)
            io.append(metrics, lake, DQ_METRICS, txn=txn)
        result.seconds = time.monotonic() - started
        log_row = spark.createDataFrame(
            [
                (
                    bronze,
                    start,
                    end,
                    result.bronze_rows,
                    result.conformed,
                    result.quarantined,
                    result.duplicates,
                    result.seconds,
                )
            ],
            "bronze_table string, start_version long, end_version long, bronze_rows long, conformed long, "
            "quarantined long, duplicates long, seconds double",
        ).withColumn("finished_at", F.current_timestamp())
        _ensure(spark, lake, CONFORM_LOG, log_row.schema)
        io.append(log_row, lake, CONFORM_LOG, txn=txn)
    finally:
        for df in cached:
            df.unpersist()
    log.info(
        "conform %s v%d-%d: %d rows: %d conformed, %d quarantined, %d duplicates (%.1f s)",
        bronze,
        start,
        end,
        result.bronze_rows,
        result.conformed,
        result.quarantined,
        result.duplicates,
        result.seconds,
    )
    return result


# A row replaces the stored one only when it is a later event (ties broken by bronze order), and never
# when it is the same content (a re-sent record, or this run replayed after a crash).
_NEWER = (
    "s._row_hash <> t._row_hash AND (s._event_time > t._event_time OR (s._event_time = t._event_time AND "
    "(s._bronze_version > t._bronze_version OR (s._bronze_version = t._bronze_version AND "
    "(s._source_file > t._source_file OR (s._source_file = t._source_file AND "
    "s._record_offset > t._record_offset))))))"
)


def _prepare(parsed: DataFrame, entity: Entity, key: bytes) -> tuple[DataFrame, DataFrame | None]:
    """Standardise, tokenise and check one entity's parsed rows; returns (checked rows, vault rows)."""
    if entity.standardize is not None:
        parsed = parsed.transform(entity.standardize)
    vault = None
    if entity.identifiers:
        parsed = tokenize_columns(parsed, key, entity.identifiers)
        vault = vault_rows(parsed, entity.identifiers)
        parsed = drop_clear(parsed, entity.identifiers)
    if entity.after_tokens is not None:
        parsed = parsed.transform(entity.after_tokens)
    content = [c for c in parsed.columns if c not in PROVENANCE]
    checked = with_failed_rules(parsed, entity.rules()).withColumn(
        "_row_hash", F.sha2(F.to_json(F.struct(*content)), 256)
    )
    return checked, vault


def _classify(spark: SparkSession, lake: str, table: str, checked: DataFrame) -> DataFrame:
    """Label each row conformed, quarantined or duplicate, and rank rows of one key by event order.

    A duplicate is a row whose exact content another row of the same key already has: an earlier row
    of this run, or the row silver holds from an earlier bronze row.
    """
    order = Window.partitionBy(*KEYS).orderBy(
        F.col("_event_time").desc_nulls_last(),
        F.col("_bronze_version").desc(),
        F.col("_source_file").desc(),
        F.col("_record_offset").desc(),
    )
    first_of_content = Window.partitionBy(*KEYS, "_row_hash").orderBy(
        "_bronze_version", "_source_file", "_record_offset"
    )
    stored = io.read_table(spark, lake, table).select(
        *KEYS, F.col("_row_hash").alias("_stored_hash"), F.struct(*POINTER).alias("_stored_pointer")
    )
    good = F.size(FAILED_RULES) == 0
    with_keys = F.col("institution_id").isNotNull() & F.col("source_record_id").isNotNull()
    ranked = (
        checked.withColumn("_rank", F.when(good & with_keys, F.row_number().over(order)))
        .withColumn("_nth_copy", F.when(good & with_keys, F.row_number().over(first_of_content)))
        .join(stored, list(KEYS), "left")
    )
    already_stored = (F.col("_stored_hash") == F.col("_row_hash")) & (
        F.col("_stored_pointer") != F.struct(*POINTER)
    )
    outcome = (
        F.when(~good, F.lit("quarantined"))
        .when((F.col("_nth_copy") > 1) | F.coalesce(already_stored, F.lit(False)), F.lit("duplicate"))
        .otherwise(F.lit("conformed"))
    )
    return ranked.withColumn("_outcome", outcome).drop("_stored_hash", "_stored_pointer", "_nth_copy")


def _silver_rows(df: DataFrame) -> DataFrame:
    """The columns a silver table stores (no working columns)."""
    drop = [c for c in (FAILED_RULES, "_rank", "_outcome") if c in df.columns]
    return df.drop(*drop).withColumn("_conformed_at", F.current_timestamp())


def _quarantine_rows(classified: DataFrame, table: str) -> DataFrame:
    """Rows that failed a rule, with all the rules they failed and a pointer to their bronze row."""
    content = [c for c in classified.columns if c not in (FAILED_RULES, "_rank", "_outcome", "_row_hash")]
    return classified.where(F.col("_outcome") == "quarantined").select(
        *POINTER,
        "_source_feed",
        "institution_id",
        F.lit(table).alias("silver_table"),
        "source_record_id",
        F.col(FAILED_RULES).alias("failed_rules"),
        F.lit(None).cast("string").alias("detail"),
        F.to_json(F.struct(*content)).alias("record"),
    )


def _metrics(checked: DataFrame, entity: Entity, bronze: str, txn: tuple[str, int]) -> DataFrame:
    """Rows checked and failed per institution and rule, with the median arrival lag."""
    counts = rule_counts(checked, entity.rules(), ["institution_id"])
    lag = checked.groupBy("institution_id").agg(
        F.percentile_approx(
            F.col("_ingested_at").cast("double") - F.col("_event_time").cast("double"), 0.5
        ).alias("arrival_lag_p50_s")
    )
    return counts.join(lag, "institution_id", "left").select(
        F.lit(f"{bronze}@{txn[1]}").alias("run_id"),
        F.current_timestamp().alias("run_at"),
        F.lit(bronze).alias("bronze_table"),
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
) -> None:
    io.create_table(spark, lake, name, schema, properties=properties)


def _last_version(spark: SparkSession, cfg: Config, bronze: str) -> int:
    """The bronze version the last conform run finished at (-1: none yet)."""
    if not io.is_table(spark, cfg.lake_root, CONFORM_LOG):
        return -1
    row = (
        io.read_table(spark, cfg.lake_root, CONFORM_LOG)
        .where(F.col("bronze_table") == bronze)
        .agg(F.max("end_version"))
        .first()
    )
    return -1 if row is None or row[0] is None else int(row[0])


def conformed_tables() -> Sequence[str]:
    """The silver tables conform writes."""
    return [*(e.table for e in ENTITIES), "silver.observation"]  # observation: see entities()
