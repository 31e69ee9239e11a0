"""Lake tables for researchers: pandas without Spark, Spark DataFrames in one call, both with time travel.

``load_pandas`` reads a Delta table with the ``deltalake`` package (Rust; no JVM, no pyspark import), so a
researcher on a laptop can load ``gold.*`` or ``research.*`` tables and pin the exact version a paper used.
Tables with deletion vectors (Delta's ``deletionVectors`` reader feature, which Databricks can turn on for
new tables) are read through ``deltalake``'s DataFusion engine, since its pyarrow reader refuses them.
``read_table`` is the same call returning a Spark DataFrame (the active session, or one healthlake builds).
``lake_status`` (``healthlake status``) reads every table's version, rows and last commit from the Delta
logs alone, also without a JVM.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from healthlake.errors import LakeError
from healthlake.naming import DELTA_LOG, TableStatus, list_local_tables, local_path, table_path

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession


DELETION_VECTORS = "deletionVectors"
"""The Delta reader feature of tables whose MERGEs mark replaced rows instead of rewriting their files."""


def load_pandas(
    name: str,
    version: int | None = None,
    timestamp: str | dt.datetime | None = None,
    *,
    lake_root: str | None = None,
    columns: Sequence[str] | None = None,
    filters: list[tuple[str, str, Any]] | None = None,
) -> pd.DataFrame:
    """Load a lake table into pandas without starting Spark, optionally as it was at a version or time.

    Args:
        name: Table name ``layer.table`` (``gold.utilization_daily``).
        version: Table version to read (``table_history`` lists them); None for the latest.
        timestamp: Read the table as of this time: a datetime (naive means UTC, the lake's time zone) or
            an ISO 8601 / RFC 3339 string.
        lake_root: Lake root folder or URI; default the configured ``lake_root``.
        columns: Only these columns.
        filters: Row filters pushed into the read, as ``[("area_code", "=", "360102")]`` (applied to the
            rows read for a table with deletion vectors).

    Returns:
        The rows as a pandas DataFrame.

    Raises:
        LakeError: For a bad name, a missing table or version, or both ``version`` and ``timestamp``.
    """
    table = _delta_table(name, lake_root, version, timestamp)
    wanted = list(columns) if columns is not None else None
    if DELETION_VECTORS not in (table.protocol().reader_features or []):
        return table.to_pandas(columns=wanted, filters=filters)
    return _query_pandas(table, wanted, filters)


def _query_pandas(
    table: Any, columns: list[str] | None, filters: list[tuple[str, str, Any]] | None
) -> pd.DataFrame:
    """Read a table with deletion vectors through ``deltalake``'s query engine (DataFusion, in process).

    ``DeltaTable.to_pandas`` scans the Parquet files with pyarrow, which cannot skip the rows a deletion
    vector removes, so ``deltalake`` refuses such tables there; its DataFusion engine applies them. The
    filters use ``to_pandas``'s format and are applied to the rows read.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import QueryBuilder

    rows = pa.table(QueryBuilder().register("t", table).execute("SELECT * FROM t").read_all())
    # DataFusion hands strings over as string_view, which pyarrow's compute kernels do not compare with
    # plain strings: give them the type to_pandas's reader gives.
    plain = [f.with_type(pa.string()) if pa.types.is_string_view(f.type) else f for f in rows.schema]
    rows = rows.cast(pa.schema(plain))
    if filters:
        rows = rows.filter(pq.filters_to_expression(filters))
    if columns is not None:
        missing = [c for c in columns if c not in rows.column_names]
        if missing:
            raise LakeError(f"load_pandas: no column {', '.join(missing)}; the table has {rows.column_names}")
        rows = rows.select(columns)
    return rows.to_pandas()


def table_history(name: str, *, lake_root: str | None = None) -> list[dict[str, Any]]:
    """The versions of a lake table, newest first, without Spark: ``version``, ``timestamp``, ``operation``.

    Args:
        name: Table name ``layer.table``.
        lake_root: Lake root folder or URI; default the configured ``lake_root``.
    """
    table = _delta_table(name, lake_root, None, None)
    return [
        {
            "version": entry.get("version"),
            "timestamp": dt.datetime.fromtimestamp(entry["timestamp"] / 1000, tz=dt.UTC),
            "operation": entry.get("operation"),
        }
        for entry in table.history()
    ]


def lake_status(lake_root: str | None = None) -> list[TableStatus]:
    """Version, rows and last commit of every table of a local lake, from the Delta logs alone (no Spark).

    The rows are the ``numRecords`` statistics of the add actions of the table's current version (less
    the rows its deletion vectors remove), so no data file is read; a table with a file written without
    statistics is counted by a scan. ``healthlake.io.table_status`` gives the same through Spark, for any
    lake root.

    Args:
        lake_root: Lake root folder or ``file:`` URI; default the configured ``lake_root``.

    Returns:
        One entry per table, sorted by layer and name; the last commit's time is in UTC.

    Raises:
        LakeError: When the lake root does not exist or is not a folder.
    """
    from deltalake import DeltaTable

    if lake_root is None:
        from healthlake.config import load_config

        lake_root = load_config().lake_root
    status = []
    for ref in list_local_tables(lake_root):
        table = DeltaTable(_for_deltalake(ref.path))
        history = table.history(1)
        if not history:
            continue
        last, version = history[0], table.version()
        operation, when = last.get("operation", ""), _commit_time(ref.path, version, last)
        status.append(TableStatus(ref.layer, ref.name, version, _rows(table), operation, when))
    return status


def _commit_time(path: str, version: int, commit: dict[str, Any]) -> dt.datetime:
    """When a commit was made, as Spark's ``DESCRIBE HISTORY`` dates it: its in-commit timestamp when the
    table records one, else the modification time of its log file (read here for a local table), else
    the time in the commit's own record (the writer's clock as it began to commit)."""
    millis = commit.get("inCommitTimestamp")
    if millis is None:
        log_file = Path(local_path(path)).expanduser() / DELTA_LOG / f"{version:020d}.json"
        try:
            millis = log_file.stat().st_mtime_ns // 1_000_000
        except OSError:
            millis = commit["timestamp"]
    return dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC)


