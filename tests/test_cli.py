"""The healthlake command: status output, run, one-line errors, quiet progress and failures' root causes."""

from __future__ import annotations

import datetime as dt
import glob
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from healthlake import cli, io, tables
from healthlake.logs import configure_logging, progress_line


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(code: int, err: str) -> str:
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("healthlake: error: ")
    return lines[0]


def test_status_prints_each_table(spark: SparkSession, lake: str, capsys: pytest.CaptureFixture[str]) -> None:
    io.append(spark.range(3), lake, "bronze.fhir_resources")
    io.append(spark.range(2), lake, "bronze.fhir_resources")
    io.upsert(spark.range(4).withColumnRenamed("id", "k"), lake, "silver.person", ["k"])

    code, out, _ = _run(capsys, "status", "--lake", lake)

    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["layer", "table", "version", "rows", "last_operation", "last_time"]
    assert lines[1].split()[:5] == ["bronze", "fhir_resources", "1", "5", "WRITE"]
    assert lines[2].split()[:5] == ["silver", "person", "0", "4", "WRITE"]
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    assert lines[1].split()[5].startswith(today)
    end = lines[0].index("version") + len("version")
    assert [line[end - 1] for line in lines[1:]] == ["1", "0"]  # numbers right-aligned under the header


def _without_spark(script: str) -> dict:
    """Run ``script`` (which prints one JSON line last) in a new interpreter; it reports ``jvm_free``."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True)
    # delta-rs's native threads can abort the interpreter as it exits, after the script printed
    # (delta-io/delta-rs#2184): the results are checked either way; any other exit fails.
    finished = done.returncode == 0 or (done.returncode == -signal.SIGABRT and '"jvm_free"' in done.stdout)
    assert finished, f"exit {done.returncode}: {done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_status_reads_the_delta_logs_without_a_jvm_and_agrees_with_spark(
    spark: SparkSession, lake: str
) -> None:
    io.append(spark.range(3), lake, "bronze.fhir_resources")
    io.append(spark.range(4), lake, "bronze.fhir_resources")
    io.upsert(spark.range(5).withColumnRenamed("id", "k"), lake, "silver.person", ["k"])
    io.upsert(spark.range(3, 9).withColumnRenamed("id", "k"), lake, "silver.person", ["k"])
    io.create_table(spark, lake, "silver.empi_review", spark.range(0).schema)
    # Deletion vectors: a MERGE marks the rows it replaces or deletes, the file's numRecords stays 6.
    marked = {"delta.enableDeletionVectors": "true"}
    io.overwrite(spark.range(6).repartition(1), lake, "gold.marked", properties=marked)
    changes = spark.createDataFrame(
        [(1, True), (2, True), (3, False), (7, False)], "id long, _delete boolean"
    )
    io.merge_changes(changes, lake, "gold.marked", ["id"], "_delete")
    # A file written without statistics: only a scan can count it.
    spark.conf.set("spark.databricks.delta.stats.collect", "false")
    try:
        io.append(spark.range(10, 15), lake, "gold.no_stats")
    finally:
        spark.conf.unset("spark.databricks.delta.stats.collect")

    through_spark = io.table_status(spark, lake)
    assert tables.lake_status(lake) == through_spark
    assert [(s.table, s.rows) for s in through_spark] == [
        ("fhir_resources", 7), ("marked", 5), ("no_stats", 5), ("empi_review", 0), ("person", 9),
    ]  # fmt: skip

    got = _without_spark(
        f"""
        import contextlib, io, json, sys, time
        from healthlake import cli
        out = io.StringIO()
        started = time.monotonic()
        with contextlib.redirect_stdout(out):
            code = cli.main(["status", "--lake", {lake!r}])
        print(json.dumps({{
            "code": code, "out": out.getvalue(), "seconds": time.monotonic() - started,
            "jvm_free": not any(m == "pyspark" or m.startswith(("pyspark.", "py4j")) for m in sys.modules),
        }}))
        """
    )
    expected = [(*s[:5], cli._utc_text(s.last_time)) for s in through_spark]
    assert got["code"] == 0
    assert got["jvm_free"], "status imported pyspark"
    assert got["out"] == cli.format_table(cli.STATUS_COLUMNS, expected) + "\n"


def test_status_of_empty_lake(lake: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "status", "--lake", lake)
    assert code == 0
    assert out.strip() == f"no tables in lake {lake}"


def test_status_of_missing_lake(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nowhere")
    code, out, err = _run(capsys, "status", "--lake", missing)
    assert _one_line_error(code, err) == f"healthlake: error: lake root {missing} does not exist"
    assert out == ""


def test_run_without_stages_registers_and_prints_status(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    landing.mkdir()
    code, out, _ = _run(capsys, "run", "--landing", str(landing), "--lake", str(lake))
    assert code == 0
    assert lake.is_dir()
    assert out.strip() == f"no tables in lake {lake}"

    io.append(spark.range(2), str(lake), "bronze.fhir_bundles")
    code, out, _ = _run(capsys, "run", "--landing", str(landing), "--lake", str(lake))
    assert code == 0
    assert "bronze  fhir_bundles" in out
    assert spark.table("bronze.fhir_bundles").count() == 2


def test_run_with_missing_landing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "run", "--landing", str(tmp_path / "none"), "--lake", str(tmp_path / "lake"))
    assert "landing root" in _one_line_error(code, err)


def test_generate_truth_inside_landing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    landing = tmp_path / "landing"
    for truth in (landing / "truth", landing):
        code, _, err = _run(capsys, "generate", "--landing", str(landing), "--truth", str(truth))
        message = _one_line_error(code, err)
        assert message.startswith("healthlake: error: --truth") and "must not be inside --landing" in message
    assert not landing.exists()  # refused before anything was written


def test_generate_bad_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["generate", "--landing", str(tmp_path / "l"), "--truth", str(tmp_path / "t")]
    for bad in ("2026-13-01", "05/01/2026", "20260105"):
        code, _, err = _run(capsys, *args, "--start", bad)
        assert f"bad date '{bad}': expected YYYY-MM-DD" in _one_line_error(code, err)


def test_generate_missing_required_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "generate", "--landing", "x")
    assert "--truth" in _one_line_error(code, err)


def test_generate_bad_people_from_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(
        capsys, "generate", "--landing", str(tmp_path / "l"), "--truth", str(tmp_path / "t"), "--people", "3"
    )
    assert _one_line_error(code, err) == (
        "healthlake: error: config key 'synth.people': expected an integer >= 10, got 3 (command line)"
    )


def test_bad_config_key_in_conf_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "bad.yaml"
    conf.write_text("lake_root: ./lake\nsparky:\n  master: local[2]\n", encoding="utf-8")
    code, _, err = _run(capsys, "status", "--conf", str(conf), "--lake", str(tmp_path))
    line = _one_line_error(code, err)
    assert "config key 'sparky': unknown key" in line
    assert str(conf) in line


def test_missing_conf_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "status", "--conf", str(tmp_path / "none.yaml"))
    assert "not found" in _one_line_error(code, err)


def test_no_command_and_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_error(*_run(capsys)[::2])
    _one_line_error(*_run(capsys, "fly")[::2])


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--help")
    assert code == 0
    assert "generate" in out and "status" in out and "run" in out


def test_format_table_aligns_numbers_right() -> None:
    table = cli.format_table(("name", "rows"), [("a", 5), ("bbb", 1234)])
    assert table.splitlines() == ["name  rows", "a        5", "bbb   1234"]


def test_format_manifest_totals_feeds() -> None:
    manifest = {
        "feeds": {
            "hl7v2": {"files": 3, "records": 100, "malformed": 1, "duplicates": 2},
            "fhir": {"files": 2, "records": 50},
        }
    }
    assert cli.format_manifest(manifest).splitlines() == [
        "feed   files  records  malformed  duplicates",
        "fhir       2       50          0           0",
        "hl7v2      3      100          1           2",
        "total      5      150          1           2",
    ]


def test_generate_writes_landing_truth_and_prints_the_manifest(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    landing, truth = tmp_path / "landing", tmp_path / "truth"
    argv = ["generate", "--landing", str(landing), "--truth", str(truth), "--people", "200", "--days", "2"]
    history = ["--followup-history-days", "200"]
    code, out, _ = _run(capsys, *argv, "--start", "2026-03-02", "--seed", "5", *history)
    assert code == 0
    manifest = (truth / "manifest.json").read_text(encoding="utf-8")
    assert '"seed": 5' in manifest and '"start": "2026-03-02"' in manifest
    followups = pd.read_parquet(truth / "followups.parquet").followup_time
    start = pd.Timestamp("2026-03-02")
    assert start - pd.Timedelta(days=200) <= followups.min() < start  # the history went out on day one
    assert {p.name for p in landing.iterdir()} == {
        "fhir",
        "hl7v2",
        "csv",
        "public_health",
        "location",
        "reference",
    }
    total = out.strip().splitlines()[-1].split()
    assert total[0] == "total" and int(total[2]) > 0
    assert sorted(p.name for p in truth.glob("*.parquet")) == [
        "allergies.parquet", "cases.parquet", "contacts.parquet", "deliveries.parquet", "encounters.parquet",
        "followups.parquet", "isolation.parquet", "nat_pools.parquet", "patient_records.parquet",
        "persons.parquet", "phones.parquet", "procedures.parquet", "readmissions.parquet",
        "trajectories.parquet",
    ]  # fmt: skip


def test_ingest_with_missing_landing_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "ingest", "--landing", str(tmp_path / "none"), "--lake", str(tmp_path / "l"))
    assert "landing root" in _one_line_error(code, err)


def test_ingest_prints_what_each_feed_took(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    landing = tmp_path / "landing" / "hl7v2" / "H1" / "2026-01-05"
    landing.mkdir(parents=True)
    msh = "MSH|^~\\&|HIS|H1|HL|REG|20260105080000||ADT^A04^ADT_A01|1|P|2.5|||AL|NE|CHN|UNICODE UTF-8"
    (landing / "a.hl7").write_bytes(f"{msh}\rPID|1||M1^^^H1^MR\r".encode() + b"MSH|broken\r")
    code, out, _ = _run(
        capsys, "ingest", "--landing", str(tmp_path / "landing"), "--lake", str(tmp_path / "lake")
    )
    assert code == 0
    assert out.splitlines()[1].split()[:4] == ["hl7v2", "1", "1", "1"]


def _java_failure(spark: SparkSession, throwable: object) -> Py4JJavaError:
    """The Py4JJavaError of a real JVM call that throws ``throwable`` wrapped in an ExecutionException."""
    jvm = spark._jvm
    with pytest.raises(Py4JJavaError) as info:
        jvm.java.util.concurrent.CompletableFuture.failedFuture(throwable).get()
    return info.value


def test_a_failed_spark_job_is_named_by_its_java_root_cause(spark: SparkSession, lake: str) -> None:
    io.append(spark.range(5).repartition(1), lake, "bronze.events")
    (data_file,) = glob.glob(f"{lake}/bronze/events/*.parquet")
    os.remove(data_file)  # the log still names it: the job's task fails reading it
    with pytest.raises(Exception) as info:
        io.read_table(spark, lake, "bronze.events").collect()
    assert "An error occurred while calling" in str(info.value)  # what the CLI printed before

    line = cli.describe_failure(info.value)

    assert "\n" not in line
    assert line.startswith(
        f"FileNotFoundException: File file:{data_file} does not exist (a file Spark needed is gone"
    )
    assert line.endswith("; -v shows the traceback)")


def test_root_causes_a_user_can_act_on_come_with_a_hint(spark: SparkSession) -> None:
    jvm = spark._jvm
    oom = _java_failure(spark, jvm.java.lang.OutOfMemoryError("Java heap space"))
    line = cli.describe_failure(oom)
    assert line.startswith(
        "OutOfMemoryError: Java heap space (Spark ran out of memory: raise spark.driver.memory"
    )
    assert "HEALTHLAKE_SPARK__CONF='{spark.driver.memory: 8g}'" in line and "max_bytes_per_trigger" in line

    conflict = jvm.io.delta.exceptions.ConcurrentAppendException("DELTA_CONCURRENT_APPEND.WITHOUT_HINT")
    line = cli.describe_failure(_java_failure(spark, conflict))
    assert line.startswith("ConcurrentAppendException: ") and "(another job changed the same Delta" in line
    assert "run the command again" in line  # by its Delta superclass, not its name

    other = cli.describe_failure(
        _java_failure(spark, jvm.java.lang.IllegalStateException("odd\nsecond line"))
    )
    assert other == "IllegalStateException: odd (-v shows the traceback)"
    assert (
        cli.describe_failure(ValueError("bad value\nmore"))
        == "ValueError: bad value (-v shows the traceback)"
    )


def test_a_jvm_failure_is_one_line_from_the_command_and_a_traceback_with_v(
    spark: SparkSession, capsys: pytest.CaptureFixture[str]
) -> None:
    # A remote lake is listed through Hadoop in the JVM, which has no s3a connector here.
    code, out, err = _run(capsys, "status", "--lake", "s3a://no-such-bucket/lake")
    assert code == 1 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(
        "healthlake: failed: ClassNotFoundException: Class org.apache.hadoop.fs.s3a.S3AFileSystem not found "
        "(a jar Spark needs is not on its classpath (for s3a:// the hadoop-aws connector)"
    )
    assert "Py4JJavaError" not in err and "An error occurred while calling" not in err
    with pytest.raises(Py4JJavaError):
        cli.main(["status", "-v", "--lake", "s3a://no-such-bucket/lake"])


def test_link_errors_are_one_line(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    code, _, err = _run(capsys, "link", "--lake", str(missing))
    assert "lake root" in _one_line_error(code, err) and "does not exist" in err
    lake = tmp_path / "lake"
    lake.mkdir()
    code, _, err = _run(capsys, "link", "--lake", str(lake))
    assert "silver.patient_record is not in the lake" in _one_line_error(code, err)
    code, _, err = _run(capsys, "link", "--lake", str(lake), "--accept", "r1", "--reject", "r1")
    assert "both accepted and rejected" in _one_line_error(code, err)


def test_progress_lines() -> None:
    assert progress_line("ingest csv", 1503, 2.0, "62 files") == (
        "ingest csv: 1,503 records in 2.0s (752 records/s); 62 files"
    )
    assert progress_line("link clustered", 1, 4.0) == "link clustered: 1 record in 4.0s (0.2 records/s)"
    assert progress_line("publish full", None, 21.74) == "publish full: 21.7s"
    assert progress_line("publish as_of", 0, 0.0) == "publish as_of: 0 records in 0.0s (- records/s)"


def test_stage_summaries_from_the_stages_results() -> None:
    from healthlake.pipelines.conform import ConformResult
    from healthlake.pipelines.ingest import FeedResult
    from healthlake.pipelines.link import LinkResult
    from healthlake.pipelines.publish import PublishResult

    feeds = [FeedResult("hl7v2", files=4, records=8, quarantined=1), FeedResult("csv", files=2, records=90)]
    assert cli.stage_summary(feeds) == (98, "6 files, 1 quarantined")
    ranges = [
        ConformResult("bronze.a", 0, 1, 10, 6, superseded=1, quarantined=2, duplicates=1),
        ConformResult("b", 0, 0, 6, 5, not_modelled=1),
    ]
    assert cli.stage_summary(ranges) == (
        16,
        "11 conformed, 1 superseded, 2 quarantined, 1 duplicates, 1 not modelled",
    )
    linked = LinkResult("full", records=586, linked=586, persons=300, created=300, review=2)
    assert cli.stage_summary(linked) == (
        586, "full run, 300 persons, 300 created, 0 merged, 0 split, 2 to review"
    )  # fmt: skip
    published = PublishResult(tables={"gold.a": 10, "omop.b": 5}, mode="incremental")
    assert cli.stage_summary(published) == (15, "incremental run, 2 tables")
    assert cli.stage_summary(None) == (None, "nothing to do")


PROGRESS = re.compile(
    r"\d\d:\d\d:\d\d ingest hl7v2: 1 record in \d+\.\ds \([\d.,]+ records/s\); 1 files, 1 quarantined(, .*)?"
)


def test_a_run_shows_one_line_per_step_by_default_and_spark_with_v(tmp_path: Path) -> None:
    day = tmp_path / "landing" / "hl7v2" / "H1" / "2026-01-05"
    day.mkdir(parents=True)
    msh = "MSH|^~\\&|HIS|H1|HL|REG|20260105080000||ADT^A04^ADT_A01|1|P|2.5|||AL|NE|CHN|UNICODE UTF-8"
    (day / "a.hl7").write_bytes(f"{msh}\rPID|1||M1^^^H1^MR\r".encode() + b"MSH|broken\r")

    def ingest(*flags: str, lake: str) -> subprocess.CompletedProcess[str]:
        argv = ["ingest", *flags, "--landing", str(tmp_path / "landing"), "--lake", str(tmp_path / lake)]
        done = subprocess.run([sys.executable, "-m", "healthlake.cli", *argv], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.splitlines()[1].split()[:4] == ["hl7v2", "1", "1", "1"]
        return done

    # A new JVM each: its start-up lines are what a newcomer sees first.
    quiet = ingest(lake="quiet")
    assert len(quiet.stderr.splitlines()) == 1, quiet.stderr  # the feed's progress line, nothing else
    assert PROGRESS.fullmatch(quiet.stderr.strip()), quiet.stderr
    loud = ingest("-v", lake="loud")
    assert "Using Spark's default log4j profile" in loud.stderr
    assert re.search(r" WARN \w+: ", loud.stderr)  # Spark's own warnings are back
    assert "DEBUG healthlake.pipelines.ingest: ingest hl7v2: batch 0: 1 files" in loud.stderr


def test_splink_and_py4j_log_only_errors_unless_v(capsys: pytest.CaptureFixture[str]) -> None:
    def emit() -> str:
        logging.getLogger("splink.internals.expectation_maximisation").warning("Level x not observed")
        logging.getLogger("py4j.clientserver").warning("closing")
        logging.getLogger("healthlake.empi.linkage").warning("one EM session gave no estimates")
        return capsys.readouterr().err

    try:
        configure_logging(0)
        assert re.fullmatch(r"\d\d:\d\d:\d\d WARNING: one EM session gave no estimates\n", emit())
        configure_logging(1)
        err = emit()
        assert "WARNING splink.internals.expectation_maximisation: Level x not observed" in err
        assert "WARNING py4j.clientserver: closing" in err
        assert "WARNING healthlake.empi.linkage: one EM session gave no estimates" in err
    finally:
        configure_logging(0)
