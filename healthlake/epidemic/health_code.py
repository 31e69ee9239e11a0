"""``gold.health_code``: each person's green / yellow / red code, day by day, with the rule that set it.

Grain: one row per (``person_id``, ``valid_from``): an interval of local days over which the person's code,
rule and reason stayed the same; ``valid_to`` is its last day, NULL while it is still the code on
``as_of``. A person's code on any day is the row whose interval holds it (history is kept: the table is
built in full each run from inputs that keep every case, order, pool and contact, so the rows of past days
come out as they were unless what they were computed from changed). Every person of ``gold.patient_360``
has a code from the first day of the series (the first day of any case, isolation or pooled screening in
the lake): green when no rule applies.

Rules, in the order they are tried (the first that applies on a day sets the code; the codes each one
gives are configurable, ``epidemic.health_code_rules``):

* ``active_case`` (red): a case (``gold.epidemic_cases``) from its report day while active: until released
  from an isolation order of category ``case``, else for ``epidemic.case_active_days`` days.
* ``in_isolation`` (yellow): under an isolation order (``gold.isolation``, any other category) from its
  start day until the day before its release (or through its planned end when not released).
* ``retest_due`` (yellow): member of a positive pool (``gold.nat_pool_followup``) from the day the pool
  was reported until the day before their individual re-test was sampled.
* ``close_contact`` (yellow): a close contact of a case (``gold.close_contacts``) from the day the case
  was reported (or the contact took place, if later) until ``epidemic.quarantine_days`` days after the
  last contact.
* ``risk_area`` (yellow): listed in ``gold.risk_persons`` for having pinged in a risk area, from that day
  until the day before the first negative single-tube test sampled since, for at most
  ``epidemic.risk_area_days`` days.

``reason`` says why in words a person can be told (which rule, since when, which order or pool); it names
no other person.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from healthlake.catalog import (
    GOLD_CLOSE_CONTACTS,
    GOLD_EPIDEMIC_CASES,
    GOLD_HEALTH_CODE,
    GOLD_ISOLATION,
    GOLD_NAT_POOL_FOLLOWUP,
    GOLD_PATIENT_360,
    GOLD_RISK_PERSONS,
)
from healthlake.config import DEFAULT_HEALTH_CODE_RULES
from healthlake.derived import DerivedTable, Inputs
from healthlake.epidemic.daily import CASE_ACTIVE_DAYS
from healthlake.epidemic.risk import RISK_AREA_DAYS
from healthlake.localtime import local_date

QUARANTINE_DAYS = "epidemic.quarantine_days"
HEALTH_CODE_RULES = "epidemic.health_code_rules"
"""The run setting (``Inputs.settings``): rule → code, in the order the rules are tried."""
DEFAULT_RULES: dict[str, str] = {str(rule): str(code) for rule, code in DEFAULT_HEALTH_CODE_RULES.items()}
GREEN = "green"
NO_RULE = "no_rule"


def rule_days(
    cases: DataFrame,
    orders: DataFrame,
    followup: DataFrame,
    *,
    zone: str,
    as_of: dt.date,
    case_active_days: int,
    contacts: DataFrame | None = None,
    quarantine_days: int = 14,
    risk_persons: DataFrame | None = None,
    risk_area_days: int = 14,
) -> DataFrame:
    """One row per (person, day, rule that applies): ``person_id``, ``date``, ``rule``, ``reason``,
    ``since`` (the first day of that rule's spell)."""
    through = F.lit(as_of)
    case_release = (
        orders.where(
            (F.col("category") == "case")
            & F.col("released_date").isNotNull()
            & F.col("person_id").isNotNull()
        )
        .groupBy("person_id")
        .agg(F.min("released_date").alias("_released"))
    )
    active_until = F.coalesce(
        F.date_sub(F.col("_released"), 1), F.date_add(F.col("report_date"), case_active_days - 1)
    )
    case_rows = (
        cases.where(F.col("report_date").isNotNull())
        .join(case_release, "person_id", "left")
        .select(
            "person_id",
            F.col("report_date").alias("since"),
            F.least(active_until, through).alias("_last"),
            F.lit("active_case").alias("rule"),
            F.concat(
                F.lit("positive nucleic-acid test reported on "), F.col("report_date").cast("string")
            ).alias("reason"),
        )
    )
    isolated_until = F.coalesce(F.date_sub(F.col("released_date"), 1), F.col("planned_end_date"))
    order_rows = orders.where((F.col("category") != "case") & F.col("person_id").isNotNull()).select(
        "person_id",
        F.col("start_date").alias("since"),
        F.least(isolated_until, through).alias("_last"),
        F.lit("in_isolation").alias("rule"),
        F.concat(
            F.lit("isolation order "),
            F.col("source_record_id"),
            F.lit(" ("),
            F.col("category"),
            F.lit(", "),
            F.col("place_type"),
            F.lit(") since "),
            F.col("start_date").cast("string"),
        ).alias("reason"),
    )
    reported = local_date(F.col("pool_report_time"), zone)
    retested = local_date(F.col("retest_sample_time"), zone)
    retest_rows = followup.where(
        F.col("person_id").isNotNull() & F.col("pool_report_time").isNotNull()
    ).select(
        "person_id",
        reported.alias("since"),
        F.least(F.coalesce(F.date_sub(retested, 1), through), through).alias("_last"),
        F.lit("retest_due").alias("rule"),
        F.concat(
            F.lit("pooled sample "),
            F.col("pool_id"),
            F.lit(" positive: individual re-test due since "),
            reported.cast("string"),
        ).alias("reason"),
    )
    hits = case_rows.unionByName(order_rows).unionByName(retest_rows)
    if contacts is not None:
        # A contact is known once its case is reported; quarantine runs quarantine_days past the last contact.
        case_reports = cases.select(
            F.col("person_id").alias("case_person_id"), F.col("report_date").alias("_reported")
        )
        last_contact = local_date(F.col("last_contact_at"), zone)
        contact_rows = (
            contacts.where(F.col("contact_person_id").isNotNull())
            .join(case_reports, "case_person_id")
            .groupBy(F.col("contact_person_id").alias("person_id"))
            .agg(
                F.min(F.greatest(F.col("_reported"), last_contact)).alias("since"),
                F.max(F.date_add(last_contact, quarantine_days)).alias("_until"),
            )
            .select(
                "person_id",
                "since",
                F.least(F.col("_until"), through).alias("_last"),
                F.lit("close_contact").alias("rule"),
                F.concat(
                    F.lit("close contact of a case, last contact on "),
                    F.date_sub(F.col("_until"), quarantine_days).cast("string"),
                ).alias("reason"),
            )
        )
        hits = hits.unionByName(contact_rows)
    if risk_persons is not None:
        negative = F.date_sub(local_date(F.col("first_negative_at"), zone), 1)
        visit_rows = risk_persons.where(F.col("category") == "risk_area").select(
            "person_id",
            F.col("identified_date").alias("since"),
            F.least(
                F.coalesce(negative, through),
                F.date_add(F.col("identified_date"), risk_area_days - 1),
                through,
            ).alias("_last"),
            F.lit("risk_area").alias("rule"),
            F.concat(
                F.lit("in a risk area on "),
                F.col("identified_date").cast("string"),
                F.lit(": a negative nucleic-acid test is due"),
            ).alias("reason"),
        )
        hits = hits.unionByName(visit_rows)
    return hits.where(F.col("since") <= F.col("_last")).select(
        "person_id",
        F.explode(F.sequence(F.col("since"), F.col("_last"))).alias("date"),
        "rule",
        "reason",
        "since",
    )


def health_code(
    persons: DataFrame,
    hits: DataFrame,
    *,
    as_of: dt.date,
    rules: dict[str, str] | None = None,
) -> DataFrame:
    """Each person's code intervals (see the module).

    Run its actions under ``healthlake.spark.sql_conf(spark, UNION_WITHOUT_PARTITIONING)``, as the
    epidemic stage does: Spark 4.1.1 otherwise fails on the union of the rule days ("Can't zip RDDs").

    Args:
        persons: ``person_id`` of every person (``gold.patient_360``).
        hits: ``rule_days``.
        as_of: The last day.
        rules: Rule → code, in the order tried (``DEFAULT_RULES``).
    """
    rules = rules or DEFAULT_RULES
    rank = F.create_map(*[F.lit(x) for i, r in enumerate(rules) for x in (r, i)])
    code_of = F.create_map(*[F.lit(x) for kv in rules.items() for x in kv])
    ranked = hits.where(F.col("rule").isin(*rules)).withColumn("_rank", rank[F.col("rule")])
    top = Window.partitionBy("person_id", "date").orderBy("_rank", "since", "reason")
    daily = ranked.withColumn("_n", F.row_number().over(top)).where(F.col("_n") == 1)
    # The series starts on the first day any rule applied to anyone; a lake with none has no hits.
    start = hits.agg(F.min("date").alias("_start"))
    flagged = daily.select("person_id").distinct()
    grid = flagged.crossJoin(start).select(
        "person_id", F.explode(F.sequence(F.col("_start"), F.lit(as_of))).alias("date")
    )
    coded = grid.join(daily, ["person_id", "date"], "left").select(
        "person_id",
        "date",
        F.coalesce(code_of[F.col("rule")], F.lit(GREEN)).alias("code"),
        F.coalesce(F.col("rule"), F.lit(NO_RULE)).alias("rule"),
        F.coalesce(F.col("reason"), F.lit("no rule applies")).alias("reason"),
    )
    # Consecutive days with the same code, rule and reason form one interval (gaps and islands).
    same = Window.partitionBy("person_id", "code", "rule", "reason").orderBy("date")
    island = F.date_sub(F.col("date"), F.row_number().over(same))
    marked = coded.withColumn("_island", island)
    intervals = marked.groupBy("person_id", "code", "rule", "reason", "_island").agg(
        F.min("date").alias("valid_from"), F.max("date").alias("valid_to")
    )
    flagged_rows = intervals.select(
        "person_id",
        "valid_from",
        F.when(F.col("valid_to") < F.lit(as_of), F.col("valid_to")).alias("valid_to"),
        "code",
        "rule",
        "reason",
    )
    greens = (
        persons.select("person_id")
        .distinct()
        .join(flagged, "person_id", "left_anti")
        .crossJoin(start)
        .select(
            "person_id",
            F.coalesce(F.col("_start"), F.lit(as_of)).alias("valid_from"),
            F.lit(None).cast("date").alias("valid_to"),
            F.lit(GREEN).alias("code"),
            F.lit(NO_RULE).alias("rule"),
            F.lit("no rule applies").alias("reason"),
        )
    )
    return flagged_rows.unionByName(greens)


def _build(inputs: Inputs) -> DataFrame:
    hits = rule_days(
        inputs.read(GOLD_EPIDEMIC_CASES),
        inputs.read(GOLD_ISOLATION),
        inputs.read(GOLD_NAT_POOL_FOLLOWUP),
        zone=inputs.zone,
        as_of=inputs.as_of,
        case_active_days=int(inputs.settings.get(CASE_ACTIVE_DAYS, 14)),
        contacts=inputs.read(GOLD_CLOSE_CONTACTS),
        quarantine_days=int(inputs.settings.get(QUARANTINE_DAYS, 14)),
        risk_persons=inputs.read(GOLD_RISK_PERSONS),
        risk_area_days=int(inputs.settings.get(RISK_AREA_DAYS, 14)),
    )
    rules = dict(inputs.settings.get(HEALTH_CODE_RULES, DEFAULT_RULES))
    return health_code(inputs.read(GOLD_PATIENT_360), hits, as_of=inputs.as_of, rules=rules)


HEALTH_CODE = DerivedTable(
    name=GOLD_HEALTH_CODE,
    key=("person_id", "valid_from"),
    reads=(
        GOLD_EPIDEMIC_CASES,
        GOLD_ISOLATION,
        GOLD_NAT_POOL_FOLLOWUP,
        GOLD_CLOSE_CONTACTS,
        GOLD_RISK_PERSONS,
        GOLD_PATIENT_360,
    ),
    build=_build,
    # No incremental rule: built in full each run. The inputs hold every case, order, pool and contact, so
    # a past interval is recomputed as it was unless what it was computed from changed, and the build
    # beats every MERGE tried: on a 1 M-resident region at day 10, 23 s in full against 43-49 s to
    # recompute all (or only the touched persons) and merge the rows that differ (BENCHMARKS.md).
)
