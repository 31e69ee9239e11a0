"""Persons from linked records: deterministic links, stable person ids, merges and splits, golden records.

Pure ``DataFrame -> DataFrame`` functions; ``healthlake.pipelines.link`` reads and writes the tables.

A run clusters *nodes*: each record linked this run (new, changed, or named in a new review decision) is a
node, and each person linked before that one of them links to is a node ``person:<person_id>``. So a run
over yesterday's persons and today's records never re-scores yesterday's pairs, and every person keeps
its id unless records join two of them (a merge) or leave one (a split).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

PERSON_NODE = "person:"
"""Prefix of the node id that stands for a person linked before."""

ACTIVE, RETIRED = "active", "retired"
"""``silver.person`` statuses: a person in use, and one merged into another (``merged_into``)."""

CREATED, MERGED, SPLIT = "created", "merged", "split"
"""``silver.empi_audit`` events."""

RESIDENT_ID, INSURANCE_NO, PROBABILISTIC, REVIEW_ACCEPT, NO_MATCH = (
    "resident_id",
    "insurance_no",
    "probabilistic",
    "review_accept",
    "no_match",
)
"""``silver.person_xref.link_rule`` values, strongest first (``no_match``: a person of one record)."""

_RULE_RANK = {RESIDENT_ID: 0, INSURANCE_NO: 1, REVIEW_ACCEPT: 2, PROBABILISTIC: 3}


def strong_identifier_keys(records: DataFrame) -> dict[str, Column]:
    """Deterministic rule → the value records must share (NULL: the rule does not apply to the record).

    A resident ID counts only when its check digit is valid and its birth date agrees with the record's: a
    child registered on a parent's ID then fails the second test and is linked on the other evidence.
    """
    keys = {}
    if "resident_id_token" in records.columns:
        trusted = F.col("resident_id_valid") & F.coalesce(F.col("birth_date_matches_id"), F.lit(True))
        keys[RESIDENT_ID] = F.when(trusted, F.col("resident_id_token"))
    if "insurance_no_token" in records.columns:
        keys[INSURANCE_NO] = F.col("insurance_no_token")
    return keys


def deterministic_edges(records: DataFrame) -> DataFrame:
    """Edges between records that share a strong identifier, for the groups holding a fresh record.

    Args:
        records: ``node``, ``fresh`` (linked this run) and the strong identifier columns.

    Returns:
        ``unique_id_l`` (a node of the group), ``unique_id_r`` (the group's smallest node), ``rule``,
        ``match_probability`` (1.0). A star per group keeps the edges linear in the records; a person
        node (records linked before) may be on either side.
    """
    edges = []
    for rule, key in strong_identifier_keys(records).items():
        group = Window.partitionBy("_key")
        keyed = records.select("node", "fresh", key.alias("_key")).where(F.col("_key").isNotNull())
        edges.append(
            keyed.withColumn("_anchor", F.min("node").over(group))
            .withColumn("_fresh_group", F.max(F.col("fresh").cast("int")).over(group) == 1)
            .where(F.col("_fresh_group") & (F.col("node") != F.col("_anchor")))
            .select(
                F.col("node").alias("unique_id_l"),
                F.col("_anchor").alias("unique_id_r"),
                F.lit(rule).alias("rule"),
                F.lit(1.0).alias("match_probability"),
            )
            .distinct()
        )
    if not edges:
        return records.sparkSession.createDataFrame(
            [], "unique_id_l string, unique_id_r string, rule string, match_probability double"
        )
    out = edges[0]
    for more in edges[1:]:
        out = out.unionByName(more)
    return out


def strongest_link(edges: DataFrame) -> DataFrame:
    """Per node, the strongest rule of an edge it has, and that edge's best probability.

    Args:
        edges: ``unique_id_l``, ``unique_id_r``, ``rule``, ``match_probability``.

    Returns:
        ``node``, ``link_rule``, ``match_probability``.
    """
    rank = F.create_map(*[x for rule, r in _RULE_RANK.items() for x in (F.lit(rule), F.lit(r))])
    ends = edges.select(F.col("unique_id_l").alias("node"), "rule", "match_probability").unionByName(
        edges.select(F.col("unique_id_r").alias("node"), "rule", "match_probability")
    )
    best = F.min_by(
        F.struct("rule", "match_probability"), F.struct(rank[F.col("rule")], -F.col("match_probability"))
    )
    return (
        ends.groupBy("node")
        .agg(best.alias("b"))
        .select("node", F.col("b.rule").alias("link_rule"), "b.match_probability")
    )


def new_person_id(seed: Column) -> Column:
    """A person id derived from a record key: the same records give the same id in any lake."""
    return F.concat(F.lit("HP"), F.upper(F.substring(F.sha2(seed, 256), 1, 16)))


def assign_person_ids(
    clusters: DataFrame, members: DataFrame, cluster_seed: DataFrame, issued: DataFrame
) -> tuple[DataFrame, DataFrame]:
    """Give each cluster a person id: the id of the earlier person most of it comes from, else a new one.

    Each earlier person goes *home* to the cluster holding most of its records (ties: the smaller
    cluster id); of the persons gone home to a cluster, the one with most records survives (ties: the
    smaller id). The others are merged into it; records of a person that went to another cluster are a
    split.

    Args:
        clusters: ``cluster_id`` of every cluster.
        members: ``cluster_id``, ``previous_person_id``, ``n`` (records of that person in that cluster).
        cluster_seed: ``cluster_id``, ``seed``: the smallest record key of the cluster, for a new id.
        issued: ``person_id`` of every person ever created (a new id never reuses one).

    Returns:
        ``(ids, events)``: ``cluster_id``, ``person_id``, ``is_new``; and ``event``, ``person_id``,
        ``other_person_id`` (the audit rows: created, merged, split).
    """
    weights = members.groupBy("cluster_id", "previous_person_id").agg(F.sum("n").alias("n"))
    by_person = Window.partitionBy("previous_person_id").orderBy(F.desc("n"), "cluster_id")
    home = weights.withColumn("_r", F.row_number().over(by_person)).where(F.col("_r") == 1).drop("_r")
    by_cluster = Window.partitionBy("cluster_id").orderBy(F.desc("n"), "previous_person_id")
    survivors = (
        home.withColumn("_r", F.row_number().over(by_cluster))
        .where(F.col("_r") == 1)
        .select("cluster_id", F.col("previous_person_id").alias("survivor"))
    )
    fresh_ids = (
        clusters.join(survivors, "cluster_id", "left_anti")
        .join(cluster_seed, "cluster_id")
        .withColumn("person_id", new_person_id(F.col("seed")))
    )
    # A derived id that an earlier person already holds (a split-off part of a merged person, say)
    # takes the id of its seed salted once more.
    taken = issued.select("person_id", F.lit(True).alias("_taken"))
    fresh_ids = (
        fresh_ids.join(taken, "person_id", "left")
        .withColumn(
            "person_id",
            F.when(F.col("_taken"), new_person_id(F.concat("seed", F.lit("#2")))).otherwise(
                F.col("person_id")
            ),
        )
        .select("cluster_id", "person_id", F.lit(True).alias("is_new"))
    )
    ids = survivors.select("cluster_id", F.col("survivor").alias("person_id"), F.lit(False).alias("is_new"))
    ids = ids.unionByName(fresh_ids)
    created = fresh_ids.select(
        F.lit(CREATED).alias("event"), "person_id", F.lit(None).cast("string").alias("other_person_id")
    )
    merged = (
        home.join(ids, "cluster_id")
        .where(F.col("person_id") != F.col("previous_person_id"))
        .select(
            F.lit(MERGED).alias("event"), "person_id", F.col("previous_person_id").alias("other_person_id")
        )
    )
    split = (
        weights.join(
            home.select("previous_person_id", F.col("cluster_id").alias("_home")), "previous_person_id"
        )
        .where(F.col("cluster_id") != F.col("_home"))
        .join(ids, "cluster_id")
        .select(
            F.lit(SPLIT).alias("event"), "person_id", F.col("previous_person_id").alias("other_person_id")
        )
    )
    return ids, created.unionByName(merged).unionByName(split)


def golden_records(linked: DataFrame) -> DataFrame:
    """One row per person from its records (tokens and coded values only), by these survivorship rules.

    - ``resident_id_token``: the latest valid resident ID that agrees with its record's birth date, else
      the latest valid one, else the latest of any.
    - ``name_token``, ``sex``, ``birth_date``: the value most records give (a typo is one record's; ties
      go to the smallest value, so the result does not depend on the order of records). ``birth_date``
      first counts only records whose birth date agrees with a valid ID.
    - ``phone_token``, ``address_token``, ``area_code``, ``insurance_no_token``: the latest (people move
      and change numbers).

    Args:
        linked: ``person_id``, ``institution_id``, ``_event_time``, the tokens, ``resident_id_valid``,
            ``birth_date_matches_id``, ``sex``, ``birth_date``, ``area_code``.

    Returns:
        ``person_id``, the survived fields, ``record_count``, ``institution_count``, ``first_seen``,
        ``last_seen``.
    """

    def latest(column: str, *prefer: Column) -> Column:
        order = F.struct(*prefer, F.col("_event_time")) if prefer else F.col("_event_time")
        return F.max_by(F.col(column), F.when(F.col(column).isNotNull(), order)).alias(column)

    valid = F.coalesce(F.col("resident_id_valid"), F.lit(False))
    agrees = valid & F.coalesce(F.col("birth_date_matches_id"), F.lit(False))
    return linked.groupBy("person_id").agg(
        latest("resident_id_token", agrees, valid),
        F.mode("name_token", deterministic=True).alias("name_token"),
        latest("phone_token"),
        latest("address_token"),
        latest("insurance_no_token"),
        F.mode("sex", deterministic=True).alias("sex"),
        F.coalesce(
            F.mode(F.when(agrees, F.col("birth_date")), deterministic=True),
            F.mode("birth_date", deterministic=True),
        ).alias("birth_date"),
        latest("area_code"),
        F.count(F.lit(1)).alias("record_count"),
        F.countDistinct("institution_id").alias("institution_count"),
        F.min("_event_time").alias("first_seen"),
        F.max("_event_time").alias("last_seen"),
    )
