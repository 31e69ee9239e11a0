"""Mass screening with pooled samples (全员核酸, 混管): re-test lists and screening coverage.

A sampling point registers each person's swab into a pool tube (``silver.nat_test`` rows with
``sample_mode = 'pooled'`` and the tube's ``pool_id``, no result); the lab reports the tube once
(``silver.nat_pool``). A pool id names one tube region-wide (tube barcodes are issued centrally).

``gold.nat_pool_followup`` — grain: one row per member sample of a positive pool. The member must be
re-tested alone: their follow-up is the first single-tube test of the same person (any source patient the
EMPI links to them; the member's own source patient when not linked) sampled after the pool's sample.
Columns: ``pool_id``, ``pool_institution_id``, ``pool_sample_time``, ``pool_report_time``, the member's
``institution_id``, ``source_patient_id``, ``person_id``, ``member_test_id``; ``retest_test_id``,
``retest_sample_time``, ``retest_report_time``, ``retest_result``; ``status``: ``awaiting_retest`` (no
single test sampled since), ``awaiting_result``, ``positive``, ``negative`` or ``inconclusive``;
``hours_to_retest`` (pool report → re-test sample); ``member_area_code`` … path, for the teams on the ground.

``gold.nat_screening_daily`` — grain: one row per (``round_start``, ``date``, ``level``, ``unit_code``). A
screening round is a run of consecutive local days with pooled sampling anywhere in the region (a gap of
a day or more ends it; ``round_start`` is its first day). Per area and day of a round: ``samples`` (single
and pooled member samples taken that day), ``people_sampled`` that day, ``people_covered`` (residents
sampled at least once in the round up to that day), ``residents`` (the registry's, the denominator),
``coverage`` = ``people_covered / residents``, ``positive_pools`` (pools sampled that day found positive,
counted in the area of their first member), and the hours from sample to report of the day's samples
(``median_hours_to_report``, ``p90_hours_to_report``; a pooled sample's report is its pool's).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from healthlake import io
from healthlake.catalog import (
    GOLD_NAT_POOL_FOLLOWUP,
    GOLD_NAT_SCREENING_DAILY,
    GOLD_PATIENT_360,
    SILVER_AREA,
    SILVER_NAT_POOL,
    SILVER_NAT_TEST,
    SILVER_PATIENT_RECORD,
    SILVER_PERSON_XREF,
)
from healthlake.derived import DerivedTable, Inputs, Write, merge, rebuild, replace_where, unchanged
from healthlake.epidemic.people import (
    PLACE_COLUMNS,
    UNKNOWN_AREA,
    moved_persons,
    places,
    residents_moved,
    run_residents,
    with_person,
)
from healthlake.gold.areas import PATH_COLUMNS
from healthlake.localtime import local_date

POOLED = "pooled"


def with_pool_columns(nat_tests: DataFrame) -> DataFrame:
    """``silver.nat_test`` with ``sample_mode`` and ``pool_id`` (NULL in a lake conformed before pooling)."""
    out = nat_tests
    for name in ("sample_mode", "pool_id"):
        if name not in out.columns:
            out = out.withColumn(name, F.lit(None).cast("string"))
    return out


def _hours(start: Column, end: Column) -> Column:
    return (F.unix_micros(end) - F.unix_micros(start)) / F.lit(3_600_000_000)


def nat_pool_followup(
    nat_tests: DataFrame, pools: DataFrame, person_xref: DataFrame, person_places: DataFrame
) -> DataFrame:
    """Every member of a positive pool and their individual re-test (see the module)."""
    tests = with_person(with_pool_columns(nat_tests), person_xref).withColumn(
        "_who",
        F.coalesce(F.col("person_id"), F.concat_ws("|", F.col("institution_id"), F.col("source_patient_id"))),
    )
    positive = pools.where(F.col("result") == "positive").select(
        "pool_id",
        F.col("institution_id").alias("pool_institution_id"),
        F.col("sample_time").alias("pool_sample_time"),
        F.col("report_time").alias("pool_report_time"),
    )
    members = tests.where((F.col("sample_mode") == POOLED) & F.col("pool_id").isNotNull()).join(
        positive, "pool_id"
    )
    singles = tests.where(F.coalesce(F.col("sample_mode"), F.lit("single")) != POOLED).select(
        "_who",
        F.col("source_record_id").alias("retest_test_id"),
        F.col("sample_time").alias("retest_sample_time"),
        F.col("report_time").alias("retest_report_time"),
        F.col("result").alias("retest_result"),
    )
    candidates = members.join(singles, "_who", "left").where(
        F.col("retest_sample_time").isNull() | (F.col("retest_sample_time") > F.col("sample_time"))
    )
    # The first single test after the pool's sample (ties: the lower test id, so a rebuild picks the same).
    first = Window.partitionBy("pool_id", "institution_id", "source_record_id").orderBy(
        F.col("retest_sample_time").asc_nulls_last(), F.col("retest_test_id")
    )
    chosen = candidates.withColumn("_n", F.row_number().over(first)).where(F.col("_n") == 1)
    # A member whose every single test predates the pool has no candidate row left: add them back.
    member_keys = ["pool_id", "institution_id", "source_record_id"]
    missing = members.join(chosen.select(*member_keys), member_keys, "left_anti")
    followed = chosen.unionByName(missing, allowMissingColumns=True)
    result = F.col("retest_result")
    status = (
        F.when(F.col("retest_sample_time").isNull(), F.lit("awaiting_retest"))
        .when(result.isNull(), F.lit("awaiting_result"))
        .otherwise(result)
    )
    return followed.join(person_places, "person_id", "left").select(
        "pool_id",
        "pool_institution_id",
        "pool_sample_time",
        "pool_report_time",
        "institution_id",
        "source_patient_id",
        "person_id",
        F.col("source_record_id").alias("member_test_id"),
        "retest_test_id",
        "retest_sample_time",
        "retest_report_time",
        "retest_result",
        status.alias("status"),
        _hours(F.col("pool_report_time"), F.col("retest_sample_time")).alias("hours_to_retest"),
        *[F.col(c).alias(f"member_{c}") for c in PLACE_COLUMNS],
    )


def screening_rounds(pooled_days: DataFrame) -> DataFrame:
    """Each local day with pooled sampling → ``round_start``, the first day of its run of consecutive days.

    Args:
        pooled_days: ``date`` (distinct local days with pooled samples).
    """
    order = Window.orderBy("date")
    # Consecutive days share date - row_number (the gaps-and-islands idiom); one global window over the
    # distinct days of pooled sampling, a few hundred rows a year.
    island = F.date_sub(F.col("date"), F.row_number().over(order))
    return pooled_days.select("date", island.alias("_island")).select(
        "date", F.min("date").over(Window.partitionBy("_island")).alias("round_start")
    )


def nat_screening_daily(
    nat_tests: DataFrame,
    pools: DataFrame,
    person_xref: DataFrame,
    person_places: DataFrame,
    residents: DataFrame,
    areas: DataFrame,
    *,
    zone: str,
) -> DataFrame:
    """Screening figures per round, day and area level (see the module)."""
    tests = with_person(with_pool_columns(nat_tests).where(F.col("sample_time").isNotNull()), person_xref)
    tests = tests.withColumn("date", local_date(F.col("sample_time"), zone)).withColumn(
        "_who",
        F.coalesce(F.col("person_id"), F.concat_ws("|", F.col("institution_id"), F.col("source_patient_id"))),
    )
    pooled = tests.where(F.col("sample_mode") == POOLED)
    rounds = screening_rounds(pooled.select("date").distinct())
    reports = pools.select(
        "pool_id", F.col("report_time").alias("_pool_report"), F.col("result").alias("_pool_result")
    )
    in_round = (
        tests.join(F.broadcast(rounds), "date")
        .join(reports, "pool_id", "left")
        .withColumn(
            "_report",
            F.when(F.col("sample_mode") == POOLED, F.col("_pool_report")).otherwise(F.col("report_time")),
        )
        .join(person_places, "person_id", "left")
        .join(residents.withColumn("_resident", F.lit(True)), "person_id", "left")
    )
    # Each person counts as covered from the first day of the round they were sampled.
    first_day = F.min("date").over(Window.partitionBy("round_start", "_who"))
    in_round = in_round.withColumn("_first", first_day)
    # The first member sample of each positive pool places the pool in an area.
    leads = (
        in_round.where((F.col("sample_mode") == POOLED) & (F.col("_pool_result") == "positive"))
        .groupBy("pool_id")
        .agg(F.min(F.struct("sample_time", "source_record_id"))["source_record_id"].alias("_lead_id"))
    )
    in_round = in_round.join(leads, "pool_id", "left").withColumn(
        "_pool_lead", F.coalesce(F.col("source_record_id") == F.col("_lead_id"), F.lit(False))
    )
    population = residents.join(person_places, "person_id", "left")
    round_days = rounds.select("round_start", "date")
    out = None
    hours = _hours(F.col("sample_time"), F.col("_report"))
    for column in PATH_COLUMNS:
        level = column.removesuffix("_code")
        unit = F.coalesce(F.col(column), F.lit(UNKNOWN_AREA)).alias("unit_code")
        daily = in_round.groupBy("round_start", "date", unit).agg(
            F.count(F.lit(1)).alias("samples"),
            F.countDistinct("_who").alias("people_sampled"),
            F.sum(F.col("_pool_lead").cast("long")).alias("positive_pools"),
            F.percentile_approx(hours, 0.5).alias("median_hours_to_report"),
            F.percentile_approx(hours, 0.9).alias("p90_hours_to_report"),
        )
        newly = (
            in_round.where(F.col("_resident") & (F.col("date") == F.col("_first")))
            .groupBy("round_start", "date", unit)
            .agg(F.countDistinct("_who").alias("_new"))
        )
        residents_here = population.groupBy(unit).agg(F.count(F.lit(1)).alias("residents"))
        # Every day of the round for every area with residents or samples, so coverage runs on.
        units = residents_here.select("unit_code").union(daily.select("unit_code")).distinct()
        grid = round_days.crossJoin(units)
        covered = F.sum(F.coalesce(F.col("_new"), F.lit(0))).over(
            Window.partitionBy("round_start", "unit_code")
            .orderBy("date")
            .rowsBetween(Window.unboundedPreceding, 0)
        )
        rows = (
            grid.join(daily, ["round_start", "date", "unit_code"], "left")
            .join(newly, ["round_start", "date", "unit_code"], "left")
            .join(residents_here, "unit_code", "left")
            .select(
                "round_start",
                "date",
                F.lit(level).alias("level"),
                "unit_code",
                *[
                    F.coalesce(F.col(c), F.lit(0)).cast("long").alias(c)
                    for c in ("samples", "people_sampled", "positive_pools", "residents")
                ],
                covered.cast("long").alias("people_covered"),
                "median_hours_to_report",
                "p90_hours_to_report",
            )
        )
        out = rows if out is None else out.unionByName(rows)
    assert out is not None
    names = areas.select(F.col("area_code").alias("unit_code"), F.col("name").alias("unit_name"))
    return out.join(F.broadcast(names), "unit_code", "left").select(
        "round_start",
        "date",
        "level",
        "unit_code",
        "unit_name",
        "samples",
        "people_sampled",
        "people_covered",
        "residents",
        F.when(F.col("residents") > 0, F.col("people_covered") / F.col("residents")).alias("coverage"),
        "positive_pools",
        "median_hours_to_report",
        "p90_hours_to_report",
    )


def _followup(inputs: Inputs) -> DataFrame:
    return nat_pool_followup(
        inputs.read(SILVER_NAT_TEST),
        inputs.read(SILVER_NAT_POOL),
        inputs.read(SILVER_PERSON_XREF),
        places(inputs),
    )


def _screening(inputs: Inputs) -> DataFrame:
    return nat_screening_daily(
        inputs.read(SILVER_NAT_TEST),
        inputs.read(SILVER_NAT_POOL),
        inputs.read(SILVER_PERSON_XREF),
        places(inputs),
        run_residents(inputs),
        inputs.read(SILVER_AREA),
        zone=inputs.zone,
    )


def _update_followup(inputs: Inputs) -> Write:
    """Every positive pool's members recomputed, only the rows that differ written: positive pools are few
    (a handful per million samples), and a member's status moves with any test of the person."""
    return merge(_followup(inputs), inputs.stored(GOLD_NAT_POOL_FOLLOWUP))


