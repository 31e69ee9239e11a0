"""Benchmark ``healthlake generate``: records/s, records/s per core and peak memory, next to a baseline.

The same-run baseline is a plain Spark copy of the generated landing files into Delta
(``spark.read.text`` → Delta), the cheapest thing any later stage can do with them.

    python benchmarks/generate.py --records 1000000 10000000

Prints one table, then a least-squares estimate of the time for a 50-million-record province-day.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from healthlake.config import load_config  # noqa: E402
from healthlake.spark import get_spark  # noqa: E402
from healthlake.synth import generate_region  # noqa: E402

RECORDS_PER_PERSON_DAY = 1.9  # measured on default settings: pings dominate, then CSV and clinical feeds
PROVINCE_DAY = 50_000_000


class PeakMemory:
    """Sample the RSS of this process and all its descendants (JVM, Python workers); keep the peak."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a worker may exit between listing and reading
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(0.25)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument(
        "--workdir", default=None, help="scratch folder (default: a temp folder, removed after)"
    )
    args = parser.parse_args()
    cfg = load_config(overrides={"spark": {"master": "local[2]"}})
    spark = get_spark("bench-generate", cfg)
    spark.sparkContext.setLogLevel("ERROR")
    cores = spark.sparkContext.defaultParallelism
    work = Path(args.workdir or tempfile.mkdtemp(prefix="hl-bench-gen-"))
    rows = []
    for target in args.records:
        people = max(100, round(target / (RECORDS_PER_PERSON_DAY * args.days)))
        settings = load_config(
            overrides={"synth": {"people": people, "days": args.days, "persons_per_shard": 5000}}
        ).synth
        root = work / f"r{target}"
        shutil.rmtree(root, ignore_errors=True)
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            manifest = generate_region(spark, settings, str(root / "landing"), str(root / "truth"))
            gen_s = time.perf_counter() - t0
        records = sum(f["records"] for f in manifest["feeds"].values())
        t0 = time.perf_counter()
        (
            spark.read.option("recursiveFileLookup", "true")
            .text(str(root / "landing"))
            .write.format("delta")
            .mode("overwrite")
            .save(str(root / "copy"))
        )
        copy_s = time.perf_counter() - t0
        files = sum(f["files"] for f in manifest["feeds"].values())
        size_mb = sum(p.stat().st_size for p in (root / "landing").rglob("*") if p.is_file()) / 2**20
        rows.append(
            (
                target,
                people,
                records,
                files,
                size_mb,
                gen_s,
                records / gen_s,
                records / gen_s / cores,
                mem.peak / 2**30,
                copy_s,
                records / copy_s,
            )
        )
        shutil.rmtree(root, ignore_errors=True)
    header = (
        "target",
        "people",
        "records",
        "files",
        "MB",
        "gen s",
        "rec/s",
        "rec/s/core",
        "peak GiB",
        "copy s",
        "copy rec/s",
    )
    fmt = "{:>10} {:>8} {:>10} {:>7} {:>8.1f} {:>8.1f} {:>9.0f} {:>10.0f} {:>8.2f} {:>7.1f} {:>10.0f}"
    out = [" ".join(f"{h:>{w}}" for h, w in zip(header, (10, 8, 10, 7, 8, 8, 9, 10, 8, 7, 10), strict=True))]
    out += [fmt.format(*r) for r in rows]
    if len(rows) >= 2:
        # Time is close to linear in records: fit t = a + b * records and extrapolate.
        xs, ys = [r[2] for r in rows], [r[5] for r in rows]
        n, sx, sy = len(xs), sum(xs), sum(ys)
        b = (n * sum(x * y for x, y in zip(xs, ys, strict=True)) - sx * sy) / (
            n * sum(x * x for x in xs) - sx**2
        )
        a = (sy - b * sx) / n
        est = a + b * PROVINCE_DAY
        out.append(
            f"estimate for a {PROVINCE_DAY:,}-record province-day on {cores} cores: {est / 60:.1f} min "
            f"(t = {a:.1f} s + records / {1 / b:,.0f} per s)"
        )
    out.append(
        f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
        f"Spark {spark.version}, local[{cores}]"
    )
    sys.stdout.write("\n".join(out) + "\n")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
