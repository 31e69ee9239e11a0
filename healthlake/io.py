"""The one place Delta tables are read and written: paths, reads, appends, MERGE upserts, history, status.

A table is named ``layer.table`` (``bronze.fhir_resources``) and lives in ``<lake_root>/<layer>/<table>``.
The lake root is a local folder or a URI (``s3a://…``, ``hdfs://…``, ``file:/…``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from healthlake import faults
from healthlake.config import is_uri
from healthlake.errors import LakeError

# Names, folders and the local listing live in healthlake.naming (importable without pyspark);
# re-exported here.
from healthlake.naming import (  # noqa: F401
    DELTA_LOG,
    LAYERS,
    TableRef,
    TableStatus,
    list_local_tables,
    split_name,
    table_path,
    visible,
)

logger = logging.getLogger(__name__)


def is_table(spark: SparkSession, lake_root: str, name: str) -> bool:
    """True when table ``name`` exists in the lake as a Delta table."""
    return bool(DeltaTable.isDeltaTable(spark, table_path(lake_root, name)))


CHANGE_DATA_FEED = {"delta.enableChangeDataFeed": "true"}
"""Table properties of a table whose readers follow its changes (``read_changes``)."""


def create_table(
    spark: SparkSession,
    lake_root: str,
    name: str,
    schema: StructType,
    *,
    properties: dict[str, str] | None = None,
) -> bool:
    """Create an empty Delta table with ``schema`` and table ``properties`` unless it exists.

    Returns:
        True when the table was created by this call.
    """
    if is_table(spark, lake_root, name):
        return False
    # Absolute: Delta's builder reads a relative location such as ./lake/bronze/x as a table identifier.
    location = _absolute(table_path(lake_root, name))
    builder = DeltaTable.createIfNotExists(spark).location(location).addColumns(schema)
    for key, value in (properties or {}).items():
        builder = builder.property(key, value)
    builder.execute()
    logger.debug("created %s", name)
    return True


def read_table(
    spark: SparkSession,
    lake_root: str,
    name: str,
    version: int | None = None,
    timestamp: str | dt.datetime | None = None,
) -> DataFrame:
    """Read a Delta table, optionally as it was at an earlier version or time.

    Args:
        spark: Session.
        lake_root: Lake root folder or URI.
        name: Table name ``layer.table``.
        version: Table version to read (time travel).
        timestamp: Read the table as of this time: a string in the session time zone (UTC) or a
            datetime (naive means local time, as pyspark returns them).

    Returns:
        The table as a DataFrame.

    Raises:
        LakeError: For a bad name, a missing table, or both ``version`` and ``timestamp``.
    """
    if version is not None and timestamp is not None:
        raise LakeError("read_table: give either version or timestamp, not both")
    path = _existing(spark, lake_root, name)
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    if timestamp is not None:
        reader = reader.option("timestampAsOf", _timestamp_text(timestamp))
    return reader.load(path)


def append(
    df: DataFrame,
    lake_root: str,
    name: str,
    *,
    partition_by: Sequence[str] | None = None,
    merge_schema: bool = False,
    txn: tuple[str, int] | None = None,
    properties: dict[str, str] | None = None,
) -> None:
    """Append rows to a Delta table, creating it on first write.

    Args:
        df: Rows to append.
        lake_root: Lake root folder or URI.
        name: Table name ``layer.table``.
        partition_by: Partition columns, used when the table is created.
        merge_schema: Allow new columns to be added to the table's schema.
        txn: ``(application id, version)`` for an idempotent write: Delta skips the append when this
            table already committed that version (or a later one) for that application, so a replayed
            batch after a crash adds nothing twice.
        properties: Table properties set when this write creates the table (in the same commit).
    """
    path = table_path(lake_root, name)
    writer = df.write.format("delta").mode("append")
    for key, value in (properties or {}).items():
        writer = writer.option(key, value)  # Delta takes ``delta.*`` options as properties of a new table
    if txn is not None:
        writer = writer.option("txnAppId", txn[0]).option("txnVersion", str(txn[1]))
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    writer.save(path)
    logger.debug("appended to %s", name)
    faults.after_write(name)


def overwrite(
    df: DataFrame,
    lake_root: str,
    name: str,
    *,
    partition_by: Sequence[str] | None = None,
    properties: dict[str, str] | None = None,
) -> None:
    """Replace a Delta table's rows (and schema) with ``df`` in one commit, creating it if absent.

    Idempotent: writing the same rows again leaves the same table (a new version of it).

    Args:
        df: The new rows.
        lake_root: Lake root folder or URI.
        name: Table name ``layer.table``.
        partition_by: Partition columns; the table is laid out by them from this write on, whatever its
            partitioning was.
        properties: Table properties (``delta.*``) set when this write creates the table, in the same
            commit; Delta ignores them when it overwrites an existing table.
    """
    path = table_path(lake_root, name)
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    for key, value in (properties or {}).items():
        writer = writer.option(key, value)
    writer.save(path)
    logger.debug("overwrote %s", name)
    faults.after_write(name)


def upsert(
    df: DataFrame,
    lake_root: str,
    name: str,
    keys: Sequence[str],
    *,
    update_condition: str | None = None,
    partition_by: Sequence[str] | None = None,
    properties: dict[str, str] | None = None,
) -> None:
    """Insert new rows and update matching ones with a Delta MERGE on ``keys``; create the table if absent.

    The source must hold at most one row per key (MERGE fails otherwise) and keys must not be null.
    In conditions the table is ``t`` and the incoming rows are ``s``.

    Args:
        df: Incoming rows, with the table's columns.
        lake_root: Lake root folder or URI.
        name: Table name ``layer.table``.
        keys: Columns that identify a row.
        update_condition: Update a matched row only when this SQL condition holds, e.g.
            ``"s.event_time >= t.event_time"`` to keep the latest by event time.
        partition_by: Partition columns, used when the table is created.
        properties: Table properties, set when the table is created.

    Raises:
        LakeError: For a bad name, no keys, or keys missing from ``df``.
    """
    path = table_path(lake_root, name)
    if not keys:
        raise LakeError(f"upsert into {name}: no key columns given")
    missing = [key for key in keys if key not in df.columns]
    if missing:
        raise LakeError(f"upsert into {name}: key columns {missing} are not in the incoming rows")
    spark = df.sparkSession
    if not DeltaTable.isDeltaTable(spark, path):
        append(df, lake_root, name, partition_by=partition_by, properties=properties)
        return
    condition = " AND ".join(f"t.`{key}` = s.`{key}`" for key in keys)
    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(df.alias("s"), condition)
        .whenMatchedUpdateAll(condition=update_condition)
        .whenNotMatchedInsertAll()
        .execute()
    )
    logger.debug("merged into %s on %s", name, ", ".join(keys))
    faults.after_write(name)


def merge_changes(df: DataFrame, lake_root: str, name: str, keys: Sequence[str], delete_flag: str) -> None:
    """Apply a set of changes by key in one MERGE: upsert rows, delete rows flagged ``delete_flag``.

    Args:
        df: One row per key: the table's columns plus the boolean ``delete_flag`` (True: remove the row
            with that key; its other columns are ignored).
        lake_root: Lake root folder or URI.
        name: Table name ``layer.table``; it must exist.
        keys: Columns that identify a row.
        delete_flag: Name of the flag column (not written).
    """
    path = _existing(df.sparkSession, lake_root, name)
    table = DeltaTable.forPath(df.sparkSession, path)
    columns = table.toDF().columns
    values: dict[str, str | Column] = {f"`{c}`": f"s.`{c}`" for c in columns}
    condition = " AND ".join(f"t.`{key}` = s.`{key}`" for key in keys)
    (
        table.alias("t")
        .merge(df.alias("s"), condition)
        .whenMatchedDelete(condition=f"s.`{delete_flag}`")
        .whenMatchedUpdate(set=values)
        .whenNotMatchedInsert(condition=f"NOT s.`{delete_flag}`", values=values)
        .execute()
    )
    logger.debug("merged changes into %s on %s", name, ", ".join(keys))
    faults.after_write(name)


def replace_where(df: DataFrame, lake_root: str, name: str, predicate: str) -> None:
    """Replace the rows matching ``predicate`` with ``df`` in one commit (Delta's ``replaceWhere``).

    Every row of ``df`` must match ``predicate``; the table must exist.
    """
    path = _existing(df.sparkSession, lake_root, name)
    df.write.format("delta").mode("overwrite").option("replaceWhere", predicate).save(path)
    logger.debug("replaced %s where %s", name, predicate)
    faults.after_write(name)


def insert_new(
    df: DataFrame, lake_root: str, name: str, keys: Sequence[str], *, target_condition: str | None = None
) -> None:
    """Insert the rows whose ``keys`` the table does not hold yet (a MERGE without updates).

    The table must exist; ``df`` must hold at most one row per key.

    Args:
        df: Incoming rows (alias ``s``).
        lake_root: Lake root folder or URI.
        name: Table name ``layer.table``.
        keys: Columns that identify a row.
        target_condition: SQL on the table (alias ``t``) that every stored row sharing a key with ``df``
            meets, e.g. a time span: MERGE then reads only the files whose statistics can meet it.
    """
    path = _existing(df.sparkSession, lake_root, name)
    condition = " AND ".join(f"t.`{key}` = s.`{key}`" for key in keys)
    if target_condition is not None:
        condition = f"{condition} AND ({target_condition})"
    DeltaTable.forPath(df.sparkSession, path).alias("t").merge(
        df.alias("s"), condition
    ).whenNotMatchedInsertAll().execute()
    logger.debug("inserted new keys into %s", name)
    faults.after_write(name)


def update(
    spark: SparkSession, lake_root: str, name: str, condition: Column, values: Mapping[str, Column]
) -> None:
    """Set columns of the rows matching ``condition`` (a Delta UPDATE; idempotent for fixed values)."""
    path = _existing(spark, lake_root, name)
    DeltaTable.forPath(spark, path).update(condition=condition, set=dict(values))
    logger.debug("updated %s", name)
    faults.after_write(name)


def holds_no_files(spark: SparkSession, lake_root: str, name: str) -> bool:
    """True when the table's current version has no data files (read from Delta's log, no data scan)."""
    path = _existing(spark, lake_root, name)
    return one_row(DeltaTable.forPath(spark, path).detail())["numFiles"] == 0


def one_row(df: DataFrame) -> Row:
    """The first row of a frame that always has one: a global aggregate, a Delta table's detail.

    Raises:
        RuntimeError: When the frame is empty after all.
    """
    row = df.first()
    if row is None:
        raise RuntimeError(f"expected a row, got none from {df.columns}")
    return row


def latest_version(spark: SparkSession, lake_root: str, name: str) -> int:
    """The newest committed version of a table.

    Raises:
        LakeError: When the table does not exist.
    """
    path = _existing(spark, lake_root, name)
    (row,) = DeltaTable.forPath(spark, path).history(1).select("version").collect()
    return int(row[0])


def has_change_feed(spark: SparkSession, lake_root: str, name: str) -> bool:
    """True when the table records a change data feed (``delta.enableChangeDataFeed``)."""
    path = _existing(spark, lake_root, name)
    (row,) = DeltaTable.forPath(spark, path).detail().select("properties").collect()
    return str((row[0] or {}).get("delta.enableChangeDataFeed", "false")).lower() == "true"


def read_changes(spark: SparkSession, lake_root: str, name: str, start: int, end: int) -> DataFrame:
    """The rows a table's versions ``start..end`` (inclusive) changed, from its change data feed.

    The table needs ``delta.enableChangeDataFeed`` since version ``start``. Rows carry ``_change_type``
    (``insert``, ``update_preimage``, ``update_postimage``, ``delete``), ``_commit_version`` and
    ``_commit_timestamp``.
    """
    path = _existing(spark, lake_root, name)
    return (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", start)
        .option("endingVersion", end)
        .load(path)
    )


def history(spark: SparkSession, lake_root: str, name: str, limit: int | None = None) -> DataFrame:
    """The commit history of a table, newest first (``DESCRIBE HISTORY``).

    Args:
        spark: Session.
        lake_root: Lake root folder or URI.
        name: Table name ``layer.table``.
        limit: Only the newest ``limit`` commits.

    Returns:
        One row per commit: version, timestamp, operation, operationParameters, operationMetrics, ….

    Raises:
        LakeError: For a bad name or a missing table.
    """
    table = DeltaTable.forPath(spark, _existing(spark, lake_root, name))
    return table.history(limit) if limit is not None else table.history()


def list_tables(lake_root: str, spark: SparkSession | None = None) -> list[TableRef]:
    """Find the Delta tables of a lake: folders ``<root>/<layer>/<table>`` holding a ``_delta_log``.

    A local root (or ``file:`` URI without ``spark``) is listed directly; other URIs through Hadoop's
    FileSystem, which needs ``spark``. Folders starting with ``_`` or ``.`` are skipped.

    Args:
        lake_root: Lake root folder or URI.
        spark: Session, needed for a remote lake root.

    Returns:
        The tables, sorted by layer and name.

    Raises:
        LakeError: When the lake root does not exist or is not a folder.
    """
    if is_uri(lake_root) and (spark is not None or not lake_root.startswith("file:")):
        if spark is None:
            raise LakeError(f"listing the lake {lake_root} needs a SparkSession")
        return _list_tables_hadoop(spark, lake_root)
    return list_local_tables(lake_root)


def table_status(spark: SparkSession, lake_root: str) -> list[TableStatus]:
    """Version, row count and last commit of every table in the lake.

    Args:
        spark: Session.
        lake_root: Lake root folder or URI.

    Returns:
        One entry per table, sorted by layer and name.

    Raises:
        LakeError: When the lake root does not exist.
    """
    status = []
    for ref in list_tables(lake_root, spark):
        table = DeltaTable.forPath(spark, ref.path)
        last = table.history(1).select("version", "operation", F.unix_micros("timestamp").alias("us")).first()
        if last is None:
            continue
        rows = table.toDF().count()
        when = dt.datetime.fromtimestamp(last["us"] / 1_000_000, tz=dt.UTC)
        status.append(TableStatus(ref.layer, ref.name, int(last["version"]), rows, last["operation"], when))
    return status


def register_tables(spark: SparkSession, lake_root: str) -> list[str]:
    """Register every table of the lake in the Spark catalog as ``<layer>.<table>``.

    Creates the layer databases and external Delta tables pointing at the lake's folders, so SQL users
    can write ``SELECT * FROM gold.x``. A registered external table that points at another location is
    re-pointed; a managed table of the same name is left alone with a warning.

    Args:
        spark: Session.
        lake_root: Lake root folder or URI.

    Returns:
        The registered names (``layer.table``).
    """
    registered = []
    for ref in list_tables(lake_root, spark):
        full = f"`{ref.layer}`.`{ref.name}`"
        location = _absolute(ref.path)
        spark.sql(f"CREATE DATABASE IF NOT EXISTS `{ref.layer}`")
        if spark.catalog.tableExists(f"{ref.layer}.{ref.name}"):
            current = spark.sql(f"DESCRIBE DETAIL {full}").select("location").first()
            if current is not None and _same_location(current[0], location):
                registered.append(f"{ref.layer}.{ref.name}")
                continue
            if spark.catalog.getTable(f"{ref.layer}.{ref.name}").tableType != "EXTERNAL":
                logger.warning("%s.%s is a managed table elsewhere; not re-registered", ref.layer, ref.name)
                continue
            spark.sql(f"DROP TABLE {full}")
        escaped = location.replace("\\", "\\\\").replace("'", "\\'")
        spark.sql(f"CREATE TABLE {full} USING DELTA LOCATION '{escaped}'")
        registered.append(f"{ref.layer}.{ref.name}")
    logger.debug("registered %d tables", len(registered))
    return registered


def _existing(spark: SparkSession, lake_root: str, name: str) -> str:
    """The path of table ``name``, which must exist."""
    path = table_path(lake_root, name)
    if not DeltaTable.isDeltaTable(spark, path):
        raise LakeError(f"table {name} not found in lake {lake_root}")
    return path


def _list_tables_hadoop(spark: SparkSession, lake_root: str) -> list[TableRef]:
    """``list_tables`` through Hadoop's FileSystem, for remote roots."""
    jvm = spark._jvm
    assert jvm is not None
    hadoop_path = jvm.org.apache.hadoop.fs.Path
    root = hadoop_path(lake_root)
    fs = root.getFileSystem(spark._jsc.hadoopConfiguration())
    if not fs.exists(root):
        raise LakeError(f"lake root {lake_root} does not exist")
    if not fs.getFileStatus(root).isDirectory():
        raise LakeError(f"lake root {lake_root} is not a folder")
    base = lake_root.rstrip("/")
    found = []
    layers = sorted(s.getPath().getName() for s in fs.listStatus(root) if s.isDirectory())
    for layer in filter(visible, layers):
        entries = fs.listStatus(hadoop_path(f"{base}/{layer}"))
        for table in sorted(s.getPath().getName() for s in entries if s.isDirectory()):
            if visible(table) and fs.exists(hadoop_path(f"{base}/{layer}/{table}/{DELTA_LOG}")):
                found.append(TableRef(layer, table, f"{base}/{layer}/{table}"))
    return found


def _absolute(path: str) -> str:
    """An absolute path for a local path; URIs unchanged."""
    if is_uri(path):
        return path
    return str(Path(path).expanduser().resolve())


def _same_location(a: str, b: str) -> bool:
    """Compare two table locations, treating ``file:/x``, ``file:///x`` and ``/x`` as equal."""

    def norm(location: str) -> str:
        if location.startswith("file:"):
            location = "/" + location[len("file:") :].lstrip("/")
        return location.rstrip("/")

    return norm(a) == norm(b)


def _timestamp_text(value: str | dt.datetime) -> str:
    """A Delta ``timestampAsOf`` string in UTC (the session time zone)."""
    if isinstance(value, str):
        return value
    # A naive datetime is local time, as pyspark collects and creates them; astimezone handles both.
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
