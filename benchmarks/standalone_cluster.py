"""Benchmark the whole path on a local Spark standalone cluster with 1 and 2 workers (issue 33's scale-out).

Takes a generated landing zone (``--landing``, e.g. ``benchmarks/province_day.py``'s) and, for each
configuration in ``--configs``, runs every stage of ``healthlake run`` (``--stages``) as
``spark-submit jobs/<stage>.py`` on a new lake, the way a scheduler submits them:

* ``local`` — ``--master local[N]`` (N: the machine's cores), the same-run reference;
* ``workers=K`` — a standalone master and K workers started by this script on 127.0.0.1, each worker
  with one core and ``--executor-memory``; one executor of one core per worker.

Every command writes a Spark event log; from it the script says where each stage's wall time went:

* **jobs s** — time during which at least one Spark job ran (the union of the jobs' spans);
* **driver s** — the rest of the wall time: JVM and executor start-up, planning, Delta commits and log
  reads, Python;
* **task s** — the tasks' summed durations; **busy** — task s ÷ (jobs s × the cores executors had):
  how full the executors' cores were while jobs ran.

Peak memory is the RSS of this script's process tree during the stage: the submitted driver, and, for a
cluster, the master, workers, executors and their Python workers.

    python benchmarks/standalone_cluster.py --landing /tmp/pd1m/landing --work /tmp/cluster \\
        --configs local,workers=1,workers=2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from province_day import BENCH_KEY, DEFAULT_STAGES, _run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@dataclass
class StageFigures:
    """One stage's wall seconds, peak RSS and what its event log says of its time."""

    stage: str
    seconds: float
    peak: int
    jobs_seconds: float
    task_seconds: float
    task_cpu_seconds: float
    deserialize_seconds: float
    cores: int

    @property
    def driver_seconds(self) -> float:
        return self.seconds - self.jobs_seconds

    @property
    def busy(self) -> float:
        return self.task_seconds / (self.jobs_seconds * self.cores) if self.jobs_seconds else 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spark_bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _jars() -> str:
    from healthlake.spark import delta_jars, linkage_jars

    return ",".join(str(j) for j in [*delta_jars(), *linkage_jars()])


class StandaloneCluster:
    """A standalone master and ``workers`` one-core workers on 127.0.0.1, children of this process."""

    def __init__(self, workers: int, memory: str, work: Path) -> None:
        self.workers, self.memory, self.work = workers, memory, work
        self.port, self.ui_port = _free_port(), _free_port()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[IO[str]] = []

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _start(self, name: str, *args: str) -> None:
        log = (self.work / f"{name}.log").open("w")
        self.logs.append(log)
        command = [_spark_bin("spark-class"), *args]
        self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))

    def __enter__(self) -> StandaloneCluster:
        self.work.mkdir(parents=True, exist_ok=True)
        master = "org.apache.spark.deploy.master.Master"
        self._start(
            "master",
            master,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--webui-port",
            str(self.ui_port),
        )
        for i in range(self.workers):
            folder = self.work / f"worker-{i}"
            folder.mkdir(exist_ok=True)
            self._start(
                f"worker-{i}",
                "org.apache.spark.deploy.worker.Worker",
                self.url,
                "--host", "127.0.0.1",
                "--cores", "1",
                "--memory", self.memory,
                "--webui-port", str(_free_port()),
                "--work-dir", str(folder),
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=2) as r:
                    if json.load(r).get("aliveworkers") == self.workers:
                        return self
            except OSError:
                pass
            time.sleep(1)
        self.__exit__()
        raise SystemExit(f"the standalone cluster did not come up in 120 s; see {self.work}/*.log")

    def __exit__(self, *exc: object) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in self.logs:
            log.close()


def _event_log_figures(folder: Path) -> tuple[float, float, float, float, int]:
    """From one event log: jobs' union seconds; tasks' summed wall, CPU and deserialisation seconds; cores.

    Tasks' wall time well above their CPU time means they waited for a core (or on I/O).
    """
    spans: list[tuple[int, int]] = []
    started: dict[int, int] = {}
    task_ms = cpu_ns = deserialize_ms = 0
    cores: dict[str, int] = {}
    # Spark 4 rolls event logs by default: a folder per application, its events in numbered files.
    logs = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".") and p.stat().st_size]
    for path in sorted(logs):
        with path.open() as lines:
            for line in lines:
                event = json.loads(line)
                kind = event["Event"]
                if kind == "SparkListenerJobStart":
                    started[event["Job ID"]] = event["Submission Time"]
                elif kind == "SparkListenerJobEnd" and event["Job ID"] in started:
                    spans.append((started.pop(event["Job ID"]), event["Completion Time"]))
                elif kind == "SparkListenerTaskEnd":
                    info = event["Task Info"]
                    task_ms += info["Finish Time"] - info["Launch Time"]
                    metrics = event.get("Task Metrics") or {}
                    cpu_ns += metrics.get("Executor CPU Time", 0)
                    deserialize_ms += metrics.get("Executor Deserialize Time", 0)
                elif kind == "SparkListenerExecutorAdded":
                    cores[event["Executor ID"]] = event["Executor Info"]["Total Cores"]
    union_ms, end = 0, 0
    for start, stop in sorted(spans):
        start = max(start, end)
        if stop > start:
            union_ms += stop - start
            end = stop
    total_cores = sum(v for k, v in cores.items() if k != "driver") or os.cpu_count() or 1
    return union_ms / 1000, task_ms / 1000, cpu_ns / 1e9, deserialize_ms / 1000, total_cores


