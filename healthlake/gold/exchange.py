"""``gold.exchange_volume_daily``: the platform watching its own data exchange.

Grain: one row per (``date``, ``institution_id``, ``feed``), where ``date`` is the landing day the files
were delivered on (``<landing>/<feed>/<institution>/<date>/``) and ``feed`` the landing feed.

* ``files``: files delivered. ``records_received``: the records in them (bronze rows plus records bronze
  quarantined: every record sent, once per copy).
* ``quarantined``: records set aside at either layer; ``quarantined_by_rule``: per rule,
  ``bronze:undecodable`` or ``bronze:unparseable`` for records bronze could not read, ``silver:<rule>`` for
  each data-quality rule a record failed in conform (a record failing two rules, or failing in two silver
  tables, counts under each rule but once in ``quarantined``).
* ``duplicates``: exact re-sends: records whose content the same institution already sent on the same feed
  (the first copy is not a duplicate).
* ``median_arrival_lag_days``: median days from a record's clinical event (silver ``_event_time``, its
  local date in the region's time zone) to the day its file was delivered (a landing day is a local date),
  over the records silver holds from those files.

Records arrive in order, and a record already in bronze never becomes a duplicate or stops being one. So
a day of new files needs only their own records' contents, compared with those of the records before them
(``bronze.record_contents``, one row per distinct content, which publish keeps: a digest of a raw record
belongs with the raw records, not in gold), plus the other measures of the (day, institution, feed) keys
those files or the silver rows from them touch.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from healthlake.catalog import (
    BRONZE_INGEST_LOG,
    BRONZE_QUARANTINE,
    BRONZE_RECORD_CONTENTS,
    BRONZE_RECORDS,
    GOLD_EXCHANGE_VOLUME,
    SILVER_AREA,
    SILVER_CHRONIC_FOLLOWUP,
    SILVER_DIAGNOSIS,
    SILVER_ENCOUNTER,
    SILVER_IMMUNIZATION,
    SILVER_INSTITUTION,
    SILVER_LOCATION_EVENT,
    SILVER_MEDICATION,
    SILVER_NAT_TEST,
    SILVER_OBSERVATION,
    SILVER_PATIENT_RECORD,
    SILVER_QUARANTINE,
)
from healthlake.derived import DerivedTable, Inputs, Write, append, merge, unchanged
from healthlake.gold.changes import fed_changes, union
from healthlake.localtime import local_date

log = logging.getLogger(__name__)

GRAIN = ("date", "institution_id", "feed")
CONTENT_KEY = ("institution_id", "feed", "content")
"""A record's content as the duplicates compare it: same institution, same feed, same raw text."""


def record_contents(bronze_records: DataFrame) -> DataFrame:
    """Each bronze record's content digest (SHA-256 of its raw text), with its place in arrival order.

    Args:
        bronze_records: The bronze data tables' rows: ``_source_file``, ``_source_feed``,
            ``_institution_id``, ``_record_offset``, ``_ingested_at``, ``raw``.

    Returns:
        ``_source_file``, ``_ingested_at``, ``_record_offset`` and ``CONTENT_KEY``.
    """
    return bronze_records.select(
        "_source_file",
        "_ingested_at",
        "_record_offset",
        F.col("_institution_id").alias("institution_id"),
        F.col("_source_feed").alias("feed"),
        F.unhex(F.sha2("raw", 256)).alias("content"),
    )


def duplicate_records(contents: DataFrame, known: DataFrame | None = None) -> DataFrame:
    """The re-sent records among ``contents``: every copy after the first, in arrival order, and every one
    whose content ``known`` (the contents of records that arrived before all of them) already holds.

    Args:
        contents: ``record_contents`` rows.
        known: ``CONTENT_KEY`` rows of earlier records, or None when there are none.

    Returns:
        ``_source_file``: one row per duplicate record.
    """
    first_copy = Window.partitionBy(*CONTENT_KEY).orderBy("_ingested_at", "_source_file", "_record_offset")
    copies = contents.withColumn("_copy", F.row_number().over(first_copy))
    repeats = copies.where(F.col("_copy") > 1)
    if known is not None:
        sent_before = copies.where(F.col("_copy") == 1).join(known, list(CONTENT_KEY), "left_semi")
        repeats = repeats.unionByName(sent_before)
    return repeats.select("_source_file")


