"""Ingest: landing zone → bronze, every file exactly once, every record accounted for.

Each feed is a Structured Streaming query over ``<landing>/<feed>/*/*/*`` (``binaryFile`` source,
``availableNow`` trigger, checkpoint in ``<lake>/_checkpoints/ingest/<feed>``): the stream offers the
files it has not taken, remembering those it took for ``ingest.max_file_age_days``. Each micro-batch
writes its tables with Delta idempotent writes (``txnAppId`` = the feed and the query's id,
``txnVersion`` = the batch id), so when a run dies half-way the restarted query replays the same batch and
Delta skips the tables that already committed it. The ingest log, written last, is what says a file was
taken: a batch leaves out the files it holds (one the stream forgot and offers again), and a feed whose
checkpoint is lost while the log holds its files is refused.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from healthlake import io
from healthlake.bronze.common import (
    PROVENANCE_COLUMNS,
    accepted,
    landing_batch,
    quarantine_rows,
    raw_bytes_of_rejects,
)
from healthlake.bronze.csv_extracts import CSV_COLUMNS, PING_COLUMNS, PING_FIELDS, parse_csv, parse_pings
from healthlake.bronze.fhir import BUNDLE_COLUMNS, RESOURCE_COLUMNS, fhir_bundles, parse_fhir
from healthlake.bronze.hl7v2 import MESSAGE_COLUMNS, parse_hl7v2
from healthlake.catalog import (
    BRONZE_CSV_RECORDS,
    BRONZE_FHIR_BUNDLES,
    BRONZE_FHIR_RESOURCES,
    BRONZE_HL7V2_MESSAGES,
    BRONZE_INGEST_LOG,
    BRONZE_LOCATION_PINGS,
    BRONZE_QUARANTINE,
)
from healthlake.config import is_uri
from healthlake.errors import HealthlakeError
from healthlake.logs import progress

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import StreamingQuery

    from healthlake.config import Config

log = logging.getLogger(__name__)

BINARY_FILE_SCHEMA = "path string, modificationTime timestamp, length long, content binary"


@dataclass(frozen=True)
class Feed:
    """A landing feed: the bronze table it fills, how its files are parsed, and the table's columns."""

    name: str
    table: str
    parse: Callable[[DataFrame], DataFrame]
    columns: list[str]


def feeds(cfg: Config) -> list[Feed]:
    """The feeds ingest reads, in order (disabled feeds left out; reference data always read)."""
    csv_encodings = tuple(e.upper() for e in cfg.feeds.csv.encodings)
    ph_encodings = tuple(e.upper() for e in cfg.feeds.public_health.encodings)
    hl7_default = cfg.feeds.hl7v2.encodings[0].upper()
    all_feeds = [
        Feed("fhir", BRONZE_FHIR_RESOURCES, parse_fhir, RESOURCE_COLUMNS),
        Feed(
            "hl7v2",
            BRONZE_HL7V2_MESSAGES,
            lambda f: parse_hl7v2(f, default_charset=hl7_default),
            MESSAGE_COLUMNS,
        ),
        Feed("csv", BRONZE_CSV_RECORDS, lambda f: parse_csv(f, encodings=csv_encodings), CSV_COLUMNS),
        Feed(
            "public_health",
            BRONZE_CSV_RECORDS,
            lambda f: parse_csv(f, encodings=ph_encodings),
            CSV_COLUMNS,
        ),
        Feed("location", BRONZE_LOCATION_PINGS, parse_pings, PING_COLUMNS),
        Feed("reference", BRONZE_CSV_RECORDS, lambda f: parse_csv(f, encodings=("UTF-8",)), CSV_COLUMNS),
    ]
    enabled = {name for name, s in cfg.feeds.model_dump().items() if s["enabled"]} | {"reference"}
    return [f for f in all_feeds if f.name in enabled]


