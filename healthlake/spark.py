"""The one place a SparkSession is built: Delta Lake, UTC, Arrow, a local jar cache, spark-submit aware.

Delta's JVM jars come from a project-local Ivy cache (``<repo>/.cache/ivy``, or ``$HEALTHLAKE_IVY_DIR``).
``python -m healthlake.spark --warm`` fills it once (``make setup`` does); after that sessions put the
cached Delta jars on ``spark.jars`` and never touch the network.

Under ``spark-submit`` the submitter's settings win: the master, ``--conf`` values and jars it set are
kept and only missing keys are filled in. The driver's classpath is fixed before Python starts, so pass
the Delta jars to ``spark-submit`` yourself: ``--jars "$(python -m healthlake.spark --jars)"`` or
``--packages io.delta:delta-spark_4.1_2.13:4.3.1``.

Run as a module::

    python -m healthlake.spark --warm   # download Delta into the cache, check one Delta write
    python -m healthlake.spark --jars   # print the cached Delta (and Splink) jars, comma-separated
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from pyspark import SparkConf, SparkContext
from pyspark.java_gateway import launch_gateway
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from healthlake import logs
from healthlake.config import REPO_ROOT, Config, SparkSettings, is_uri, load_config
from healthlake.errors import HealthlakeError, UsageError

logger = logging.getLogger("healthlake.spark")  # not __name__: also run as __main__

DELTA_VERSION = "4.3.1"
"""delta-spark version; must equal the pinned ``delta-spark`` wheel."""
SPARK_MINOR = "4.1"
"""Spark major.minor that the Delta artifact is built for; must match the pinned ``pyspark``."""
SCALA_VERSION = "2.13"
DELTA_PACKAGE = f"io.delta:delta-spark_{SPARK_MINOR}_{SCALA_VERSION}:{DELTA_VERSION}"
"""Maven coordinates of Delta Lake for ``--packages``."""
DELTA_JAR = f"io.delta_delta-spark_{SPARK_MINOR}_{SCALA_VERSION}-{DELTA_VERSION}.jar"
"""File name of the Delta jar in Ivy's ``jars/`` folder; its presence means the cache is warm."""
DELTA_STORAGE_JAR = f"io.delta_delta-storage-{DELTA_VERSION}.jar"

DELTA_EXTENSION_KEY = "spark.sql.extensions"
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG_KEY = "spark.sql.catalog.spark_catalog"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"

DELTA_JAR_PREFIXES = (
    "io.delta_",
    "io.unitycatalog_",
    "com.fasterxml.jackson.datatype_jackson-datatype-jdk8-",
)
"""Cached jars that go on ``spark.jars``: Delta, Unity Catalog client (Delta's storage layer needs it) and
jackson-datatype-jdk8 (Delta Kernel needs it; pyspark lacks it). Ivy also resolves jackson, hadoop,
log4j, parquet, slf4j, snappy, zstd, RoaringBitmap …, which pyspark's own ``jars/`` already holds in
the versions Spark was built with: putting Ivy's older copies on the classpath breaks Spark."""

