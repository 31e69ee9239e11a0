"""``gold.contact_tracing_daily``: the contact-tracing indicators public-health teams report.

Grain: one row per (``date``, ``level``, ``unit_code``), as ``gold.epidemic_daily``: ``date`` is the local day
cases were reported, and a case (with its contacts) counts in the area its person lives in, rolled up
township → county → city → province (``unknown`` where the area is not known). Rows exist for the days with
a reported case, up to ``as_of``.

Measures, for the cases reported that day:

* ``new_cases``; ``cases_in_quarantine``: those already under an isolation order of another category
  (a contact's or a risk area's quarantine) when their first positive was sampled — found in quarantine,
  not in the community.
* ``contacts``: their close contacts who are persons (``gold.close_contacts``, degree 1; a person who is
  a contact of two of them counts twice, once per case); ``unresolved_contacts``: those known only by a
  phone no single person holds.
* ``contacts_quarantined_24h``: contacts under an isolation order at some moment from the case's report
  to 24 hours after it (an order that had started earlier and still ran counts).
* ``contacts_later_positive``: contacts who became cases, known (first positive or onset) after their
  first contact with the case.
* Shares: ``share_cases_in_quarantine`` (of ``new_cases``), ``share_contacts_quarantined_24h`` and
  ``share_contacts_later_positive`` (of ``contacts``), NULL when the denominator is 0.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from healthlake.catalog import (
    GOLD_CLOSE_CONTACTS,
    GOLD_CONTACT_TRACING_DAILY,
    GOLD_EPIDEMIC_CASES,
    GOLD_ISOLATION,
    SILVER_AREA,
)
from healthlake.derived import DerivedTable, Inputs, Write, merge
from healthlake.epidemic.people import roll_up_areas
from healthlake.gold.areas import PATH_COLUMNS

MEASURES = [
    "new_cases",
    "cases_in_quarantine",
    "contacts",
    "unresolved_contacts",
    "contacts_quarantined_24h",
    "contacts_later_positive",
]


def contact_tracing_daily(
    cases: DataFrame, contacts: DataFrame, isolation: DataFrame, areas: DataFrame, *, as_of: dt.date
) -> DataFrame:
    """The indicators per report day and area (see the module).

    Args:
        cases: ``gold.epidemic_cases``.
        contacts: ``gold.close_contacts``.
        isolation: ``gold.isolation``.
        areas: ``silver.area`` (names).
        as_of: The last day a row is made for.
    """
    reported_at = F.coalesce(F.col("first_positive_report_time"), F.col("first_positive_sample_time"))
    reported = cases.where(F.col("report_date").isNotNull() & (F.col("report_date") <= F.lit(as_of))).select(
        "person_id",
        "report_date",
        reported_at.alias("_reported_at"),
        "first_positive_sample_time",
        *PATH_COLUMNS,
    )
    orders = isolation.where(F.col("person_id").isNotNull()).select(
        F.col("person_id").alias("_o_person"),
        F.col("category").alias("_o_category"),
        F.col("start_time").alias("_o_start"),
        F.coalesce(F.col("released_at"), F.col("planned_end_time")).alias("_o_end"),
    )
    quarantined = (
        reported.join(
            orders,
            (F.col("_o_person") == F.col("person_id"))
            & (F.col("_o_category") != "case")
            & (F.col("_o_start") <= F.col("first_positive_sample_time"))
            & (F.col("_o_end").isNull() | (F.col("_o_end") > F.col("first_positive_sample_time"))),
            "left_semi",
        )
        .select("person_id")
        .withColumn("_in_quarantine", F.lit(1).cast("long"))
    )
    case_rows = reported.join(quarantined, "person_id", "left").select(
        F.col("report_date").alias("date"),
        *PATH_COLUMNS,
        F.lit(1).cast("long").alias("new_cases"),
        F.coalesce(F.col("_in_quarantine"), F.lit(0)).cast("long").alias("cases_in_quarantine"),
    )
    first = contacts.where(F.col("degree") == 1).join(
        reported.select(
            F.col("person_id").alias("case_person_id"), "report_date", "_reported_at", *PATH_COLUMNS
        ),
        "case_person_id",
    )
    persons = first.where(F.col("contact_person_id").isNotNull())
    in_24h = persons.join(
        orders,
        (F.col("_o_person") == F.col("contact_person_id"))
        & (F.col("_o_start") <= F.col("_reported_at") + F.expr("INTERVAL 24 HOURS"))
        & (F.col("_o_end").isNull() | (F.col("_o_end") >= F.col("_reported_at"))),
        "left_semi",
    ).select("case_person_id", "contact_person_id", F.lit(1).cast("long").alias("_q"))
    later = persons.join(
        cases.select(F.col("person_id").alias("_c_person"), F.col("first_known_at").alias("_c_known")),
        (F.col("_c_person") == F.col("contact_person_id")) & (F.col("_c_known") > F.col("first_contact_at")),
        "left_semi",
    ).select("case_person_id", "contact_person_id", F.lit(1).cast("long").alias("_p"))
    contact_rows = (
        first.join(in_24h, ["case_person_id", "contact_person_id"], "left")
        .join(later, ["case_person_id", "contact_person_id"], "left")
        .select(
            F.col("report_date").alias("date"),
            *PATH_COLUMNS,
            F.col("contact_person_id").isNotNull().cast("long").alias("contacts"),
            F.col("contact_person_id").isNull().cast("long").alias("unresolved_contacts"),
            F.coalesce(F.col("_q"), F.lit(0)).cast("long").alias("contacts_quarantined_24h"),
            F.coalesce(F.col("_p"), F.lit(0)).cast("long").alias("contacts_later_positive"),
        )
    )
    rows = case_rows.unionByName(contact_rows, allowMissingColumns=True).select(
        "date", *PATH_COLUMNS, *[F.coalesce(F.col(m), F.lit(0)).cast("long").alias(m) for m in MEASURES]
    )

    def share(part: str, whole: str) -> F.Column:
        return F.when(F.col(whole) > 0, F.col(part) / F.col(whole))

    return roll_up_areas(rows, ["date"], MEASURES, areas).select(
        "*",
        share("cases_in_quarantine", "new_cases").alias("share_cases_in_quarantine"),
        share("contacts_quarantined_24h", "contacts").alias("share_contacts_quarantined_24h"),
        share("contacts_later_positive", "contacts").alias("share_contacts_later_positive"),
    )


def _build(inputs: Inputs) -> DataFrame:
    return contact_tracing_daily(
        inputs.read(GOLD_EPIDEMIC_CASES),
        inputs.read(GOLD_CLOSE_CONTACTS),
        inputs.read(GOLD_ISOLATION),
        inputs.read(SILVER_AREA),
        as_of=inputs.as_of,
    )


def _update(inputs: Inputs) -> Write:
    """Every day recomputed, the rows that differ written: the rows are the outbreak's report days per
    area (few), and a contact's later positive or a late order moves an old day's figures."""
    return merge(_build(inputs), inputs.stored(GOLD_CONTACT_TRACING_DAILY))


CONTACT_TRACING_DAILY = DerivedTable(
    name=GOLD_CONTACT_TRACING_DAILY,
    key=("date", "level", "unit_code"),
    reads=(GOLD_EPIDEMIC_CASES, GOLD_CLOSE_CONTACTS, GOLD_ISOLATION, SILVER_AREA),
    build=_build,
    update=_update,
)