def _rows(table: Any) -> int:
    """Rows of a ``deltalake`` table from its log: add actions' ``numRecords`` less deletion vectors'.

    Through ``deltalake``'s own Arrow tables (arro3): pyarrow would import pandas, a second's start-up.
    """
    adds = table.get_add_actions()
    if adds.num_rows == 0:
        return 0
    counts = adds.column("num_records").to_pylist() if "num_records" in adds.column_names else [None]
    if None in counts:
        return _scanned_rows(table)  # a file without statistics: only a scan knows
    rows = sum(counts)
    if DELETION_VECTORS in (table.protocol().reader_features or []):
        for batch in table.deletion_vectors():
            for keep in batch.column("selection_vector").to_pylist():
                rows -= keep.count(False)
    return rows


def _scanned_rows(table: Any) -> int:
    """Rows of a ``deltalake`` table counted by its query engine (DataFusion; applies deletion vectors)."""
    from deltalake import QueryBuilder

    result = QueryBuilder().register("t", table).execute("SELECT COUNT(*) AS n FROM t").read_all()
    return int(result.column("n").to_pylist()[0])


def read_table(
    name: str,
    version: int | None = None,
    timestamp: str | dt.datetime | None = None,
    *,
    lake_root: str | None = None,
    spark: SparkSession | None = None,
) -> DataFrame:
    """A lake table as a Spark DataFrame, optionally as it was at a version or time.

    Args:
        name: Table name ``layer.table`` (``gold.utilization_daily``).
        version: Table version to read; None for the latest.
        timestamp: Read the table as of this time (UTC).
        lake_root: Lake root folder or URI; default the configured ``lake_root``.
        spark: Session; default the active one, or one built from the configuration.

    Raises:
        LakeError: For a bad name, a missing table, or both ``version`` and ``timestamp``.
    """
    from healthlake import io
    from healthlake.config import load_config
    from healthlake.spark import get_spark

    if spark is None or lake_root is None:
        cfg = load_config()
        lake_root = lake_root or cfg.lake_root
        spark = spark or get_spark("read", cfg)
    return io.read_table(spark, lake_root, name, version=version, timestamp=timestamp)


def _delta_table(
    name: str, lake_root: str | None, version: int | None, timestamp: str | dt.datetime | None
) -> Any:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    if version is not None and timestamp is not None:
        raise LakeError("load_pandas: give either version or timestamp, not both")
    if lake_root is None:
        from healthlake.config import load_config

        lake_root = load_config().lake_root
    path = _for_deltalake(table_path(lake_root, name))
    try:
        table = DeltaTable(path, version=version)
    except TableNotFoundError:
        raise LakeError(f"no table {name} at {path}: check the name and lake_root") from None
    except Exception as exc:  # deltalake reports a version it does not hold as a generic error
        if version is None:
            raise
        raise LakeError(f"{name} has no version {version}: see table_history({name!r})") from exc
    if timestamp is not None:
        when = _utc(timestamp)
        # deltalake would quietly give the first version for an earlier time; Spark refuses, and so do we.
        created = min(entry["timestamp"] for entry in table.history()) / 1000
        if when.timestamp() < created:
            first = dt.datetime.fromtimestamp(created, tz=dt.UTC).isoformat()
            raise LakeError(f"{name} did not exist at {when.isoformat()}: its first version is of {first}")
        table.load_as_version(when)
    return table


def _utc(timestamp: str | dt.datetime) -> dt.datetime:
    """A datetime in UTC (naive ones are UTC: the lake's time zone)."""
    if isinstance(timestamp, str):
        try:
            timestamp = dt.datetime.fromisoformat(timestamp)
        except ValueError:
            raise LakeError(f"timestamp {timestamp!r}: expected ISO 8601 (2026-03-02T08:00:00Z)") from None
    return timestamp.replace(tzinfo=dt.UTC) if timestamp.tzinfo is None else timestamp


def _for_deltalake(path: str) -> str:
    """The path as ``deltalake`` names it: Hadoop's ``s3a://`` is ``s3://``, ``file:`` is a plain path."""
    if path.startswith("s3a://"):
        return "s3://" + path[len("s3a://") :]
    if path.startswith("file://"):
        return path[len("file://") :]
    if path.startswith("file:"):
        return path[len("file:") :]
    return path
