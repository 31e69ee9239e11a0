"""Benchmark the test suite's session settings: a small conform, cold then warm, per JVM option set.

The suite runs hundreds of small ingests and conforms in one long-lived JVM per worker, so what counts
is the warm cost of a small batch. Each option set gets its own process (a fresh JVM): one CSV visit
file ingested and conformed (cold), then ``--batches`` more days of a visit and a health-record file,
each ingested and conformed (warm). Baseline in the same run: the first option set.

    HEALTHLAKE_HMAC_KEY=... python benchmarks/test_session.py
    python benchmarks/test_session.py --sets c1-serial c2-parallel --batches 6
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("benchmarks.test_session")

OPTION_SETS = {
    # Until session 29:
    "c1-serial": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:ReservedCodeCacheSize=512m",
    "c1-parallel": "-XX:TieredStopAtLevel=1 -XX:+UseParallelGC -XX:ReservedCodeCacheSize=512m",
    "c2-g1": "-XX:ReservedCodeCacheSize=512m",  # the JVM's own JIT and collector
    "c2-parallel": "-XX:+UseParallelGC -XX:ReservedCodeCacheSize=512m",  # TEST_CONF since session 29
}


def _one_process(options: str, batches: int) -> dict[str, object]:
    """Run the cold and warm conforms in this process with ``options`` as the driver's JVM options."""
    from healthlake.config import load_config
    from healthlake.pipelines import conform, ingest
    from healthlake.spark import get_test_spark
    from tests.silver.test_conform import _csv_facts, _land

    root = Path(tempfile.mkdtemp(prefix="hl-test-session-"))
    try:
        spark = get_test_spark(root / "spark", {"spark.driver.extraJavaOptions": options})
        records, visits = _csv_facts()
        _land(root, "csv", "HC", "2026-01-05", "visits_20260105.csv", visits)
        cfg = load_config(overrides={"landing_root": str(root / "landing"), "lake_root": str(root / "lake")})
        started = time.perf_counter()
        ingest.run(spark, cfg)
        conform.run(spark, cfg)
        cold = time.perf_counter() - started
        warm = []
        for day in range(6, 6 + batches):
            date = f"2026-01-{day:02d}"
            _land(root, "csv", "HC", date, f"visits_202601{day:02d}.csv", visits.replace("2026-01-05", date))
            _land(root, "csv", "HC", date, f"health_records_202601{day:02d}.csv", records)
            ingest.run(spark, cfg)
            started = time.perf_counter()
            conform.run(spark, cfg)
            warm.append(time.perf_counter() - started)
        return {"options": options, "cold_s": cold, "warm_s": warm}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sets",
        nargs="+",
        choices=list(OPTION_SETS),
        default=list(OPTION_SETS),
        help="option sets",
    )
    parser.add_argument("--batches", type=int, default=4, help="warm conforms per option set")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HEALTHLAKE_HMAC_KEY", "benchmark-only-key-0123456789abcdef")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.child is not None:
        print(json.dumps(_one_process(args.child, args.batches)))  # noqa: T201 - read by the parent
        return
    for name in args.sets:
        out = (
            subprocess.run(
                [sys.executable, __file__, f"--child={OPTION_SETS[name]}", "--batches", str(args.batches)],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        result = json.loads(out)
        warm = result["warm_s"]
        log.info(
            "%-12s %-70s cold %5.1f s  warm median %5.1f s  (%s)",
            name,
            result["options"],
            result["cold_s"],
            statistics.median(warm),
            ", ".join(f"{w:.1f}" for w in warm),
        )


if __name__ == "__main__":
    main()
