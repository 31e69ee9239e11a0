"""Benchmark ``healthlake ingest``: records/s per feed next to a same-run raw copy of the same files.

For each target size a region is generated (or ``--landing`` is used), then each feed is ingested on its
own into a fresh lake, and the same files are copied with ``spark.read.text(...)`` → Delta (the
baseline: the least any ingest must do). A warm-up copy runs first so JIT compilation is not billed to
the first measurement. The 20 Synthea bundles in ``../shared/testdata`` are timed the same way. For
where the time goes, each feed's files are also read and parsed with no write (``parse s``). For the
CSV-shaped feeds a second yardstick is timed on the same files: Spark's own CSV reader (header, every
column a string, no provenance, no checks) → Delta (``csv s``): what parsing alone costs Spark itself.
And every feed's files are copied once more with the provenance columns bronze rows carry (``prov s``:
text lines plus source file, institution, landing day, feed, batch and time; no record offset, no
parse, no checks): what carrying provenance alone costs.

    python benchmarks/ingest.py --records 1000000 10000000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyspark.sql import functions as F  # noqa: E402

from healthlake.bronze.common import landing_batch  # noqa: E402
from healthlake.config import load_config  # noqa: E402
from healthlake.pipelines import ingest  # noqa: E402
from healthlake.spark import get_spark  # noqa: E402
from healthlake.synth import generate_region  # noqa: E402

RECORDS_PER_PERSON_DAY = 1.9
SYNTHEA = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "fhir" / "synthea-r4-bundles"


def _copy_text(spark, src: str, dest: Path) -> tuple[int, float]:
    started = time.perf_counter()
    df = spark.read.text(src)
    df.write.format("delta").mode("overwrite").save(str(dest))
    seconds = time.perf_counter() - started
    return spark.read.format("delta").load(str(dest)).count(), seconds


# Feeds whose files are CSV with a header line, which Spark's own CSV reader can take as they are.
CSV_SHAPED = ("csv", "location", "public_health", "reference")


def _copy_with_provenance(spark, src: str, dest: Path, feed: str) -> float:
    """Seconds for the text → Delta copy with bronze's per-file provenance columns added to each line."""
    started = time.perf_counter()
    path = F.col("_metadata.file_path")
    parts = F.split(path, "/")
    spark.read.text(src).select(
        "value",
        F.lit(feed).alias("_source_feed"),
        F.element_at(parts, -3).alias("_institution_id"),
        path.alias("_source_file"),
        F.lit("bench").alias("_batch_id"),
        F.current_timestamp().alias("_ingested_at"),
        F.element_at(parts, -2).alias("_landing_day"),
    ).write.format("delta").mode("overwrite").save(str(dest))
    return time.perf_counter() - started


def _copy_csv(spark, src: str, dest: Path) -> float:
    """Seconds for Spark's CSV reader → Delta: header line, all columns strings, nothing else."""
    started = time.perf_counter()
    spark.read.option("header", True).csv(src).write.format("delta").mode("overwrite").save(str(dest))
    return time.perf_counter() - started


def _ingest(spark, landing: Path, lake: Path, feed: str) -> tuple[int, int, float]:
    cfg = load_config(overrides={"landing_root": str(landing), "lake_root": str(lake)})
    started = time.perf_counter()
    (result,) = ingest.run(spark, cfg, only=[feed])
    return result.records, result.quarantined, time.perf_counter() - started


def _parse_only(spark, landing: Path, feed: str) -> float:
    """Seconds to read and parse a feed's files with no write (Spark's no-op sink): the parse's share."""
    cfg = load_config(overrides={"landing_root": str(landing)})
    (spec,) = [f for f in ingest.feeds(cfg) if f.name == feed]
    landed = spark.read.format("binaryFile").load(str(landing / feed / "*" / "*" / "*"))
    files = landing_batch(landed, "bench")
    started = time.perf_counter()
    spec.parse(files).write.format("noop").mode("overwrite").save()
    return time.perf_counter() - started