IVY_DIR_ENV = "HEALTHLAKE_IVY_DIR"
"""Environment variable naming the Ivy cache folder (default ``<repo>/.cache/ivy``)."""
WAREHOUSE_DIR_NAME = "_warehouse"
"""Spark SQL warehouse folder inside the lake root (catalog databases; tables live in layer folders)."""
QUIET_LOG_LEVEL = "ERROR"
"""Root log level of Spark's JVM logs by default (``healthlake.logs``)."""
VERBOSE_LOG_LEVEL = "WARN"
"""Root log level of Spark's JVM logs with ``-v`` (what pyspark itself sets for a shell)."""
DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"
LOG_CONFIG_PROPERTIES = ("log4j2.configurationFile", "log4j.configurationFile", "log4j.configuration")
"""JVM system properties that name a log4j configuration (log4j 2's own, and its 1.x-style aliases)."""
_JVM_NOISE = re.compile(
    r"WARNING: Using incubator modules: "  # every JVM Spark 4.1 starts: --add-modules=jdk.incubator.vector
    # Ivy resolving --packages (the first session only, warming the jar cache); its errors are kept.
    r"|:: (loading settings|resolving dependencies|resolution report|retrieving) ::"
    r"|Ivy Default Cache set to: |The jars for the packages stored in: |\S+#\S+ added as a dependency"
    r"|\s+(confs: \[|found \S+#\S+;\S+ in |:: modules in use:|\S+#\S+;\S+ (from|by) |\[SUCCESSFUL \]"
    r"|-{10,}$|\|.*\|$|\d+ artifacts copied)"
    r"|downloading https?://\S+ \.\.\.$"
)
"""Lines the driver JVM writes to stderr itself (not through log4j) that a default run does not show."""
HUGE_METHODS = "-XX:-DontCompileHugeMethods"
"""JVM option: compile large generated methods too (see ``spark_conf``)."""
DATAFRAME_DEBUGGING_KEY = "spark.python.sql.dataFrameDebugging.enabled"
"""Static setting: PySpark sends each call's Python call site to the JVM (see ``spark_conf``)."""
PLAN_STRING_CAP = "1m"
"""Characters of a plan's text Spark renders (see ``spark_conf``; Spark's default is unbounded)."""

TEST_CONF: dict[str, str] = {
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.sql.adaptive.enabled": "false",
    "spark.ui.enabled": "false",
    # One session runs a worker's whole share of the suite, and Delta keeps every table state it read
    # cached: with Spark's 1 GiB default heap, a publish after the region tests (ingest, conform, link,
    # publish in the same JVM) ran 3.5x slower (113 s against 33 s) collecting garbage.
    "spark.driver.memory": "3g",
    "spark.databricks.delta.snapshotPartitions": "2",
    # Tests run many small queries: compiling generated code for each costs more than running it
    # interpreted (the gold and research tests took 84 s with code generation, 71 s without). Results
    # are the same either way; production sessions keep Spark's code generation.
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    # A test worker's JVM lives for its whole share of the suite, so the optimising JIT (C2) pays for its
    # warm-up, and the throughput collector beats the serial one on Delta's cached table states: a conform
    # of one small CSV batch, warm, took 41 s with C1 only and the serial collector, 32 s with C2 and G1,
    # 24 s with C2 and the parallel collector (BENCHMARKS.md, "Test session JVM"). A code cache
    # of 512 MB: silver's plans are large.
    "spark.driver.extraJavaOptions": "-XX:+UseParallelGC -XX:ReservedCodeCacheSize=512m",
}
"""Settings for a small, fast test session (see ``get_test_spark``)."""

_LAUNCHER_ONLY_KEYS = ("spark.jars", "spark.jars.packages", "spark.jars.ivy")


