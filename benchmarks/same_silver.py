"""Check that two lakes conformed from the same bronze hold the same silver (a change "behaves the same").

Compares every table conform writes, the vault, quarantine and data-quality metrics row for row, leaving
out the columns that say when a run happened (``_conformed_at``, ``run_at``, ``logged_at``, ``seconds``,
``run_number``), and the finished counts of ``silver.conform_log`` per bronze range. The metrics' median
arrival lag is an approximate percentile (its value moves with the partitioning of its input): compared
within ``--lag-tolerance`` seconds, not exactly.

    cp -r LAKE/bronze /tmp/a/lake/ && cp -r LAKE/bronze /tmp/b/lake/
    (git checkout OLD) healthlake conform --lake /tmp/a/lake
    (git checkout NEW) healthlake conform --lake /tmp/b/lake
    python benchmarks/same_silver.py /tmp/a/lake /tmp/b/lake

Exit status 0 when everything is the same, 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from healthlake import catalog, io  # noqa: E402
from healthlake.config import load_config  # noqa: E402
from healthlake.pipelines import conform  # noqa: E402
from healthlake.spark import get_spark  # noqa: E402

log = logging.getLogger("same_silver")
RUN_COLUMNS = ("_conformed_at", "run_at", "logged_at", "seconds", "run_number")
LAG = "arrival_lag_p50_s"
COUNTS = ("bronze_rows", "conformed", "superseded", "quarantined", "duplicates", "not_modelled")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", help="lake root")
    parser.add_argument("second", help="lake root")
    parser.add_argument("--lag-tolerance", type=float, default=60.0, help="seconds (approximate median)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    spark = get_spark("same-silver", load_config(overrides={"lake_root": args.first}))

    def table(lake: str, name: str) -> DataFrame:
        df = io.read_table(spark, lake, name)
        return df.drop(*[c for c in RUN_COLUMNS if c in df.columns])

    different = 0
    names = (*conform.conformed_tables(), catalog.VAULT_IDENTITY, catalog.SILVER_QUARANTINE)
    for name in (*names, catalog.SILVER_DQ_METRICS):
        held = [io.is_table(spark, lake, name) for lake in (args.first, args.second)]
        if not all(held):
            different += held[0] != held[1]
            log.info("%s: a table in %s", name, " / ".join("yes" if h else "no" for h in held))
            continue
        a, b = table(args.first, name), table(args.second, name)
        if set(a.columns) != set(b.columns):
            different += 1
            log.info("DIFFERENT %s: columns %s", name, sorted(set(a.columns) ^ set(b.columns)))
            continue
        columns = sorted(c for c in a.columns if c != LAG)
        only_a = a.select(*columns).exceptAll(b.select(*columns)).count()
        only_b = b.select(*columns).exceptAll(a.select(*columns)).count()
        detail = ""
        if LAG in a.columns:
            keys = [c for c in columns if c != "run_id"]
            lags = a.select(*keys, F.col(LAG).alias("_a")).join(
                b.select(*keys, F.col(LAG).alias("_b")), keys, "inner"
            )
            worst = lags.agg(F.max(F.abs(F.col("_a") - F.col("_b")))).first()[0] or 0.0
            detail = f"; largest {LAG} difference {worst:.1f} s"
            only_a += worst > args.lag_tolerance
        same = only_a == 0 and only_b == 0
        different += not same
        log.info(
            "%s %s: %d / %d rows, %d only in the first, %d only in the second%s",
            "same" if same else "DIFFERENT",
            name,
            a.count(),
            b.count(),
            only_a,
            only_b,
            detail,
        )
    finished = [
        table(lake, catalog.SILVER_CONFORM_LOG)
        .where(F.col("status") == conform.FINISHED)
        .select("bronze_table", "start_version", "end_version", *COUNTS)
        .orderBy("bronze_table", "start_version")
        .collect()
        for lake in (args.first, args.second)
    ]
    same_log = finished[0] == finished[1]
    different += not same_log
    log.info("%s silver.conform_log: finished counts per bronze range", "same" if same_log else "DIFFERENT")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