def _run_path(
    master: str, landing: Path, work: Path, stages: list[str], executor_memory: str, cores: int | None
) -> list[StageFigures]:
    """Every stage as its own spark-submit on a new lake under ``work``."""
    lake, logs, events = work / "lake", work / "logs", work / "events"
    shutil.rmtree(lake, ignore_errors=True)
    shutil.rmtree(events, ignore_errors=True)
    logs.mkdir(parents=True, exist_ok=True)
    figures = []
    for stage in stages:
        folder = events / stage
        folder.mkdir(parents=True)
        command = [
            _spark_bin("spark-submit"),
            "--master", master,
            "--driver-memory", "4g",
            "--jars", _jars(),
            "--conf", f"spark.pyspark.python={sys.executable}",
            "--conf", f"spark.pyspark.driver.python={sys.executable}",
            "--conf", "spark.eventLog.enabled=true",
            "--conf", f"spark.eventLog.dir={folder}",
            "--conf", "spark.eventLog.compress=false",
        ]  # fmt: skip
        if cores is not None:
            command += ["--executor-memory", executor_memory, "--executor-cores", "1"]
            command += ["--total-executor-cores", str(cores)]
        command += [str(REPO / "jobs" / f"{stage}.py"), "--lake", str(lake)]
        if stage == "ingest":
            command += ["--landing", str(landing)]
        seconds, peak = _run(command, logs / f"{stage}.log")
        f = StageFigures(stage, seconds, peak, *_event_log_figures(folder))
        figures.append(f)
        print(
            f"  {stage}: {seconds:.1f} s (jobs {f.jobs_seconds:.1f} s, tasks {f.task_seconds:.1f} s on"
            f" {f.cores} cores), peak {peak / 2**30:.1f} GiB",
            flush=True,
        )
    return figures


def _bronze_records(lake: Path) -> int:
    from healthlake import io
    from healthlake.catalog import BRONZE_RECORDS
    from healthlake.config import load_config
    from healthlake.spark import get_spark

    cfg = load_config(overrides={"lake_root": str(lake), "spark": {"master": "local[2]"}})
    spark = get_spark("benchmark-standalone-cluster", cfg)
    try:
        return sum(
            io.read_table(spark, str(lake), t).count()
            for t in BRONZE_RECORDS
            if io.is_table(spark, str(lake), t)
        )
    finally:
        spark.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--landing", required=True, help="a generated landing zone (read only)")
    parser.add_argument(
        "--work", required=True, help="work folder (a lake, logs and event logs per configuration)"
    )
    parser.add_argument(
        "--configs", default="local,workers=1,workers=2", help="local and/or workers=K, in order"
    )
    parser.add_argument("--stages", default=",".join(DEFAULT_STAGES), help="stages, in order")
    parser.add_argument("--executor-memory", default="4g", help="memory of each worker's one executor")
    args = parser.parse_args()
    landing = Path(args.landing)
    if not landing.is_dir():
        raise SystemExit(
            f"--landing {landing} is not a folder: generate a region first (benchmarks/province_day.py)"
        )
    os.environ.setdefault("HEALTHLAKE_HMAC_KEY", BENCH_KEY)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Spark's launch scripts look for pyspark with the first python3 on PATH: make it this one.
    import pyspark

    os.environ.setdefault("SPARK_HOME", str(Path(pyspark.__file__).parent))
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    work = Path(args.work)
    stages = [s for s in args.stages.split(",") if s]
    machine_cores = os.cpu_count() or 1
    results: dict[str, list[StageFigures]] = {}
    records = 0
    for config in [c for c in args.configs.split(",") if c]:
        folder = work / config.replace("=", "-")
        print(f"{config}:", flush=True)
        if config == "local":
            results[config] = _run_path(
                f"local[{machine_cores}]", landing, folder, stages, args.executor_memory, None
            )
        elif config.startswith("workers="):
            workers = int(config.split("=", 1)[1])
            with StandaloneCluster(workers, args.executor_memory, folder / "cluster") as cluster:
                results[config] = _run_path(
                    cluster.url, landing, folder, stages, args.executor_memory, workers
                )
        else:
            raise SystemExit(f"--configs: {config!r} is neither local nor workers=K")
        if not records and "ingest" in stages:
            records = _bronze_records(folder / "lake")

    print()
    print(f"records (bronze rows): {records:,}; machine: {machine_cores} cores")
    print(
        "| configuration | stage | seconds | records/s | jobs s | driver s | task s | task CPU s"
        " | task deserialise s | busy | peak GiB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for config, figures in results.items():
        for f in figures:
            print(
                f"| {config} | {f.stage} | {f.seconds:.1f} | {records / f.seconds:,.0f} | "
                f"{f.jobs_seconds:.1f} | {f.driver_seconds:.1f} | {f.task_seconds:.1f} | "
                f"{f.task_cpu_seconds:.1f} | {f.deserialize_seconds:.1f} | {f.busy:.2f} | "
                f"{f.peak / 2**30:.1f} |"
            )
        total = sum(f.seconds for f in figures)
        print(f"| {config} | **whole path** | **{total:.1f}** | **{records / total:,.0f}** | | | | | | | |")
    base = results.get("workers=1")
    if base:
        for config, figures in results.items():
            if config != "workers=1":
                ratios = ", ".join(
                    f"{f.stage} {b.seconds / f.seconds:.2f}×" for b, f in zip(base, figures, strict=True)
                )
                total = sum(b.seconds for b in base) / sum(f.seconds for f in figures)
                print(f"speed-up of {config} over workers=1: {ratios}; whole path {total:.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