def get_spark(app_name: str, cfg: Config | None = None) -> SparkSession:
    """Return the SparkSession for ``app_name``, building it with healthlake's defaults if needed.

    An already active session is reused (only runtime SQL settings that nobody set are filled in). Under
    ``spark-submit`` only keys that the submitter left unset are added. Otherwise a new session is built
    with ``cfg.spark.master``, UTC, Arrow, Delta's extension and catalog, the warehouse under the lake
    root, the cached Delta jars and ``cfg.spark.conf`` on top.

    Unless ``-v`` (``healthlake.logs.verbose()``), Spark is quiet: a JVM started here reads
    ``healthlake/log4j2.properties`` (root logger at ERROR, from its first line on) and its stderr is
    relayed without the start-up chatter it prints itself; an existing JVM gets the root level ERROR.
    A log4j configuration of the user's own (named in ``spark.driver.extraJavaOptions``, in Spark's conf
    folder, or given to spark-submit's JVM) is left alone.

    Args:
        app_name: Name of the stage or tool; prefixed with ``cfg.spark.app_name``.
        cfg: Configuration; None loads the default one.

    Returns:
        The SparkSession.

    Raises:
        UsageError: Under ``spark-submit`` when the Delta jars are not on the driver's classpath.
    """
    cfg = cfg if cfg is not None else load_config()
    submitted = launched_by_spark_submit()
    if not submitted:
        # pandas UDFs fail on workers ("No module named pandas") unless they run this interpreter.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        # pandas-on-Spark asks for this on driver and workers with pyarrow >= 2.
        os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")

    wanted = spark_conf(app_name, cfg)
    if SparkContext._active_spark_context is not None:
        session = SparkSession.builder.getOrCreate()
        _fill_runtime_conf(session, wanted)
        return session

    quiet = not logs.verbose()
    if submitted:
        SparkContext._ensure_initialized()
        present = SparkConf()
        for key in _LAUNCHER_ONLY_KEYS:
            wanted.pop(key, None)
        wanted = {key: value for key, value in wanted.items() if not present.contains(key)}
        _require_delta_classes()
        own_log_config = _jvm_has_log_config()
        logger.debug("spark-submit detected; filling in %s", sorted(wanted))
    elif not delta_jars():
        extra = [p for p in wanted.pop("spark.jars.packages", "").split(",") if p]
        cache = wanted.pop("spark.jars.ivy", str(ivy_dir()))
        logger.info("Delta jars not cached in %s: downloading %s through Ivy (once)", cache, DELTA_PACKAGE)
        # What delta's configure_spark_with_delta_pip asks for: delta-spark for this Spark and Scala.
        wanted.update({"spark.jars.ivy": cache, "spark.jars.packages": ",".join([DELTA_PACKAGE, *extra])})
    if not submitted:
        own_log_config = user_log_config(wanted.get(DRIVER_JAVA_OPTIONS, ""))
        if quiet and not own_log_config:
            # Read when the JVM starts: Spark's own start-up warnings are silenced too, not only later ones.
            quiet_options = f"-Dlog4j2.configurationFile={logs.JVM_LOG_CONFIG.as_uri()}"
            wanted[DRIVER_JAVA_OPTIONS] = f"{wanted.get(DRIVER_JAVA_OPTIONS, '')} {quiet_options}".strip()
        if quiet and SparkContext._gateway is None:
            _start_quiet_jvm(wanted)

    session = SparkSession.builder.config(map=dict(wanted)).getOrCreate()
    if not own_log_config:
        session.sparkContext.setLogLevel(QUIET_LOG_LEVEL if quiet else VERBOSE_LOG_LEVEL)
    if quiet:
        _quiet_query_context_loggers()
    logger.debug("Spark %s session %s on %s", session.version, app_name, session.sparkContext.master)
    return session


def get_test_spark(work_dir: str | os.PathLike[str], conf: Mapping[str, str] | None = None) -> SparkSession:
    """Build the small session used by the test suite: ``local[2]``, ``TEST_CONF``, lake in ``work_dir``.

    Args:
        work_dir: Temporary folder; the warehouse goes to ``<work_dir>/lake/_warehouse``.
        conf: Extra settings on top of ``TEST_CONF``.

    Returns:
        The SparkSession.
    """
    settings = SparkSettings(master="local[2]", app_name="healthlake", conf={**TEST_CONF, **(conf or {})})
    cfg = Config(lake_root=str(Path(work_dir) / "lake"), spark=settings)
    return get_spark("tests", cfg)


def stop_spark() -> None:
    """Stop the active SparkSession, if any (the JVM gateway stays up for a later session)."""
    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()


