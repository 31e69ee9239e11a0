"""``healthlake link``: the EMPI stage. silver.patient_record + vault.identity → silver.person*.

Writes ``silver.person_xref`` (each source patient's person), ``silver.person`` (golden records),
``silver.empi_review`` (uncertain pairs and their decisions), ``silver.empi_audit`` (persons created,
merged, split) and ``silver.empi_model`` (the Fellegi–Sunter model). Only tokens and ids leave the vault.

A run links the *fresh* records: new source patients, those whose identity changed, and those named in
a review decision not applied yet. The first run (or ``full=True``) trains the model and links all. Later
runs score fresh records against each other and against the linked ones, so yesterday's pairs are never
scored again and yesterday's persons keep their ids.

Exactly once: ``silver.person_xref`` is written last and is the state the next run starts from; every
earlier write is an idempotent MERGE keyed by what it holds (or by that starting version), so a re-run after
a crash repeats the same work and adds nothing twice. New person ids derive from their records' keys.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from healthlake import io
from healthlake.catalog import (
    SILVER_EMPI_AUDIT,
    SILVER_EMPI_MODEL,
    SILVER_EMPI_REVIEW,
    SILVER_PATIENT_RECORD,
    SILVER_PERSON,
    SILVER_PERSON_XREF,
    VAULT_IDENTITY,
    VAULT_LINK_FEATURES,
)
from healthlake.empi.identities import IDENTITY_COLUMNS, patient_tokens, with_clear_values
from healthlake.empi.linkage import cluster_pairs, score_pairs, train_model
from healthlake.empi.names import standardize_person_columns
from healthlake.empi.persons import (
    ACTIVE,
    CREATED,
    MERGED,
    NO_MATCH,
    PERSON_NODE,
    PROBABILISTIC,
    RESIDENT_ID,
    RETIRED,
    REVIEW_ACCEPT,
    SPLIT,
    assign_person_ids,
    deterministic_edges,
    golden_records,
    strong_identifier_keys,
    strongest_link,
)
from healthlake.errors import HealthlakeError
from healthlake.logs import Steps
from healthlake.spark import local_checkpoint

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from healthlake.config import Config

log = logging.getLogger(__name__)

KEY = ("institution_id", "source_patient_id")
PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"
"""``silver.empi_review.status`` values."""

XREF_COLUMNS = (*KEY, "person_id", "link_rule", "match_probability", "identity_hash", "linked_at")
PERSON_COLUMNS = (
    "person_id",
    "status",
    "merged_into",
    "resident_id_token",
    "name_token",
    "phone_token",
    "address_token",
    "insurance_no_token",
    "sex",
    "birth_date",
    "area_code",
    "record_count",
    "institution_count",
    "first_seen",
    "last_seen",
    "created_version",
    "updated_at",
)
REVIEW_SCHEMA = (
    "review_id string, institution_id_l string, source_patient_id_l string, institution_id_r string, "
    "source_patient_id_r string, person_id_l string, person_id_r string, match_probability double, "
    "match_weight double, status string, created_at timestamp, decided_at timestamp, applied_version long"
)


class LinkError(HealthlakeError):
    """The EMPI cannot run: its input is missing, or a review decision names an unknown pair."""


@dataclass
class LinkResult:
    """What one ``healthlake link`` run did.

    Attributes:
        mode: ``full`` (model trained, every record linked), ``incremental`` or ``nothing`` (no record
            changed and no decision waited).
        records: Source patients known after the run.
        linked: Records linked by this run (the fresh ones).
        persons: Active persons after the run.
        created: Persons created by this run.
        merged: Persons retired into another by this run.
        split: Persons that records left for another person.
        review: Pairs added to ``silver.empi_review``.
        seconds: Wall time of the run.
    """

    mode: str
    records: int = 0
    linked: int = 0
    persons: int = 0
    created: int = 0
    merged: int = 0
    split: int = 0
    review: int = 0
    seconds: float = 0.0


def run(
    spark: SparkSession,
    cfg: Config,
    *,
    full: bool = False,
    accept: Sequence[str] = (),
    reject: Sequence[str] = (),
) -> LinkResult:
    """Link the fresh source patient records of the lake into persons.

    Args:
        spark: Session.
        cfg: Configuration (``lake_root`` and ``empi``).
        full: Retrain the model and link every record again (persons still keep their ids).
        accept: Review ids (``silver.empi_review``) whose two records are one person.
        reject: Review ids whose two records are two persons.

    Returns:
        What the run did.

    Raises:
        LinkError: When silver has no patient records yet, or a review id is unknown.
    """
    started = time.monotonic()
    steps = Steps(log, "link")
    lake = cfg.lake_root
    _check_decisions(accept, reject)
    for table in (SILVER_PATIENT_RECORD, VAULT_IDENTITY):
        if not io.is_table(spark, lake, table):
            raise LinkError(f"{table} is not in the lake {lake}: run `healthlake conform` first")
    if accept or reject:
        record_decisions(spark, lake, accept=accept, reject=reject)
    from_version = (
        io.latest_version(spark, lake, SILVER_PERSON_XREF)
        if io.is_table(spark, lake, SILVER_PERSON_XREF)
        else -1
    )
    # Every table this run also writes is read at a fixed version, and what derives from it is frozen
    # (localCheckpoint) before the first write: a Delta write refreshes cached reads of its table, which
    # would otherwise recompute this run's frames from the state it just wrote.
    previous = _pinned(spark, lake, SILVER_PERSON_XREF)
    decisions = _pinned(spark, lake, SILVER_EMPI_REVIEW)
    persons_before = _pinned(spark, lake, SILVER_PERSON)
    model_row = _latest_model(spark, lake)
    train = full or previous is None or model_row is None

    identities = patient_tokens(io.read_table(spark, lake, SILVER_PATIENT_RECORD))
    identities = local_checkpoint(_with_state(identities, previous, decisions, everything=train))
    fresh_count = identities.where("fresh").count()
    steps.done("identities", fresh_count)
    if fresh_count == 0:
        log.debug("link: no new or changed record and no decision to apply")
        return LinkResult("nothing", records=identities.count(), seconds=time.monotonic() - started)
    # Spark cannot tell that frames derived from a day's records are small next to the region's
    # tables; on an incremental day they are broadcast into those joins instead of shuffling the region.
    day = _day_sized if not train and fresh_count <= BROADCAST_FRESH_RECORDS else _as_is

    vault = io.read_table(spark, lake, VAULT_IDENTITY)
    fresh = _link_features(identities.where("fresh"), vault).persist()
    existing = None if train else _features_of_linked(spark, lake, identities, fresh_count, day)
    rewrite_features = train or existing is None
    if existing is None and not train:
        # No features kept (a lake linked before they were): prepare the linked records too.
        existing = _link_features(identities.where(~F.col("fresh")), vault).persist()
    if train:
        model = train_model(
            fresh.drop("trusted_id", "identity_hash"),
            max_u_pairs=cfg.empi.max_u_pairs,
            max_records=cfg.empi.max_train_records,
            checkpoint_dir=_tmp(cfg),
        )
        steps.done("model trained", fresh_count)
    else:
        if model_row is None:  # `train` is set whenever no model is stored
            raise LinkError("no EMPI model stored to link with: run `healthlake link --full`")
        model = json.loads(model_row)
    population = fresh if existing is None else fresh.unionByName(existing)
    pairs = score_pairs(
        model,
        fresh.drop("identity_hash"),
        None if existing is None else existing.drop("identity_hash"),
        population=population.drop("trusted_id", "identity_hash"),
        min_pair_probability=cfg.empi.review_probability,
        checkpoint_dir=_tmp(cfg),
        # Two trusted resident IDs settle a pair on their own: equal, the records are linked by rule;
        # different, they are two people (the check digit catches one wrong or two swapped digits).
        skip_pairs="l.trusted_id AND r.trusted_id",
    ).persist()
    steps.done("pairs scored", pairs.count())

    nodes = identities.select("record_id", "node", "fresh", "previous_person_id")
    edges = local_checkpoint(_edges(identities, pairs, nodes, decisions, cfg.empi.match_probability))
    graph_nodes = (
        identities.where("fresh")
        .select(F.col("node").alias("unique_id"))
        .unionByName(edges.select(F.col("unique_id_l").alias("unique_id")))
        .unionByName(edges.select(F.col("unique_id_r").alias("unique_id")))
        .distinct()
    )
    clusters = cluster_pairs(graph_nodes, edges).withColumnRenamed("unique_id", "node").persist()
    steps.done("clustered", clusters.count())
    ids, events = _person_ids(spark, identities, persons_before, clusters, from_version)
    ids, events = local_checkpoint(ids), local_checkpoint(events)
    updates = local_checkpoint(_xref_updates(identities, previous, clusters, ids, events, edges, day))
    after = (
        updates
        if previous is None
        else previous.join(day(updates.select(*KEY)), list(KEY), "left_anti").unionByName(updates)
    )
    persons = local_checkpoint(_persons(identities, persons_before, after, ids, events, from_version, day))
    reviews = local_checkpoint(_reviews(pairs, after, decisions, cfg.empi.match_probability, day))
    counts = {e: events.where(F.col("event") == e).count() for e in (CREATED, MERGED, SPLIT)}
    steps.done("persons", persons.count())

    if train:
        _write_model(spark, lake, model, from_version)
    _ensure_tables(spark, lake)
    _write_features(lake, population if rewrite_features else fresh, everything=rewrite_features)
    # Both with a change feed: publish follows the persons and links a run changed, not all of them.
    io.upsert(persons, lake, SILVER_PERSON, ["person_id"], properties=io.CHANGE_DATA_FEED)
    audit = events.withColumn("from_version", F.lit(from_version).cast("long")).withColumn(
        "logged_at", F.current_timestamp()
    )
    io.insert_new(audit, lake, SILVER_EMPI_AUDIT, ["event", "person_id", "other_person_id", "from_version"])
    io.insert_new(reviews, lake, SILVER_EMPI_REVIEW, ["review_id"])
    # The commit point.
    io.upsert(
        updates.select(*XREF_COLUMNS), lake, SILVER_PERSON_XREF, list(KEY), properties=io.CHANGE_DATA_FEED
    )
    _mark_decisions_applied(lake, decisions, io.latest_version(spark, lake, SILVER_PERSON_XREF))
    steps.done("written", updates.count())

    result = LinkResult(
        "full" if train else "incremental",
        records=identities.count(),
        linked=fresh_count,
        persons=io.read_table(spark, lake, SILVER_PERSON).where(F.col("status") == ACTIVE).count(),
        created=counts[CREATED],
        merged=counts[MERGED],
        split=counts[SPLIT],
        review=reviews.count(),
        seconds=time.monotonic() - started,
    )
    for frame in (fresh, existing, pairs, clusters):
        if frame is None:
            continue
        frame.unpersist()
    log.debug(
        "link: %s run, %d records linked, %d persons created, %d merged, %d split, %d pairs to review",
        result.mode,
        result.linked,
        result.created,
        result.merged,
        result.split,
        result.review,
    )
    return result


BROADCAST_FRESH_RECORDS = 250_000
"""Runs that link at most this many records broadcast the frames derived from them (see ``run``)."""


def _day_sized(df: DataFrame) -> DataFrame:
    return F.broadcast(df)


def _as_is(df: DataFrame) -> DataFrame:
    return df


def _link_features(records: DataFrame, vault: DataFrame) -> DataFrame:
    """The linkage columns of records (``standardize_person_columns`` on their clear values), with
    ``trusted_id`` (a resident ID that settles a pair by itself) and ``identity_hash``."""
    trusted = strong_identifier_keys(records)[RESIDENT_ID].isNotNull()
    return standardize_person_columns(
        with_clear_values(records, vault).withColumn("trusted_id", trusted),
        IDENTITY_COLUMNS,
        keep=("trusted_id", "identity_hash"),
    )


def _features_of_linked(
    spark: SparkSession,
    lake: str,
    identities: DataFrame,
    fresh_count: int,
    day: Callable[[DataFrame], DataFrame],
) -> DataFrame | None:
    """The kept linkage columns of the records linked before and unchanged, or None when they are not
    all there (features are written with each run's xref, so they are, unless the lake predates them)."""
    features = _pinned(spark, lake, VAULT_LINK_FEATURES)
    if features is None:
        return None
    fresh_ids = identities.where("fresh").select(F.col("record_id").alias("unique_id"))
    kept = features.join(day(fresh_ids), "unique_id", "left_anti").persist()
    found, wanted = kept.count(), identities.count() - fresh_count
    if found != wanted:
        log.warning(
            "link: %s holds %d of %d linked records; preparing them again", VAULT_LINK_FEATURES, found, wanted
        )
        kept.unpersist()
        return None
    return kept


def _write_features(lake: str, features: DataFrame, *, everything: bool) -> None:
    """Keep the linkage columns of this run's records (in the vault: they are clear values) for the next
    runs, which then prepare only their own fresh records; ``everything`` replaces them all."""
    if everything:
        io.overwrite(features, lake, VAULT_LINK_FEATURES)
    else:
        io.upsert(features, lake, VAULT_LINK_FEATURES, ["unique_id"])


def _pinned(spark: SparkSession, lake: str, name: str) -> DataFrame | None:
    """The table at its current version (so that later writes of this run do not change it), or None."""
    if not io.is_table(spark, lake, name):
        return None
    return io.read_table(spark, lake, name, version=io.latest_version(spark, lake, name))


def _tmp(cfg: Config) -> str:
    return cfg.empi.checkpoint_dir or f"{cfg.lake_root.rstrip('/')}/_tmp/empi"


def _latest_model(spark: SparkSession, lake: str) -> str | None:
    if not io.is_table(spark, lake, SILVER_EMPI_MODEL):
        return None
    # One row, of parameters only (m and u values): no patient data reaches the driver.
    row = (
        io.read_table(spark, lake, SILVER_EMPI_MODEL)
        .orderBy(F.desc("trained_at"))
        .select("model_json")
        .first()
    )
    return None if row is None else row["model_json"]


def _write_model(spark: SparkSession, lake: str, model: dict[str, Any], from_version: int) -> None:
    text = json.dumps(model, sort_keys=True)
    row = spark.createDataFrame(
        [(hashlib.sha256(text.encode()).hexdigest()[:16], from_version, text)],
        "model_id string, from_version long, model_json string",
    ).withColumn("trained_at", F.current_timestamp())
    if not io.is_table(spark, lake, SILVER_EMPI_MODEL):
        io.append(row, lake, SILVER_EMPI_MODEL)
    else:
        io.insert_new(row, lake, SILVER_EMPI_MODEL, ["model_id"])


def _with_state(
    identities: DataFrame, previous: DataFrame | None, decisions: DataFrame | None, *, everything: bool
) -> DataFrame:
    """Add ``previous_person_id``, ``fresh`` (to link this run) and ``node`` (the record or its person)."""
    if previous is None:
        state = identities.withColumn("previous_person_id", F.lit(None).cast("string")).withColumn(
            "_changed", F.lit(True)
        )
    else:
        before = previous.select(
            *KEY, F.col("person_id").alias("previous_person_id"), F.col("identity_hash").alias("_seen")
        )
        state = identities.join(before, list(KEY), "left").withColumn(
            "_changed", ~F.col("identity_hash").eqNullSafe(F.col("_seen"))
        )
    if decisions is not None:
        waiting = decisions.where(
            F.col("status").isin(ACCEPTED, REJECTED) & F.col("applied_version").isNull()
        )
        named = (
            waiting.select(
                F.col("institution_id_l").alias("institution_id"),
                F.col("source_patient_id_l").alias("source_patient_id"),
            )
            .unionByName(
                waiting.select(
                    F.col("institution_id_r").alias("institution_id"),
                    F.col("source_patient_id_r").alias("source_patient_id"),
                )
            )
            .distinct()
            .withColumn("_decided", F.lit(True))
        )
        state = state.join(named, list(KEY), "left")
    else:
        state = state.withColumn("_decided", F.lit(None).cast("boolean"))
    fresh = F.lit(True) if everything else F.col("_changed") | F.coalesce(F.col("_decided"), F.lit(False))
    return (
        state.withColumn("fresh", fresh | F.col("previous_person_id").isNull())
        .withColumn(
            "node",
            F.when(F.col("fresh"), F.col("record_id")).otherwise(
                F.concat(F.lit(PERSON_NODE), "previous_person_id")
            ),
        )
        .drop("_changed", "_seen", "_decided")
    )


def _pair_key(left: str, right: str) -> F.Column:
    return F.substring(F.sha2(F.concat_ws("~", F.least(left, right), F.greatest(left, right)), 256), 1, 16)


def _edges(
    identities: DataFrame, pairs: DataFrame, nodes: DataFrame, decisions: DataFrame | None, threshold: float
) -> DataFrame:
    """The links to follow: strong identifiers, accepted reviews, and scored pairs not rejected."""
    node_of = nodes.select(F.col("record_id").alias("unique_id_r"), F.col("node").alias("_node_r"))
    scored = pairs.where(F.col("match_probability") >= threshold).withColumn(
        "_pair", _pair_key("unique_id_l", "unique_id_r")
    )
    accepted = None
    if decisions is not None:
        rejected = decisions.where(F.col("status") == REJECTED).select(F.col("review_id").alias("_pair"))
        scored = scored.join(rejected, "_pair", "left_anti")
        record_l = F.concat_ws("|", "institution_id_l", "source_patient_id_l")
        record_r = F.concat_ws("|", "institution_id_r", "source_patient_id_r")
        node_of_l = nodes.select(
            F.col("record_id").alias("_l"),
            F.col("node").alias("unique_id_l"),
            F.col("fresh").alias("_fresh_l"),
        )
        node_of_r = nodes.select(
            F.col("record_id").alias("_r"),
            F.col("node").alias("unique_id_r"),
            F.col("fresh").alias("_fresh_r"),
        )
        accepted = (
            decisions.where(F.col("status") == ACCEPTED)
            .select(record_l.alias("_l"), record_r.alias("_r"))
            .join(node_of_l, "_l")
            .join(node_of_r, "_r")
            .where(F.col("_fresh_l") | F.col("_fresh_r"))
            .select(
                "unique_id_l",
                "unique_id_r",
                F.lit(REVIEW_ACCEPT).alias("rule"),
                F.lit(1.0).alias("match_probability"),
            )
        )
    probabilistic = scored.join(node_of, "unique_id_r").select(
        "unique_id_l",
        F.col("_node_r").alias("unique_id_r"),
        F.lit(PROBABILISTIC).alias("rule"),
        "match_probability",
    )
    edges = probabilistic.unionByName(deterministic_edges(identities))
    if accepted is not None:
        edges = edges.unionByName(accepted)
    return edges.where(F.col("unique_id_l") != F.col("unique_id_r"))


def _person_ids(
    spark: SparkSession,
    identities: DataFrame,
    persons_before: DataFrame | None,
    clusters: DataFrame,
    from_version: int,
) -> tuple[DataFrame, DataFrame]:
    fresh = identities.where("fresh").join(clusters, "node")
    members = fresh.where(F.col("previous_person_id").isNotNull()).select(
        "cluster_id", "previous_person_id", F.lit(1).alias("n")
    )
    # A person node weighs as many records as it keeps outside this run's fresh ones; only the person
    # nodes in play are counted (a semi-join first: the day's clusters, not the whole region).
    kept = (
        identities.where(~F.col("fresh"))
        .join(clusters.select("node"), "node", "left_semi")
        .groupBy("node")
        .agg(F.count(F.lit(1)).alias("n"))
    )
    members = members.unionByName(
        clusters.join(kept, "node").select(
            "cluster_id", F.substring("node", len(PERSON_NODE) + 1, 1000).alias("previous_person_id"), "n"
        )
    )
    seeds = fresh.groupBy("cluster_id").agg(F.min("record_id").alias("seed"))
    # Both are read several times below (ids and events): computed once, not once per use from the
    # region-sized identities.
    members, seeds = local_checkpoint(members), local_checkpoint(seeds)
    if persons_before is not None:
        # Persons created by this very run before a crash are not "issued": the re-run derives them again.
        issued = persons_before.where(F.col("created_version") != from_version).select("person_id")
    else:
        issued = spark.createDataFrame([], "person_id string")
    return assign_person_ids(clusters.select("cluster_id").distinct(), members, seeds, issued)


def _xref_updates(
    identities: DataFrame,
    previous: DataFrame | None,
    clusters: DataFrame,
    ids: DataFrame,
    events: DataFrame,
    edges: DataFrame,
    day: Callable[[DataFrame], DataFrame] = _as_is,
) -> DataFrame:
    """xref rows to write: every fresh record, and the records of persons merged into another."""
    fresh = (
        identities.where("fresh")
        .join(clusters, "node")
        .join(ids.select("cluster_id", "person_id"), "cluster_id")
        .join(strongest_link(edges), "node", "left")
        .select(
            *KEY,
            "person_id",
            F.coalesce("link_rule", F.lit(NO_MATCH)).alias("link_rule"),
            "match_probability",
            "identity_hash",
            F.current_timestamp().alias("linked_at"),
        )
    )
    if previous is None:
        return fresh
    merged = events.where(F.col("event") == MERGED).select(
        F.col("other_person_id").alias("person_id"), F.col("person_id").alias("_survivor")
    )
    moved = (
        previous.join(day(merged), "person_id")
        .join(fresh.select(*KEY), list(KEY), "left_anti")
        .withColumn("person_id", F.col("_survivor"))
        .withColumn("linked_at", F.current_timestamp())
        .select(*XREF_COLUMNS)
    )
    return fresh.unionByName(moved)


def _persons(
    identities: DataFrame,
    persons_before: DataFrame | None,
    after: DataFrame,
    ids: DataFrame,
    events: DataFrame,
    from_version: int,
    day: Callable[[DataFrame], DataFrame] = _as_is,
) -> DataFrame:
    """silver.person rows to upsert: golden records of the persons this run touched, and the retired."""
    touched = (
        ids.select("person_id")
        .unionByName(
            events.where(F.col("event") == SPLIT).select(F.col("other_person_id").alias("person_id"))
        )
        .distinct()
    )
    touched_records = after.join(day(touched), "person_id").select("person_id", *KEY)
    records = identities.join(day(touched_records), list(KEY))
    created = ids.where("is_new").select("person_id", F.lit(from_version).alias("_new_version"))
    golden = golden_records(records).join(created, "person_id", "left")
    if persons_before is not None:
        before = persons_before.join(day(touched), "person_id", "left_semi").select(
            "person_id", F.col("created_version").alias("_was")
        )
        golden = golden.join(before, "person_id", "left")
    else:
        golden = golden.withColumn("_was", F.lit(None).cast("long"))
    active = golden.select(
        "*",
        F.lit(ACTIVE).alias("status"),
        F.lit(None).cast("string").alias("merged_into"),
        F.coalesce("_was", "_new_version", F.lit(from_version)).cast("long").alias("created_version"),
        F.current_timestamp().alias("updated_at"),
    ).select(*PERSON_COLUMNS)
    merged = events.where(F.col("event") == MERGED).select(
        F.col("other_person_id").alias("person_id"), F.col("person_id").alias("_into")
    )
    if persons_before is None:
        return active
    retired = (
        persons_before.join(day(merged), "person_id")
        .withColumn("status", F.lit(RETIRED))
        .withColumn("merged_into", F.col("_into"))
        .withColumn("updated_at", F.current_timestamp())
        .select(*PERSON_COLUMNS)
    )
    return active.unionByName(retired)


def _reviews(
    pairs: DataFrame,
    after: DataFrame,
    decisions: DataFrame | None,
    threshold: float,
    day: Callable[[DataFrame], DataFrame] = _as_is,
) -> DataFrame:
    """Uncertain pairs whose records ended in two persons, for a person to decide."""
    out = pairs.where(F.col("match_probability") < threshold)
    # A record id is "<institution_id>|<source_patient_id>" (``patient_identities``): the xref has both.
    in_pairs = (
        out.select(F.col("unique_id_l").alias("_record"))
        .unionByName(out.select(F.col("unique_id_r").alias("_record")))
        .distinct()
    )
    person_of = after.select(F.concat_ws("|", *KEY).alias("_record"), *KEY, "person_id").join(
        day(in_pairs), "_record", "left_semi"
    )
    for side in ("l", "r"):
        side_cols = [F.col(k).alias(f"{k}_{side}") for k in KEY]
        out = out.join(
            person_of.select(
                F.col("_record").alias(f"unique_id_{side}"),
                *side_cols,
                F.col("person_id").alias(f"person_id_{side}"),
            ),
            f"unique_id_{side}",
        )
    out = out.where(F.col("person_id_l") != F.col("person_id_r")).withColumn(
        "review_id", _pair_key("unique_id_l", "unique_id_r")
    )
    if decisions is not None:
        out = out.join(decisions.select("review_id"), "review_id", "left_anti")
    schema_cols = [c.split()[0] for c in REVIEW_SCHEMA.split(", ")]
    return (
        out.withColumn("status", F.lit(PENDING))
        .withColumn("created_at", F.current_timestamp())
        .withColumn("decided_at", F.lit(None).cast("timestamp"))
        .withColumn("applied_version", F.lit(None).cast("long"))
        .dropDuplicates(["review_id"])
        .select(*schema_cols)
    )


def _ensure_tables(spark: SparkSession, lake: str) -> None:
    from pyspark.sql.types import StructType

    audit = "event string, person_id string, other_person_id string, from_version long, logged_at timestamp"
    for name, ddl in ((SILVER_EMPI_REVIEW, REVIEW_SCHEMA), (SILVER_EMPI_AUDIT, audit)):
        schema = StructType.fromDDL(ddl)
        if not isinstance(schema, StructType):  # a list of columns always parses to a struct
            raise TypeError(f"{name}: {ddl!r} is not a list of columns")
        io.create_table(spark, lake, name, schema)


REVIEW_SHEET_FIELDS = ("full_name", "birth_date", "sex", "id_number", "phone", "address_line", "area_code")
"""What a reviewer sees of each record of a pair (``review_sheet``)."""


def review_sheet(spark: SparkSession, lake: str, *, status: str | None = PENDING) -> DataFrame:
    """The review pairs with both records' clear identifiers side by side, for a reviewer to decide.

    It reads the vault: use it only in an authorised reviewer's session, keep what it returns out of
    silver, gold and research tables, and log none of its rows. Decide with ``record_decisions`` (or
    ``healthlake link --accept/--reject``) on its ``review_id``.

    Args:
        spark: Session.
        lake: Lake root.
        status: Only pairs of this status (``pending``, ``accepted``, ``rejected``); None for all.

    Returns:
        ``review_id``, ``status``, ``match_probability``, ``match_weight``, and for each record (suffix
        ``_l`` and ``_r``): ``institution_id``, ``source_patient_id``, ``person_id`` and
        ``REVIEW_SHEET_FIELDS``.

    Raises:
        LinkError: When the lake has no review table yet.
    """
    if not io.is_table(spark, lake, SILVER_EMPI_REVIEW):
        raise LinkError(f"{SILVER_EMPI_REVIEW} is not in the lake {lake}: run `healthlake link` first")
    review = io.read_table(spark, lake, SILVER_EMPI_REVIEW)
    if status is not None:
        review = review.where(F.col("status") == status)
    sides = [review.select(*[F.col(f"{k}_{side}").alias(k) for k in KEY]) for side in ("l", "r")]
    wanted = sides[0].unionByName(sides[1]).distinct()
    # Only the records in review pairs: filtered before choosing each patient's record, not after.
    records = patient_tokens(
        io.read_table(spark, lake, SILVER_PATIENT_RECORD).join(wanted, list(KEY), "left_semi")
    )
    shown = with_clear_values(records, io.read_table(spark, lake, VAULT_IDENTITY)).select(
        *KEY, *REVIEW_SHEET_FIELDS
    )
    sheet = review.select(
        "review_id",
        "status",
        "match_probability",
        "match_weight",
        *[f"{c}_{side}" for side in ("l", "r") for c in (*KEY, "person_id")],
    )
    for side in ("l", "r"):
        sheet = sheet.join(
            shown.select(*[F.col(c).alias(f"{c}_{side}") for c in shown.columns]),
            [f"{k}_{side}" for k in KEY],
            "left",
        )
    ordered = [f"{c}_{side}" for side in ("l", "r") for c in (*KEY, "person_id", *REVIEW_SHEET_FIELDS)]
    return sheet.select("review_id", "status", "match_probability", "match_weight", *ordered)


def record_decisions(
    spark: SparkSession, lake: str, *, accept: Sequence[str] = (), reject: Sequence[str] = ()
) -> None:
    """Record reviewers' decisions on ``silver.empi_review`` pairs; the next link run applies them.

    Raises:
        LinkError: When an id is in both lists or names no review pair.
    """
    _check_decisions(accept, reject)
    wanted = [(r, ACCEPTED) for r in accept] + [(r, REJECTED) for r in reject]
    if not io.is_table(spark, lake, SILVER_EMPI_REVIEW):
        raise LinkError(f"{SILVER_EMPI_REVIEW} is not in the lake {lake}: run `healthlake link` first")
    decided = spark.createDataFrame(wanted, "review_id string, status string")
    unknown = decided.join(io.read_table(spark, lake, SILVER_EMPI_REVIEW), "review_id", "left_anti").first()
    if unknown is not None:
        raise LinkError(
            f"no pair {unknown['review_id']} in {SILVER_EMPI_REVIEW}: pick a review_id from that table"
        )
    status = F.when(F.col("review_id").isin(list(accept)), F.lit(ACCEPTED)).otherwise(F.lit(REJECTED))
    io.update(
        spark,
        lake,
        SILVER_EMPI_REVIEW,
        F.col("review_id").isin([r for r, _ in wanted]),
        {"status": status, "decided_at": F.current_timestamp(), "applied_version": F.lit(None).cast("long")},
    )


def _check_decisions(accept: Sequence[str], reject: Sequence[str]) -> None:
    both = sorted(set(accept) & set(reject))
    if both:
        raise LinkError(f"review {both[0]} is both accepted and rejected: name it once")


def _mark_decisions_applied(lake: str, decisions: DataFrame | None, version: int) -> None:
    """Set ``applied_version`` on the waiting decisions this run read (``decisions``), and on no other.

    A reviewer may record a decision (``record_decisions``, ``healthlake link --accept``) while a run goes,
    after it read ``silver.empi_review``: that decision is new, or has another status and decision time
    than the one read, so it stays waiting and the next run applies it.
    """
    if decisions is None:
        return
    read = decisions.where(F.col("status").isin(ACCEPTED, REJECTED) & F.col("applied_version").isNull())
    if read.isEmpty():
        return
    # A MERGE keyed by review id whose update holds only for the decision as it was read.
    same = "t.status = s.status AND t.decided_at <=> s.decided_at AND t.applied_version IS NULL"
    applied = read.withColumn("applied_version", F.lit(version).cast("long"))
    io.upsert(applied, lake, SILVER_EMPI_REVIEW, ["review_id"], update_condition=same)
