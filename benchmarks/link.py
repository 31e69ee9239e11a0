"""Benchmark ``healthlake link`` at scale: a full link of N source patients, then an incremental day.

Synthetic source patients (``healthlake.synth.patients``: each resident keyed at 1–3 institutions, later
copies with a keying error) are written straight to silver.patient_record and vault.identity. Then:

1. a full run (model trained, every record linked);
2. an incremental run over a new day of ``--day-records`` records (known residents seen again and new
   ones) against the linked ones, in this process, and the same day again with ``healthlake link`` in a
   new process on a copy of the lake (JVM start and cold code included, as a scheduled job runs it).

Baseline in the same run: silver.patient_record copied unchanged to a new Delta table. The Spark session is
the one ``healthlake link`` builds from ``conf/local.yaml`` (before 2026-11-27 the benchmark used the test
suite's session: 2 shuffle partitions, adaptive execution off). Pairwise precision
and recall of the full run against the synthetic truth are printed too.

    python benchmarks/link.py --records 100000 --day-records 5000
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from healthlake import catalog, io  # noqa: E402
from healthlake.config import load_config  # noqa: E402
from healthlake.pipelines import link  # noqa: E402
from healthlake.spark import get_spark  # noqa: E402
from healthlake.synth.patients import patient_records, synthetic_people, write_patient_silver  # noqa: E402

COPIES = (1, 2, 2, 3)  # two records per resident on average


def _pairs(df: DataFrame, by: str) -> DataFrame:
    keyed = df.select(F.concat_ws("|", "institution_id", "source_patient_id").alias("id"), by)
    left, right = keyed.alias("l"), keyed.alias("r")
    return left.join(right, (F.col(f"l.{by}") == F.col(f"r.{by}")) & (F.col("l.id") < F.col("r.id"))).select(
        F.col("l.id").alias("id_l"), F.col("r.id").alias("id_r")
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000, help="source patient records of day 1")
    parser.add_argument("--day-records", type=int, default=5_000, help="records of the incremental day")
    parser.add_argument("--work", help="work folder (default: a temporary one, removed afterwards)")
    parser.add_argument("--in-process-part", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HEALTHLAKE_HMAC_KEY", "benchmark-only-key-0123456789abcdef")
    if not args.in_process_part:
        _run_both_parts(args)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("py4j", "splink"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    work = Path(args.work or tempfile.mkdtemp(prefix="healthlake-link-bench-"))
    # The session `healthlake link` builds from conf/local.yaml (adaptive execution, 8 shuffle
    # partitions), with more driver memory for a million records in local mode.
    cfg = load_config(
        overrides={"lake_root": str(work / "lake"), "spark": {"conf": {"spark.driver.memory": "8g"}}}
    )
    spark = get_spark("link-benchmark", cfg)
    Path(cfg.lake_root).mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    people = synthetic_people(int(args.records / 2), seed=1, prefix="p")
    day1 = patient_records(people, seed=2, day=dt.date(2026, 3, 2), copies=COPIES)
    write_patient_silver(spark, cfg.lake_root, day1)
    truth = spark.createDataFrame(
        [(r["institution_id"], r["source_patient_id"], r["person"]) for r in day1],
        "institution_id string, source_patient_id string, person string",
    )
    setup = time.perf_counter() - started

    copy_started = time.perf_counter()
    io.read_table(spark, cfg.lake_root, catalog.SILVER_PATIENT_RECORD).write.format("delta").save(
        str(work / "copy")
    )
    copy = time.perf_counter() - copy_started

    full = link.run(spark, cfg)
    xref = io.read_table(spark, cfg.lake_root, catalog.SILVER_PERSON_XREF)
    true_pairs, found = _pairs(truth, "person").cache(), _pairs(xref, "person_id").cache()
    tp = found.join(true_pairs, ["id_l", "id_r"]).count()
    precision, recall = tp / max(found.count(), 1), tp / max(true_pairs.count(), 1)

    # Day 2: a tenth of the day's residents are known ones seen again, the rest new residents.
    known = max(1, args.day_records // 10)
    newcomers = synthetic_people(max(1, (args.day_records - 2 * known) // 2), seed=3, prefix="n")
    day2 = patient_records(people[:known], seed=4, day=dt.date(2026, 3, 3), copies=(1, 3)) + patient_records(
        newcomers, seed=5, day=dt.date(2026, 3, 3), copies=COPIES
    )
    write_patient_silver(spark, cfg.lake_root, day2)
    # The same day once more as a scheduled job runs it: `healthlake link` in a new process (JVM start,
    # cold code), on a copy of the lake as it is now.
    shutil.copytree(cfg.lake_root, work / "lake-cli", ignore=shutil.ignore_patterns("_tmp"))
    incremental = link.run(spark, cfg)

    print(f"\nlink benchmark, {len(day1):,} + {len(day2):,} records (setup {setup:.0f}s)")
    print(f"{'run':<12}{'records':>12}{'linked':>10}{'seconds':>10}{'linked/s':>10}{'copy s':>8}{'speed':>8}")
    for name, r in (("full", full), ("incremental", incremental)):
        print(
            f"{name:<12}{r.records:>12,}{r.linked:>10,}{r.seconds:>10.1f}{r.linked / r.seconds:>10,.0f}"
            f"{copy:>8.1f}{copy / r.seconds:>8.3f}"
        )
    print(f"full run against the truth: pairwise precision {precision:.4f}, recall {recall:.4f}")
    print(
        f"persons {incremental.persons:,}, created on day 2 {incremental.created:,}, "
        f"merged {incremental.merged}"
    )


def _run_both_parts(args: argparse.Namespace) -> None:
    """The in-process part in a child process, then ``healthlake link`` on the copy of the lake.

    Neither runs beside the other: this process holds no Spark session and no records, so the
    scheduled-job figure is not slowed by the first part's JVM and data sharing the machine.
    """
    work = Path(args.work or tempfile.mkdtemp(prefix="healthlake-link-bench-"))
    part = [sys.executable, __file__, "--in-process-part", "--work", str(work)]
    part += ["--records", str(args.records), "--day-records", str(args.day_records)]
    subprocess.run(part, check=True)
    cli_started = time.perf_counter()
    cli = subprocess.run(
        [sys.executable, "-m", "healthlake.cli", "link", "--lake", str(work / "lake-cli")],
        capture_output=True,
        text=True,
        check=False,
    )
    cli_seconds = time.perf_counter() - cli_started
    summary = cli.stdout.strip().splitlines()[-1] if cli.returncode == 0 else cli.stderr.strip()[-300:]
    print(f"incremental as `healthlake link` in a new process: {cli_seconds:.1f} s, exit {cli.returncode}")
    print(f"  {summary}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
