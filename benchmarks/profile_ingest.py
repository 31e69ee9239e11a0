"""Where ingest's CPU time goes: one feed ingested under Java Flight Recorder, samples grouped by step.

Wall-clock timings around each step (``BENCHMARKS.md``) say how long a step took, not what the cores did
in it. This ingests a feed three times into fresh lakes in one JVM: cold, warm, and warm under JFR's
thread sampling (``jdk.ExecutionSample``, built into the JDK), and sorts each sample by what its stack was
doing: reading and parsing, building or reading the batch cache, Parquet encoding, Delta's file
statistics, the per-file counts, or driver-side work (planning, Delta log, streaming). Each run also
says how long the JIT compiler threads were busy, which JFR does not sample and which on a few cores
competes with the tasks. The same files are then copied as text into Delta (the ingest benchmark's
baseline) for comparison.

    python benchmarks/profile_ingest.py --landing <landing zone> --feed location
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from healthlake.config import load_config  # noqa: E402
from healthlake.pipelines import ingest  # noqa: E402
from healthlake.spark import HUGE_METHODS, get_spark  # noqa: E402

# Steps by (name, frame fragments), tried on a sample's frames from the innermost out; the first frame
# holding a fragment names the step. Which table applies depends on the task the sample is in: one that
# fills the batch cache (it runs the parse) or one that writes a Delta table.
_FILLING_CACHE = (
    ("cache: build", ("ColumnBuilder", "ColumnStats")),
    ("read + parse landing files", ("GeneratedIteratorForCodegenStage", "BinaryFileFormat")),
    ("cache: build", ("CachedBatchSerializer",)),
)
_WRITING = (
    ("write: Delta file statistics", ("DeltaTaskStatisticsTracker",)),
    ("write: Parquet encode + compress", ("org.apache.parquet.", "ParquetWriteSupport", "ParquetOutput")),
    ("cache: read", ("ColumnarIterator", "ColumnAccessor")),
)
_FRAME = re.compile(r"^\s+([\w$.]+)\(.*\)(\s+line:.*)?$")


def _samples(recording: Path, jfr: str) -> list[tuple[str, list[str]]]:
    """(thread name, frames innermost first) of each execution sample in a JFR recording.

    ``jfr`` is the JDK's ``jfr`` tool, which prints the recording.
    """
    text = subprocess.run(
        [jfr, "print", "--events", "jdk.ExecutionSample", "--stack-depth", "96", str(recording)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    samples = []
    for event in text.split("jdk.ExecutionSample {")[1:]:
        thread = re.search(r'sampledThread = "([^"]*)"', event)
        frames = [m.group(1) for line in event.splitlines() if (m := _FRAME.match(line))]
        samples.append((thread.group(1) if thread else "?", frames))
    return samples


def _step(thread: str, frames: list[str]) -> str:
    """The step a sample was in (see ``_FILLING_CACHE`` and ``_WRITING``)."""
    if not thread.startswith("Executor task launch worker"):
        return "driver: planning, Delta log, stream"
    stack = "\n".join(frames)
    if "CachedRDDBuilder" in stack or "CachedBatchSerializer" in stack:
        return _innermost(frames, _FILLING_CACHE) or "cache: build"
    if "FileFormatDataWriter" in stack:
        return _innermost(frames, _WRITING) or "write: rows taken from the cache"
    if "hashAgg_" in stack:
        return "per-file counts (aggregate)"
    return "other task work"


def _innermost(frames: list[str], steps: tuple[tuple[str, tuple[str, ...]], ...]) -> str | None:
    for frame in frames:
        for name, fragments in steps:
            if any(f in frame for f in fragments):
                return name
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--landing", required=True, help="landing zone (e.g. from `healthlake generate`)")
    parser.add_argument("--feed", default="location")
    parser.add_argument("--top", type=int, default=12, help="hottest methods listed")
    args = parser.parse_args()
    landing = Path(args.landing)
    if not (landing / args.feed).is_dir():
        parser.error(f"no folder {landing / args.feed}: give a landing zone holding that feed")
    work = Path(tempfile.mkdtemp(prefix="hl-profile-ingest-"))
    # JFR set up in a running JVM makes it recompile most of its compiled code (a warm 10 M-ping ingest
    # took 78 s instead of 45 s, the JIT threads busy 77 s): start the JVM with an empty recording, so
    # JFR is in place before the cold run and the profiled run's recording only turns on sampling.
    (work / "empty.jfc").write_text('<?xml version="1.0"?><configuration version="2.0"/>\n')
    jfr_at_start = f"-XX:StartFlightRecording=settings={work / 'empty.jfc'} -Xlog:jfr+startup=error"
    java_options = f"{HUGE_METHODS} -XX:+UnlockDiagnosticVMOptions -XX:+DebugNonSafepoints {jfr_at_start}"
    spark_settings = {"master": "local[2]", "conf": {"spark.driver.extraJavaOptions": java_options}}
    spark = get_spark("profile-ingest", load_config(overrides={"spark": spark_settings}))
    spark.sparkContext.setLogLevel("ERROR")
    jvm = spark._jvm  # the driver's JVM runs every task in local mode
    try:
        compiler = jvm.java.lang.management.ManagementFactory.getCompilationMXBean()
        runs = {}
        for run in ("cold", "warm", "warm, profiled"):
            lake = work / run.replace(", ", "-")
            cfg = load_config(overrides={"landing_root": str(landing), "lake_root": str(lake)})
            if run == "warm, profiled":
                recording = jvm.jdk.jfr.Recording()
                recording.enable("jdk.ExecutionSample").withPeriod(jvm.java.time.Duration.ofMillis(10))
                recording.start()
            jit_ms = compiler.getTotalCompilationTime()
            started = time.perf_counter()
            (result,) = ingest.run(spark, cfg, only=[args.feed])
            runs[run] = (time.perf_counter() - started, (compiler.getTotalCompilationTime() - jit_ms) / 1000)
        recording.stop()
        recording.dump(jvm.java.io.File(str(work / "ingest.jfr")).toPath())
        started = time.perf_counter()
        src = str(landing / args.feed / "*" / "*" / "*")
        spark.read.text(src).write.format("delta").save(str(work / "copy"))
        copy_s = time.perf_counter() - started
        # The JDK Spark runs on has the tool that reads its recordings.
        jfr = str(Path(jvm.java.lang.System.getProperty("java.home"), "bin", "jfr"))
        samples = _samples(work / "ingest.jfr", jfr)
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    steps = collections.Counter(_step(t, f) for t, f in samples)
    hot = collections.Counter(f[0] for t, f in samples if f and t.startswith("Executor task"))
    n = max(1, len(samples))
    out = [f"feed {args.feed}: {result.records + result.quarantined:,} records"]
    for run, (secs, jit) in runs.items():
        out.append(f"  {run:15} ingest {secs:5.1f} s, JIT compiler threads busy {jit:5.1f} s")
    out += [
        f"  text copy of the same files into Delta: {copy_s:.1f} s",
        "",
        f"profiled run: {len(samples):,} thread samples every 10 ms (JIT compiler threads not sampled)",
        f"{'step':40} {'share':>6}",
    ]
    out += [f"{name:40} {count / n:6.1%}" for name, count in steps.most_common()]
    out += ["", "hottest methods (self time in tasks):"]
    out += [f"{count / n:6.1%}  {method}" for method, count in hot.most_common(args.top)]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
