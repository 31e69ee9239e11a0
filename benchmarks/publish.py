"""Benchmark ``healthlake publish``: full and incremental publish as silver accumulates day by day.

Silver is synthesised straight into the lake with Spark built-ins (no landing files, no conform): an area
hierarchy and institution register, ``--persons`` EMPI persons with one or two source patients each, and
every day ``--day-records`` event rows: encounters (85 % outpatient, 7 % emergency, 8 % inpatient stays of
1–10 days, some readmissions), their diagnoses, chronic-disease follow-ups with their blood pressures and
prescriptions. The event tables carry Delta's change data feed, as conform creates them.

Days accumulate; at each ``--checkpoints`` day (accumulated days) the lake is published in full, then one
more day is added and published incrementally (only what that day changed, see ``docs/gold.md``): the
incremental time should follow the day, the full time the lake. Each line prints the step times of the run.
Baseline, same run: the silver event rows the run covers (all for a full run, the day's for an incremental
one) copied unchanged into a new Delta table.

    python benchmarks/publish.py --persons 2000000 --day-records 1000000 --checkpoints 1,5,10
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HEALTHLAKE_HMAC_KEY", "benchmark-only-key-0123456789abcdef")

from pyspark.sql import Column, DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from healthlake import (
    catalog,
    io,  # noqa: E402
)
from healthlake.config import load_config  # noqa: E402
from healthlake.pipelines import publish  # noqa: E402
from healthlake.pipelines.conform import CDF  # noqa: E402
from healthlake.spark import get_spark  # noqa: E402

START = dt.date(2026, 1, 1)
CITIES, COUNTIES_PER_CITY, TOWNS_PER_COUNTY = 4, 6, 10
EVENT_TABLES = ("silver.encounter", "silver.diagnosis", "silver.chronic_followup", "silver.observation")


def _h(*cols: Column | str, salt: str) -> Column:
    """A deterministic uniform double in [0, 1) from columns (a hash, so any partitioning gives the same)."""
    return (F.abs(F.xxhash64(F.lit(salt), *cols)) % 1_000_000) / 1_000_000.0


def _reference(spark: SparkSession) -> tuple[DataFrame, DataFrame]:
    areas = [("440000", "省", "province", None)]
    institutions = []
    for c in range(1, CITIES + 1):
        city = f"44{c:02d}00"
        areas.append((city, f"市{c}", "city", "440000"))
        institutions.append((f"H{city[:4]}T01", f"市{c}医院", "tertiary_hospital", city))
        for k in range(1, COUNTIES_PER_CITY + 1):
            county = f"44{c:02d}{k:02d}"
            areas.append((county, f"县{c}-{k}", "county", city))
            institutions.append((f"H{county}S01", f"县{c}-{k}医院", "secondary_hospital", county))
            for t in range(1, TOWNS_PER_COUNTY + 1):
                town = f"{county}{t:03d}"
                areas.append((town, f"镇{c}-{k}-{t}", "township", county))
                institutions.append((f"C{town}", f"镇{c}-{k}-{t}卫生院", "township_health_centre", town))
    area_df = spark.createDataFrame(areas, "area_code string, name string, level string, parent_code string")
    inst_df = spark.createDataFrame(
        institutions, "institution_id string, name string, kind string, area_code string"
    ).withColumn("city_code", F.concat(F.substring("area_code", 1, 4), F.lit("00")))
    return area_df, inst_df


def _person_record(p: Column, k: Column, institutions: list[str]) -> tuple[Column, Column]:
    """The institution and source patient number of person ``p``'s record ``k`` (0 or 1), by formula, so
    events can name a patient without a join."""
    insts = F.array(*[F.lit(i) for i in institutions])
    return insts[(F.abs(F.xxhash64(p, k)) % len(institutions)).cast("int")], F.format_string("N%09d-%d", p, k)


def _people(spark: SparkSession, persons: int, institutions: list[str]) -> tuple[DataFrame, DataFrame]:
    """silver.person and silver.person_xref: each person has a record at 1 institution, 30 % at 2."""
    base = spark.range(persons).select(F.col("id").alias("p"))
    people = base.select(
        F.format_string("P%09d", "p").alias("person_id"),
        F.lit("active").alias("status"),
        F.lit(None).cast("string").alias("merged_into"),
        F.sha2(F.col("p").cast("string"), 256).alias("resident_id_token"),
        F.when(_h("p", salt="sex") < 0.5, "F").otherwise("M").alias("sex"),
        F.date_sub(F.lit(START), (_h("p", salt="age") * 90 * 365).cast("int")).alias("birth_date"),
        F.lit(None).cast("string").alias("area_code"),
        F.lit(1).cast("long").alias("record_count"),
        F.lit(1).cast("long").alias("institution_count"),
    )
    two = _h("p", salt="two") < 0.3
    records = base.select(
        "p", F.explode(F.when(two, F.array(F.lit(0), F.lit(1))).otherwise(F.array(F.lit(0)))).alias("k")
    )
    inst, patient = _person_record(F.col("p"), F.col("k"), institutions)
    xref = records.select(
        inst.alias("institution_id"),
        patient.alias("source_patient_id"),
        F.format_string("P%09d", "p").alias("person_id"),
    ).dropDuplicates(["institution_id", "source_patient_id"])
    return people, xref


DIAGNOSES = ["I10", "E11", "J06", "J20", "K29", "R51", "I25", "M54", "N18", "J44"]


def _day(
    spark: SparkSession, day: int, records: int, persons: int, institutions: list[str]
) -> dict[str, DataFrame]:
    """One day of silver events; keys are unique across days."""
    midnight = dt.datetime.combine(START + dt.timedelta(days=day - 1), dt.time())
    n = int(records * 0.55)
    rows = spark.range(n).select(F.lit(day).alias("day"), F.col("id").alias("i"))
    p = F.abs(F.xxhash64("day", "i", F.lit("p"))) % persons
    k = F.when((_h(p, salt="two") < 0.3) & (_h("day", "i", salt="k") < 0.5), 1).otherwise(0)
    inst, patient = _person_record(p, k, institutions)
    u = _h("day", "i", salt="class")
    cls = F.when(u < 0.85, "outpatient").when(u < 0.92, "emergency").otherwise("inpatient")
    admit = F.lit(midnight) + F.make_interval(secs=(_h("day", "i", salt="t") * 86399).cast("int"))
    stay_days = (1 + _h("day", "i", salt="los") * 10).cast("int")
    encounters = rows.select(
        inst.alias("institution_id"),
        F.format_string("E%03d%09d", "day", "i").alias("source_record_id"),
        patient.alias("source_patient_id"),
        cls.alias("encounter_class"),
        F.lit("finished").alias("status"),
        F.lit(False).alias("is_cancelled"),
        admit.alias("admit_time"),
        F.when(cls == "inpatient", admit + F.make_interval(days=stay_days))
        .otherwise(admit + F.make_interval(hours=F.lit(1)))
        .alias("discharge_time"),
        F.lit("内科").alias("department"),
        F.lit(None).cast("string").alias("discharge_disposition"),
        admit.alias("_event_time"),
    )
    diagnoses = (
        encounters.withColumn("_u", _h("source_record_id", salt="dx"))
        .where(F.col("_u") < 0.73)
        .select(
            "institution_id",
            F.concat(F.lit("D"), "source_record_id").alias("source_record_id"),
            "source_patient_id",
            F.col("source_record_id").alias("source_encounter_id"),
            F.lit("ICD-10").alias("code_system"),
            F.lit(None).cast("string").alias("code"),
            F.lit(None).cast("string").alias("diagnosis_text"),
            F.col("admit_time").alias("diagnosis_time"),
            F.lit(False).alias("is_cancelled"),
            F.lit(True).alias("is_primary"),
            F.array(*[F.lit(c) for c in DIAGNOSES])[(F.col("_u") * 1000 % len(DIAGNOSES)).cast("int")].alias(
                "icd10_category"
            ),
            F.col("admit_time").alias("_event_time"),
        )
        .withColumn("icd10_code", F.concat("icd10_category", F.lit(".900")))
        .withColumn("code", F.col("icd10_code"))
    )
    f = spark.range(int(records * 0.025)).select(F.lit(day).alias("day"), F.col("id").alias("i"))
    fp = F.abs(F.xxhash64("day", "i", F.lit("fp"))) % persons
    f_inst, f_patient = _person_record(fp, F.lit(0), institutions)
    hyper = _h("day", "i", salt="disease") < 0.75
    followups = f.select(
        f_inst.alias("institution_id"),
        F.format_string("F%03d%09d", "day", "i").alias("source_record_id"),
        f_patient.alias("source_patient_id"),
        (F.lit(midnight) + F.make_interval(hours=(8 + _h("day", "i", salt="h") * 8).cast("int"))).alias(
            "followup_time"
        ),
        F.when(hyper, "原发性高血压").otherwise("2型糖尿病").alias("disease"),
        F.when(hyper, "I10").otherwise("E11").alias("disease_icd10_category"),
        F.lit(None).cast("date").alias("next_followup_date"),
    ).withColumn("_event_time", F.col("followup_time"))
    measures = followups.select(
        "institution_id",
        "source_record_id",
        "source_patient_id",
        "followup_time",
        F.explode(
            F.when(
                F.col("disease_icd10_category") == "I10",
                F.array(
                    F.struct(
                        F.lit("8480-6").alias("loinc"),
                        (110 + _h("source_record_id", salt="s") * 60).alias("v"),
                    ),
                    F.struct(
                        F.lit("8462-4").alias("loinc"),
                        (65 + _h("source_record_id", salt="d") * 40).alias("v"),
                    ),
                ),
            ).otherwise(
                F.array(
                    F.struct(
                        F.lit("14771-0").alias("loinc"),
                        (4.5 + _h("source_record_id", salt="g") * 5).alias("v"),
                    )
                )
            )
        ).alias("m"),
    )
    observations = measures.select(
        "institution_id",
        F.concat("source_record_id", F.lit("-"), F.col("m.loinc")).alias("source_record_id"),
        "source_patient_id",
        F.lit(None).cast("string").alias("source_encounter_id"),
        F.lit("LOINC").alias("code_system"),
        F.col("m.loinc").alias("code"),
        F.lit(None).cast("string").alias("display"),
        F.col("m.v").alias("value_original"),
        F.when(F.col("m.loinc") == "14771-0", "mmol/L").otherwise("mm[Hg]").alias("unit_original"),
        F.col("followup_time").alias("observation_time"),
        F.lit("vital-signs").alias("category"),
        F.lit(False).alias("is_cancelled"),
        F.col("m.loinc").alias("loinc"),
        F.lit(True).alias("unit_known"),
        F.col("m.v").alias("value"),
        F.when(F.col("m.loinc") == "14771-0", "mmol/L").otherwise("mm[Hg]").alias("unit"),
        F.lit(True).alias("value_in_range"),
        F.col("followup_time").alias("_event_time"),
    )
    medications = encounters.where(_h("source_record_id", salt="rx") < 0.1).select(
        "institution_id",
        F.concat(F.lit("M"), "source_record_id").alias("source_record_id"),
        "source_patient_id",
        F.col("source_record_id").alias("source_encounter_id"),
        F.lit("local").alias("medication_code_system"),
        F.lit("AMLO5").alias("medication_code"),
        F.lit("氨氯地平片").alias("medication_name"),
        F.lit(None).cast("string").alias("dosage_text"),
        F.col("admit_time").alias("authored_at"),
        F.lit("active").alias("status"),
        F.lit(False).alias("is_cancelled"),
        F.col("admit_time").alias("_event_time"),
    )
    return {
        "silver.encounter": encounters,
        "silver.diagnosis": diagnoses,
        "silver.chronic_followup": followups,
        "silver.observation": observations,
        "silver.medication": medications,
    }


def _append(spark: SparkSession, lake: str, name: str, df: DataFrame) -> int:
    io.create_table(spark, lake, name, df.schema, properties=CDF)
    io.append(df, lake, name)
    return int(io.history(spark, lake, name, 1).first()["operationMetrics"]["numOutputRows"])


def _copy_seconds(
    spark: SparkSession, lake: str, work: Path, since_version: dict[str, int] | None
) -> tuple[float, int]:
    """Baseline: the silver event rows (all, or those added since ``since_version``) copied into Delta."""
    started = time.monotonic()
    rows = 0
    for name in (*EVENT_TABLES, "silver.medication"):
        df = io.read_table(spark, lake, name)
        if since_version is not None:
            df = io.read_changes(
                spark, lake, name, since_version[name] + 1, io.latest_version(spark, lake, name)
            )
            df = df.drop("_change_type", "_commit_version", "_commit_timestamp")
        target = work / "copy" / name.replace(".", "_")
        df.write.format("delta").mode("overwrite").save(str(target))
        rows += int(spark.read.format("delta").load(str(target)).count())
    return time.monotonic() - started, rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--persons", type=int, default=200_000)
    parser.add_argument("--day-records", type=int, default=100_000, help="silver event rows per day")
    parser.add_argument(
        "--checkpoints",
        default="1,3",
        help="accumulated days at which the lake is published in full, then one more day incrementally",
    )
    parser.add_argument("--work", help="work folder (default: a temporary one, removed afterwards)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    checkpoints = sorted({int(d) for d in args.checkpoints.split(",") if d})
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="healthlake-publish-bench-"))
    lake = str(work / "lake")
    # The incremental path whatever the lake size (publish.incremental_min_rows): what is measured.
    cfg = load_config(overrides={"lake_root": lake, "publish.incremental_min_rows": 0})
    spark = get_spark("publish-benchmark", cfg)
    started = time.monotonic()
    areas, institutions = _reference(spark)
    ids = [r[0] for r in institutions.select("institution_id").collect()]  # ~300 rows of master data
    io.overwrite(areas, lake, "silver.area")
    io.overwrite(institutions, lake, "silver.institution")
    people, xref = _people(spark, args.persons, ids)
    # With change feeds, as `healthlake link` creates them.
    io.append(people, lake, catalog.SILVER_PERSON, properties=CDF)
    io.append(xref, lake, catalog.SILVER_PERSON_XREF, properties=CDF)
    print(
        f"\npublish benchmark: {args.persons:,} persons, {args.day_records:,} event rows a day, "
        f"checkpoints {checkpoints} (setup {time.monotonic() - started:.0f}s), {os.cpu_count()} cores"
    )
    print(
        f"{'day':>4} {'mode':<12}{'lake rows':>12}{'day rows':>10}{'seconds':>9}{'rows/s':>10}{'copy s':>8}"
        "  steps"
    )
    total, day = 0, 0

    def add_day() -> tuple[int, dict[str, int]]:
        nonlocal total, day
        day += 1
        tables = (*EVENT_TABLES, "silver.medication")
        before = {t: io.latest_version(spark, lake, t) for t in tables if io.is_table(spark, lake, t)}
        frames = _day(spark, day, args.day_records, args.persons, ids)
        added = sum(_append(spark, lake, name, df) for name, df in frames.items())
        total += added
        return added, before

    def report(result: publish.PublishResult, rows: int, added: int, copy_s: float) -> None:
        steps = ", ".join(f"{k} {v:.0f}" for k, v in result.steps.items())
        print(
            f"{day:>4} {result.mode:<12}{total:>12,}{added:>10,}{result.seconds:>9.1f}"
            f"{rows / result.seconds:>10,.0f}{copy_s:>8.1f}  {steps}",
            flush=True,
        )

    for checkpoint in checkpoints:
        while day < checkpoint:
            added, _ = add_day()
        result = publish.run(spark, cfg, full=True)
        report(result, total, added, _copy_seconds(spark, lake, work, None)[0])
        added, before = add_day()
        result = publish.run(spark, cfg)
        report(result, added, added, _copy_seconds(spark, lake, work, before)[0])
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
