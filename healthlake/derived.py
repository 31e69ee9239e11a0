"""Derived tables: one shape for every table computed from other tables of the lake.

A *derived table* (every ``gold.*`` table today; the epidemic, feature and prediction tables next) is one
module holding its pure transformations and one ``DerivedTable`` value that says:

* ``name``, ``key`` (what identifies a row: the grain) and ``reads`` (the tables it is computed from);
* ``build(inputs)``: the whole table from its inputs, a DataFrame (the first run, and every full run);
* ``update(inputs)``: what a run must change after its inputs moved since the last run, as a ``Write``:
  ``merge(new, stored)`` (the recomputed rows of the affected keys, and the stored rows of the same keys:
  rows that differ are upserted, keys gone are deleted), ``replace_where(rows, predicate)`` (a range
  replaced whole), ``append(rows, txn)``, ``unchanged()``, or ``rebuild()`` (build it in full instead);
* ``fed_by``: inputs whose change data feed ``update`` reads (without one the table is rebuilt), and
  ``rebuild_on``: inputs any change of which moves rows everywhere (a new area register), so the table is
  rebuilt instead.

``refresh`` runs a registry of them in dependency order, one Delta commit per table. A table is rebuilt
rather than updated when the run is full, when the last run left no version of it, when one of its
``fed_by`` has no change feed or one of its ``rebuild_on`` moved, when a derived table it reads was
rebuilt in this run, or when its ``update`` says so. The contract a table's ``update`` keeps is that the
table after it equals a full ``build`` on the same inputs; ``tests/derived_check.py`` checks that for any
table given two days of inputs, and every table has that test (``docs/gold.md``, "Adding a derived table").

``Inputs`` is what a build or an update reads: every input pinned at the version the run started from,
its change feed since the last run, each derived table as the last run left it (``stored``) or as this run
wrote it (``read``), and what an upstream table's merge changed in this run (``changed``). Frames a rule
keeps for later tables (``keep``, ``once``) are released when the run ends. Nothing here knows which stage
runs it: publish runs the gold registry; another stage passes its own.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import MapType

from healthlake import io
from healthlake.localtime import DEFAULT_ZONE
from healthlake.spark import local_checkpoint

log = logging.getLogger(__name__)

DELETE_FLAG = "_delete"
"""The column of a merge's change rows that marks a key to delete."""


@dataclass(frozen=True)
class Write:
    """What an ``update`` asks the runner to do with one table (made by the functions below)."""

    how: Literal["merge", "replace_where", "append", "overwrite", "unchanged", "rebuild"]
    rows: DataFrame | None = None
    stored: DataFrame | None = None
    predicate: str | None = None
    txn: tuple[str, int] | None = None


def merge(new: DataFrame, stored: DataFrame) -> Write:
    """Merge by the table's key: ``new`` holds the recomputed rows of every affected key, ``stored`` the
    table's rows of the same keys as the last run left them. Rows equal to the stored ones are not written
    (MERGE rewrites only files that change); stored keys absent from ``new`` are deleted."""
    return Write("merge", rows=new, stored=stored)


def replace_where(rows: DataFrame, predicate: str) -> Write:
    """Replace the rows matching ``predicate`` (SQL) with ``rows``, every one of which matches it."""
    return Write("replace_where", rows=rows, predicate=predicate)


def append(rows: DataFrame, txn: tuple[str, int] | None = None) -> Write:
    """Append ``rows``; with ``txn`` (application id, version) a re-run that already appended does not."""
    return Write("append", rows=rows, txn=txn)


def overwrite(rows: DataFrame) -> Write:
    """Replace the whole table with ``rows``."""
    return Write("overwrite", rows=rows)


def unchanged() -> Write:
    """Nothing this table holds moved."""
    return Write("unchanged")


def rebuild() -> Write:
    """Build the table in full instead (its ``update`` cannot bound what moved)."""
    return Write("rebuild")


@dataclass(frozen=True)
class DerivedTable:
    """A table computed from other tables, built in full once and kept up to date incrementally.

    Attributes:
        name: ``layer.table`` (a ``healthlake.catalog`` constant).
        key: Columns that identify a row (the grain; a ``merge`` matches on them).
        reads: Every table ``build`` and ``update`` read (inputs and other derived tables: the order).
        build: The whole table from ``Inputs``: a DataFrame, never written by the function itself.
        update: What changes after the inputs moved since the last run (None: always rebuilt).
        fed_by: Inputs whose change data feed ``update`` reads; without a feed the table is rebuilt.
        rebuild_on: Inputs any change of which rebuilds the table (reference registers).
        partition_by: Partition columns of the written table.
        audit: Run after the table is written (warnings about its content; may run actions).
        requires: Inputs without which there is no such table (a lake without bronze has no exchange
            volumes): the run leaves it out.
    """

    name: str
    key: tuple[str, ...]
    reads: tuple[str, ...]
    build: Callable[[Inputs], DataFrame]
    update: Callable[[Inputs], Write] | None = None
    fed_by: tuple[str, ...] = ()
    rebuild_on: tuple[str, ...] = ()
    partition_by: tuple[str, ...] = ()
    audit: Callable[[Inputs], None] | None = None
    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class LastRun:
    """What the last finished run read and wrote (its log row).

    Attributes:
        as_of: The day that run was as of.
        versions: Input table → the version it read.
        written: Derived table → its version when that run ended.
    """

    as_of: dt.date
    versions: dict[str, int]
    written: dict[str, int] = field(default_factory=dict)


