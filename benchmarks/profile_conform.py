"""Profile one conform run: seconds per Spark action and Delta write, by the healthlake line that caused it.

Conforms a copy of an ingested lake and wraps DataFrame actions (isEmpty, count, collect, first, persist)
and Delta writes (append/save, MERGE, create, detail, history) with timers; prints the call sites, most
time first. This is how BENCHMARKS.md's "where the time goes" for conform was measured.

    HEALTHLAKE_HMAC_KEY=... .venv/bin/python benchmarks/profile_conform.py --lake <ingested lake>
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from delta.tables import DeltaMergeBuilder, DeltaTable, DeltaTableBuilder  # noqa: E402
from pyspark.sql.classic.dataframe import DataFrame  # noqa: E402
from pyspark.sql.readwriter import DataFrameWriter  # noqa: E402

from healthlake.config import load_config  # noqa: E402
from healthlake.pipelines import conform  # noqa: E402
from healthlake.spark import get_spark  # noqa: E402

LIBRARY = str(Path(__file__).resolve().parents[1] / "healthlake")
_stats: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
_depth = [0]


def _timed(owner: type, name: str) -> None:
    """Replace ``owner.name`` by a timer that books its time to the healthlake line that called it."""
    original: Callable = getattr(owner, name)

    def timer(*args, **kwargs):
        if _depth[0]:  # an action inside a timed one: already counted
            return original(*args, **kwargs)
        _depth[0] += 1
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _depth[0] -= 1
            frames = [f for f in traceback.extract_stack()[:-1] if f.filename.startswith(LIBRARY)]
            site = f"{name}@{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else name
            _stats[site][0] += 1
            _stats[site][1] += time.perf_counter() - started

    setattr(owner, name, timer)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lake", required=True, help="an ingested lake (it is copied, not changed)")
    args = parser.parse_args()
    os.environ.setdefault("HEALTHLAKE_HMAC_KEY", "benchmark-only-key-0123456789abcdef")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("healthlake.pipelines.conform").setLevel(logging.DEBUG)  # per silver table timings
    work = Path(tempfile.mkdtemp(prefix="hl-profile-conform-"))
    shutil.copytree(args.lake, work / "lake")
    spark = get_spark("profile-conform", load_config(overrides={"spark": {"master": "local[2]"}}))
    spark.sparkContext.setLogLevel("ERROR")
    for action in ("isEmpty", "count", "collect", "first", "persist"):
        _timed(DataFrame, action)
    for owner, name in (
        (DataFrameWriter, "save"),
        (DeltaMergeBuilder, "execute"),
        (DeltaTableBuilder, "execute"),
        (DeltaTable, "detail"),
        (DeltaTable, "history"),
    ):
        _timed(owner, name)
    started = time.perf_counter()
    results = conform.run(spark, load_config(overrides={"lake_root": str(work / "lake")}))
    total = time.perf_counter() - started
    lines = [f"conform: {sum(r.bronze_rows for r in results)} bronze rows in {total:.1f} s"]
    booked = 0.0
    for site, (calls, seconds) in sorted(_stats.items(), key=lambda kv: -kv[1][1]):
        booked += seconds
        lines.append(f"{seconds:8.1f} s {int(calls):4d}x {site}")
    lines.append(f"{booked:8.1f} s booked to call sites")
    sys.stdout.write("\n".join(lines) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
