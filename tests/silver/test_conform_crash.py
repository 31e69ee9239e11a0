"""A conform killed twice (kill -9) and re-run equals a run that never crashed.

The first kill falls between two silver writes of a bronze range; then a second day arrives in bronze, so
the re-run must finish the interrupted range with its original end before it takes the new day. The
second kill falls after that range's quarantine and metrics appends and before its log row: the last
re-run must not append them twice.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from healthlake import io
from healthlake.config import load_config
from healthlake.pipelines import conform, ingest
from tests.jobs import run_job
from tests.synth.conftest import generate

# Columns that say when, not what: they differ between any two runs (the two lakes ingest day 2 apart).
RUN_TIME_COLUMNS = ("_conformed_at", "run_at", "logged_at", "seconds", "_ingested_at", "arrival_lag_p50_s")


def _table(spark: SparkSession, lake: Path, name: str) -> DataFrame:
    df = io.read_table(spark, str(lake), name)
    return df.drop(*[c for c in RUN_TIME_COLUMNS if c in df.columns])


def _ingest_and_conform(spark: SparkSession, landing: Path, lake: Path) -> list[conform.ConformResult]:
    cfg = load_config(overrides={"landing_root": str(landing), "lake_root": str(lake)})
    ingest.run(spark, cfg)
    return conform.run(spark, cfg)


def test_a_killed_conform_rerun_gives_the_same_silver_as_a_clean_run(
    spark: SparkSession, tmp_path: Path
) -> None:
    rates = {"malformed": 0.02, "duplicate": 0.03, "update": 0.05, "cancel": 0.03}
    gen = generate(spark, tmp_path / "region", people=300, days=2, seed=11, rates=rates)
    for feed in ("csv", "public_health", "location", "reference"):  # FHIR and HL7 suffice, and are quicker
        shutil.rmtree(gen.landing / feed)
    # Hold the second day back: landing/<feed>/<institution>/<date>/ folders of the last date.
    last_day = max(d.name for d in gen.landing.glob("*/*/*") if d.is_dir())
    held = list(gen.landing.glob(f"*/*/{last_day}"))
    later = tmp_path / "later"
    for d in held:
        shutil.move(d, later / d.relative_to(gen.landing))
    first = tmp_path / "first"
    ingest.run(spark, load_config(overrides={"landing_root": str(gen.landing), "lake_root": str(first)}))
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    shutil.copytree(first, clean)
    shutil.copytree(first, crashed)
    clean_results = conform.run(spark, load_config(overrides={"lake_root": str(clean)}))

    # The second write to patient_record is the HL7 MERGE: FHIR is conformed and logged, HL7 is half done.
    crash = {"HEALTHLAKE_FAULT": "kill-after:silver.patient_record:2"}
    assert run_job("conform", ["--lake", str(crashed)], **crash) == -signal.SIGKILL
    finished = _table(spark, crashed, conform.CONFORM_LOG).where(F.col("status") == conform.FINISHED)
    assert [r.bronze_table for r in finished.collect()] == ["bronze.fhir_resources"]

    for d in held:  # the second day arrives, in both lakes
        shutil.move(later / d.relative_to(gen.landing), d)
    cfg = {"landing_root": str(gen.landing)}
    ingest.run(spark, load_config(overrides={**cfg, "lake_root": str(crashed)}))
    # Killed again: after the interrupted HL7 range's metrics (its first metrics write), before its log.
    crash = {"HEALTHLAKE_FAULT": "kill-after:silver.dq_metrics:1"}
    assert run_job("conform", ["--lake", str(crashed)], **crash) == -signal.SIGKILL

    rerun = conform.run(spark, load_config(overrides={**cfg, "lake_root": str(crashed)}))
    clean_results += _ingest_and_conform(spark, gen.landing, clean)
    # The interrupted ranges keep their planned ends; the new day is a range of its own.
    assert sorted((r.bronze_table, r.start_version, r.end_version) for r in rerun) == sorted(
        (r.bronze_table, r.start_version, r.end_version) for r in clean_results[1:]
    )
    for name in (*conform.conformed_tables(), conform.VAULT, conform.QUARANTINE, conform.DQ_METRICS):
        assert io.is_table(spark, str(crashed), name) == io.is_table(spark, str(clean), name), name
        if not io.is_table(spark, str(clean), name):  # e.g. nat_test: only the CSV feeds carry it
            continue
        expected, actual = _table(spark, clean, name), _table(spark, crashed, name)
        assert actual.count() == expected.count(), name
        assert actual.exceptAll(expected).isEmpty(), name
    log_columns = [c for c in _table(spark, clean, conform.CONFORM_LOG).columns]
    assert sorted(_table(spark, crashed, conform.CONFORM_LOG).select(*log_columns).collect()) == sorted(
        _table(spark, clean, conform.CONFORM_LOG).select(*log_columns).collect()
    )
    assert _table(spark, clean, conform.DQ_METRICS).count() > 0