def spark_conf(app_name: str, cfg: Config) -> dict[str, str]:
    """The Spark settings healthlake wants for ``app_name`` (before any spark-submit filtering).

    Args:
        app_name: Name of the stage or tool.
        cfg: Configuration.

    Returns:
        Setting name to value; ``cfg.spark.conf`` wins over the built-in defaults.
    """
    prefix = cfg.spark.app_name
    name = app_name if not prefix or app_name.startswith(prefix) else f"{prefix}-{app_name}"
    conf = {
        "spark.master": cfg.spark.master,
        "spark.app.name": name,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        DELTA_EXTENSION_KEY: DELTA_EXTENSION,
        DELTA_CATALOG_KEY: DELTA_CATALOG,
        "spark.sql.warehouse.dir": warehouse_dir(cfg.lake_root),
        "spark.ui.showConsoleProgress": "false",
        # Feeds arrive in GBK/GB18030 too: let decode() use every Java charset, and turn undecodable
        # bytes into U+FFFD (which ingest detects and quarantines) rather than failing the whole job.
        "spark.sql.legacy.javaCharsets": "true",
        "spark.sql.legacy.codingErrorAction": "true",
        # Landing zones are many small files (5-100 kB): Spark's 4 MB per-file open-cost estimate would
        # give each file nearly a task of its own; 64 kB packs them into fewer, fuller tasks.
        "spark.sql.files.openCostInBytes": "65536",
        # Spark fuses a stage into one generated method; past 8,000 bytecodes the JVM never compiles a
        # method and runs it interpreted. Ingest's parse stages pass that size (a location-ping ingest
        # parsed and wrote ~1.4x faster with this flag).
        "spark.driver.extraJavaOptions": HUGE_METHODS,
        "spark.executor.extraJavaOptions": HUGE_METHODS,
        # Adaptive execution renders the whole physical plan to text at every re-plan, and a cached
        # frame's plan is printed inside every plan that reads it. The incremental publish nests several:
        # one rendering ran a 4 GiB driver out of heap (a 200 k-row day on a 2 M-person lake). Spark's
        # documentation advises a cap; the text is only for the UI and logs.
        "spark.sql.maxPlanStringLength": PLAN_STRING_CAP,
        # PySpark 4 records the Python call site of every Column method (and some functions) in the JVM,
        # for the query context of an error: six Py4J round trips on top of each call's own. Our stages
        # build plans from thousands of such calls: a small conform made 154 k round trips with it, 79 k
        # without (61 -> 54 s warm; BENCHMARKS.md, "PySpark's call sites"). Errors keep their message
        # and Spark's own query context.
        DATAFRAME_DEBUGGING_KEY: "false",
    }
    jars = [*delta_jars(), *linkage_jars()]
    if jars:
        own = [j for j in cfg.spark.conf.get("spark.jars", "").split(",") if j]
        conf["spark.jars"] = ",".join([*own, *(str(j) for j in jars)])
    return {**conf, **{k: v for k, v in cfg.spark.conf.items() if not (jars and k == "spark.jars")}}


UNION_WITHOUT_PARTITIONING = {"spark.sql.unionOutputPartitioning": "false"}
"""Spark 4 lets a UNION ALL report its children's shared hash partitioning, so a join above it skips the
shuffle; with windows and aggregates over a union of small frames it can zip children of different
partition counts and fail ("Can't zip RDDs with unequal numbers of partitions", seen in
``gold.health_code``'s rule days on Spark 4.1.1). The epidemic stage runs with this; the saved shuffle
is worth keeping everywhere else (a publish test ran ~7 % faster with it)."""


@contextmanager
def sql_conf(spark: SparkSession, settings: Mapping[str, str]) -> Iterator[None]:
    """Run the block with the session's runtime SQL ``settings`` set, then put back what was there."""
    before: dict[str, str | None] = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


def local_checkpoint(df: DataFrame) -> DataFrame:
    """``df`` computed now and kept in executor storage, its plan no longer reading any table.

    For a frame a run reads several times, or one a later write of its source table would otherwise
    recompute: Spark's ``localCheckpoint``, which cuts the lineage (a cached frame's plan still carries
    every plan below it, and plans built on several such frames grow large enough to slow every query).
    Spark frees the blocks once the frame is no longer referenced. Losing an executor loses them, and
    with them the run; the jobs that use this are safe to re-run.
    """
    # Columns re-aliased first: a checkpoint keeps its plan's attribute ids, and one joined back to the
    # frame it came from fails to resolve ("Failure when resolving conflicting references in Join").
    return df.select(*[F.col(c).alias(c) for c in df.columns]).localCheckpoint(eager=True)


def linkage_jars() -> list[Path]:
    """Splink's similarity functions (``jaro_winkler``, ``damerau_levenshtein``) for the EMPI, if installed.

    They ship inside the ``splink`` wheel and must be on the classpath when the session starts.
    """
    try:
        from splink.backends.spark import similarity_jar_location
    except ImportError:
        return []
    return [Path(similarity_jar_location())]


