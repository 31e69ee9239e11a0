"""Time conform of two checkouts on the same bronze, alternately in one run: a change against its baseline.

Each run copies ``--lake`` (an ingested lake; it stays untouched), starts a new process with the checkout
first on ``sys.path``, and times ``conform.run`` over every bronze table in it (its JVM start and the copy
are not counted). Runs alternate (baseline, change, baseline, change, ...) so that a machine's drift
falls on both; the medians and their ratio are printed. The lakes of the last run of each are kept in
``--work`` for ``benchmarks/same_silver.py``.

    git worktree add /tmp/base <baseline commit>
    HEALTHLAKE_HMAC_KEY=... python benchmarks/conform_commits.py --lake <ingested lake> \\
        --baseline /tmp/base --change . --runs 2 --work /tmp/conform-commits
    python benchmarks/same_silver.py /tmp/conform-commits/baseline /tmp/conform-commits/change

Spark's Python workers import healthlake from the installed package, so both checkouts' executor-side
code (UDFs) is the installed one: this compares driver-side changes (plans, parsers, writes).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("conform_commits")

_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from healthlake.config import load_config
from healthlake.pipelines import conform
from healthlake.spark import get_spark
spark = get_spark("conform-commits", load_config(overrides={"spark": {"master": sys.argv[3]}}))
spark.sparkContext.setLogLevel("ERROR")
started = time.perf_counter()
results = conform.run(spark, load_config(overrides={"lake_root": sys.argv[2]}))
print(f"SECONDS {time.perf_counter() - started:.3f} {sum(r.bronze_rows for r in results)}")
"""


def _run(checkout: Path, lake: Path, copy: Path, master: str) -> tuple[float, int]:
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(lake, copy)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(checkout.resolve()), str(copy), master],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("SECONDS ")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"conform of {checkout} failed ({done.returncode}):\n{tail}")
    _, seconds, rows = lines[-1].split()
    return float(seconds), int(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--lake", required=True, type=Path, help="an ingested lake (copied, not changed)")
    parser.add_argument("--baseline", required=True, type=Path, help="checkout of the baseline")
    parser.add_argument("--change", required=True, type=Path, help="checkout of the change")
    parser.add_argument("--runs", type=int, default=2, help="runs of each, alternating")
    parser.add_argument("--work", required=True, type=Path, help="folder for the lakes' copies")
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, path in (
        ("--lake", args.lake / "bronze"),
        ("--baseline", args.baseline / "healthlake"),
        ("--change", args.change / "healthlake"),
    ):
        if not path.is_dir():
            raise SystemExit(f"{name}: {path} does not exist")
    seconds: dict[str, list[float]] = {"baseline": [], "change": []}
    for run in range(1, args.runs + 1):
        for label, checkout in (("baseline", args.baseline), ("change", args.change)):
            took, rows = _run(checkout, args.lake, args.work / label, args.master)
            seconds[label].append(took)
            log.info("run %d %s: conform of %s bronze rows in %.1f s", run, label, f"{rows:,}", took)
    base, change = (statistics.median(seconds[k]) for k in ("baseline", "change"))
    log.info(
        "median: baseline %.1f s, change %.1f s (%.2fx faster); lakes kept in %s",
        base,
        change,
        base / change,
        args.work,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