class Inputs:
    """The tables a run reads: inputs pinned at one version each, and the derived tables of the registry.

    Args:
        spark: Session.
        lake: Lake root.
        versions: Input table → the version to read (others are pinned on first use).
        zone: The region's time zone (every calendar quantity is local to it).
        as_of: The (local) day the run is as of (None until the stage sets it).
        last: The last finished run (None on a first or full run).
        settings: Named settings rules need (``max_open_nights``, ...).
        empty: Input → schema (DDL) of an empty stand-in for an input the lake lacks (a region without
            that feed).
        derived: Names of the derived tables (read as written, not pinned).
        cached: Names of small inputs kept as local checkpoints (read by many joins).
    """

    def __init__(
        self,
        spark: SparkSession,
        lake: str,
        versions: dict[str, int],
        zone: str = DEFAULT_ZONE,
        *,
        as_of: dt.date | None = None,
        last: LastRun | None = None,
        settings: Mapping[str, Any] | None = None,
        empty: dict[str, str] | None = None,
        derived: Sequence[str] = (),
        cached: Sequence[str] = (),
    ) -> None:
        self.spark, self.lake, self.zone = spark, lake, zone
        self.versions: dict[str, int] = dict(versions)
        self._as_of, self.last = as_of, last
        self.settings: dict[str, Any] = dict(settings or {})
        self._empty, self._derived, self._cached = dict(empty or {}), set(derived), set(cached)
        self._frames: dict[str, DataFrame] = {}
        self._memo: dict[str, object] = {}
        self._kept: list[DataFrame] = []
        self._merged: dict[str, Write] = {}
        self.rebuilt: set[str] = set()
        """Derived tables built in full in this run."""

    @property
    def as_of(self) -> dt.date:
        """The local day the run is as of."""
        if self._as_of is None:
            raise RuntimeError("Inputs.as_of read before the run set it")
        return self._as_of

    @as_of.setter
    def as_of(self, day: dt.date) -> None:
        self._as_of = day

    def has(self, name: str) -> bool:
        """Whether the lake holds ``name`` (an input pinned already, or any table)."""
        return name in self.versions or io.is_table(self.spark, self.lake, name)

    def version(self, name: str) -> int:
        """The version this run reads of input ``name`` (pinned on first use)."""
        if name not in self.versions:
            self.versions[name] = io.latest_version(self.spark, self.lake, name)
        return self.versions[name]

    def read(self, name: str) -> DataFrame:
        """Input ``name`` at its pinned version, or derived table ``name`` as it is now (written by this run
        when it comes earlier in the order). One frame per input (Delta resolves a version's snapshot each
        time a frame of it is made); the ``cached`` inputs kept as local checkpoints."""
        if name in self._derived:
            return io.read_table(self.spark, self.lake, name)
        if name not in self._frames:
            if name not in self.versions and not self.has(name):
                if name not in self._empty:
                    raise io.LakeError(f"{name} is not in the lake {self.lake}")
                frame = self.spark.createDataFrame([], self._empty[name])
            else:
                frame = io.read_table(self.spark, self.lake, name, version=self.version(name))
            self._frames[name] = local_checkpoint(frame) if name in self._cached else frame
        return self._frames[name]

    def read_before(self, name: str) -> DataFrame:
        """Input ``name`` at the version the last run read."""
        version = self._last().versions[name]
        return self.once(
            f"{name}@{version}", lambda: io.read_table(self.spark, self.lake, name, version=version)
        )

    def changes(self, name: str) -> DataFrame | None:
        """Rows of input ``name`` changed since the last run (its change feed), None when it did not move.

        A table new since the last run: all of it, as inserts.
        """
        if not self.has(name):
            return None
        end = self.version(name)
        start = self._last().versions.get(name, -1) + 1
        if start > end:
            return None
        return self.once(f"{name}#{start}", lambda: io.read_changes(self.spark, self.lake, name, start, end))

    def moved(self, name: str) -> bool:
        """Whether input ``name`` is at another version than the last run read."""
        return self.has(name) and self._last().versions.get(name) != self.version(name)

    def stored(self, name: str) -> DataFrame:
        """Derived table ``name`` as the last run left it.

        Not its latest version: when a run dies between two of its writes, the re-run starts from the same
        log row and must find the same differences, though some of them were already merged. Merging them
        again changes nothing, so the re-run ends with the tables the first attempt would have written.
        """
        version = self._last().written.get(name)
        if version is None:  # a log written before gold versions were recorded
            version = io.latest_version(self.spark, self.lake, name)
        return io.read_table(self.spark, self.lake, name, version=version)

    def changed(self, name: str) -> DataFrame | None:
        """The rows derived table ``name``'s merge changed in this run, both images (the stored rows that
        differ or are gone, and the new rows that differ); None when it was not merged in this run."""
        write = self._merged.get(name)
        if write is None or write.rows is None or write.stored is None:
            return None
        new, old = _comparable(write.rows), _comparable(write.stored.select(*write.rows.columns))
        return self.once(f"{name}~changed", lambda: new.subtract(old).unionByName(old.subtract(new)))

    def once(self, key: str, make: Callable[[], DataFrame]) -> DataFrame:
        """The frame ``make`` gives, made once per run (shared by the tables that use it)."""
        if key not in self._memo:
            self._memo[key] = make()
        frame = self._memo[key]
        assert isinstance(frame, DataFrame)
        return frame

    def keep(self, df: DataFrame) -> DataFrame:
        """``df`` cached until the run ends (for frames later tables of the run use again)."""
        self._kept.append(df.cache())
        return df

    def materialised(self, df: DataFrame) -> DataFrame:
        """``df`` computed now and kept on the executors (a local checkpoint), so the planner knows its size.

        The persons and patients a day touches are a small share of the lake: once their size is known,
        Spark broadcasts them (below ``spark.sql.autoBroadcastJoinThreshold``) and filters the large tables
        as it scans them, instead of shuffling those tables whole to join them. A checkpoint rather than a
        cache, because it also cuts the plan: a frame built on cached ones still carries every plan below
        them, and such plans grew so large that rendering them took most of a run (``BENCHMARKS.md``).
        """
        frame = local_checkpoint(df)
        self._kept.append(frame)
        return frame

    def release(self) -> None:
        """Unpersist the frames kept during the run."""
        for frame in self._kept:
            frame.unpersist()
        self._kept.clear()

    def _last(self) -> LastRun:
        if self.last is None:
            raise RuntimeError("an incremental rule read the last run on a full run")
        return self.last


