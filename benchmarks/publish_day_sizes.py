"""Benchmark incremental ``healthlake publish`` against the size of the day it publishes.

Takes the lake a ``benchmarks/publish.py --work DIR`` run left behind. For each ``--sizes`` entry, the
script copies that lake, adds one more benchmark day of that many silver event rows, and publishes it
incrementally. All runs share one JVM. The first run is a warm-up on a day of the first size and is not
reported, so every reported run sees the same lake and a warm JVM.

    python benchmarks/publish.py --persons 2000000 --day-records 200000 --checkpoints 1,5,10 --work /tmp/pb2n
    python benchmarks/publish_day_sizes.py --work /tmp/pb2n --persons 2000000 --sizes 20000,200000,1000000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HEALTHLAKE_HMAC_KEY", "benchmark-only-key-0123456789abcdef")

import publish as bench  # noqa: E402  (benchmarks/publish.py: its day generator)
from pyspark.sql import functions as F  # noqa: E402

from healthlake import io  # noqa: E402
from healthlake.config import load_config  # noqa: E402
from healthlake.pipelines import publish  # noqa: E402
from healthlake.spark import get_spark  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", required=True, help="work folder of a benchmarks/publish.py run")
    parser.add_argument("--persons", type=int, required=True, help="the --persons of that run")
    parser.add_argument("--sizes", default="20000,200000,1000000", help="day sizes (silver event rows)")
    args = parser.parse_args()
    source = Path(args.work) / "lake"
    if not (source / "gold").is_dir():
        parser.error(f"no published lake at {source}: run benchmarks/publish.py --work {args.work} first")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    spark = get_spark("publish-day-sizes", load_config(overrides={"lake_root": str(source)}))
    encounters = io.read_table(spark, str(source), "silver.encounter")
    last = encounters.select(F.max(F.to_date("admit_time"))).first()[0]  # one aggregate row
    day = (last - bench.START).days + 2  # the benchmark's day n starts at START + n - 1
    register = io.read_table(spark, str(source), "silver.institution").select("institution_id")
    ids = [r[0] for r in register.collect()]  # ~300 rows of master data
    print(f"\nlake {source}: {args.persons:,} persons, next day {day}, {os.cpu_count()} cores")
    print(f"{'day rows':>10}{'seconds':>9}  steps")
    for i, size in enumerate([sizes[0], *sizes]):
        lake = Path(args.work) / f"day_size_{i}"
        shutil.rmtree(lake, ignore_errors=True)
        shutil.copytree(source, lake)
        cfg = load_config(overrides={"lake_root": str(lake), "publish.incremental_min_rows": 0})
        frames = bench._day(spark, day, size, args.persons, ids)
        added = sum(bench._append(spark, str(lake), name, df) for name, df in frames.items())
        result = publish.run(spark, cfg)
        steps = ", ".join(f"{k} {v:.1f}" for k, v in result.steps.items())
        label = "(warm-up)" if i == 0 else ""
        print(f"{added:>10,}{result.seconds:>9.1f}  {steps} {label}", flush=True)
        shutil.rmtree(lake, ignore_errors=True)


if __name__ == "__main__":
    main()