def exchange_volume_daily(
    ingest_log: DataFrame,
    duplicates: DataFrame,
    bronze_quarantine: DataFrame,
    silver_quarantine: DataFrame,
    silver_events: DataFrame,
    *,
    zone: str,
) -> DataFrame:
    """Records received, quarantined by rule, duplicated and their arrival lag per day, institution and feed.

    Args:
        ingest_log: ``bronze.ingest_log`` (one row per file: feed, institution, landing day, records,
            quarantined).
        duplicates: ``_source_file`` of each duplicate record (``duplicate_records``).
        bronze_quarantine: ``bronze.quarantine``.
        silver_quarantine: ``silver.quarantine``.
        silver_events: ``_source_file`` and ``_event_time`` of the silver tables' rows.
        zone: The region's time zone (an event's day is its local date).

    Returns:
        ``GRAIN`` columns, ``files``, ``records_received``, ``quarantined``, ``quarantined_by_rule``
        (map rule → records), ``duplicates``, ``median_arrival_lag_days``; a row per (day, institution,
        feed) of ``ingest_log``.
    """
    files = ingest_log.select(
        "_source_file",
        F.to_date("_landing_day").alias("date"),
        F.col("_institution_id").alias("institution_id"),
        F.col("_source_feed").alias("feed"),
    )
    received = ingest_log.groupBy(
        F.to_date("_landing_day").alias("date"),
        F.col("_institution_id").alias("institution_id"),
        F.col("_source_feed").alias("feed"),
    ).agg(F.count("*").alias("files"), (F.sum("records") + F.sum("quarantined")).alias("records_received"))
    # Rules per quarantined record, both layers, tied to the file it came in.
    bronze_rules = bronze_quarantine.select(
        "_source_file",
        F.struct("_source_file", F.col("_record_offset").cast("long"), F.lit("bronze")).alias("_record"),
        F.when(F.col("reason").startswith("undecodable"), "bronze:undecodable")
        .otherwise("bronze:unparseable")
        .alias("rule"),
    )
    silver_rules = silver_quarantine.select(
        "_source_file",
        F.struct("_source_file", F.col("_record_offset").cast("long"), F.lit("silver")).alias("_record"),
        F.explode(F.transform("failed_rules", lambda r: F.concat(F.lit("silver:"), r))).alias("rule"),
    )
    rules = bronze_rules.unionByName(silver_rules).join(F.broadcast(files), "_source_file")
    by_rule = rules.groupBy(*GRAIN, "rule").agg(F.count("*").alias("n"))
    quarantined = (
        rules.groupBy(*GRAIN)
        .agg(F.count_distinct("_record").alias("quarantined"))
        .join(
            by_rule.groupBy(*GRAIN).agg(
                F.map_from_entries(F.collect_list(F.struct("rule", "n"))).alias("_map")
            ),
            list(GRAIN),
        )
    )
    repeats = (
        duplicates.join(F.broadcast(files), "_source_file")
        .groupBy(*GRAIN)
        .agg(F.count("*").alias("duplicates"))
    )
    lag = (
        silver_events.join(F.broadcast(files), "_source_file")
        .groupBy(*GRAIN)
        .agg(
            F.median(F.datediff("date", local_date(F.col("_event_time"), zone))).alias(
                "median_arrival_lag_days"
            )
        )
    )
    return (
        received.join(quarantined, list(GRAIN), "left")
        .join(repeats, list(GRAIN), "left")
        .join(lag, list(GRAIN), "left")
        .select(
            *GRAIN,
            "files",
            "records_received",
            F.coalesce("quarantined", F.lit(0)).alias("quarantined"),
            F.coalesce("_map", F.create_map().cast("map<string,bigint>")).alias("quarantined_by_rule"),
            F.coalesce("duplicates", F.lit(0)).alias("duplicates"),
            "median_arrival_lag_days",
        )
    )


BRONZE_DATA = BRONZE_RECORDS
"""Bronze's record tables (every record received, with its raw text)."""
SILVER_EVENTS = (
    SILVER_PATIENT_RECORD,
    SILVER_ENCOUNTER,
    SILVER_DIAGNOSIS,
    SILVER_OBSERVATION,
    SILVER_IMMUNIZATION,
    SILVER_MEDICATION,
    SILVER_NAT_TEST,
    SILVER_CHRONIC_FOLLOWUP,
    SILVER_LOCATION_EVENT,
    SILVER_AREA,
    SILVER_INSTITUTION,
)
"""Silver tables whose rows (``_source_file``, ``_event_time``) give the arrival lag."""
_SOURCES = (BRONZE_INGEST_LOG, BRONZE_QUARANTINE, SILVER_QUARANTINE, *SILVER_EVENTS)
"""Tables whose changed rows name the files whose (day, institution, feed) rows move."""
_RAW = ("_source_file", "_source_feed", "_institution_id", "_record_offset", "_ingested_at", "raw")


def _bronze_records(inputs: Inputs) -> DataFrame:
    return union([inputs.read(t).select(*_RAW) for t in BRONZE_DATA if inputs.has(t)])


def _silver_events(inputs: Inputs) -> DataFrame:
    return union(
        [inputs.read(t).select("_source_file", "_event_time") for t in SILVER_EVENTS if inputs.has(t)]
    )


def _all_contents(inputs: Inputs) -> DataFrame:
    return inputs.once("gold.exchange.contents", lambda: record_contents(_bronze_records(inputs)))


