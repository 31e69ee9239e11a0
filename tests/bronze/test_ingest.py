"""Ingest of whole landing zones: every record accounted for, exactly once, with provenance."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from healthlake import io
from healthlake.bronze.common import PROVENANCE_COLUMNS
from healthlake.config import Config, load_config
from healthlake.errors import HealthlakeError
from healthlake.pipelines import ingest
from tests.jobs import run_job
from tests.synth.conftest import generate

REPO = Path(__file__).resolve().parents[2]
TESTDATA = REPO.parent / "shared" / "testdata"
FEED_TABLES = {
    "fhir": "bronze.fhir_resources",
    "hl7v2": "bronze.hl7v2_messages",
    "csv": "bronze.csv_records",
    "public_health": "bronze.csv_records",
    "location": "bronze.location_pings",
}


@dataclass
class Ingested:
    """A generated region and the lake its ingest produced."""

    landing: Path
    lake: str
    cfg: Config
    manifest: dict
    results: list[ingest.FeedResult]


def _count(spark: SparkSession, lake: str, table: str, feed: str) -> int:
    return io.read_table(spark, lake, table).where(F.col("_source_feed") == feed).count()


@pytest.fixture(scope="module")
def region(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    root = tmp_path_factory.mktemp("ingest")
    rates = {
        "malformed": 0.1,  # HL7 is ~50 messages here: enough that each kind of damage occurs
        "duplicate": 0.03,
        "gbk_share": 0.5,
        "mllp_share": 0.5,
        "lf_separator_share": 0.5,
    }
    gen = generate(spark, root, people=600, days=3, seed=3, persons_per_shard=300, rates=rates)
    cfg = load_config(overrides={"landing_root": str(gen.landing), "lake_root": str(root / "lake")})
    results = ingest.run(spark, cfg)
    return Ingested(gen.landing, cfg.lake_root, cfg, gen.manifest, results)


@pytest.mark.parametrize("feed", sorted(FEED_TABLES))
def test_bronze_plus_quarantine_equals_the_manifest(spark: SparkSession, region: Ingested, feed: str) -> None:
    declared = region.manifest["feeds"][feed]
    kept = _count(spark, region.lake, FEED_TABLES[feed], feed)
    quarantined = _count(spark, region.lake, "bronze.quarantine", feed)
    assert kept + quarantined == declared["records"]
    assert quarantined == declared["malformed"]  # exactly the deliberately broken ones
    result = next(r for r in region.results if r.feed == feed)
    assert (result.records, result.quarantined, result.files) == (kept, quarantined, declared["files"])


def test_second_ingest_adds_nothing(spark: SparkSession, region: Ingested) -> None:
    tables = [
        "bronze.fhir_resources",
        "bronze.hl7v2_messages",
        "bronze.csv_records",
        "bronze.location_pings",
        "bronze.quarantine",
        "bronze.ingest_log",
        "bronze.fhir_bundles",
    ]
    before = {t: io.read_table(spark, region.lake, t).count() for t in tables}
    one_at_a_time = region.cfg.model_copy(
        update={"ingest": region.cfg.ingest.model_copy(update={"concurrent_feeds": 1})}
    )
    spark.conf.set("spark.sql.inMemoryColumnarStorage.compressed", "true")
    results = ingest.run(spark, one_at_a_time)
    # Ingest turns off cache compression for its own streams only: the caller's session keeps its setting.
    assert spark.conf.get("spark.sql.inMemoryColumnarStorage.compressed") == "true"
    assert all(r.files == 0 and r.records == 0 and r.batches == 0 for r in results)
    assert [r.feed for r in results] == [f.name for f in ingest.feeds(region.cfg)]
    # One stream at a time: each starts after the one before it has finished.
    assert all(a.started + a.seconds <= b.started for a, b in zip(results, results[1:], strict=False))
    assert {t: io.read_table(spark, region.lake, t).count() for t in tables} == before


def test_every_row_has_provenance_and_a_unique_place(spark: SparkSession, region: Ingested) -> None:
    provenance = list(PROVENANCE_COLUMNS)
    for table in [
        "bronze.fhir_resources",
        "bronze.hl7v2_messages",
        "bronze.csv_records",
        "bronze.location_pings",
    ]:
        df = io.read_table(spark, region.lake, table)
        assert df.where(" OR ".join(f"{c} IS NULL" for c in provenance)).isEmpty(), table
        assert df.select("_source_file", "_record_offset").distinct().count() == df.count(), table
    log = io.read_table(spark, region.lake, "bronze.ingest_log")
    on_disk = {p.resolve().as_uri().replace("file:///", "file:/") for p in region.landing.glob("*/*/*/*")}
    assert {r["_source_file"] for r in log.select("_source_file").collect()} == on_disk
    assert log.count() == len(on_disk)  # each file exactly once
    totals = log.agg(F.sum("records"), F.sum("quarantined")).first()
    assert (
        totals[0] + totals[1]
        == sum(f["records"] for f in region.manifest["feeds"].values())
        + (region.manifest["reference"]["records"])
    )


def test_bronze_keeps_statistics_on_provenance_not_on_record_content(
    spark: SparkSession, region: Ingested
) -> None:
    for table in ["bronze.location_pings", "bronze.csv_records", "bronze.quarantine"]:
        path = io.table_path(region.lake, table)
        (detail,) = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").select("properties").collect()
        stats = set(detail["properties"]["delta.dataSkippingStatsColumns"].split(","))
        assert set(PROVENANCE_COLUMNS) <= stats, table
        assert not stats & {"raw", "record", "header", "raw_text", "raw_base64", "phone", "ts", "lat"}, table


def test_quarantine_keeps_the_exact_bytes_and_a_reason(spark: SparkSession, region: Ingested) -> None:
    rows = io.read_table(spark, region.lake, "bronze.quarantine").collect()
    assert rows and all(r["reason"] for r in rows)
    reasons = {r["reason"].split(":")[0] for r in rows}
    assert {"undecodable", "hl7", "csv"} <= reasons
    for r in rows[:200]:
        raw = base64.b64decode(r["raw_base64"])
        content = Path(r["_source_file"].removeprefix("file:")).read_bytes()
        assert raw in content


def test_charsets_drift_and_hl7_normalisation(spark: SparkSession, region: Ingested) -> None:
    hl7 = io.read_table(spark, region.lake, "bronze.hl7v2_messages")
    charsets = {r[0] for r in hl7.select("declared_charset").distinct().collect()}
    assert len(charsets) >= 2 and charsets <= {"UNICODE UTF-8", "GBK", "GB 18030-2000"}
    assert hl7.where(F.col("raw").contains("\ufffd") | F.col("raw").rlike("[\n\u000b\u001c]")).isEmpty()
    pid = F.regexp_extract("raw", "\rPID\\|([^\r]*)", 1)
    names = hl7.select(F.split(pid, r"\|")[4].alias("name")).where(pid != "")
    assert names.where(~F.col("name").rlike(r"^[\u4e00-\u9fff]+\^[\u4e00-\u9fff]*$")).limit(5).collect() == []
    csv = io.read_table(spark, region.lake, "bronze.csv_records")
    assert not csv.where(F.map_contains_key("record", "remark")).isEmpty()  # schema drift kept
    assert csv.where(F.col("raw").contains("\ufffd")).isEmpty()


def test_real_world_samples_are_all_accounted_for(spark: SparkSession, tmp_path: Path) -> None:
    if not TESTDATA.is_dir():
        pytest.skip(f"{TESTDATA} not found (the shared test data sits beside the repository)")
    landing = tmp_path / "landing"
    shutil.copytree(TESTDATA / "fhir" / "synthea-r4-bundles", landing / "fhir" / "SYNTHEA" / "2026-01-01")
    shutil.copytree(TESTDATA / "fhir" / "bulk-ndjson-10-patients", landing / "fhir" / "BULK" / "2026-01-01")
    shutil.copytree(TESTDATA / "hl7v2", landing / "hl7v2" / "MSFT" / "2026-01-01")
    expected_fhir = sum(
        len(json.loads(p.read_text())["entry"]) for p in landing.glob("fhir/SYNTHEA/*/*.json")
    )
    expected_fhir += sum(
        1 for p in landing.glob("fhir/BULK/*/*.ndjson") for ln in p.read_bytes().splitlines() if ln.strip()
    )
    expected_hl7 = sum(
        len(re.findall(rb"(?:^|[\r\n])(?:\xef\xbb\xbf)?\x0b?MSH\|", p.read_bytes()))
        for p in landing.glob("hl7v2/*/*/*")
    )
    cfg = load_config(overrides={"landing_root": str(landing), "lake_root": str(tmp_path / "lake")})
    results = {r.feed: r for r in ingest.run(spark, cfg)}
    assert results["fhir"].records + results["fhir"].quarantined == expected_fhir
    assert results["hl7v2"].records + results["hl7v2"].quarantined == expected_hl7
    quarantine = io.read_table(spark, cfg.lake_root, "bronze.quarantine")
    # The only FHIR lines set aside are the bulk export's own log (not resources).
    fhir_q = quarantine.where(F.col("_source_feed") == "fhir").select("_source_file").distinct().collect()
    assert [r[0].rsplit("/", 1)[1] for r in fhir_q] == ["log.ndjson"]
    assert results["hl7v2"].quarantined == 0
    resources = io.read_table(spark, cfg.lake_root, "bronze.fhir_resources")
    assert resources.where(F.col("resource_type").isNull()).isEmpty()
    assert io.read_table(spark, cfg.lake_root, "bronze.fhir_bundles").count() == 20


def _ingest_subprocess(landing: Path, lake: Path, **env: str) -> int:
    return run_job("ingest", ["--landing", str(landing), "--lake", str(lake)], **env)


@pytest.fixture(scope="module")
def small_landing(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """An HL7 + FHIR landing zone of a few files, for crash tests that run their own processes."""
    gen = generate(
        spark, tmp_path_factory.mktemp("crash"), people=200, days=2, seed=9, rates={"malformed": 0.05}
    )
    for feed in ("csv", "public_health", "location", "reference"):
        shutil.rmtree(gen.landing / feed)
    expected = {f: gen.manifest["feeds"][f]["records"] for f in ("fhir", "hl7v2")}
    return gen.landing, expected


def _exactly_once(spark: SparkSession, lake: Path, landing: Path, expected: dict) -> None:
    for feed, table in (("fhir", "bronze.fhir_resources"), ("hl7v2", "bronze.hl7v2_messages")):
        rows = io.read_table(spark, str(lake), table).where(F.col("_source_feed") == feed)
        quarantined = _count(spark, str(lake), "bronze.quarantine", feed)
        assert rows.count() + quarantined == expected[feed], feed
        assert rows.select("_source_file", "_record_offset").distinct().count() == rows.count()
    log = io.read_table(spark, str(lake), "bronze.ingest_log")
    assert log.count() == log.select("_source_file").distinct().count() == len(list(landing.glob("*/*/*/*")))


@pytest.mark.parametrize(
    ("fault", "env"),
    [
        # Killed mid-batch: the feed's table committed, its quarantine and log rows not yet.
        ("kill-after:bronze.hl7v2_messages:1", {}),
        # Killed between files: one file per batch, dead after the second batch's log was written.
        (
            "kill-after:bronze.ingest_log:2",
            {
                "HEALTHLAKE_INGEST__MAX_FILES_PER_TRIGGER": "4",
                "HEALTHLAKE_INGEST__MAX_BYTES_PER_TRIGGER": "null",
            },
        ),
    ],
)
def test_a_killed_ingest_rerun_takes_every_file_exactly_once(
    spark: SparkSession,
    small_landing: tuple[Path, dict],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    env: dict[str, str],
) -> None:
    landing, expected = small_landing
    lake = tmp_path / "lake"
    assert _ingest_subprocess(landing, lake, HEALTHLAKE_FAULT=fault, **env) == -signal.SIGKILL
    # The re-run, with the same settings, in this process: a JVM that has never seen this lake either.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ingest.run(spark, load_config(overrides={"landing_root": str(landing), "lake_root": str(lake)}))
    _exactly_once(spark, lake, landing, expected)


def test_lost_checkpoint_is_refused_not_ingested_twice(spark: SparkSession, region: Ingested) -> None:
    shutil.move(f"{region.lake}/_checkpoints/ingest/hl7v2", f"{region.lake}/_checkpoints/hl7v2.saved")
    try:
        with pytest.raises(Exception, match="checkpoint .* is missing"):
            ingest.run(spark, region.cfg, only=["hl7v2"])
    finally:
        shutil.rmtree(f"{region.lake}/_checkpoints/ingest/hl7v2", ignore_errors=True)
        shutil.move(f"{region.lake}/_checkpoints/hl7v2.saved", f"{region.lake}/_checkpoints/ingest/hl7v2")


def _visits_file(landing: Path, institution: str, day: str, visits: int, mtime: float) -> Path:
    """Write a small CSV extract of ``visits`` rows into the landing zone, modified at ``mtime``."""
    path = landing / "csv" / institution / day / f"visits_{day.replace('-', '')}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{institution}-{day}-{i},P{i}" for i in range(visits)]
    path.write_text("\n".join(["visit_id,patient_id", *rows]) + "\n", encoding="utf-8")
    os.utime(path, (mtime, mtime))
    return path


def test_lost_checkpoint_is_refused_on_a_uri_lake_root(spark: SparkSession, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    _visits_file(landing, "H1", "2026-01-01", 3, time.time())
    # A file: URI goes through Hadoop's FileSystem like s3a:// or hdfs:// on a cluster.
    lake = f"file:{tmp_path / 'lake'}"
    cfg = load_config(overrides={"landing_root": str(landing), "lake_root": lake})
    ingest.run(spark, cfg)
    checkpoint = tmp_path / "lake" / "_checkpoints" / "ingest" / "csv"
    assert (checkpoint / "metadata").is_file()
    # Its checkpoint in place, the feed is not refused: a re-run starts and takes nothing.
    assert [(r.feed, r.files) for r in ingest.run(spark, cfg)] == [("csv", 0)]
    shutil.move(checkpoint, tmp_path / "csv-checkpoint.saved")
    with pytest.raises(HealthlakeError, match=r"^ingest csv: .* checkpoint file:.*/csv is missing"):
        ingest.run(spark, cfg)
    assert io.read_table(spark, lake, "bronze.csv_records").count() == 3
    assert io.read_table(spark, lake, "bronze.ingest_log").count() == 1


def _file_uri(path: Path) -> str:
    """A landing file as bronze names it in ``_source_file`` (``file:/…``)."""
    return path.resolve().as_uri().replace("file:///", "file:/")


def test_a_file_the_stream_forgot_is_not_taken_twice(spark: SparkSession, tmp_path: Path) -> None:
    """Past its window the stream offers a file sent again: bronze.ingest_log keeps it from a second take."""
    day, hour, now = 86_400.0, 3_600.0, time.time()
    landing, lake = tmp_path / "landing", str(tmp_path / "lake")
    cfg = load_config(
        overrides={"landing_root": str(landing), "lake_root": lake, "ingest": {"max_file_age_days": 1}}
    )
    visits: dict[Path, list[str]] = {}

    def land(institution: str, landing_day: str, n: int, mtime: float) -> Path:
        path = _visits_file(landing, institution, landing_day, n, mtime)
        visits[path] = [f"{institution}-{landing_day}-{i}" for i in range(n)]
        return path

    def ingest_csv() -> tuple[int, int]:
        (result,) = ingest.run(spark, cfg)
        return result.files, result.already_taken

    def assert_each_visit_once() -> None:
        bronze = io.read_table(spark, lake, "bronze.csv_records")
        actual = bronze.select("_source_file", F.col("record")["visit_id"].alias("visit_id"))
        rows = [(_file_uri(path), visit) for path, ids in visits.items() for visit in ids]
        assertDataFrameEqual(actual, spark.createDataFrame(rows, actual.schema))
        taken = io.read_table(spark, lake, "bronze.ingest_log").select("_source_file", "records")
        files = [(_file_uri(path), len(ids)) for path, ids in visits.items()]
        assertDataFrameEqual(taken, spark.createDataFrame(files, taken.schema))

    first = land("H1", "2026-01-01", 2, now - 10 * day)
    land("H1", "2026-01-02", 3, now - 10 * day + 60)
    assert ingest_csv() == (2, 0)
    # Ten days on: a new day's file, a late file for an old day (modified when it landed, as late files
    # are) and the first day's file sent again, bytes unchanged.
    land("H1", "2026-01-11", 4, now - 1 * hour)
    land("H1", "2026-01-03", 1, now - 2 * hour)
    os.utime(first, (now, now))
    # The stream forgets the first file once it has taken a file a day newer, then offers it again (in
    # this run or the next: Spark's source forgets between batches and at a restart).
    runs = [ingest_csv(), ingest_csv()]
    assert_each_visit_once()
    assert (sum(files for files, _ in runs), sum(skipped for _, skipped in runs)) == (2, 1)
    # A file landing with a modification time already behind the window (a copy that kept its times) is
    # not seen; touched, it is taken, once.
    copied = land("H2", "2026-01-04", 2, now - 10 * day)
    assert ingest_csv() == (0, 0)
    os.utime(copied, (now, now))
    assert ingest_csv() == (1, 0)
    assert_each_visit_once()
