"""The check every derived table must pass: after a day of changes, its update equals a full build.

For any registry of ``healthlake.derived.DerivedTable`` (gold, and the next stages' own), given a lake and
the versions of its tables at the end of two days: build every table in full on day one, update it
incrementally on day two, build a copy of the lake in full on day two, and compare each table, row for row.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from healthlake import io
from healthlake.derived import DerivedTable, Inputs, LastRun, refresh


def lake_versions(spark: SparkSession, lake: str) -> dict[str, int]:
    """Every table of the lake → its latest version (a day's state, to pin a run at)."""
    return {
        f"{t.layer}.{t.name}": io.latest_version(spark, lake, f"{t.layer}.{t.name}")
        for t in io.list_tables(lake, spark)
    }


def assert_update_equals_build(
    spark: SparkSession,
    lake: Path,
    tables: Sequence[DerivedTable],
    *,
    day1: dict[str, int],
    day2: dict[str, int],
    as_of: tuple[dt.date, dt.date],
    work: Path,
    zone: str = "Asia/Shanghai",
    settings: dict[str, int] | None = None,
    empty: dict[str, str] | None = None,
) -> dict[str, str]:
    """Check that ``tables`` updated from ``day1`` to ``day2`` equal a full build at ``day2``.

    Args:
        spark: Session.
        lake: A lake holding the inputs at both days' versions (and none of ``tables`` yet).
        tables: The registry under test.
        day1: Input → its version at the end of day one (``lake_versions``).
        day2: Input → its version at the end of day two.
        as_of: The two days the runs are as of.
        work: An empty folder for the copy built in full.
        zone: The region's time zone.
        settings: ``Inputs.settings``.
        empty: ``Inputs`` stand-ins for inputs the lake lacks.

    Returns:
        Table → what the day-two run did to it (``incremental``, ``unchanged``, ...).
    """
    names = [t.name for t in tables]
    day1 = {k: v for k, v in day1.items() if k not in names}
    day2 = {k: v for k, v in day2.items() if k not in names}

    def inputs(root: Path, versions: dict[str, int], day: dt.date, last: LastRun | None = None) -> Inputs:
        return Inputs(
            spark,
            str(root),
            versions,
            zone,
            as_of=day,
            last=last,
            settings=settings,
            empty=empty,
            derived=names,
        )

    refresh(inputs(lake, day1, as_of[0]), tables, full=True)
    written = {n: io.latest_version(spark, str(lake), n) for n in names if io.is_table(spark, str(lake), n)}
    done = refresh(inputs(lake, day2, as_of[1], LastRun(as_of[0], day1, written)), tables, full=False)
    shutil.copytree(lake, work / "lake")
    for name in names:  # the copy keeps the inputs' history; its derived tables are built anew
        if io.is_table(spark, str(work / "lake"), name):
            shutil.rmtree(io.table_path(str(work / "lake"), name))
    refresh(inputs(work / "lake", day2, as_of[1]), tables, full=True)
    for name in names:
        if io.is_table(spark, str(lake), name):
            got = io.read_table(spark, str(lake), name)
            want = io.read_table(spark, str(work / "lake"), name)
            assertDataFrameEqual(got, want, checkRowOrder=False)
    return done
