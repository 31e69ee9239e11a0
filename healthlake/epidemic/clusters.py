"""``gold.case_clusters``: transmission chains, the cases joined by their contacts with one another.

Grain: one row per case (``gold.epidemic_cases``). Two cases are linked when one is a close contact of the
other (``gold.close_contacts``, either way); a cluster is a connected component of those links (a case with
no case among its contacts is a cluster of one). In a cluster:

* ``index_person_id``: the likely index case, the one known first (``first_known_at``: the earlier of the
  first positive sample and the onset; ties by person id); ``cluster_id`` is the index case's id.
* ``generation``: 0 for the index case; otherwise 1 + the lowest generation among the linked cases known
  before it (infection runs from the earlier case to the later one); NULL for a case no chain of earlier
  linked cases leads to from the index (infected outside the traced links).
* ``infected_by``: that earlier linked case (lowest generation, then known first, then by id); NULL for
  the index case.
* ``cluster_size``: cases in the cluster.

Components are found by label propagation (each case takes the smallest label among itself and its
links until nothing changes), generations by relaxation along the links from earlier to later cases: both
run one Spark join per step, a handful of steps for chains of a handful of generations. Being iterative,
``case_clusters`` runs a small action per step to see whether anything moved (the one transformation of
the package that does); each step's frame is cached until the next is computed.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from healthlake.catalog import GOLD_CASE_CLUSTERS, GOLD_CLOSE_CONTACTS, GOLD_EPIDEMIC_CASES
from healthlake.derived import DerivedTable, Inputs, Write, merge

MAX_STEPS = 100
"""Steps of propagation at most (a chain longer than this is not an outbreak a table of cases shows)."""


def _links(cases: DataFrame, contacts: DataFrame) -> DataFrame:
    """Links between cases, oriented from the case known first: ``src``, ``dst`` (person ids)."""
    known = cases.select(F.col("person_id"), F.struct("first_known_at", "person_id").alias("_order"))
    pairs = contacts.where(F.col("contact_person_id").isNotNull()).select(
        F.col("case_person_id").alias("a"), F.col("contact_person_id").alias("b")
    )
    both = (
        pairs.join(known.select(F.col("person_id").alias("a"), F.col("_order").alias("_oa")), "a")
        .join(known.select(F.col("person_id").alias("b"), F.col("_order").alias("_ob")), "b")
        .where(F.col("a") != F.col("b"))
    )
    earlier_a = F.col("_oa") < F.col("_ob")
    return both.select(
        F.when(earlier_a, F.col("a")).otherwise(F.col("b")).alias("src"),
        F.when(earlier_a, F.col("b")).otherwise(F.col("a")).alias("dst"),
    ).distinct()


def _components(nodes: DataFrame, links: DataFrame) -> DataFrame:
    """``person_id`` → ``component`` (the smallest person id reachable), by label propagation."""
    undirected = links.select(F.col("src").alias("u"), F.col("dst").alias("v")).union(
        links.select(F.col("dst").alias("u"), F.col("src").alias("v"))
    )
    labels = nodes.select("person_id", F.col("person_id").alias("component")).cache()
    for _ in range(MAX_STEPS):
        offered = undirected.join(labels.withColumnRenamed("person_id", "u"), "u").select(
            F.col("v").alias("person_id"), "component"
        )
        moved = (
            labels.unionByName(offered).groupBy("person_id").agg(F.min("component").alias("component"))
        ).cache()
        changed = moved.join(labels.withColumnRenamed("component", "_before"), "person_id").where(
            F.col("component") != F.col("_before")
        )
        done = changed.isEmpty()
        labels.unpersist()  # each step is kept only until the next one is computed
        labels = moved
        if done:
            break
    return labels


def case_clusters(cases: DataFrame, contacts: DataFrame) -> DataFrame:
    """The clusters of the cases (see the module).

    Args:
        cases: ``gold.epidemic_cases`` (``person_id``, ``first_known_at``).
        contacts: ``gold.close_contacts`` (``case_person_id``, ``contact_person_id``).
    """
    nodes = cases.select("person_id", "first_known_at")
    links = _links(cases, contacts).cache()
    components = _components(nodes, links)
    placed = nodes.join(components, "person_id")
    first = Window.partitionBy("component").orderBy("first_known_at", "person_id")
    placed = placed.select(
        "*",
        F.first("person_id").over(first).alias("index_person_id"),
        F.count(F.lit(1)).over(Window.partitionBy("component")).alias("cluster_size"),
    )
    # Generations: the index case is 0; relax gen(dst) = min(gen(src) + 1) along the oriented links.
    big = 1 << 30
    generations = placed.select(
        "person_id",
        F.when(F.col("person_id") == F.col("index_person_id"), F.lit(0))
        .otherwise(F.lit(big))
        .alias("generation"),
    ).cache()
    for _ in range(MAX_STEPS):
        offered = links.join(generations.withColumnRenamed("person_id", "src"), "src").select(
            F.col("dst").alias("person_id"), (F.col("generation") + 1).alias("generation")
        )
        moved = (
            generations.unionByName(offered).groupBy("person_id").agg(F.min("generation").alias("generation"))
        ).cache()
        changed = moved.join(generations.withColumnRenamed("generation", "_before"), "person_id").where(
            F.col("generation") != F.col("_before")
        )
        done = changed.isEmpty()
        generations.unpersist()
        generations = moved
        if done:
            break
    source_order = Window.partitionBy("dst").orderBy("_src_generation", "_src_known", "src")
    infected_by = (
        links.join(
            generations.select(F.col("person_id").alias("src"), F.col("generation").alias("_src_generation")),
            "src",
        )
        .join(
            nodes.select(F.col("person_id").alias("src"), F.col("first_known_at").alias("_src_known")), "src"
        )
        .withColumn("_n", F.row_number().over(source_order))
        .where(F.col("_n") == 1)
        .select(F.col("dst").alias("person_id"), F.col("src").alias("infected_by"))
    )
    return (
        placed.join(generations, "person_id")
        .join(infected_by, "person_id", "left")
        .select(
            "person_id",
            F.col("index_person_id").alias("cluster_id"),
            "index_person_id",
            F.col("cluster_size").cast("int").alias("cluster_size"),
            F.when(F.col("generation") < big, F.col("generation")).cast("int").alias("generation"),
            F.when(F.col("person_id") != F.col("index_person_id"), F.col("infected_by")).alias("infected_by"),
            "first_known_at",
        )
    )


def _build(inputs: Inputs) -> DataFrame:
    return case_clusters(inputs.read(GOLD_EPIDEMIC_CASES), inputs.read(GOLD_CLOSE_CONTACTS))


def _update(inputs: Inputs) -> Write:
    """Every cluster recomputed, the rows that differ written: cases and their links are few, and one new
    link can join two clusters or change an index case."""
    return merge(_build(inputs), inputs.stored(GOLD_CASE_CLUSTERS))


CASE_CLUSTERS = DerivedTable(
    name=GOLD_CASE_CLUSTERS,
    key=("person_id",),
    reads=(GOLD_EPIDEMIC_CASES, GOLD_CLOSE_CONTACTS),
    build=_build,
    update=_update,
)
