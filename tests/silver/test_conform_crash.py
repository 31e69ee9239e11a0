"""A conform killed twice (kill -9) and re-run ends where a run that never crashed ends.

The first kill falls between two silver writes of a bronze range; then a second day of that feed arrives
in bronze, so the re-run must finish the interrupted range with its original end before it takes the new
day. The second kill falls after that range's quarantine and metrics appends and before its log row: the
last re-run must not append them twice.
"""

from __future__ import annotations

import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from healthlake import catalog, io
from healthlake.config import load_config
from healthlake.pipelines import conform, ingest
from tests.jobs import run_job
from tests.synth.conftest import generate

# Columns that say when, not what: they differ between any two runs.
RUN_TIME_COLUMNS = ("_conformed_at", "run_at", "logged_at", "seconds")


def _table(spark: SparkSession, lake: Path, name: str) -> DataFrame:
    df = io.read_table(spark, str(lake), name)
    return df.drop(*[c for c in RUN_TIME_COLUMNS if c in df.columns])


def _crash(lake: Path, fault: str) -> None:
    assert run_job("conform", ["--lake", str(lake)], HEALTHLAKE_FAULT=fault) == -signal.SIGKILL


def test_a_killed_conform_rerun_ends_where_a_clean_run_ends(spark: SparkSession, tmp_path: Path) -> None:
    rates = {"malformed": 0.02, "duplicate": 0.03, "update": 0.05, "cancel": 0.03}
    gen = generate(spark, tmp_path / "region", people=300, days=2, seed=11, rates=rates)
    for feed in ("fhir", "csv", "public_health", "location", "reference"):  # HL7 alone is quickest
        shutil.rmtree(gen.landing / feed)
    # Hold HL7's second day back (landing/hl7v2/<institution>/<date>/ folders of its last date).
    last_day = max(d.name for d in gen.landing.glob("hl7v2/*/*") if d.is_dir())
    held = list(gen.landing.glob(f"hl7v2/*/{last_day}"))
    for d in held:
        shutil.move(d, tmp_path / "later" / d.relative_to(gen.landing))
    lake = tmp_path / "lake"
    cfg = load_config(overrides={"landing_root": str(gen.landing), "lake_root": str(lake)})
    ingest.run(spark, cfg)

    # Killed after the range's first silver write (patient records), before its encounters and the rest.
    _crash(lake, "kill-after:silver.patient_record:1")
    log = _table(spark, lake, catalog.SILVER_CONFORM_LOG)
    assert [r.status for r in log.collect()] == [conform.PLANNED]
    assert io.read_table(spark, str(lake), "silver.patient_record").count() > 0
    for d in held:  # HL7's second day arrives
        shutil.move(tmp_path / "later" / d.relative_to(gen.landing), d)
    ingest.run(spark, cfg)
    # The same bronze (it changes no more from here), to be conformed in one run that never crashes.
    clean = tmp_path / "clean"
    shutil.copytree(lake / "bronze", clean / "bronze")
    # Killed again: after the interrupted HL7 range's metrics (its first metrics write), before its log.
    # The killed job runs in its own process, its own lake: this process conforms the clean lake meanwhile.
    with ThreadPoolExecutor(max_workers=1) as pool:
        crashed = pool.submit(_crash, lake, "kill-after:silver.dq_metrics:1")
        conform.run(spark, load_config(overrides={"lake_root": str(clean)}))
        crashed.result()
    rerun = conform.run(spark, cfg)
    hl7 = [(r.start_version, r.end_version) for r in rerun if r.bronze_table == "bronze.hl7v2_messages"]
    assert len(hl7) == 2 and hl7[0][1] + 1 == hl7[1][0], "the interrupted range keeps its planned end"

    for name in (*conform.conformed_tables(), catalog.VAULT_IDENTITY, catalog.SILVER_QUARANTINE):
        assert io.is_table(spark, str(lake), name) == io.is_table(spark, str(clean), name), name
        if not io.is_table(spark, str(clean), name):  # e.g. nat_test: only the CSV feeds carry it
            continue
        expected, actual = _table(spark, clean, name), _table(spark, lake, name)
        assert actual.count() == expected.count(), name
        assert actual.exceptAll(expected).isEmpty(), name
    # Metrics and log come per range (the clean run had fewer): their totals must agree, nothing twice.
    per_rule = ["silver_table", "institution_id", "rule"]
    checked = [F.sum("rows_checked").alias("checked"), F.sum("rows_failed").alias("failed")]
    metrics = {
        n: _table(spark, n, catalog.SILVER_DQ_METRICS).groupBy(*per_rule).agg(*checked) for n in (lake, clean)
    }
    assert metrics[lake].count() == metrics[clean].count() > 0
    assert metrics[lake].exceptAll(metrics[clean]).isEmpty()
    counts = ["bronze_rows", "conformed", "quarantined", "duplicates"]
    totals = {
        n: _table(spark, n, catalog.SILVER_CONFORM_LOG)
        .where(F.col("status") == conform.FINISHED)
        .groupBy("bronze_table")
        .agg(*[F.sum(c).alias(c) for c in counts])
        for n in (lake, clean)
    }
    assert sorted(totals[lake].collect()) == sorted(totals[clean].collect())
    log = _table(spark, lake, catalog.SILVER_CONFORM_LOG)
    planned, done = (
        log.where(F.col("status") == s).select("bronze_table", "start_version", "end_version")
        for s in (conform.PLANNED, conform.FINISHED)
    )
    assert sorted(planned.collect()) == sorted(done.collect()), "every planned range finished, once"
