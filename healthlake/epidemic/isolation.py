"""``gold.isolation``: every isolation order, its person, its course and the tests taken during it.

Grain: one row per order (``institution_id``, ``source_record_id`` of ``silver.isolation_order``).
Columns: ``person_id`` (NULL while the EMPI has not linked the order's patient), ``category`` (``case``,
``close_contact``, ``secondary_contact``, ``risk_area``), ``place_type`` (``centralized``, ``home``),
``start_time``, ``planned_end_time``, ``released_at``; local dates ``start_date``, ``planned_end_date``,
``released_date``; ``status`` on ``as_of``: ``released``, ``in_isolation`` or ``overdue`` (past its planned
end and not released); ``days_isolated`` (local days from the start to the release, or to ``as_of``);
``tests_during`` (the person's tests sampled from the start to the release or the end of ``as_of``),
``positive_during`` (one of them positive), ``last_test_time``, ``last_test_result``; the person's home
area path.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from healthlake.catalog import (
    GOLD_ISOLATION,
    GOLD_PATIENT_360,
    SILVER_ISOLATION_ORDER,
    SILVER_NAT_TEST,
    SILVER_PERSON_XREF,
)
from healthlake.derived import DerivedTable, Inputs, Write, merge
from healthlake.epidemic.people import PLACE_COLUMNS, places, with_person
from healthlake.localtime import local_date, local_midnight


def isolation(
    orders: DataFrame,
    nat_tests: DataFrame,
    person_xref: DataFrame,
    person_places: DataFrame,
    *,
    zone: str,
    as_of: dt.date,
) -> DataFrame:
    """The isolation orders with their course (see the module)."""
    end_of_as_of = local_midnight(F.lit(as_of + dt.timedelta(days=1)), zone)
    linked = with_person(orders, person_xref)
    ends = F.coalesce(F.col("released_at"), end_of_as_of)
    tests = with_person(nat_tests.where(F.col("sample_time").isNotNull()), person_xref).select(
        F.col("person_id").alias("_tp"),
        F.col("sample_time").alias("_ts"),
        F.col("result").alias("_tr"),
    )
    during = (
        linked.select("institution_id", "source_record_id", "person_id", "start_time", ends.alias("_end"))
        .join(
            tests,
            (F.col("_tp") == F.col("person_id")) & F.col("_ts").between(F.col("start_time"), F.col("_end")),
        )
        .groupBy("institution_id", "source_record_id")
        .agg(
            F.count(F.lit(1)).alias("tests_during"),
            F.max(F.coalesce(F.col("_tr") == "positive", F.lit(False))).alias("positive_during"),
            F.max_by(F.struct(F.col("_ts").alias("t"), F.col("_tr").alias("r")), F.col("_ts")).alias("_last"),
        )
    )
    start_date = local_date(F.col("start_time"), zone)
    released_date = local_date(F.col("released_at"), zone)
    planned_end_date = local_date(F.col("planned_end_time"), zone)
    released = F.col("released_at").isNotNull() & (F.col("released_at") < end_of_as_of)
    status = (
        F.when(released, F.lit("released"))
        .when(planned_end_date < F.lit(as_of), F.lit("overdue"))
        .otherwise(F.lit("in_isolation"))
    )
    last_day = F.when(released, released_date).otherwise(F.lit(as_of))
    return (
        linked.join(during, ["institution_id", "source_record_id"], "left")
        .join(person_places, "person_id", "left")
        .select(
            "institution_id",
            "source_record_id",
            "person_id",
            "category",
            "place_type",
            "start_time",
            "planned_end_time",
            "released_at",
            start_date.alias("start_date"),
            planned_end_date.alias("planned_end_date"),
            released_date.alias("released_date"),
            status.alias("status"),
            F.datediff(last_day, start_date).alias("days_isolated"),
            F.coalesce(F.col("tests_during"), F.lit(0)).cast("long").alias("tests_during"),
            F.coalesce(F.col("positive_during"), F.lit(False)).alias("positive_during"),
            F.col("_last.t").alias("last_test_time"),
            F.col("_last.r").alias("last_test_result"),
            *PLACE_COLUMNS,
        )
    )


def _build(inputs: Inputs) -> DataFrame:
    return isolation(
        inputs.read(SILVER_ISOLATION_ORDER),
        inputs.read(SILVER_NAT_TEST),
        inputs.read(SILVER_PERSON_XREF),
        places(inputs),
        zone=inputs.zone,
        as_of=inputs.as_of,
    )


def _update(inputs: Inputs) -> Write:
    """Every order recomputed, the rows that differ written: orders are few (the risk persons of an
    outbreak), while each one's status and tests move with ``as_of`` and any test of its person."""
    return merge(_build(inputs), inputs.stored(GOLD_ISOLATION))


ISOLATION = DerivedTable(
    name=GOLD_ISOLATION,
    key=("institution_id", "source_record_id"),
    reads=(SILVER_ISOLATION_ORDER, SILVER_NAT_TEST, SILVER_PERSON_XREF, GOLD_PATIENT_360),
    build=_build,
    update=_update,
)
