"""Benchmark the test suite's session settings: a small conform, cold then warm, per setting set.

The suite runs hundreds of small ingests and conforms in one long-lived JVM per worker, so what counts
is the warm cost of a small batch. Each set gets its own process (a fresh JVM): one CSV visit file
ingested and conformed (cold), then ``--batches`` more days of a visit and a health-record file, each
ingested and conformed (warm), with the Py4J round trips of each warm conform counted. Baseline in the
same run: the first set. ``--busy N`` keeps N other processes spinning meanwhile, as the suite's other
worker keeps a core busy.

    HEALTHLAKE_HMAC_KEY=... python benchmarks/test_session.py
    python benchmarks/test_session.py --sets c1-serial c2-parallel --batches 6
    python benchmarks/test_session.py --sets call-sites c2-parallel --busy 1
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

from healthlake.spark import DATAFRAME_DEBUGGING_KEY  # noqa: E402 - after the path

log = logging.getLogger("benchmarks.test_session")

JVM = "spark.driver.extraJavaOptions"
C2_PARALLEL = "-XX:+UseParallelGC -XX:ReservedCodeCacheSize=512m"  # TEST_CONF since session 29
SETTING_SETS: dict[str, dict[str, str]] = {
    # Until session 29:
    "c1-serial": {JVM: "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:ReservedCodeCacheSize=512m"},
    "c1-parallel": {JVM: "-XX:TieredStopAtLevel=1 -XX:+UseParallelGC -XX:ReservedCodeCacheSize=512m"},
    "c2-g1": {JVM: "-XX:ReservedCodeCacheSize=512m"},  # the JVM's own JIT and collector
    # Until session 39: PySpark sends every Column call's Python call site to the JVM (its default).
    "call-sites": {JVM: C2_PARALLEL, DATAFRAME_DEBUGGING_KEY: "true"},
    "c2-parallel": {JVM: C2_PARALLEL},  # TEST_CONF now
}


def _one_process(settings: dict[str, str], batches: int) -> dict[str, object]:
    """Run the cold and warm conforms in this process with ``settings`` on top of the test session's."""
    from healthlake.config import load_config
    from healthlake.pipelines import conform, ingest
    from healthlake.spark import get_test_spark
    from tests.silver.test_conform import _csv_facts, _land
    from tests.test_spark import counting_py4j_round_trips

    root = Path(tempfile.mkdtemp(prefix="hl-test-session-"))
    with counting_py4j_round_trips() as trips:
        try:
            spark = get_test_spark(root / "spark", settings)
            records, visits = _csv_facts()
            _land(root, "csv", "HC", "2026-01-05", "visits_20260105.csv", visits)
            cfg = load_config(
                overrides={"landing_root": str(root / "landing"), "lake_root": str(root / "lake")}
            )
            started = time.perf_counter()
            ingest.run(spark, cfg)
            conform.run(spark, cfg)
            cold = time.perf_counter() - started
            warm, warm_trips = [], []
            for day in range(6, 6 + batches):
                date = f"2026-01-{day:02d}"
                _land(
                    root, "csv", "HC", date, f"visits_202601{day:02d}.csv", visits.replace("2026-01-05", date)
                )
                _land(root, "csv", "HC", date, f"health_records_202601{day:02d}.csv", records)
                ingest.run(spark, cfg)
                started, before = time.perf_counter(), trips[0]
                conform.run(spark, cfg)
                warm.append(time.perf_counter() - started)
                warm_trips.append(trips[0] - before)
            return {"settings": settings, "cold_s": cold, "warm_s": warm, "warm_trips": warm_trips}
        finally:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sets",
        nargs="+",
        choices=list(SETTING_SETS),
        default=list(SETTING_SETS),
        help="setting sets",
    )
    parser.add_argument("--batches", type=int, default=4, help="warm conforms per set")
    parser.add_argument("--busy", type=int, default=0, help="other processes kept spinning meanwhile")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HEALTHLAKE_HMAC_KEY", "benchmark-only-key-0123456789abcdef")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.child is not None:
        result = _one_process(json.loads(args.child), args.batches)
        print(json.dumps(result))  # noqa: T201 - read by the parent
        return
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        for name in args.sets:
            child = [f"--child={json.dumps(SETTING_SETS[name])}", "--batches", str(args.batches)]
            out = subprocess.run(
                [sys.executable, __file__, *child], capture_output=True, text=True, check=True
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            warm = result["warm_s"]
            log.info(
                "%-12s busy %d  cold %5.1f s  warm median %5.1f s  (%s)  Py4J round trips a warm conform %s",
                name,
                args.busy,
                result["cold_s"],
                statistics.median(warm),
                ", ".join(f"{w:.1f}" for w in warm),
                f"{statistics.median(result['warm_trips']):,.0f}",
            )
    finally:
        for spinner in spinners:
            spinner.kill()


if __name__ == "__main__":
    main()
