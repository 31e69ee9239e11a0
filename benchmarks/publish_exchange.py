"""Benchmark a daily ``healthlake publish`` of a generated region, end to end from the landing zone.

A region is generated (``--records`` sizing over ``--days`` days). Its last full landing day (and the
stragglers after it) is held back; the rest is ingested, conformed, linked and published in full. Then
the held-back day lands, is ingested, conformed and linked, and the lake is published from there twice,
each on its own copy: incrementally (the daily run) and in full (``--full --no-extracts``). Printed: each
stage's seconds, each publish's steps (``exchange`` is the exchange-volume step, the only one that reads
bronze), whether the two ``gold.exchange_volume_daily`` tables are equal, and a same-run baseline: the
day's landing files copied as text lines into a Delta table.

    python benchmarks/publish_exchange.py --records 1000000 --work /tmp/pbx
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HEALTHLAKE_HMAC_KEY", "benchmark-only-key-0123456789abcdef")

from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from healthlake import (
    catalog,
    io,  # noqa: E402
)
from healthlake.config import load_config  # noqa: E402
from healthlake.pipelines import conform, ingest, link, publish  # noqa: E402
from healthlake.spark import get_spark  # noqa: E402
from healthlake.synth import generate_region  # noqa: E402

RECORDS_PER_PERSON_DAY = 1.9  # as benchmarks/conform.py sizes its regions


def _timed(label: str, fn, *args, **kwargs):  # noqa: ANN001, ANN202  (a benchmark helper)
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    seconds = time.perf_counter() - started
    print(f"{label:>34}: {seconds:7.1f} s", flush=True)
    return out, seconds


def _comparable(df: DataFrame) -> DataFrame:
    """The exchange table with its map as sorted JSON, so that two copies can be compared row by row."""
    rules = F.to_json(F.map_from_entries(F.array_sort(F.map_entries("quarantined_by_rule"))))
    return df.withColumn("quarantined_by_rule", rules)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000, help="region size in landing records")
    parser.add_argument("--days", type=int, default=7, help="days generated (the last full one is held back)")
    parser.add_argument("--work", required=True, help="work folder (emptied first)")
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    landing, held, lake = work / "landing", work / "held", work / "lake"
    spark = get_spark("bench-publish-exchange", load_config(overrides={"lake_root": str(lake)}))
    spark.sparkContext.setLogLevel("ERROR")
    people = max(100, round(args.records / (RECORDS_PER_PERSON_DAY * args.days)))
    settings = load_config(overrides={"synth": {"people": people, "days": args.days}}).synth
    _timed("generate", generate_region, spark, settings, str(landing), str(work / "truth"))
    # The next day's delivery: the last landing day with at least half the folders of the busiest one
    # (the days after it hold only late stragglers, which go with it), every feed but the reference one.
    folders = [d for d in landing.glob("*/*/*") if d.is_dir() and d.parts[-3] != "reference"]
    per_day = Counter(d.name for d in folders)
    last = max(day for day, n in per_day.items() if n >= max(per_day.values()) / 2)
    day_files = [d for d in folders if d.name >= last]
    for d in day_files:
        target = held / d.relative_to(landing)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(d), str(target))
    # The incremental path whatever the lake size: it is what the benchmark measures.
    cfg = load_config(
        overrides={"landing_root": str(landing), "lake_root": str(lake), "publish.incremental_min_rows": 0}
    )
    print(f"\nregion of {people:,} people, {args.days} days; day {last} held back ({len(day_files)} folders)")
    _timed("ingest (days before)", ingest.run, spark, cfg)
    _timed("conform (days before)", conform.run, spark, cfg)
    _timed("link (days before)", link.run, spark, cfg)
    first, _ = _timed("publish full (days before)", publish.run, spark, cfg)
    print(f"{'steps':>34}: {first.steps}")
    for d in day_files:
        shutil.move(str(held / d.relative_to(landing)), str(d))
    bronze_before = sum(
        io.read_table(spark, str(lake), t).count()
        for t in publish.BRONZE_DATA
        if io.is_table(spark, str(lake), t)
    )
    _timed("ingest (the day)", ingest.run, spark, cfg)
    _timed("conform (the day)", conform.run, spark, cfg)
    _timed("link (the day)", link.run, spark, cfg)
    bronze_after = sum(
        io.read_table(spark, str(lake), t).count()
        for t in publish.BRONZE_DATA
        if io.is_table(spark, str(lake), t)
    )
    full_lake = work / "lake_full"
    shutil.copytree(lake, full_lake)
    daily, daily_s = _timed("publish incremental (the day)", publish.run, spark, cfg)
    print(f"{'steps':>34}: {daily.steps}")
    full_cfg = load_config(overrides={"landing_root": str(landing), "lake_root": str(full_lake)})
    rebuilt, rebuilt_s = _timed(
        "publish --full (the day)", publish.run, spark, full_cfg, full=True, extracts=False
    )
    print(f"{'steps':>34}: {rebuilt.steps}")
    paths = [str(p) for d in day_files for p in d.rglob("*") if p.is_file()]
    copy = spark.read.text(paths)
    copy.write.format("delta").mode("overwrite").save(str(work / "warm"))  # warm-up
    started = time.perf_counter()
    copy.write.format("delta").mode("overwrite").save(str(work / "copy"))
    copy_s = time.perf_counter() - started
    a, b = (
        _comparable(io.read_table(spark, str(x), catalog.GOLD_EXCHANGE_VOLUME)) for x in (lake, full_lake)
    )
    differ = a.exceptAll(b).count() + b.exceptAll(a).count()
    print(
        f"\nday: {bronze_after - bronze_before:,} new bronze records in {len(paths):,} files "
        f"(lake {bronze_after:,}); baseline copy of its text {copy_s:.1f} s"
    )
    print(
        f"exchange step: incremental {daily.steps.get('exchange', 0):.1f} s, "
        f"full {rebuilt.steps.get('exchange', 0):.1f} s; publish {daily_s:.1f} s against {rebuilt_s:.1f} s; "
        f"gold.exchange_volume_daily rows differing: {differ} of {b.count():,}"
    )
    print(f"machine: {os.cpu_count()} cores, Spark {spark.version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