def _comparable(df: DataFrame) -> DataFrame:
    """``df`` with its map columns as sorted entries (Spark cannot compare maps)."""
    maps = [f.name for f in df.schema.fields if isinstance(f.dataType, MapType)]
    return df.withColumns({c: F.array_sort(F.map_entries(c)) for c in maps}) if maps else df


def merge_rows(new: DataFrame, stored: DataFrame, key: Sequence[str]) -> DataFrame:
    """Changes for ``io.merge_changes``: new rows unlike the stored, and a delete for each stored key gone.

    A recomputed row equal to the stored one is left out, so MERGE rewrites only files that change. Map
    columns are compared as their sorted entries.
    """
    keys = list(key)
    gone = stored.join(new.select(keys), keys, "left_anti").select(
        *[F.col(c) for c in new.columns], F.lit(True).alias(DELETE_FLAG)
    )
    maps = [f.name for f in new.schema.fields if isinstance(f.dataType, MapType)]
    differ = _comparable(new).subtract(_comparable(stored.select(*new.columns)))
    differ = differ.withColumns({c: F.map_from_entries(c) for c in maps}) if maps else differ
    return differ.withColumn(DELETE_FLAG, F.lit(False)).unionByName(gone)


def dependency_order(tables: Sequence[DerivedTable]) -> list[DerivedTable]:
    """``tables`` ordered so that each comes after the derived tables it reads, else in registry order.

    Raises:
        ValueError: When derived tables read each other (a cycle).
    """
    by_name = {t.name: t for t in tables}
    remaining, placed = list(tables), []
    while remaining:
        ready = [
            t
            for t in remaining
            if all(r == t.name or r not in by_name or by_name[r] in placed for r in t.reads)
        ]
        if not ready:
            raise ValueError(f"derived tables read each other: {', '.join(t.name for t in remaining)}")
        placed.append(ready[0])
        remaining.remove(ready[0])
    return placed


