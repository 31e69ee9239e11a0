"""Case clusters on a hand-worked chain: components, index case, generations, who infected whom."""

from __future__ import annotations

from pyspark.sql import SparkSession

from healthlake.epidemic.clusters import case_clusters
from tests.epidemic.test_tables import bj


def test_clusters_are_components_of_case_contacts_with_generations(spark: SparkSession) -> None:
    cases = spark.createDataFrame(
        [
            ("A", bj(2026, 3, 1, 9)),
            ("B", bj(2026, 3, 3, 9)),
            ("C", bj(2026, 3, 5, 9)),
            ("D", bj(2026, 3, 4, 9)),
            ("E", bj(2026, 3, 2, 9)),
        ],
        "person_id string, first_known_at timestamp",
    )
    contacts = spark.createDataFrame(
        [
            ("A", "B"),  # A known first: A -> B
            ("C", "B"),  # B -> C (recorded from C's side)
            ("A", "C"),  # A -> C: C's lowest-generation source
            ("C", "D"),  # D known before C: D -> C, and nothing leads to D from A
            ("A", "X"),  # X is no case
            ("E", None),  # a phone no person holds
        ],
        "case_person_id string, contact_person_id string",
    )
    got = {
        r["person_id"]: (r["cluster_id"], r["cluster_size"], r["generation"], r["infected_by"])
        for r in case_clusters(cases, contacts).collect()
    }
    assert got == {
        "A": ("A", 4, 0, None),
        "B": ("A", 4, 1, "A"),
        "C": ("A", 4, 1, "A"),
        "D": ("A", 4, None, None),
        "E": ("E", 1, 0, None),
    }