@dataclass
class FeedResult:
    """What one run of ingest took from one feed."""

    feed: str
    batches: int = 0
    files: int = 0
    records: int = 0
    quarantined: int = 0
    already_taken: int = 0  # files the stream offered that bronze.ingest_log already held: skipped
    seconds: float = 0.0
    batch_ids: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)  # time.monotonic() at the stream's start


def run(spark: SparkSession, cfg: Config, only: Sequence[str] | None = None) -> list[FeedResult]:
    """Ingest every new landing file of every feed (or of the feeds named in ``only``) into bronze.

    Returns what each feed took.

    The feeds' streams run side by side, ``ingest.concurrent_feeds`` at a time (their batches append to
    the shared quarantine and log tables concurrently, which Delta allows for blind appends); each stops
    once its files are taken.
    """
    landing = cfg.landing_root
    todo = []
    for feed in feeds(cfg):
        if only is not None and feed.name not in only:
            continue
        if not is_uri(landing) and not (Path(landing) / feed.name).is_dir():
            log.debug("ingest %s: no folder %s/%s, skipped", feed.name, landing, feed.name)
            continue
        todo.append(feed)
    # A log this run created holds no file yet: no feed can have lost its checkpoint.
    new_log = bool(todo) and BRONZE_INGEST_LOG in ensure_tables(spark, cfg, [f.name for f in todo])
    # Each stream clones the session's settings when it starts: set before, restored once all stopped.
    previous = spark.conf.get(_CACHE_COMPRESSED, None)
    spark.conf.set(_CACHE_COMPRESSED, "false")
    try:
        results = _run_streams(spark, cfg, todo, new_log)
    finally:
        if previous is None:
            spark.conf.unset(_CACHE_COMPRESSED)
        else:
            spark.conf.set(_CACHE_COMPRESSED, previous)
    order = [f.name for f in todo]
    return sorted(results, key=lambda r: order.index(r.feed))


# A batch's parsed rows are cached once and read three times. Compressing that cache cost more than it
# saved (10 M pings ingested in 65.8 s compressed, 52.9 s not); the batch's size is bounded by
# ingest.max_bytes_per_trigger, and a cache that does not fit in memory spills to disk.
_CACHE_COMPRESSED = "spark.sql.inMemoryColumnarStorage.compressed"


def _run_streams(spark: SparkSession, cfg: Config, todo: list[Feed], new_log: bool) -> list[FeedResult]:
    """Run the feeds' streams, ``ingest.concurrent_feeds`` at a time, until each has taken its files."""
    results = []
    waiting = list(todo)
    running: list[tuple[StreamingQuery, FeedResult]] = []
    # At most `concurrent_feeds` streams at once: each caches a batch, and on a few cores more streams
    # only take turns on the same cores.
    while waiting or running:
        while waiting and len(running) < cfg.ingest.concurrent_feeds:
            running.append(start_feed(spark, cfg, waiting.pop(0), check_checkpoint=not new_log))
        # awaitAnyTermination would also return for queries that ended earlier; poll our own instead.
        done = [(q, r) for q, r in running if not q.isActive]
        if not done:
            # pyspark takes seconds as a float (it converts to ms); its annotation says int.
            running[0][0].awaitTermination(0.2)  # type: ignore[arg-type]
            continue
        for query, result in done:
            running.remove((query, result))
            try:
                query.awaitTermination()  # raises the stream's error, if it failed
            except Exception:
                for other, _ in running:  # a re-run resumes every feed from its checkpoint
                    other.stop()
                raise
            results.append(_finished(result))
    return results


def _finished(result: FeedResult) -> FeedResult:
    result.seconds = time.monotonic() - result.started
    progress(
        log,
        f"ingest {result.feed}",
        result.records,
        result.seconds,
        f"{result.files:,} files, {result.quarantined:,} quarantined, {result.already_taken:,} already taken",
    )
    return result