def _update_screening(inputs: Inputs) -> Write:
    """The rounds from the one a change touches on, rebuilt.

    A new set of residents (the denominator of every round) rebuilds the table. Otherwise a change (a test
    sampled on day d, a pool's report, a person relinked or moved) moves only the rounds running on or
    after d: the round holding d (or ending the day before it: a new day of pooled sampling joins it) and
    every later one. Those are recomputed from the tests sampled since that round's first day and replace
    the stored rows of those rounds.
    """
    if residents_moved(inputs):
        return rebuild()  # every round's denominator moved
    zone = inputs.zone
    changed = [
        (inputs.changes(SILVER_NAT_TEST), F.col("sample_time")),
        (inputs.changes(SILVER_NAT_POOL), F.col("sample_time")),
    ]
    movers = moved_persons(inputs)
    tests = with_person(inputs.read(SILVER_NAT_TEST), inputs.read(SILVER_PERSON_XREF))
    changed.append((tests.join(movers, "person_id", "left_semi"), F.col("sample_time")))
    links = inputs.changes(SILVER_PERSON_XREF)
    if links is not None:
        keys = links.select("institution_id", "source_patient_id").distinct()
        changed.append(
            (
                inputs.read(SILVER_NAT_TEST).join(keys, ["institution_id", "source_patient_id"], "left_semi"),
                F.col("sample_time"),
            )
        )
    days = [
        io.one_row(frame.agg(F.min(local_date(time, zone))))[0]
        for frame, time in changed
        if frame is not None
    ]
    known = [d for d in days if d is not None]
    if not known:
        return unchanged()
    since = min(known)
    stored = inputs.stored(GOLD_NAT_SCREENING_DAILY)
    held = stored.where(F.col("date") >= F.lit(since - dt.timedelta(days=1))).agg(F.min("round_start"))
    start = min(since, io.one_row(held)[0] or since)
    # The tests of those rounds (a day of slack for the local/UTC shift).
    first = dt.datetime.combine(start - dt.timedelta(days=1), dt.time())
    recent = inputs.read(SILVER_NAT_TEST).where(F.col("sample_time") >= F.lit(first))
    rows = nat_screening_daily(
        recent,
        inputs.read(SILVER_NAT_POOL),
        inputs.read(SILVER_PERSON_XREF),
        places(inputs),
        run_residents(inputs),
        inputs.read(SILVER_AREA),
        zone=zone,
    ).where(F.col("round_start") >= F.lit(start))
    return replace_where(rows, f"round_start >= '{start.isoformat()}'")


NAT_POOL_FOLLOWUP = DerivedTable(
    name=GOLD_NAT_POOL_FOLLOWUP,
    key=("pool_id", "institution_id", "member_test_id"),
    reads=(SILVER_NAT_TEST, SILVER_NAT_POOL, SILVER_PERSON_XREF, GOLD_PATIENT_360),
    build=_followup,
    update=_update_followup,
)
NAT_SCREENING_DAILY = DerivedTable(
    name=GOLD_NAT_SCREENING_DAILY,
    key=("round_start", "date", "level", "unit_code"),
    reads=(
        SILVER_NAT_TEST,
        SILVER_NAT_POOL,
        SILVER_PERSON_XREF,
        SILVER_PATIENT_RECORD,
        GOLD_PATIENT_360,
        SILVER_AREA,
    ),
    build=_screening,
    update=_update_screening,
    fed_by=(SILVER_NAT_TEST, SILVER_NAT_POOL, SILVER_PERSON_XREF),
    rebuild_on=(SILVER_AREA,),
)