def warehouse_dir(lake_root: str) -> str:
    """The Spark SQL warehouse folder inside the lake root (absolute for a local root)."""
    if is_uri(lake_root):
        return f"{lake_root.rstrip('/')}/{WAREHOUSE_DIR_NAME}"
    return str(Path(lake_root).expanduser().resolve() / WAREHOUSE_DIR_NAME)


def launched_by_spark_submit() -> bool:
    """True when this Python process was started by ``spark-submit`` (or ``pyspark``) around a JVM."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def ivy_dir() -> Path:
    """The Ivy cache folder: ``$HEALTHLAKE_IVY_DIR``, else ``<repo>/.cache/ivy``, else the user cache."""
    configured = os.environ.get(IVY_DIR_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    if REPO_ROOT is not None:
        return REPO_ROOT / ".cache" / "ivy"
    return Path.home() / ".cache" / "healthlake" / "ivy"


def delta_jars(cache: Path | None = None) -> list[Path]:
    """The cached jars to put on ``spark.jars``, or an empty list when the cache is not warm.

    Only jars named by ``DELTA_JAR_PREFIXES`` are taken; of Delta's own jars only version
    ``DELTA_VERSION``, of the others the newest version of each artifact (a cache can hold several).

    Args:
        cache: Ivy cache folder; default ``ivy_dir()``.

    Returns:
        Absolute jar paths, sorted by name.
    """
    jars_dir = (cache or ivy_dir()) / "jars"
    if not ((jars_dir / DELTA_JAR).is_file() and (jars_dir / DELTA_STORAGE_JAR).is_file()):
        return []
    newest: dict[str, tuple[tuple[int, ...], Path]] = {}
    for jar in jars_dir.glob("*.jar"):
        if not jar.name.startswith(DELTA_JAR_PREFIXES):
            continue
        match = re.fullmatch(r"(.+?)-(\d+(?:\.\d+)*)(?:-[\w.]+)?\.jar", jar.name)
        if match is None:
            continue
        artifact, version = match.group(1), match.group(2)
        if artifact.startswith("io.delta_") and version != DELTA_VERSION:
            continue
        key = tuple(int(part) for part in version.split("."))
        if artifact not in newest or key > newest[artifact][0]:
            newest[artifact] = (key, jar.resolve())
    return sorted((path for _, path in newest.values()), key=lambda p: p.name)


def warm_jar_cache() -> list[Path]:
    """Fill the Ivy cache with Delta's jars (downloading them if needed) and check one Delta round trip.

    Returns:
        The jars that later sessions put on ``spark.jars``.

    Raises:
        HealthlakeError: When the round trip succeeded but the cache still lacks the Delta jar.
    """
    with tempfile.TemporaryDirectory(prefix="healthlake-warm-") as tmp:
        small = {"spark.sql.shuffle.partitions": "1", "spark.databricks.delta.snapshotPartitions": "1"}
        settings = SparkSettings(master="local[1]", conf={"spark.ui.enabled": "false", **small})
        spark = get_spark("warm", Config(lake_root=str(Path(tmp) / "lake"), spark=settings))
        path = str(Path(tmp) / "lake" / "tmp" / "warm")
        spark.range(3).write.format("delta").save(path)
        rows = spark.read.format("delta").load(path).count()
        spark.stop()
    jars = delta_jars()
    if rows != 3 or not jars:
        raise HealthlakeError(f"Delta jar cache {ivy_dir()} is still empty after a Delta write")
    logger.info("Delta jar cache ready in %s (%d jars for spark.jars)", ivy_dir(), len(jars))
    return jars


def user_log_config(driver_java_options: str) -> bool:
    """True when the user configured the driver JVM's logs: a log4j configuration named in
    ``driver_java_options``, or a ``log4j2.*`` file in Spark's conf folder (``SPARK_CONF_DIR``, else
    ``$SPARK_HOME/conf``, else pyspark's own ``conf``), which Spark puts on the driver's classpath."""
    if any(f"-D{name}=" in driver_java_options for name in LOG_CONFIG_PROPERTIES):
        return True
    conf_dir = os.environ.get("SPARK_CONF_DIR")
    if not conf_dir:
        conf_dir = str(Path(os.environ.get("SPARK_HOME") or _pyspark_dir()) / "conf")
    folder = Path(conf_dir)
    return folder.is_dir() and any(folder.glob("log4j2*.*"))


def _pyspark_dir() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _jvm_has_log_config() -> bool:
    """True when the running driver JVM (started by spark-submit) was given its own log4j configuration."""
    jvm = SparkContext._jvm
    assert jvm is not None
    system = jvm.java.lang.System
    return any(system.getProperty(name) for name in LOG_CONFIG_PROPERTIES) or user_log_config("")


def _start_quiet_jvm(settings: Mapping[str, str]) -> None:
    """Start the driver JVM as pyspark would, with its stderr relayed without its start-up chatter.

    pyspark launches ``spark-submit`` with the settings as ``--conf`` (``launch_gateway``, whose
    ``popen_kwargs`` exist to capture the JVM's output); a thread copies the JVM's stderr to ours except
    the lines ``_JVM_NOISE`` matches (the JVM's incubator-module warning, Ivy's resolution report). Its
    log4j logs and anything else it prints (a failure to start among them) pass through.
    """
    conf = SparkConf(loadDefaults=False).setAll(list(settings.items()))
    gateway = launch_gateway(conf, popen_kwargs={"stderr": subprocess.PIPE})
    relay = threading.Thread(
        target=_relay_stderr, args=(gateway.proc.stderr,), name="healthlake-jvm-stderr", daemon=True
    )
    relay.start()
    SparkContext._ensure_initialized(gateway=gateway)


def _relay_stderr(stream: IO[bytes]) -> None:
    """Copy the JVM's stderr lines to ``sys.stderr`` until it closes, leaving out ``_JVM_NOISE``."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace")
        if _JVM_NOISE.match(line.rstrip("\r\n")):
            continue
        try:
            sys.stderr.write(line)
            sys.stderr.flush()
        except (OSError, ValueError):  # stderr closed at exit: keep draining, or the JVM would block
            pass


def _quiet_query_context_loggers() -> None:
    """Hold pyspark's query-context loggers (a JSON record per failed query) at ERROR's next level."""
    from pyspark.logger import PySparkLogger

    for name in ("DataFrameQueryContextLogger", "SQLQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)


def _fill_runtime_conf(session: SparkSession, wanted: Mapping[str, str]) -> None:
    """Set runtime SQL settings of an existing session that neither its builder nor its user set."""
    static = session.sparkContext.getConf()
    for key, value in wanted.items():
        if static.contains(key) or not session.conf.isModifiable(key):
            continue
        if session.conf.get(key, None) is None:
            session.conf.set(key, value)


def _require_delta_classes() -> None:
    """Fail with one line when the JVM started by spark-submit cannot load Delta."""
    jvm = SparkContext._jvm
    assert jvm is not None
    if not jvm.org.apache.spark.util.Utils.classIsLoadable(DELTA_EXTENSION):
        raise UsageError(
            "Delta Lake jars are not on the spark-submit classpath: add "
            '--jars "$(python -m healthlake.spark --jars)" or --packages ' + DELTA_PACKAGE
        )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m healthlake.spark``.

    Args:
        argv: Arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        The process exit code.
    """
    from healthlake.logs import configure_logging, output

    parser = argparse.ArgumentParser(prog="python -m healthlake.spark", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--warm", action="store_true", help="download Delta into the jar cache and test it")
    action.add_argument("--jars", action="store_true", help="print the cached Delta jars for --jars")
    args = parser.parse_args(argv)
    configure_logging(verbosity=0)
    if args.warm:
        warm_jar_cache()
        return 0
    jars = delta_jars()
    if not jars:
        sys.stderr.write(f"healthlake: error: no Delta jars in {ivy_dir()}; run make setup first\n")
        return 2
    output(",".join(str(j) for j in [*jars, *linkage_jars()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