def _new_contents(inputs: Inputs) -> DataFrame | None:
    """``record_contents`` of the bronze records added since the last run (cached), None when none were."""
    added = []
    for table in BRONZE_DATA:
        changes = inputs.changes(table)
        if changes is not None:
            added.append(changes.where(F.col("_change_type") == "insert").select(*_RAW))
    if not added:
        return None
    return inputs.once("gold.exchange.new_contents", lambda: inputs.keep(record_contents(union(added))))


def _volume_build(inputs: Inputs) -> DataFrame:
    return exchange_volume_daily(
        inputs.read(BRONZE_INGEST_LOG),
        duplicate_records(_all_contents(inputs)),
        inputs.read(BRONZE_QUARANTINE),
        inputs.read(SILVER_QUARANTINE),
        _silver_events(inputs),
        zone=inputs.zone,
    )


def _volume_update(inputs: Inputs) -> Write:
    """The (day, institution, feed) keys whose files are new, or have new quarantined or silver rows.

    Their measures are recounted from their files, except the duplicates: records in bronze before the last
    run keep their status, so a key's stored count grows by the day's new records that repeat a content
    sent before (``bronze.record_contents`` as the last run left it) or earlier the same day.
    """
    files = inputs.read(BRONZE_INGEST_LOG)
    touched = union([fed_changes(inputs, t, ["_source_file"]) for t in _SOURCES if inputs.has(t)]).distinct()
    grain = {
        "date": F.to_date("_landing_day"),
        "institution_id": F.col("_institution_id"),
        "feed": F.col("_source_feed"),
    }
    keys = inputs.materialised(
        files.join(touched, "_source_file", "left_semi")
        .select(*[c.alias(k) for k, c in grain.items()])
        .distinct()
    )
    if keys.isEmpty():
        return unchanged()
    scope = inputs.materialised(
        files.withColumns(grain).join(keys, list(GRAIN), "left_semi").select(*files.columns)
    )
    in_scope = scope.select("_source_file")
    contents = _new_contents(inputs)
    known = inputs.stored(BRONZE_RECORD_CONTENTS)
    if contents is not None:
        duplicates = duplicate_records(contents, known)
    else:
        duplicates = files.select("_source_file").limit(0)
    old = inputs.keep(inputs.stored(GOLD_EXCHANGE_VOLUME).join(keys, list(GRAIN), "left_semi"))
    fresh = exchange_volume_daily(
        scope,
        duplicates,
        inputs.read(BRONZE_QUARANTINE).join(in_scope, "_source_file", "left_semi"),
        inputs.read(SILVER_QUARANTINE).join(in_scope, "_source_file", "left_semi"),
        _silver_events(inputs).join(in_scope, "_source_file", "left_semi"),
        zone=inputs.zone,
    )
    before = old.select(*GRAIN, F.col("duplicates").alias("_before"))
    fresh = (
        fresh.join(before, list(GRAIN), "left")
        .withColumn("duplicates", F.col("duplicates") + F.coalesce("_before", F.lit(0)))
        .select(*old.columns)
    )
    if log.isEnabledFor(logging.INFO):
        log.info("publish: exchange volumes of %d (day, institution, feed) keys recounted", keys.count())
    return merge(fresh, old)


def _contents_build(inputs: Inputs) -> DataFrame:
    return _all_contents(inputs).select(*CONTENT_KEY).distinct()


def _contents_update(inputs: Inputs) -> Write:
    """The distinct contents of the day's new records that the index does not hold yet, appended."""
    contents = _new_contents(inputs)
    if contents is None:
        return unchanged()
    known = inputs.stored(BRONZE_RECORD_CONTENTS)
    unseen = contents.select(*CONTENT_KEY).distinct().join(known, list(CONTENT_KEY), "left_anti")
    # Idempotent per ingest-log version: a re-run after a crash does not add the contents twice.
    return append(unseen, txn=("healthlake-publish", inputs.version(BRONZE_INGEST_LOG)))


_FED_BY = (*_SOURCES, *BRONZE_DATA)

EXCHANGE_VOLUME = DerivedTable(
    name=GOLD_EXCHANGE_VOLUME,
    key=GRAIN,
    reads=(*_FED_BY, BRONZE_RECORD_CONTENTS),
    build=_volume_build,
    update=_volume_update,
    fed_by=_FED_BY,
    requires=(BRONZE_INGEST_LOG,),
)
"""``gold.exchange_volume_daily``: one row per (``date``, ``institution_id``, ``feed``). Incremental: the keys
whose files changed are recounted and merged (duplicates carried over, see ``_volume_update``)."""

RECORD_CONTENTS = DerivedTable(
    name=BRONZE_RECORD_CONTENTS,
    key=CONTENT_KEY,
    reads=BRONZE_DATA,
    build=_contents_build,
    update=_contents_update,
    fed_by=_FED_BY,
    requires=(BRONZE_INGEST_LOG,),
)
"""``bronze.record_contents``: one row per distinct (institution, feed, content) bronze holds; what a day's
records are compared with. Incremental: the new contents, appended."""