# Columns that hold whole records, and the ping fields (strings as sent): Delta's per-file min/max
# statistics on them cost write time and never help a query (bronze is read by its change feed, and
# looked up by provenance), so bronze tables keep statistics on the other columns only. Without the
# ping fields' statistics a batch of 768 k pings was written in ~2.1 s instead of ~2.4-3.2 s.
_NO_STATS = {"raw", "record", "header", "raw_text", "raw_base64", *PING_FIELDS}


def ensure_tables(spark: SparkSession, cfg: Config, only: Sequence[str] | None = None) -> set[str]:
    """Create the bronze tables (empty) that do not exist yet, so concurrent feeds only ever append.

    Their schemas come from running each feed's own transformations over an empty set of files; when
    every table exists (every run after the first) nothing is planned at all.

    Returns:
        The names of the tables this call created.
    """
    wanted = [f for f in feeds(cfg) if only is None or f.name in only]
    names = {f.table for f in wanted} | {BRONZE_QUARANTINE, BRONZE_INGEST_LOG}
    if any(f.name == "fhir" for f in wanted):
        names.add(BRONZE_FHIR_BUNDLES)
    if all(io.is_table(spark, cfg.lake_root, name) for name in names):
        return set()
    empty = spark.createDataFrame([], BINARY_FILE_SCHEMA)
    files = landing_batch(empty, "")
    tables: dict[str, DataFrame] = {}
    for feed in wanted:
        parsed = feed.parse(files)
        tables.setdefault(feed.table, accepted(parsed, feed.columns))
        tables.setdefault(BRONZE_QUARANTINE, quarantine_rows(parsed))
        if feed.name == "fhir":
            tables[BRONZE_FHIR_BUNDLES] = fhir_bundles(parsed, files).select(
                *BUNDLE_COLUMNS, *_bundle_context()
            )
    zero = files.select("_source_file").withColumns({"records": F.lit(0), "quarantined": F.lit(0)})
    tables[BRONZE_INGEST_LOG] = _ingest_log(files, zero)
    created = set()
    for name, df in tables.items():
        stats = ",".join(f.name for f in df.schema.fields if f.name not in _NO_STATS)
        if io.create_table(
            spark,
            cfg.lake_root,
            name,
            df.schema,
            # The change data feed lets conform read only the rows each run appended.
            properties={"delta.dataSkippingStatsColumns": stats, "delta.enableChangeDataFeed": "true"},
        ):
            created.add(name)
    return created


def _ingest_log(files: DataFrame, counts: DataFrame) -> DataFrame:
    """One row per file: where it came from, its size and time, and the records it gave."""
    return files.join(counts, "_source_file", "left").select(
        "_source_file",
        "_source_feed",
        "_institution_id",
        "_landing_day",
        "_file_name",
        "_file_size",
        "_file_modified",
        F.coalesce("records", F.lit(0)).cast("long").alias("records"),
        F.coalesce("quarantined", F.lit(0)).cast("long").alias("quarantined"),
        "_batch_id",
        "_ingested_at",
    )


def start_feed(
    spark: SparkSession, cfg: Config, feed: Feed, *, check_checkpoint: bool = True
) -> tuple[StreamingQuery, FeedResult]:
    """Start one feed's stream; it stops by itself once every file present at its start is ingested.

    ``check_checkpoint=False`` skips looking for taken files of a feed without a checkpoint (for an
    ingest log known to be new).
    """
    result = FeedResult(feed.name)
    # Spark's maxFileAge (default 7 days): the stream remembers a path it took until it has taken a file
    # modified that much later, and never offers a file modified that much before the newest it took. A
    # late file for an old day folder has the time it landed, so it is offered. No window: 100 years.
    days = cfg.ingest.max_file_age_days or 36500
    source = spark.readStream.format("binaryFile").schema(BINARY_FILE_SCHEMA).option("maxFileAge", f"{days}d")
    if cfg.ingest.max_bytes_per_trigger:
        source = source.option("maxBytesPerTrigger", cfg.ingest.max_bytes_per_trigger)
    if cfg.ingest.max_files_per_trigger:
        source = source.option("maxFilesPerTrigger", cfg.ingest.max_files_per_trigger)
    files = source.load(f"{cfg.landing_root.rstrip('/')}/{feed.name}/*/*/*")
    checkpoint = f"{cfg.lake_root.rstrip('/')}/_checkpoints/ingest/{feed.name}"
    # A stream that resumes its checkpoint may offer again a file it took and has since forgotten; one
    # that starts afresh offers each file once, and none of them is in the ingest log (checked here).
    resumed = _exists(spark, f"{checkpoint}/metadata")
    if check_checkpoint and not resumed:
        _check_checkpoint(spark, cfg, feed, checkpoint)

    def process(batch: DataFrame, batch_id: int) -> None:
        query_id = _query_id(spark, checkpoint)
        took = ingest_batch(spark, cfg, feed, batch, batch_id, query_id, skip_taken=resumed)
        result.batches += 1
        result.batch_ids.append(batch_id)
        result.files += took.files
        result.records += took.records
        result.quarantined += took.quarantined
        result.already_taken += took.already_taken

    query = (
        files.writeStream.foreachBatch(process)
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
        .queryName(f"ingest-{feed.name}")
        .start()
    )
    return query, result


