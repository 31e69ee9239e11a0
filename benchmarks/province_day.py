"""Benchmark the whole path, landing → gold, as a scheduler runs it: a province-day's cost (issue 33).

1. **A region of N records.** ``healthlake generate`` with ``--people`` = N ÷ (``RECORDS_PER_PERSON_DAY``
   × ``--days``), in its own process (not timed).
2. **The path.** Each stage of ``healthlake run`` (``--stages``; ingest, conform, link, publish by default)
   as its own command, one after the other on one lake, the way a scheduler runs them (each pays its JVM
   start). Per stage: wall seconds, records/s and records/s/core (records: the bronze rows the region gave,
   the same figure for every stage, so that the stages add up), and the peak memory of the command's
   process tree (the JVM, Python and its workers; sampled every 0.25 s).
3. **Yardsticks**, in one Spark session afterwards, each what a user would write instead:
   * ingest: Spark's own reader of every feed's files into Delta: the CSV reader with a header for the
     CSV-shaped feeds, ``spark.read.json`` for FHIR (one bundle a file: ``multiLine``), ``spark.read.text``
     for HL7; no provenance, quarantine or exactly-once;
   * conform: a plain typed projection of each bronze table into the silver columns: conform's own
     parsers (parse, cast), written to Delta, without rules, tokens, duplicates, MERGE or reconciliation;
   * the whole path: the sum of the two (link and publish have no yardstick: nothing simpler does what
     they do).

    python benchmarks/province_day.py --records 1000000 --work /tmp/pd1m
    python benchmarks/province_day.py --records 10000000 --work /tmp/pd10m

``--keep`` reuses the landing zone in ``--work`` when it is there (the lake is always new).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402
from generate import PeakMemory  # noqa: E402  (benchmarks/generate.py)

BENCH_KEY = "benchmark-only-key-0123456789abcdef"
RECORDS_PER_PERSON_DAY = 20.5
"""Landing records a resident gives a day on the generator's defaults, measured 2026-12-07: 10,769,479
records from 75,188 people over 7 days, 98 % of them location pings (the tracked phones' sampled paths since
issue 31; the 1.9 the older benchmarks size regions with predates them)."""
DEFAULT_STAGES = ("ingest", "conform", "link", "publish")
CSV_SHAPED = ("csv", "location", "public_health", "reference")


def _healthlake() -> str:
    """The ``healthlake`` command of the Python running this script."""
    return str(Path(sys.executable).with_name("healthlake"))


def _run(command: list[str], log: Path) -> tuple[float, int]:
    """Run ``command`` (output to ``log``); its wall seconds and the peak RSS of its process tree."""
    env = {**os.environ, "HEALTHLAKE_HMAC_KEY": os.environ.get("HEALTHLAKE_HMAC_KEY", BENCH_KEY)}
    with PeakMemory() as peak, log.open("w") as out:
        started = time.monotonic()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
        seconds = time.monotonic() - started
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise SystemExit(
            f"{' '.join(command[:2])} failed ({done.returncode}); see {log}:\n" + "\n".join(tail)
        )
    return seconds, peak.peak


def _ingest_yardstick(spark, landing: Path, out: Path) -> tuple[int, float]:
    """Spark's own readers of every feed into Delta: rows written and seconds."""
    started = time.monotonic()
    for feed in sorted(p.name for p in landing.iterdir() if p.is_dir()):
        files = str(landing / feed / "*" / "*" / "*")
        if feed in CSV_SHAPED:
            df = spark.read.option("header", True).csv(files)
        elif feed == "fhir":
            df = spark.read.option("multiLine", True).json(files)
        else:
            df = spark.read.text(files)
        df.write.format("delta").mode("overwrite").save(str(out / feed))
    seconds = time.monotonic() - started
    rows = sum(spark.read.format("delta").load(str(p)).count() for p in out.iterdir())
    return rows, seconds


