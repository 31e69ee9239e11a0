"""Benchmark ``gold.health_code`` for a region: the first day, and each day after it (issue 31).

The issue's targets: health codes for a 1 M-resident region in ≤ 2 minutes, and the incremental day at
10 days of history in ≤ 1.5× the first day.

The inputs the table reads are generated in Spark (``spark.range``, no Python per record) as the gold
tables an outbreak would leave, and written as Delta tables of a benchmark lake (not timed):

* ``gold.patient_360``: ``--residents`` persons (only ``person_id`` is read);
* ``gold.epidemic_cases``: a steady outbreak, ``--cases-per-day`` new cases a day;
* ``gold.isolation``: an order per case (released after 14 days) and per close contact (from the case's
  report day, released after 14 days);
* ``gold.close_contacts``: ``--contacts`` per case, last contact the day before the report;
* ``gold.nat_pool_followup``: a positive 10-in-1 pool per case, members re-tested the next day;
* ``gold.risk_persons``: ``--risk-area`` persons per case pinged in its risk area, negative two days later.

Each day's inputs are the outbreak as known on that day (a release, re-test or negative test appears on
its day), written as a new version of each table. Each day is then refreshed as the epidemic stage does
(``healthlake.derived.refresh`` with the stage's ``Inputs``): day 1 as a first run, every later day as a run
after the day before (the table's own rule decides: it has no incremental rule and is built in full); the last
day is also built again as a first run, as a same-run baseline. A warm-up on a 10,000-resident region comes
first. Persons are drawn at random, so a person may be a contact of several cases or in several rules at
once; every day checks that each resident holds exactly one current code.

Printed: one line per day (persons under a rule, rows of ``gold.health_code``, seconds, persons/s) and the
ratio of the last day to the first.

    python benchmarks/health_code.py --residents 1000000 --days 10
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyspark.sql import Column, DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from healthlake import io  # noqa: E402
from healthlake.catalog import (  # noqa: E402
    GOLD_CLOSE_CONTACTS,
    GOLD_EPIDEMIC_CASES,
    GOLD_HEALTH_CODE,
    GOLD_ISOLATION,
    GOLD_NAT_POOL_FOLLOWUP,
    GOLD_PATIENT_360,
    GOLD_RISK_PERSONS,
)
from healthlake.config import load_config  # noqa: E402
from healthlake.derived import Inputs, LastRun, refresh  # noqa: E402
from healthlake.epidemic.health_code import HEALTH_CODE  # noqa: E402
from healthlake.spark import UNION_WITHOUT_PARTITIONING, get_spark, sql_conf  # noqa: E402

FIRST_DAY = dt.date(2022, 3, 1)
RELEASE_DAYS, POOL_SIZE = 14, 10
INPUTS = (
    GOLD_PATIENT_360,
    GOLD_EPIDEMIC_CASES,
    GOLD_ISOLATION,
    GOLD_CLOSE_CONTACTS,
    GOLD_NAT_POOL_FOLLOWUP,
    GOLD_RISK_PERSONS,
)


def _person(residents: int, *salt: Column | int) -> Column:
    """A resident drawn by hash (``HP`` + 16 hex digits, the shape of the lake's person ids)."""
    index = F.pmod(F.xxhash64(*[s if isinstance(s, Column) else F.lit(s) for s in salt]), F.lit(residents))
    return F.concat(F.lit("HP"), F.lpad(F.hex(index), 16, "0"))


def _day(n: Column | int) -> Column:
    """Benchmark day ``n`` (1 = ``FIRST_DAY``) as a local date."""
    return F.date_add(F.lit(FIRST_DAY), (n if isinstance(n, Column) else F.lit(n)) - 1)


def _at(day: Column, hour: int) -> Column:
    """A UTC instant on local ``day`` at local ``hour`` (+08:00)."""
    return F.to_utc_timestamp(
        F.make_timestamp_ntz(F.year(day), F.month(day), F.dayofmonth(day), F.lit(hour), F.lit(0), F.lit(0)),
        "Asia/Shanghai",
    )


def _known_by(day: Column, today: int) -> Column:
    """``day`` when it has come by ``today`` (a later event is not known yet), else NULL."""
    return F.when(day <= _day(today), day)


def outbreak(spark: SparkSession, residents: int, days: int, per_day: int) -> DataFrame:
    """The cases of the whole run, ``per_day`` a day: ``case_no``, ``report_n`` (day), ``person_id``.

    A steady outbreak, so that day 10 differs from day 1 by its history only (every rule lasts 14 days, so
    the persons under a rule still grow day by day).
    """
    return spark.range(per_day * days).select(
        F.col("id").alias("case_no"),
        (F.floor(F.col("id") / per_day) + 1).cast("int").alias("report_n"),
        _person(residents, F.col("id"), 1).alias("person_id"),
    )


def inputs_on(
    spark: SparkSession, cases_all: DataFrame, residents: int, today: int, contacts: int, risk_area: int
) -> dict[str, DataFrame]:
    """The input tables as known on benchmark day ``today``."""
    cases = cases_all.where(F.col("report_n") <= today).withColumn("report_date", _day(F.col("report_n")))
    epidemic_cases = cases.select(
        "person_id",
        "report_date",
        F.date_sub("report_date", 1).alias("sample_date"),
        _at(F.col("report_date"), 10).alias("first_positive_report_time"),
    )
    fanout = cases.select(
        "case_no", "person_id", "report_date", F.explode(F.sequence(F.lit(1), F.lit(contacts))).alias("j")
    )
    contact_rows = fanout.select(
        F.col("person_id").alias("case_person_id"),
        _person(residents, F.col("case_no"), F.col("j"), 2).alias("contact_person_id"),
        _at(F.date_sub("report_date", 1), 18).alias("last_contact_at"),
        "report_date",
        "case_no",
        "j",
    )
    released = _known_by(F.date_add("report_date", RELEASE_DAYS), today)
    orders = cases.select(
        F.concat(F.lit("GL"), F.col("case_no").cast("string")).alias("source_record_id"),
        "person_id",
        F.lit("case").alias("category"),
        F.lit("hospital").alias("place_type"),
        F.col("report_date").alias("start_date"),
        F.date_add("report_date", RELEASE_DAYS).alias("planned_end_date"),
        released.alias("released_date"),
    ).unionByName(
        contact_rows.select(
            F.concat(
                F.lit("GL"), F.col("case_no").cast("string"), F.lit("-"), F.col("j").cast("string")
            ).alias("source_record_id"),
            F.col("contact_person_id").alias("person_id"),
            F.lit("close_contact").alias("category"),
            F.lit("centralized").alias("place_type"),
            F.col("report_date").alias("start_date"),
            F.date_add("report_date", RELEASE_DAYS).alias("planned_end_date"),
            released.alias("released_date"),
        )
    )
    members = cases.select(
        "case_no", "report_date", F.explode(F.sequence(F.lit(1), F.lit(POOL_SIZE))).alias("j")
    )
    retest_day = _known_by(F.date_add("report_date", 1), today)
    followup = members.select(
        F.concat(F.lit("POOL"), F.col("case_no").cast("string")).alias("pool_id"),
        _person(residents, F.col("case_no"), F.col("j"), 3).alias("person_id"),
        _at(F.col("report_date"), 8).alias("pool_report_time"),
        F.when(retest_day.isNotNull(), _at(retest_day, 9)).alias("retest_sample_time"),
    )
    visitors = cases.select(
        "case_no", "report_date", F.explode(F.sequence(F.lit(1), F.lit(risk_area))).alias("j")
    )
    negative_day = _known_by(F.date_add("report_date", 2), today)
    risk_persons = visitors.select(
        _person(residents, F.col("case_no"), F.col("j"), 4).alias("person_id"),
        F.lit("risk_area").alias("category"),
        F.col("report_date").alias("identified_date"),
        F.when(negative_day.isNotNull(), _at(negative_day, 11)).alias("first_negative_at"),
    )
    return {
        GOLD_EPIDEMIC_CASES: epidemic_cases,
        GOLD_ISOLATION: orders,
        GOLD_CLOSE_CONTACTS: contact_rows.drop("report_date", "case_no", "j"),
        GOLD_NAT_POOL_FOLLOWUP: followup,
        GOLD_RISK_PERSONS: risk_persons,
    }


def _refresh(
    spark: SparkSession, lake: str, zone: str, today: int, last: LastRun | None
) -> tuple[float, LastRun, str]:
    """One run of the table as the epidemic stage runs it: seconds, its log, and what it did (``full``,
    ``incremental``)."""
    versions = {name: io.latest_version(spark, lake, name) for name in INPUTS}
    inputs = Inputs(spark, lake, versions, zone, as_of=FIRST_DAY + dt.timedelta(days=today - 1), last=last)
    started = time.perf_counter()
    with sql_conf(spark, UNION_WITHOUT_PARTITIONING):
        done = refresh(inputs, [HEALTH_CODE], full=last is None)
    seconds = time.perf_counter() - started
    written = {GOLD_HEALTH_CODE: io.latest_version(spark, lake, GOLD_HEALTH_CODE)}
    return seconds, LastRun(inputs.as_of, versions, written), done[GOLD_HEALTH_CODE]


def run_days(
    spark: SparkSession,
    lake: str,
    zone: str,
    args: argparse.Namespace,
    residents: int,
    days: int,
    *,
    show: bool,
) -> tuple[list[float], float]:
    """Days 1 … ``days`` of a ``residents`` region in ``lake``: each day's seconds, and a full rebuild's on
    the last day."""
    shutil.rmtree(lake, ignore_errors=True)
    persons = spark.range(residents).select(
        F.concat(F.lit("HP"), F.lpad(F.hex("id"), 16, "0")).alias("person_id")
    )
    io.overwrite(persons, lake, GOLD_PATIENT_360)
    cases_all = outbreak(spark, residents, days, args.cases_per_day).cache()
    if show:
        print(
            f"\n{residents:,} residents, {days} days, {cases_all.count():,} cases in all "
            f"({args.cases_per_day} a day), {args.contacts} contacts, {POOL_SIZE} pool members and "
            f"{args.risk_area} risk-area visitors per case; {os.cpu_count()} cores, Spark {spark.version}",
            flush=True,
        )
        print(f"{'day':>4} {'mode':<12}{'under a rule':>13}{'code rows':>11}{'seconds':>9}{'persons/s':>11}")
    last: LastRun | None = None
    timings: list[float] = []
    for today in range(1, days + 1):
        for name, df in inputs_on(spark, cases_all, residents, today, args.contacts, args.risk_area).items():
            io.overwrite(df, lake, name)
        seconds, last, how = _refresh(spark, lake, zone, today, last)
        timings.append(seconds)
        codes = io.read_table(spark, lake, GOLD_HEALTH_CODE)
        stats = io.one_row(
            codes.agg(
                F.count(F.lit(1)).alias("rows"),
                F.countDistinct(F.when(F.col("rule") != "no_rule", F.col("person_id"))).alias("flagged"),
                F.count(F.when(F.col("valid_to").isNull(), 1)).alias("current"),
                F.countDistinct("person_id").alias("persons"),
            )
        )
        # Every resident holds exactly one current code (the interval still open on the day).
        if stats["current"] != residents or stats["persons"] != residents:
            raise SystemExit(f"day {today}: {stats['current']:,} current codes for {residents:,} residents")
        if show:
            mode = "first (full)" if today == 1 else f"next ({how})"
            print(
                f"{today:>4} {mode:<12}{stats['flagged']:>13,}{stats['rows']:>11,}{seconds:>9.1f}"
                f"{residents / seconds:>11,.0f}",
                flush=True,
            )
    rebuilt, _, _ = _refresh(spark, lake, zone, days, None)
    cases_all.unpersist()
    if show:
        print(f"{days:>4} {'full rebuild':<12}{'':>24}{rebuilt:>9.1f}{residents / rebuilt:>11,.0f}")
    return timings, rebuilt


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--residents", type=int, default=1_000_000, help="persons in gold.patient_360")
    parser.add_argument("--days", type=int, default=10, help="days of history (the last one is timed)")
    parser.add_argument("--cases-per-day", type=int, default=100, help="new cases a day")
    parser.add_argument("--contacts", type=int, default=20, help="close contacts per case")
    parser.add_argument("--risk-area", type=int, default=100, help="risk-area visitors per case")
    parser.add_argument("--work", help="work folder (default: a temporary one, removed afterwards)")
    args = parser.parse_args()
    if args.residents < 1 or args.days < 2:
        parser.error("--residents must be at least 1 and --days at least 2")
    work = Path(args.work or tempfile.mkdtemp(prefix="healthlake-health-code-bench-"))
    cfg = load_config(overrides={"lake_root": str(work / "lake")})
    zone = cfg.region.timezone
    spark = get_spark("health-code-benchmark", cfg)
    # Warm-up (JIT, Delta's code paths): three days of a 10,000-resident region, not reported.
    run_days(spark, str(work / "warmup"), zone, args, 10_000, 3, show=False)
    timings, rebuilt = run_days(spark, str(work / "lake"), zone, args, args.residents, args.days, show=True)
    first_s, last_s = timings[0], timings[-1]
    print(
        f"\nfirst day {first_s:.1f} s; day {args.days} {last_s:.1f} s = {last_s / first_s:.2f}× "
        f"the first day (target ≤ 1.5×); full rebuild on day {args.days} {rebuilt:.1f} s"
    )
    spark.stop()
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