def _rebuild_reason(table: DerivedTable, inputs: Inputs, full: bool) -> str | None:
    """Why ``table`` must be built in full in this run, or None when it can be updated."""
    if full or inputs.last is None or table.update is None:
        return "full run"
    if table.name not in inputs.last.written:
        return "no version from the last run"
    moved = [name for name in table.rebuild_on if inputs.moved(name)]
    if moved:
        return f"{', '.join(moved)} moved"
    unfed = [
        n for n in table.fed_by if inputs.has(n) and not io.has_change_feed(inputs.spark, inputs.lake, n)
    ]
    if unfed:
        return f"{', '.join(unfed)} without a change feed"
    upstream = [name for name in table.reads if name in inputs.rebuilt]
    if upstream:
        return f"{', '.join(upstream)} rebuilt"
    return None


def refresh(
    inputs: Inputs,
    tables: Sequence[DerivedTable],
    *,
    full: bool,
    step: Callable[[str], AbstractContextManager[object]] | None = None,
) -> dict[str, str]:
    """Bring ``tables`` up to date with ``inputs``, one Delta commit per table, in dependency order.

    Args:
        inputs: The run's inputs (``last`` set for an incremental run).
        tables: The registry.
        full: Build every table in full.
        step: Context manager per table (progress and timing), given the table name.

    Returns:
        Table → ``full``, ``incremental``, ``unchanged`` or ``absent`` (an input it requires is not in the
        lake): what the run did to it.
    """
    done: dict[str, str] = {}
    try:
        for table in dependency_order(tables):
            with (step or _no_step)(table.name):
                done[table.name] = _refresh_one(table, inputs, full)
    finally:
        inputs.release()
    return done


def _no_step(name: str) -> AbstractContextManager[object]:
    return nullcontext()


def _refresh_one(table: DerivedTable, inputs: Inputs, full: bool) -> str:
    if not all(inputs.has(name) for name in table.requires):
        return "absent"
    reason = _rebuild_reason(table, inputs, full)
    write = rebuild() if reason is not None or table.update is None else table.update(inputs)
    if write.how == "rebuild":
        if reason is None:
            reason = "its update asked for it"
        if not full:
            log.info("%s: built in full (%s)", table.name, reason)
        write = overwrite(table.build(inputs))
        inputs.rebuilt.add(table.name)
    lake = inputs.lake
    if write.how == "overwrite":
        assert write.rows is not None
        io.overwrite(write.rows, lake, table.name, partition_by=table.partition_by or None)
    elif write.how == "merge":
        assert write.rows is not None and write.stored is not None
        changes = merge_rows(write.rows, write.stored, table.key)
        io.merge_changes(changes, lake, table.name, table.key, DELETE_FLAG)
        inputs._merged[table.name] = write
    elif write.how == "replace_where":
        assert write.rows is not None and write.predicate is not None
        io.replace_where(write.rows, lake, table.name, write.predicate)
    elif write.how == "append":
        assert write.rows is not None
        io.append(write.rows, lake, table.name, txn=write.txn)
    if table.audit is not None and write.how != "unchanged":
        table.audit(inputs)
    if table.name in inputs.rebuilt:
        return "full"
    return "unchanged" if write.how == "unchanged" else "incremental"


RUN_LOG_SCHEMA = (
    "mode string, as_of date, versions map<string,bigint>, tables map<string,bigint>, seconds double, "
    "finished_at timestamp, written map<string,bigint>"
)
"""The row a stage running a registry logs at its end (``gold.epidemic_log``, ``gold.features_log``)."""


def last_logged_run(spark: SparkSession, lake: str, log_table: str) -> tuple[LastRun, dict[str, int]] | None:
    """The last finished run of a stage logged in ``log_table`` (``RUN_LOG_SCHEMA``) and its tables' rows."""
    if not io.is_table(spark, lake, log_table):
        return None
    rows = io.read_table(spark, lake, log_table).orderBy(F.desc("finished_at")).limit(1).collect()
    if not rows:
        return None
    row = rows[0]
    return LastRun(row["as_of"], dict(row["versions"]), dict(row["written"] or {})), dict(row["tables"])


def rows_and_versions(
    spark: SparkSession, lake: str, names: Sequence[str]
) -> tuple[dict[str, int], dict[str, int]]:
    """Rows and latest version of each of ``names`` the lake holds (what a stage reports and logs)."""
    held = [name for name in names if io.is_table(spark, lake, name)]
    rows = {name: io.read_table(spark, lake, name).count() for name in held}
    return rows, {name: io.latest_version(spark, lake, name) for name in held}


def log_run(
    spark: SparkSession,
    lake: str,
    log_table: str,
    *,
    mode: str,
    as_of: dt.date,
    versions: Mapping[str, int],
    tables: Mapping[str, int],
    seconds: float,
    written: Mapping[str, int],
) -> None:
    """Append a stage's log row: the commit point (the next run increments from these versions)."""
    row = (mode, as_of, dict(versions), dict(tables), seconds, dt.datetime.now(dt.UTC), dict(written))
    io.append(spark.createDataFrame([row], RUN_LOG_SCHEMA), lake, log_table)
