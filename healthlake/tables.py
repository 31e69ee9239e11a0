"""Lake tables for researchers: pandas without Spark, Spark DataFrames in one call, both with time travel.

``load_pandas`` reads a Delta table with the ``deltalake`` package (Rust; no JVM, no pyspark import), so a
researcher on a laptop can load ``gold.*`` or ``research.*`` tables and pin the exact version a paper used.
Tables with deletion vectors (Delta's ``deletionVectors`` reader feature, which Databricks can turn on for
new tables) are read through ``deltalake``'s DataFusion engine, since its pyarrow reader refuses them.
``read_table`` is the same call returning a Spark DataFrame (the active session, or one healthlake builds).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from healthlake.errors import LakeError
from healthlake.naming import table_path

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
