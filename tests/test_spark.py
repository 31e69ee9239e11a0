"""The SparkSession: local, UTC, Delta on disk with time travel, jars from the local cache, spark-submit."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from healthlake.config import Config, SparkSettings
from healthlake.spark import (
    DATAFRAME_DEBUGGING_KEY,
    DELTA_CATALOG,
    DELTA_EXTENSION,
    DELTA_JAR,
    HUGE_METHODS,
    PLAN_STRING_CAP,
    _relay_stderr,
    delta_jars,
    ivy_dir,
    spark_conf,
    user_log_config,
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


def test_pyspark_sends_no_call_sites_to_the_jvm(spark: SparkSession) -> None:
    from pyspark.errors.utils import is_debugging_enabled
    from pyspark.sql import functions as F

    assert spark.conf.get(DATAFRAME_DEBUGGING_KEY) == "false"
    assert not is_debugging_enabled()
    # With call sites on, PySpark asks the JVM for the session and this setting, then sets and clears the
    # call site, around every Column method and some functions: this column took 14 round trips with
    # them off, 44 with (PySpark 4.1.1).
    with counting_py4j_round_trips() as trips:
        (F.col("a") + F.lit(1)).alias("b")
    assert trips[0] < 20, trips


@contextmanager
def counting_py4j_round_trips() -> Iterator[list[int]]:
    """Count the Py4J round trips made inside the block (in the returned one-element list)."""
    from py4j.clientserver import ClientServerConnection

    sent = ClientServerConnection.send_command
    count = [0]

    def counting(self: ClientServerConnection, command: str) -> str:
        count[0] += 1
        return sent(self, command)

    ClientServerConnection.send_command = counting  # type: ignore[method-assign]
    try:
        yield count
    finally:
        ClientServerConnection.send_command = sent  # type: ignore[method-assign]


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
    assert conf[DATAFRAME_DEBUGGING_KEY] == "false"
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
    lake, landing = tmp_path / "lake", tmp_path / "landing"
    landing.mkdir()
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
        # status reads a local lake without Spark: ingest (of an empty landing zone) builds a session.
        str(REPO / "jobs" / "ingest.py"),
        "-v",
        "--landing",
        str(landing),
        "--lake",
        str(lake),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "feed  files  records  quarantined  seconds" in result.stdout
    # spark-submit merges the Python process's stderr (our logs) into its stdout.
    assert "session ingest on local[1]" in result.stdout + result.stderr


# What a driver JVM prints to its stderr itself while Spark's Ivy resolves Delta (spark-submit's --packages),
# then a resolution that failed.
IVY_TRANSCRIPT = """\
WARNING: Using incubator modules: jdk.incubator.vector
:: loading settings :: url = jar:file:/venv/jars/ivy-2.5.3.jar!/org/apache/ivy/core/settings/ivysettings.xml
Ivy Default Cache set to: /repo/.cache/ivy/cache
The jars for the packages stored in: /repo/.cache/ivy/jars
io.delta#delta-spark_4.1_2.13 added as a dependency
:: resolving dependencies :: org.apache.spark#spark-submit-parent-5d0c;1.0
\tconfs: [default]
\tfound io.delta#delta-spark_4.1_2.13;4.3.1 in central
downloading https://repo1.maven.org/maven2/io/delta/delta-spark_4.1_2.13/4.3.1/delta-spark.jar ...
\t[SUCCESSFUL ] io.delta#delta-spark_4.1_2.13;4.3.1!delta-spark_4.1_2.13.jar (1234ms)
:: resolution report :: resolve 2345ms :: artifacts dl 1250ms
\t:: modules in use:
\tio.delta#delta-spark_4.1_2.13;4.3.1 from central in [default]
\t---------------------------------------------------------------------
\t|                  |            modules            ||   artifacts   |
\t|       conf       | number| search|dwnlded|evicted|| number|dwnlded|
\t---------------------------------------------------------------------
\t|      default     |   8   |   8   |   8   |   0   ||   8   |   8   |
\t---------------------------------------------------------------------
:: retrieving :: org.apache.spark#spark-submit-parent-5d0c
\tconfs: [default]
\t8 artifacts copied, 0 already retrieved (5862kB/25ms)
\t[NOT FOUND  ] io.unitycatalog#unitycatalog-client;0.3.1!unitycatalog-client.jar (0ms)
\t::::::::::::::::::::::::::::::::::::::::::::::
\t::          UNRESOLVED DEPENDENCIES         ::
Exception in thread "main" java.lang.RuntimeException: [unresolved dependency: io.x#y;0.3.1: not found]
26/12/06 07:40:01 ERROR SparkContext: Error initializing SparkContext.
"""


def test_the_jvm_stderr_relay_drops_start_up_chatter_and_keeps_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _relay_stderr(io.BytesIO(IVY_TRANSCRIPT.encode()))
    kept = capsys.readouterr().err.splitlines()
    assert kept == IVY_TRANSCRIPT.splitlines()[-5:]


def test_a_log_configuration_of_the_users_own_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    assert not user_log_config("-XX:+UseG1GC")
    assert user_log_config("-XX:+UseG1GC -Dlog4j2.configurationFile=file:/etc/spark/log4j2.xml")
    (tmp_path / "log4j2.properties").write_text("rootLogger.level = info\n", encoding="utf-8")
    assert user_log_config("")
