"""Benchmark day after day: does a day's cost grow with the history before it? (issue 33's incremental target)

Takes a generated landing zone (``--landing``, e.g. ``benchmarks/province_day.py``'s), holds every day's
folders back (``<feed>/<institution>/<date>/``), then releases them one date at a time and runs each stage
of ``healthlake run`` (``--stages``) as its own command on one lake, the way a nightly scheduler does.
Prints each day's seconds per stage and the ratio of the last day to the first (target: ≤ 1.5).

    python benchmarks/incremental_day.py --landing /tmp/pd1m_b/landing --work /tmp/incr --days 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from province_day import BENCH_KEY, DEFAULT_STAGES, _healthlake, _run  # noqa: E402


def _ingested_records(log: Path) -> int:
    """Records the ingest command's table reports (column ``records``), summed over feeds."""
    lines = log.read_text(errors="replace").splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["feed"])
    column = lines[header].split().index("records")
    return sum(int(line.split()[column]) for line in lines[header + 1 :] if line.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--landing", required=True, help="a generated landing zone (left untouched)")
    parser.add_argument("--work", required=True, help="work folder (its landing copy, lake, logs)")
    parser.add_argument("--days", type=int, default=None, help="release only the first N dates")
    parser.add_argument("--stages", default=",".join(DEFAULT_STAGES), help="stages, in order")
    args = parser.parse_args()
    os.environ.setdefault("HEALTHLAKE_HMAC_KEY", BENCH_KEY)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    held, landing, lake, logs = work / "held", work / "landing", work / "lake", work / "logs"
    shutil.copytree(args.landing, held)
    landing.mkdir(parents=True)
    logs.mkdir()
    dates = sorted({d.name for d in held.glob("*/*/*") if d.is_dir()})[: args.days]
    stages = [s for s in args.stages.split(",") if s]
    rows: list[tuple[str, int, list[float]]] = []
    for date in dates:
        for folder in held.glob(f"*/*/{date}"):
            target = landing / folder.relative_to(held)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(folder), str(target))
        seconds = []
        records = 0
        for stage in stages:
            command = [_healthlake(), stage, "--lake", str(lake)]
            if stage == "ingest":
                command += ["--landing", str(landing)]
            log = logs / f"{date}-{stage}.log"
            took, _ = _run(command, log)
            seconds.append(took)
            if stage == "ingest":
                records = _ingested_records(log)
        rows.append((date, records, seconds))
        print(
            f"{date}: {records:,} records; "
            + ", ".join(f"{s} {t:.1f} s" for s, t in zip(stages, seconds, strict=True)),
            flush=True,
        )
    print()
    print("| day | records | " + " | ".join(stages) + " | whole path |")
    print("|---|---:|" + "---:|" * (len(stages) + 1))
    for date, records, seconds in rows:
        print(
            f"| {date} | {records:,} | "
            + " | ".join(f"{s:.1f}" for s in seconds)
            + f" | {sum(seconds):.1f} |"
        )
    first, last = rows[0][2], rows[-1][2]
    ratios = [b / a for a, b in zip(first, last, strict=True)] + [sum(last) / sum(first)]
    print("| last ÷ first | | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