class BatchTaken(NamedTuple):
    """What one micro-batch took."""

    files: int
    records: int
    quarantined: int
    already_taken: int  # files of the batch that bronze.ingest_log already held, left out


def ingest_batch(
    spark: SparkSession,
    cfg: Config,
    feed: Feed,
    batch: DataFrame,
    batch_id: int,
    query_id: str,
    *,
    skip_taken: bool = True,
) -> BatchTaken:
    """Parse one micro-batch of files and write it to bronze idempotently.

    Args:
        spark: Session.
        cfg: Configuration.
        feed: The feed the files belong to.
        batch: The micro-batch's ``binaryFile`` rows.
        batch_id: The micro-batch's id (the version of its idempotent writes).
        query_id: The streaming query's id (part of its writes' application id).
        skip_taken: Leave out the files ``bronze.ingest_log`` already holds: what was taken is the log's
            to say, not the stream's, which forgets a file ``ingest.max_file_age_days`` after it. False
            only for a stream that started without a checkpoint (its files cannot be in the log).

    Returns:
        What the batch took.
    """
    lake = cfg.lake_root
    txn = (f"healthlake-ingest-{feed.name}-{query_id}", batch_id)
    tag = f"{feed.name}-{query_id[:8]}-{batch_id}"
    cached = landing_batch(batch, tag).persist()
    taken = _already_taken(spark, lake, feed, cached) if skip_taken else []
    files = cached
    if taken:
        # The same set when a crashed batch is replayed: the log, written last, holds all of it or none.
        files = cached.where(~F.col("_source_file").isin(taken))
        log.warning(
            "ingest %s: batch %d: %d files already in %s left out (sent again or rewritten after the "
            "stream forgot them, or a replayed batch), e.g. %s",
            feed.name,
            batch_id,
            len(taken),
            BRONZE_INGEST_LOG,
            taken[0],
        )
    parsed = feed.parse(files).transform(raw_bytes_of_rejects).persist()
    counts = parsed.groupBy("_source_file").agg(
        F.count_if(F.col("_reject_reason").isNull()).alias("records"),
        F.count_if(F.col("_reject_reason").isNotNull()).alias("quarantined"),
    )
    ingest_log = _ingest_log(files, F.broadcast(counts)).persist()
    try:
        # Totals of this batch: one small row. Computing them first also fills the caches in one pass.
        totals = io.one_row(ingest_log.agg(F.count("*"), F.sum("records"), F.sum("quarantined")))
        n_files, n_records, n_quarantined = (int(v or 0) for v in totals)
        if n_files:  # none left when the log held them all: nothing to write
            _write(accepted(parsed, feed.columns), lake, feed.table, txn)
            if feed.name == "fhir":
                bundles = fhir_bundles(parsed, files).select(*BUNDLE_COLUMNS, *_bundle_context())
                _write(bundles, lake, BRONZE_FHIR_BUNDLES, txn)
            if n_quarantined:  # an empty append would still cost a Delta commit
                _write(quarantine_rows(parsed), lake, BRONZE_QUARANTINE, txn)
            _write(ingest_log, lake, BRONZE_INGEST_LOG, txn)
    finally:
        ingest_log.unpersist()
        parsed.unpersist()
        cached.unpersist()
    log.debug(
        "ingest %s: batch %d: %d files, %d records, %d quarantined",
        feed.name,
        batch_id,
        n_files,
        n_records,
        n_quarantined,
    )
    return BatchTaken(n_files, n_records, n_quarantined, len(taken))


