"""The SparkSession: local, UTC, Delta on disk with time travel, jars from the local cache, spark-submit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from healthlake.config import Config, SparkSettings
from healthlake.spark import (
    DELTA_CATALOG,
    DELTA_EXTENSION,
    DELTA_JAR,
    HUGE_METHODS,
    PLAN_STRING_CAP,
    delta_jars,
    ivy_dir,
    spark_conf,
    warehouse_dir,
)

REPO = Path(__file__).resolve().parents[1]


def test_session_is_local_utc_with_delta(spark: SparkSession) -> None:
    assert spark.sparkContext.master == "local[2]"
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.extensions") == DELTA_EXTENSION
    assert spark.conf.get("spark.sql.catalog.spark_catalog") == DELTA_CATALOG
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"
    assert spark.conf.get("spark.sql.adaptive.enabled") == "false"
    assert spark.conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
    assert os.environ["PYSPARK_PYTHON"]


def test_timestamps_are_utc(spark: SparkSession) -> None:
    row = spark.sql(
        "SELECT unix_timestamp(timestamp'2026-01-05 08:00:00') AS s, current_timezone() AS tz"
    ).first()
    assert row is not None
    assert row["s"] == 1767600000
    assert row["tz"] == "UTC"


def test_delta_round_trip_and_time_travel(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "people")
    first = spark.createDataFrame([(1, "Li Wei"), (2, "Wang Fang")], "id INT, name STRING")
    first.write.format("delta").save(path)
    spark.createDataFrame([(3, "Zhang Min")], "id INT, name STRING").write.format("delta").mode(
        "append"
    ).save(path)

    assert (tmp_path / "people" / "_delta_log" / "00000000000000000000.json").is_file()
    assert (tmp_path / "people" / "_delta_log" / "00000000000000000001.json").is_file()
    expected = spark.createDataFrame(
        [(1, "Li Wei"), (2, "Wang Fang"), (3, "Zhang Min")], "id INT, name STRING"
    )
    assertDataFrameEqual(spark.read.format("delta").load(path), expected)
    assertDataFrameEqual(spark.read.format("delta").option("versionAsOf", 0).load(path), first)


def test_delta_jars_come_from_the_local_cache_without_duplicates(spark: SparkSession) -> None:
    jars = delta_jars()
    if not jars:
        pytest.skip(f"Delta jar cache {ivy_dir()} is not warm (run make setup)")
    on_classpath = spark.sparkContext.getConf().get("spark.jars", "")
    assert DELTA_JAR in on_classpath
    names = [Path(j).name for j in on_classpath.split(",") if j]
    allowed = ("io.delta_", "io.unitycatalog_", "com.fasterxml.jackson.datatype_", "scala-udf-similarity-")
    assert all(n.startswith(allowed) for n in names), names
    # Splink's similarity functions (EMPI) are registered from its own jar.
    assert [n for n in names if n.startswith("scala-udf-similarity-") and "spark4" in n]
    duplicates_of_pyspark = ("com.fasterxml.jackson.core_", "org.apache.", "org.slf4j_", "org.xerial")
    assert not [n for n in names if n.startswith(duplicates_of_pyspark)]


def test_delta_jars_picks_one_version_of_each_needed_jar(tmp_path: Path) -> None:
    jars = tmp_path / "jars"
    jars.mkdir()
    names = [
        DELTA_JAR,
        "io.delta_delta-storage-4.3.1.jar",
        "io.delta_delta-storage-4.2.0.jar",
        "io.unitycatalog_unitycatalog-client-0.4.0.jar",
        "io.unitycatalog_unitycatalog-client-0.5.0.jar",
        "com.fasterxml.jackson.datatype_jackson-datatype-jdk8-2.13.5.jar",
        "com.fasterxml.jackson.core_jackson-core-2.13.5.jar",
        "org.apache.hadoop_hadoop-client-api-3.4.2.jar",
        "org.apache.logging.log4j_log4j-api-2.25.3.jar",
        "org.slf4j_slf4j-api-2.0.13.jar",
    ]
    for name in names:
        (jars / name).write_bytes(b"")
    assert [p.name for p in delta_jars(tmp_path)] == [
        "com.fasterxml.jackson.datatype_jackson-datatype-jdk8-2.13.5.jar",
        DELTA_JAR,
        "io.delta_delta-storage-4.3.1.jar",
        "io.unitycatalog_unitycatalog-client-0.5.0.jar",
    ]
    (jars / DELTA_JAR).unlink()
    assert delta_jars(tmp_path) == []


def test_spark_conf_defaults_and_user_conf_wins(tmp_path: Path) -> None:
    settings = SparkSettings(master="local[3]", conf={"spark.sql.session.timeZone": "Asia/Shanghai"})
    conf = spark_conf("ingest", Config(lake_root=str(tmp_path / "lake"), spark=settings))
    assert conf["spark.master"] == "local[3]"
    assert conf["spark.app.name"] == "healthlake-ingest"
    assert conf["spark.sql.session.timeZone"] == "Asia/Shanghai"
    assert conf["spark.sql.warehouse.dir"] == str(tmp_path / "lake" / "_warehouse")
    assert conf["spark.ui.showConsoleProgress"] == "false"
    assert "spark.databricks.delta.schema.autoMerge.enabled" not in conf
    # Large generated methods are JIT-compiled unless the user's own JVM options say otherwise.
    assert conf["spark.driver.extraJavaOptions"] == conf["spark.executor.extraJavaOptions"] == HUGE_METHODS
    assert conf["spark.sql.maxPlanStringLength"] == PLAN_STRING_CAP
    mine = SparkSettings(conf={"spark.driver.extraJavaOptions": "-XX:+UseG1GC"})
    conf = spark_conf("ingest", Config(lake_root=str(tmp_path / "lake"), spark=mine))
    assert conf["spark.driver.extraJavaOptions"] == "-XX:+UseG1GC"
    assert warehouse_dir("s3a://bucket/lake/") == "s3a://bucket/lake/_warehouse"


def test_import_starts_no_jvm() -> None:
    code = (
        "import sys, healthlake; assert 'pyspark' not in sys.modules; "
        "assert callable(healthlake.load_config); assert 'pyspark' not in sys.modules; "
        "print(healthlake.__version__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_spark_submit_keeps_the_submitters_master(spark: SparkSession, tmp_path: Path) -> None:
    jars = delta_jars()
    if not jars:
        pytest.skip("Delta jar cache is not warm (run make setup)")
    lake = tmp_path / "lake"
    spark.range(4).write.format("delta").save(str(lake / "bronze" / "numbers"))
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "HEALTHLAKE_SPARK__MASTER": "local[2]",
    }
    command = [
        str(bin_dir / "spark-submit"),
        "--master",
        "local[1]",
        "--conf",
        "spark.ui.enabled=false",
        "--jars",
        ",".join(map(str, jars)),
        str(REPO / "jobs" / "status.py"),
        "-v",
        "--lake",
        str(lake),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bronze  numbers" in result.stdout
    # spark-submit merges the Python process's stderr (our logs) into its stdout.
    assert "session status on local[1]" in result.stdout + result.stderr
