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

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from healthlake.localtime import local_date

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