def _conform_yardstick(spark, cfg, out: Path) -> tuple[int, float]:
    """Each bronze table through conform's own parsers (and standardisation) into Delta, nothing else."""
    from healthlake import io
    from healthlake.pipelines import conform

    started = time.monotonic()
    tables = []
    for entity in conform.entities(cfg):
        for bronze, parse in entity.parsers.items():
            if not io.is_table(spark, cfg.lake_root, bronze):
                continue
            latest = io.latest_version(spark, cfg.lake_root, bronze)
            rows = (
                io.read_changes(spark, cfg.lake_root, bronze, 0, latest)
                .drop("_change_type", "_commit_timestamp")
                .transform(conform._PREPARE.get(bronze, lambda df: df))  # noqa: SLF001
            )
            parsed = rows.transform(parse)
            if entity.standardize is not None:
                parsed = parsed.transform(entity.standardize)
            target = out / f"{entity.table}-{bronze}"
            parsed.write.format("delta").mode("overwrite").save(str(target))
            tables.append(target)
    seconds = time.monotonic() - started
    return sum(spark.read.format("delta").load(str(t)).count() for t in tables), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records the region should give")
    parser.add_argument("--days", type=int, default=7, help="days the records span")
    parser.add_argument("--seed", type=int, default=33)
    parser.add_argument("--stages", default=",".join(DEFAULT_STAGES), help="stages, in order")
    parser.add_argument("--work", required=True, help="work folder (landing, truth, lake, logs)")
    parser.add_argument("--keep", action="store_true", help="reuse the landing zone in --work")
    parser.add_argument("--no-yardsticks", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HEALTHLAKE_HMAC_KEY", BENCH_KEY)
    work = Path(args.work)
    landing, truth, lake, logs = work / "landing", work / "truth", work / "lake", work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    people = round(args.records / (RECORDS_PER_PERSON_DAY * args.days))
    cores = os.cpu_count() or 1
    memory = psutil.virtual_memory().total / 2**30
    print(
        f"machine: {cores} cores, {memory:.0f} GiB, {platform.platform()}, Python {platform.python_version()}"
    )
    if not (args.keep and landing.is_dir()):
        shutil.rmtree(landing, ignore_errors=True)
        shutil.rmtree(truth, ignore_errors=True)
        command = [_healthlake(), "generate", "--landing", str(landing), "--truth", str(truth)]
        command += ["--people", str(people), "--days", str(args.days), "--seed", str(args.seed)]
        seconds, _ = _run(command, logs / "generate.log")
        print(f"region: {people:,} people, {args.days} days, generated in {seconds:.0f} s")
    shutil.rmtree(lake, ignore_errors=True)

    stages = [s for s in args.stages.split(",") if s]
    figures: list[tuple[str, float, int]] = []
    for stage in stages:
        command = [_healthlake(), stage, "--lake", str(lake)]
        if stage == "ingest":
            command += ["--landing", str(landing)]
        seconds, peak = _run(command, logs / f"{stage}.log")
        figures.append((stage, seconds, peak))
        print(f"{stage}: {seconds:.1f} s, peak {peak / 2**30:.1f} GiB", flush=True)

    from healthlake import io
    from healthlake.catalog import BRONZE_RECORDS
    from healthlake.config import load_config
    from healthlake.spark import get_spark

    cfg = load_config(overrides={"lake_root": str(lake), "landing_root": str(landing)})
    spark = get_spark("benchmark-province-day", cfg)
    bronze = [t for t in BRONZE_RECORDS if io.is_table(spark, str(lake), t)]
    records = sum(io.read_table(spark, str(lake), t).count() for t in bronze)
    yardsticks: dict[str, float] = {}
    if not args.no_yardsticks:
        yard = work / "yardsticks"
        shutil.rmtree(yard, ignore_errors=True)
        rows, yardsticks["ingest"] = _ingest_yardstick(spark, landing, yard / "ingest")
        print(f"ingest yardstick: {rows:,} rows in {yardsticks['ingest']:.1f} s", flush=True)
        rows, yardsticks["conform"] = _conform_yardstick(spark, cfg, yard / "conform")
        print(f"conform yardstick: {rows:,} rows in {yardsticks['conform']:.1f} s", flush=True)
        shutil.rmtree(yard, ignore_errors=True)
    spark.stop()

    print()
    print(f"records (bronze rows): {records:,}; {people:,} people, {args.days} days; {cores} cores")
    print("| stage | seconds | records/s | records/s/core | peak GiB | yardstick s | speed vs yardstick |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for stage, seconds, peak in figures:
        yardstick = yardsticks.get(stage)
        ratio = f"{yardstick / seconds:.2f}" if yardstick else ""
        print(
            f"| {stage} | {seconds:.1f} | {records / seconds:,.0f} | {records / seconds / cores:,.0f} | "
            f"{peak / 2**30:.1f} | {f'{yardstick:.1f}' if yardstick else ''} | {ratio} |"
        )
    total = sum(s for _, s, _ in figures)
    path_yardstick = sum(yardsticks.values())
    print(
        f"| **whole path** | **{total:.1f}** | **{records / total:,.0f}** | {records / total / cores:,.0f} | "
        f"{max(p for *_, p in figures) / 2**30:.1f} | {path_yardstick:.1f} | "
        f"{path_yardstick / total if path_yardstick else float('nan'):.2f} |"
    )
    core_hours = 50_000_000 / (records / total) * cores / 3600
    print(f"a 50 M-record province-day at this rate: {core_hours:.1f} core-hours")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