def _already_taken(spark: SparkSession, lake: str, feed: Feed, files: DataFrame) -> list[str]:
    """The files of a batch that ``bronze.ingest_log`` already holds (their ``_source_file``).

    Only the log's rows of the batch's landing days are read: a file's day is part of its path, and Delta
    skips the log's files of other days by their statistics (with a log of 200 k files from 100 batches,
    0.6 s a lookup instead of 1.6 s). Fills the batch's cache as it goes: the bytes are read once, here.
    """
    days = [row[0] for row in files.select("_landing_day").distinct().collect()]
    logged = io.read_table(spark, lake, BRONZE_INGEST_LOG).where(
        (F.col("_source_feed") == feed.name) & F.col("_landing_day").isin(days)
    )
    batch_files = F.broadcast(files.select("_source_file"))
    return [
        row[0]
        for row in logged.select("_source_file").join(batch_files, "_source_file", "left_semi").collect()
    ]


def _bundle_context() -> list[str]:
    return list(PROVENANCE_COLUMNS)


def _write(df: DataFrame, lake: str, table: str, txn: tuple[str, int]) -> None:
    started = time.monotonic()
    io.append(df, lake, table, txn=txn)
    log.debug("ingest: wrote %s (batch %d) in %.1f s", table, txn[1], time.monotonic() - started)


def _check_checkpoint(spark: SparkSession, cfg: Config, feed: Feed, checkpoint: str) -> None:
    """Refuse to start a feed whose files bronze already holds but whose checkpoint is gone.

    Without its checkpoint a stream would take every file again; the ingest log says which were taken.
    """
    if _exists(spark, f"{checkpoint}/metadata"):
        return
    if io.is_table(spark, cfg.lake_root, BRONZE_INGEST_LOG):
        taken = io.read_table(spark, cfg.lake_root, BRONZE_INGEST_LOG).where(
            F.col("_source_feed") == feed.name
        )
        if not taken.isEmpty():
            raise HealthlakeError(
                f"ingest {feed.name}: bronze already holds files of this feed but its checkpoint "
                f"{checkpoint} is missing; restore it (or rebuild bronze) instead of ingesting twice"
            )


def _exists(spark: SparkSession, path: str) -> bool:
    """True when ``path`` exists, on any file system Spark reaches (a local path, ``file:``, ``s3a:``, …).

    Asked through Hadoop's FileSystem with the session's Hadoop settings, as the stream itself resolves
    its checkpoint: a relative path is taken from the same working directory, and ``fs.*`` credentials
    set with ``spark.conf.set`` apply.
    """
    jvm = spark._jvm
    assert jvm is not None
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    conf = spark._jsparkSession.sessionState().newHadoopConf()
    return bool(hadoop_path.getFileSystem(conf).exists(hadoop_path))


def _query_id(spark: SparkSession, checkpoint: str) -> str:
    """The streaming query's id, stored in its checkpoint: the same across restarts of that query."""
    if is_uri(checkpoint) and not checkpoint.startswith("file:"):
        first = spark.read.text(f"{checkpoint}/metadata").first()
        text = first[0] if first else "{}"
    else:
        text = Path(checkpoint.removeprefix("file:"), "metadata").read_text(encoding="utf-8").splitlines()[0]
    return str(json.loads(text).get("id", "unknown"))