def _row(
    label: str,
    feed: str,
    n: int,
    ingest_s: float,
    lines: int,
    copy_s: float,
    cores: int,
    parse_s: float,
    prov_s: float = float("nan"),
    csv_s: float = float("nan"),
) -> tuple:
    return (
        label,
        feed,
        n,
        ingest_s,
        parse_s,
        n / ingest_s,
        n / ingest_s / cores,
        lines,
        copy_s,
        lines / copy_s,
        copy_s / ingest_s,
        prov_s,
        copy_s / prov_s,
        csv_s,
        copy_s / csv_s,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, nargs="*", default=[1_000_000])
    parser.add_argument("--landing", help="ingest this landing zone instead of generating one")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--one-run-only", action="store_true", help="skip the per-feed runs (large regions)")
    parser.add_argument("--no-synthea", action="store_true", help="skip the Synthea sample")
    parser.add_argument("--feeds", nargs="*", help="time only these feeds (default: every feed folder)")
    args = parser.parse_args()
    spark = get_spark("bench-ingest", load_config(overrides={"spark": {"master": "local[2]"}}))
    spark.sparkContext.setLogLevel("ERROR")
    cores = spark.sparkContext.defaultParallelism
    work = Path(tempfile.mkdtemp(prefix="hl-bench-ingest-"))
    rows = []
    cases: list[tuple[str, Path]] = []
    if args.landing:
        cases.append(("given", Path(args.landing)))
    for target in args.records:
        people = max(100, round(target / (RECORDS_PER_PERSON_DAY * args.days)))
        settings = load_config(overrides={"synth": {"people": people, "days": args.days}}).synth
        landing = work / f"r{target}" / "landing"
        generate_region(spark, settings, str(landing), str(work / f"r{target}" / "truth"))
        cases.append((f"{target:,}", landing))
    if SYNTHEA.is_dir() and not args.no_synthea:
        landing = work / "synthea" / "landing"
        shutil.copytree(SYNTHEA, landing / "fhir" / "SYNTHEA" / "2026-01-01")
        cases.append(("synthea-20", landing))
    _copy_text(spark, str(cases[0][1] / "*" / "*" / "*" / "*"), work / "warmup")  # JIT warm-up
    for label, landing in cases:
        totals = [0, 0.0, 0, 0.0, 0.0]
        names = sorted(p.name for p in landing.iterdir() if p.is_dir())
        for feed in [] if args.one_run_only else [n for n in names if not args.feeds or n in args.feeds]:
            src = str(landing / feed / "*" / "*" / "*")
            lines, copy_s = _copy_text(spark, src, work / "copy" / label / feed)
            records, quarantined, ingest_s = _ingest(spark, landing, work / "lake" / label / feed, feed)
            parse_s = _parse_only(spark, landing, feed)
            prov_s = _copy_with_provenance(spark, src, work / "prov" / label / feed, feed)
            csv_s = _copy_csv(spark, src, work / "csv" / label / feed) if feed in CSV_SHAPED else float("nan")
            n = records + quarantined
            rows.append(_row(label, feed, n, ingest_s, lines, copy_s, cores, parse_s, prov_s, csv_s))
            totals = [
                totals[0] + records + quarantined,
                totals[1] + ingest_s,
                totals[2] + lines,
                totals[3] + copy_s,
                totals[4] + parse_s,
            ]
        if not args.one_run_only:
            rows.append(_row(label, "sum of feeds", *totals[:4], cores, totals[4]))
        # What a user runs: one `healthlake ingest` over the whole landing zone, feeds side by side.
        lines, copy_s = _copy_text(spark, str(landing / "*" / "*" / "*" / "*"), work / "copy" / label / "all")
        cfg = load_config(
            overrides={"landing_root": str(landing), "lake_root": str(work / "lake" / label / "all")}
        )
        started = time.perf_counter()
        results = ingest.run(spark, cfg)
        ingest_s = time.perf_counter() - started
        n = sum(r.records + r.quarantined for r in results)
        rows.append(_row(label, "one run", n, ingest_s, lines, copy_s, cores, float("nan")))
    header = (
        "region",
        "feed",
        "records",
        "ingest s",
        "parse s",
        "rec/s",
        "rec/s/core",
        "lines",
        "copy s",
        "lines/s",
        "speed",
        "prov s",
        "prov speed",
        "csv s",
        "csv speed",
    )
    widths = (11, 13, 10, 9, 8, 9, 10, 10, 7, 9, 6, 6, 10, 6, 9)
    out = [" ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True))]
    fmt = (
        "{:>11} {:>13} {:>10} {:>9.1f} {:>8.1f} {:>9.0f} {:>10.0f} {:>10} {:>7.1f} {:>9.0f} {:>6.2f}"
        " {:>6.1f} {:>10.2f} {:>6.1f} {:>9.2f}"
    )
    out += [fmt.format(*r) for r in rows]
    out.append(f"machine: {cores} cores (local[{cores}]), Spark {spark.version}")
    out.append("speed = copy seconds / ingest seconds for the same files (goal: >= 0.5)")
    out.append("parse s = the feed's files read and parsed with no write, run after its ingest (warm)")
    out.append("prov s = the copy with bronze's per-file provenance on each line (no offset, parse, checks)")
    out.append("csv s = Spark's CSV reader -> Delta, same files (strings, no provenance or checks)")
    out.append("prov speed, csv speed = copy seconds / their seconds: each yardstick measured like ingest")
    sys.stdout.write("\n".join(out) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
