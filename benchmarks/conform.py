"""Benchmark ``healthlake conform``: bronze rows/s per bronze table next to a same-run plain copy.

For each target size a region is generated and ingested (or ``--lake`` names an ingested lake, which is
copied first so it stays untouched), then conform runs once over all bronze tables. Baseline in the same
run: each bronze table's rows read and written unchanged as a new Delta table. The 20 Synthea bundles in
``../shared/testdata`` are timed the same way.

    HEALTHLAKE_HMAC_KEY=... python benchmarks/conform.py --records 1000000
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pyspark.sql import functions as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from healthlake import io  # noqa: E402
from healthlake.config import load_config  # noqa: E402
from healthlake.pipelines import conform, ingest  # noqa: E402
from healthlake.privacy.tokens import load_key, tokenizer  # noqa: E402
from healthlake.silver.common import with_bundle_references  # noqa: E402
from healthlake.spark import get_spark  # noqa: E402
from healthlake.synth import generate_region  # noqa: E402

RECORDS_PER_PERSON_DAY = 1.9
SYNTHEA = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "fhir" / "synthea-r4-bundles"


def _copy_table(spark, lake: str, name: str, dest: Path) -> float:
    started = time.perf_counter()
    io.read_table(spark, lake, name).write.format("delta").mode("overwrite").save(str(dest))
    return time.perf_counter() - started


def _parse_only(spark, cfg, out: Path, repeats: int = 3) -> list[tuple[str, int, float, float]]:
    """Time the FHIR parsers alone on a lake's ``bronze.fhir_resources``: parse, write Parquet (no MERGE).

    The figure to set beside another FHIR flattener (``benchmarks/fhir_flattener_pathling.py``): same
    bundles, same three flat tables, no tokens, rules, duplicates or Delta commits. Returns
    ``(table, rows, cold seconds, warm seconds = median of repeats)``.
    """
    tables = {e.table: e for e in conform.entities(cfg)}
    figures = []
    for name in ("silver.encounter", "silver.diagnosis", "silver.observation"):
        entity = tables[name]
        runs = []
        for i in range(repeats + 1):
            started = time.perf_counter()
            latest = io.latest_version(spark, cfg.lake_root, "bronze.fhir_resources")
            bronze = io.read_changes(spark, cfg.lake_root, "bronze.fhir_resources", 0, latest).drop(
                "_change_type", "_commit_timestamp"
            )  # what conform reads: the rows with the version that added them
            parsed = bronze.transform(with_bundle_references).transform(
                entity.parsers["bronze.fhir_resources"]
            )
            if entity.standardize is not None:
                parsed = parsed.transform(entity.standardize)
            parsed.write.mode("overwrite").parquet(str(out / f"{name}-{i}"))
            runs.append(time.perf_counter() - started)
        rows = spark.read.parquet(str(out / f"{name}-0")).count()
        figures.append((name, rows, runs[0], statistics.median(runs[1:])))
    return figures


def _token_rates(spark, n: int = 2_000_000) -> tuple[float, float]:
    """Values/s of the HMAC token pandas UDF and, for reference, of built-in ``sha2`` on the same text."""
    values = spark.range(n).select(F.format_string("1101%014d", "id").alias("v")).cache()
    values.count()
    rates = []
    for column in (tokenizer(load_key(), "resident_id")(F.col("v")), F.sha2(F.col("v"), 256)):
        values.select(column).write.format("noop").mode("overwrite").save()  # warm-up
        started = time.perf_counter()
        values.select(column).write.format("noop").mode("overwrite").save()
        rates.append(n / (time.perf_counter() - started))
    values.unpersist()
    return rates[0], rates[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, nargs="*", default=[1_000_000])
    parser.add_argument("--lake", help="conform a copy of this ingested lake instead of generating one")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--no-synthea", action="store_true", help="skip the Synthea sample")
    args = parser.parse_args()
    os.environ.setdefault("HEALTHLAKE_HMAC_KEY", "benchmark-only-key-0123456789abcdef")
    spark = get_spark("bench-conform", load_config(overrides={"spark": {"master": "local[2]"}}))
    spark.sparkContext.setLogLevel("ERROR")
    cores = spark.sparkContext.defaultParallelism
    work = Path(tempfile.mkdtemp(prefix="hl-bench-conform-"))
    cases: list[tuple[str, Path]] = []
    if args.lake:
        shutil.copytree(args.lake, work / "given" / "lake")
        cases.append(("given", work / "given" / "lake"))
    for target in args.records:
        people = max(100, round(target / (RECORDS_PER_PERSON_DAY * args.days)))
        settings = load_config(overrides={"synth": {"people": people, "days": args.days}}).synth
        base = work / f"r{target}"
        generate_region(spark, settings, str(base / "landing"), str(base / "truth"))
        cfg = load_config(overrides={"landing_root": str(base / "landing"), "lake_root": str(base / "lake")})
        ingest.run(spark, cfg)
        cases.append((f"{target:,}", base / "lake"))
    if SYNTHEA.is_dir() and not args.no_synthea:
        landing = work / "synthea" / "landing"
        shutil.copytree(SYNTHEA, landing / "fhir" / "SYNTHEA" / "2026-01-01")
        cfg = load_config(
            overrides={"landing_root": str(landing), "lake_root": str(work / "synthea" / "lake")}
        )
        ingest.run(spark, cfg)
        cases.append(("synthea-20", work / "synthea" / "lake"))
    rows = []
    for label, lake in cases:
        cfg = load_config(overrides={"lake_root": str(lake)})
        for name in conform.BRONZE_INPUTS:  # warm-up copy, then the baseline
            if io.is_table(spark, str(lake), name):
                _copy_table(spark, str(lake), name, work / "warm" / label / name)
        copies = {
            name: _copy_table(spark, str(lake), name, work / "copy" / label / name)
            for name in conform.BRONZE_INPUTS
            if io.is_table(spark, str(lake), name)
        }
        started = time.perf_counter()
        results = conform.run(spark, cfg)
        total_s = time.perf_counter() - started
        for r in results:
            rows.append((label, r.bronze_table, r.bronze_rows, r.seconds, copies[r.bronze_table], r))
        n = sum(r.bronze_rows for r in results)
        rows.append((label, "one run", n, total_s, sum(copies.values()), None))
    header = (
        "region",
        "bronze table",
        "rows",
        "conform s",
        "rows/s",
        "rows/s/core",
        "copy s",
        "speed",
        "in silver",
        "quar.",
        "dup.",
    )
    out = ["{:>11} {:>22} {:>9} {:>9} {:>8} {:>11} {:>7} {:>6} {:>9} {:>6} {:>6}".format(*header)]
    for label, name, n, seconds, copy_s, r in rows:
        out.append(
            f"{label:>11} {name:>22} {n:>9} {seconds:>9.1f} {n / seconds:>8.0f} {n / seconds / cores:>11.0f} "
            f"{copy_s:>7.1f} {copy_s / seconds:>6.2f} "
            + (f"{r.conformed:>9} {r.quarantined:>6} {r.duplicates:>6}" if r else "")
        )
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
    out = []
    for label, lake in cases:
        if label != "synthea-20":
            continue
        cfg = load_config(overrides={"lake_root": str(lake)})
        out.append("FHIR parsers alone on the Synthea bundles (bronze -> Parquet, no MERGE):")
        for name, n, cold, warm in _parse_only(spark, cfg, work / "parse-only"):
            out.append(
                f"  {name:>20} {n:>6} rows  cold {cold:5.2f} s  warm {warm:5.2f} s ({n / warm:,.0f} rows/s)"
            )
    udf_rate, sha2_rate = _token_rates(spark)
    out.append(f"tokens: HMAC pandas UDF {udf_rate:,.0f} values/s; built-in sha2 {sha2_rate:,.0f} values/s")
    out.append(f"machine: {cores} cores (local[{cores}]), Spark {spark.version}")
    out.append("speed = copy seconds / conform seconds (copy: the bronze table read and written unchanged)")
    sys.stdout.write("\n".join(out) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
