"""Link the records of any person table into persons: Fellegi–Sunter with EM (Splink on Spark).

``link_persons`` is the public entry: a DataFrame plus a mapping of its columns to roles (see
``healthlake.empi.names.ROLES``) gives one cluster id per record. It works on Chinese records (pinyin
equality for homophone typos, surname/given-name order, one-character typos, transposed ID digits) and on
others (FEBRL, Synthea) alike: the comparisons used are the ones whose columns are mapped.

Splink does the model: u values from random pairs, m values by expectation maximisation on two blockings,
term-frequency adjustment (a match on 王伟 is worth less than one on a rare name), scoring and connected
components. healthlake supplies the comparisons, the blocking and the column preparation.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from healthlake.empi.names import CJK_CHARACTERS, standardize_person_columns

if TYPE_CHECKING:
    from splink.internals.blocking_rule_creator import BlockingRuleCreator

log = logging.getLogger(__name__)

DEFAULT_MATCH_PROBABILITY = 0.9
"""Pairs at or above this probability are linked."""


@dataclass
class PersonLinks:
    """What ``link_persons`` found.

    Attributes:
        clusters: ``unique_id`` (the record id as a string) and ``cluster_id``, one row per record.
        pairs: Scored candidate pairs: ``unique_id_l``, ``unique_id_r``, ``match_weight``,
            ``match_probability`` (only pairs at or above ``min_pair_probability``).
        model: The trained Splink model (settings with m and u values) as a dict, to log or reuse.
    """

    clusters: DataFrame
    pairs: DataFrame
    model: dict[str, Any]


def _comparisons(cols: set[str]) -> list[Any]:
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    comparisons: list[Any] = []
    if "name_key" in cols:
        name = cl.CustomComparison(
            output_column_name="name",
            comparison_levels=[
                cll.NullLevel("name_key"),
                cll.ExactMatchLevel("name_key").configure(tf_adjustment_column="name_key"),
                cll.ExactMatchLevel("name_pinyin").configure(label_for_charts="same pinyin (homophone)"),
                cll.CustomLevel(
                    "length(name_key_l) = length(name_key_r) "
                    "AND instr(concat(name_key_l, name_key_l), name_key_r) > 0",
                    label_for_charts="surname and given name in the other order",
                ),
                cll.And(cll.JaroWinklerLevel("given_name", 0.92), cll.JaroWinklerLevel("family_name", 0.92)),
                cll.CustomLevel(
                    "levenshtein(name_key_l, name_key_r) <= 1", label_for_charts="one character differs"
                ),
                cll.And(cll.JaroWinklerLevel("given_name", 0.88), cll.JaroWinklerLevel("family_name", 0.88)),
                cll.ExactMatchLevel("family_name").configure(tf_adjustment_column="family_name"),
                cll.ExactMatchLevel("given_name").configure(tf_adjustment_column="given_name"),
                cll.ElseLevel(),
            ],
        )
        comparisons.append(name)
    if "birth_date" in cols:
        comparisons.append(_birth_date_comparison())
    if "sex" in cols:
        comparisons.append(cl.ExactMatch("sex"))
    # One adjacent transposition is Damerau–Levenshtein distance 1: a mistyped ID still links.
    for number in ("id_number", "phone"):
        if number in cols:
            comparisons.append(_number_comparison(number))
    if "street_number" in cols:
        comparisons.append(
            cl.DamerauLevenshteinAtThresholds("street_number", [1]).configure(term_frequency_adjustments=True)
        )
    if "address_line" in cols:
        comparisons.append(cl.JaroWinklerAtThresholds("address_line", [0.9, 0.7]))
    if "locality" in cols:
        comparisons.append(
            cl.JaroWinklerAtThresholds("locality", [0.9]).configure(term_frequency_adjustments=True)
        )
    if "postcode" in cols:
        comparisons.append(
            cl.DamerauLevenshteinAtThresholds("postcode", [1]).configure(term_frequency_adjustments=True)
        )
    for exact in ("area", "state"):
        if exact in cols:
            comparisons.append(cl.ExactMatch(exact).configure(term_frequency_adjustments=True))
    return comparisons


def _one_off_or_swapped(column: str) -> str:
    """SQL: one character added, dropped or changed, or two characters swapped (``1234`` / ``1324``).

    Spark built-ins only: Splink's ``damerau_levenshtein`` UDF costs about 58 µs a pair, these about 2 µs
    (2 million pairs: 115 s against 3–5 s on 2 cores), and comparing pairs is most of a link run.
    """
    left, right = f"{column}_l", f"{column}_r"
    distance = f"levenshtein({left}, {right})"
    return (
        f"{distance} <= 1 OR ({distance} = 2 AND length({left}) = length({right}) "
        f"AND array_sort(split({left}, '')) = array_sort(split({right}, '')))"
    )


def _number_comparison(column: str) -> Any:
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    return cl.CustomComparison(
        output_column_name=column,
        comparison_levels=[
            cll.NullLevel(column),
            cll.ExactMatchLevel(column),
            cll.CustomLevel(_one_off_or_swapped(column), label_for_charts="one character off or two swapped"),
            cll.ElseLevel(),
        ],
    )


def _birth_date_comparison() -> Any:
    """Splink's date-of-birth levels on text dates, parsed with ``try_cast`` (4x cheaper per pair than
    Splink's ``try_to_timestamp`` with a pattern); a text that is no date counts as missing."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    parsed_l, parsed_r = "try_cast(birth_date_l AS date)", "try_cast(birth_date_r AS date)"
    days = f"abs(datediff({parsed_l}, {parsed_r}))"
    return cl.CustomComparison(
        output_column_name="birth_date",
        comparison_levels=[
            cll.CustomLevel(f"{parsed_l} IS NULL OR {parsed_r} IS NULL").configure(is_null_level=True),
            cll.ExactMatchLevel("birth_date"),
            cll.CustomLevel(
                "levenshtein(birth_date_l, birth_date_r) <= 1", label_for_charts="one character off"
            ),
            cll.CustomLevel(f"{days} <= 31", label_for_charts="within a month"),
            cll.CustomLevel(f"{days} <= 366", label_for_charts="within a year"),
            cll.CustomLevel(f"{days} <= 3653", label_for_charts="within ten years"),
            cll.ElseLevel(),
        ],
    )


def _blocking(cols: set[str]) -> list[Any]:
    """Candidate pairs: each rule joins on equal values, so the work stays near-linear in the records.

    No block grows with the region: common names (王伟, 张伟) are held by thousands, so a name goes with a
    birth date or part of one (a name alone gave 25.6 M of 33.5 M candidate pairs among 1 M records, name +
    county 10.6 M of 14.5 M); name + area serves only records without a birth date.

    A pair whose name *and* birth date are both mistyped (FEBRL4, clerks abroad) shares neither, so:
    the name with the birth year (survives a wrong day or month, a day/month swap) or with month and day
    (a wrong or transposed year digit); the same two with Soundex codes of the given and family names
    (most one-letter typos in either); and given and family names in the other order with no date, on
    Latin-script names only (only records keyed swapped hold a surname as given name, so blocks stay
    small; not so for 王伟 keyed 伟王, whose IDs and phones link them). Spark's ``soundex`` returns a value
    whose first character is no Latin letter unchanged: on Chinese names the Soundex rules are their
    exact-name counterparts and add no pairs (the pinyin rules cover Chinese homophones).
    """
    from splink import block_on
    from splink.blocking_rule_library import CustomRule

    year, month_day = "substr(birth_date, 1, 4)", "substr(birth_date, 6, 5)"
    sounds = ("soundex(given_name)", "soundex(family_name)")
    # The last resort (a name changed, no ID or phone in common): same birth date, sex and area.
    last_resort = tuple(c for c in ("birth_date", "sex", "area") if c in cols)
    names_dates = ("given_name", "family_name", "birth_date")
    wanted: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
        # (expressions joined on, columns they need)
        (("id_number",), ("id_number",)),
        (("phone",), ("phone",)),
        (("name_pinyin", year), ("name_pinyin", "birth_date")),
        (("name_pinyin", "birth_date"), ("name_pinyin", "birth_date")),
        (("family_name", "birth_date"), ("family_name", "birth_date")),
        (("given_name", "birth_date"), ("given_name", "birth_date")),
        (("family_name", "postcode"), ("family_name", "postcode")),
        (("given_name", "postcode"), ("given_name", "postcode")),
        (("street_number", "address_line"), ("street_number", "address_line")),
        (("family_name", "locality"), ("family_name", "locality")),
        (("given_name", "locality"), ("given_name", "locality")),
        (("street_number", "postcode"), ("street_number", "postcode")),
        # Name and birth date both mistyped (see above).
        (("name_pinyin", month_day), ("name_pinyin", "birth_date")),
        ((*sounds, year), names_dates),
        ((*sounds, month_day), names_dates),
    ]
    if "birth_date" in last_resort:
        wanted.append((last_resort, last_resort))
    rules: list[Any] = [block_on(*rule) for rule, needs in wanted if set(needs) <= cols]
    if {"given_name", "family_name"} <= cols:
        # Not on Chinese names: 王伟 keyed as 伟王 pairs with every 王伟 (374,866 of 721,987 candidate
        # pairs among 200 k synthetic Chinese records); their IDs and phones link those.
        latin = " AND ".join(f"NOT {side}.family_name RLIKE '{CJK_CHARACTERS}'" for side in "lr")
        rules.append(CustomRule(f"l.given_name = r.family_name AND l.family_name = r.given_name AND {latin}"))
    if {"name_pinyin", "area"} <= cols:
        no_date = "(l.birth_date IS NULL OR r.birth_date IS NULL)" if "birth_date" in cols else "true"
        rules.append(f"l.name_pinyin = r.name_pinyin AND l.area = r.area AND {no_date}")
    return rules


def _checkpoint(spark: SparkSession, checkpoint_dir: str | None) -> None:
    # Splink writes each step as Parquet under the checkpoint folder: a lineage kept in memory
    # instead grows with every clustering iteration until the planner overflows its stack.
    if checkpoint_dir is None and spark.sparkContext.getCheckpointDir() is None:
        checkpoint_dir = tempfile.mkdtemp(prefix="healthlake-empi-")
    if checkpoint_dir is not None:
        spark.sparkContext.setCheckpointDir(checkpoint_dir)


def _db_api(spark: SparkSession) -> Any:
    """Splink's Spark backend; every core gets work when Splink repartitions (its default, half the
    shuffle partitions, is one partition under a 2-partition test session)."""
    from splink.backends.spark import SparkAPI

    shuffle = int(spark.conf.get("spark.sql.shuffle.partitions") or 200)
    partitions = max(spark.sparkContext.defaultParallelism, shuffle // 2)
    return SparkAPI(spark_session=spark, num_partitions_on_repartition=partitions)


def training_sample(prepared: DataFrame, max_records: int | None) -> DataFrame:
    """At most about ``max_records`` of the prepared records, the same ones on every run.

    A uniform sample of records keeps the share of matching pairs among all pairs (both shrink with the
    square of the share), so the prior, the u and the m values it gives are those of the whole table,
    while the EM blocks (records sharing a birth date) stop growing with the square of the region.
    """
    if max_records is None:
        return prepared
    total = prepared.count()
    if total <= max_records:
        return prepared
    per_million = int(1_000_000 * max_records / total)
    log.debug("empi: model trained on about %d of %d records", max_records, total)
    return prepared.where(F.pmod(F.xxhash64("unique_id"), F.lit(1_000_000)) < per_million)


def train_model(
    prepared: DataFrame,
    *,
    max_u_pairs: float = 1e6,
    max_records: int | None = None,
    seed: int = 5,
    checkpoint_dir: str | None = None,
) -> dict[str, Any]:
    """Estimate a Fellegi–Sunter model (Splink settings with m and u values) from prepared records.

    Args:
        prepared: ``standardize_person_columns`` output.
        max_u_pairs: Random pairs sampled to estimate u values.
        max_records: Train on a fixed sample of about this many records when there are more (see
            ``training_sample``); None trains on all.
        seed: Seed of that sample, so that the same records give the same model.
        checkpoint_dir: See ``link_persons``.

    Returns:
        The model as Splink's JSON-ready dict (``score_pairs`` takes it back).
    """
    from splink import Linker, SettingsCreator, block_on

    spark = prepared.sparkSession
    _checkpoint(spark, checkpoint_dir)
    prepared = training_sample(prepared, max_records)
    cols = set(prepared.columns)
    comparisons, blocking = _comparisons(cols), _blocking(cols)
    if not comparisons or not blocking:
        raise ValueError("map at least a name, a birth date or an ID number to link persons")
    settings = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=blocking,
    )
    db_api = _db_api(spark)
    # log_level=None: Splink would otherwise add its own stderr handler to the "splink" logger at the
    # level given; its messages go through logging like healthlake's (the command line holds them at
    # ERROR unless -v).
    linker = Linker(db_api.register(prepared), settings, log_level=None)
    deterministic: list[str | BlockingRuleCreator] = [
        block_on(*r) for r in (("id_number",), ("name_key", "birth_date")) if set(r) <= cols
    ]
    started = time.monotonic()
    linker.training.estimate_probability_two_random_records_match(deterministic or blocking[:1], recall=0.8)
    log.debug("empi: prior estimated at %.1fs", time.monotonic() - started)
    # One pass per comparison: Splink's default ten chunks plus a probe each are ~80 Spark jobs, most of
    # the training time of a small or middling table; a million pairs fit in one pass.
    chunks = max(1, math.ceil(max_u_pairs / 1e7))
    linker.training.estimate_u_using_random_sampling(max_pairs=max_u_pairs, seed=seed, num_chunks=chunks)
    log.debug("empi: u values from %.0f random pairs at %.1fs", max_u_pairs, time.monotonic() - started)
    # Two EM sessions, each blocked on what the other estimates, so every comparison gets its m values.
    sessions = (
        [block_on("birth_date"), block_on("name_key")] if {"birth_date", "name_key"} <= cols else blocking[:1]
    )
    expected = {c.output_column_name for c in linker._settings_obj.comparisons}
    trained = 0
    for rule in sessions:
        # Splink's EM session edits the linker's own settings (it takes out the comparisons its blocking
        # rule fixes and puts them back when it ends): a failed session must not leave them out.
        before = linker._settings_obj.core_model_settings.copy()
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(rule)
            trained += 1
            log.debug("empi: EM session %d done at %.1fs", trained, time.monotonic() - started)
        except ValueError as exc:
            # Splink refuses an m value that underflows (a level almost never seen among the matches of
            # a small table); the other session's estimates still stand.
            if "below the minimum allowed" not in str(exc):
                raise
            linker._settings_obj.core_model_settings = before
            log.warning("empi: one EM session gave no estimates (%s); the others stand", _first_line(exc))
    if not trained:
        raise ValueError("EM estimated no m values: too few records that share a name or a birth date")
    model = linker.misc.save_model_to_json()
    missing = expected - {c["output_column_name"] for c in model["comparisons"]}
    if missing:
        raise RuntimeError(f"the trained model lost comparisons {sorted(missing)}")
    return model


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _tf_columns(model: dict[str, Any]) -> list[str]:
    return sorted(
        {
            level["tf_adjustment_column"]
            for comparison in model["comparisons"]
            for level in comparison["comparison_levels"]
            if level.get("tf_adjustment_column")
        }
    )


def term_frequencies(population: DataFrame, column: str) -> DataFrame:
    """Splink's term-frequency table of one column: each value's share of the non-null values."""
    counts = population.where(F.col(column).isNotNull()).groupBy(column).count()
    total = F.sum("count").over(Window.partitionBy())
    # One small window over the distinct values only: no scalar action, no driver round trip.
    return counts.select(column, (F.col("count") / total).alias(f"tf_{column}"))


def score_pairs(
    model: dict[str, Any],
    new: DataFrame,
    existing: DataFrame | None = None,
    *,
    population: DataFrame | None = None,
    min_pair_probability: float = 0.01,
    checkpoint_dir: str | None = None,
    skip_pairs: str | None = None,
) -> DataFrame:
    """Score candidate pairs among ``new`` records, and between them and ``existing`` ones, with a model.

    The pairs among ``existing`` records are not scored: that is what makes a day's linking incremental.

    Args:
        model: ``train_model`` output.
        new: Prepared records (``standardize_person_columns``) to link.
        existing: Prepared records linked before, or None.
        population: Prepared records whose value frequencies weigh a match (a match on 王伟 counts
            less than one on a rare name); default ``new`` and ``existing`` together.
        min_pair_probability: Pairs below it are not returned.
        checkpoint_dir: See ``link_persons``.
        skip_pairs: A Spark SQL condition on the two records (``l.<column>``, ``r.<column>``) of
            candidate pairs that need no score (e.g. both carry a trusted ID number: they are linked or
            kept apart by that); the columns it names must be in ``new`` and ``existing``.

    Returns:
        ``unique_id_l`` (always a new record), ``unique_id_r``, ``match_weight``, ``match_probability``.
    """
    from splink import Linker

    spark = new.sparkSession
    _checkpoint(spark, checkpoint_dir)
    if skip_pairs:
        model = dict(
            model,
            blocking_rules_to_generate_predictions=[
                {**rule, "blocking_rule": f"({rule['blocking_rule']}) AND NOT ({skip_pairs})"}
                for rule in (
                    r if isinstance(r, dict) else {"blocking_rule": r}
                    for r in model["blocking_rules_to_generate_predictions"]
                )
            ],
        )
    if population is None:
        population = new if existing is None else new.unionByName(existing)
    db_api = _db_api(spark)
    kept: list[DataFrame] = []
    if existing is not None:
        # Cached and counted, the day's records carry their real size: Spark then broadcasts them into
        # each blocking join instead of shuffling every linked record once per blocking rule.
        new = _cached(new, kept)
    left = db_api.register(new)
    linker = Linker(left, model, log_level=None)  # Splink's own handler stays off (see train_model)
    for column in _tf_columns(model):
        # Computed once here (both prediction passes join it) and cached with its real size, so that
        # joining it to the records is a broadcast, not a shuffle of every record per column.
        lookup = db_api.register(_cached(term_frequencies(population, column), kept))
        linker.table_management.register_term_frequency_lookup(lookup, column)
    wanted = ("unique_id_l", "unique_id_r", "match_weight", "match_probability")
    within = linker.inference.predict_within(
        left, threshold_match_probability=min_pair_probability, warning_mode="never"
    )
    pairs = within.as_spark_dataframe().select(*wanted)
    if existing is not None:
        between = linker.inference.predict_between(
            left,
            db_api.register(existing),
            threshold_match_probability=min_pair_probability,
            warning_mode="never",
        )
        pairs = pairs.unionByName(between.as_spark_dataframe().select(*wanted))
    # Splink wrote both passes' predictions to the checkpoint folder: the cached inputs are done.
    for frame in kept:
        frame.unpersist()
    return pairs


def _cached(df: DataFrame, kept: list[DataFrame]) -> DataFrame:
    """``df`` cached and counted: the planner then knows its real size (a lazy or checkpointed frame
    is planned at the size of what it was derived from)."""
    df = df.persist()
    df.count()
    kept.append(df)
    return df


def cluster_pairs(nodes: DataFrame, edges: DataFrame) -> DataFrame:
    """Connected components: ``unique_id`` of every node and its ``cluster_id``.

    Args:
        nodes: ``unique_id`` of every record (or person) to cluster, linked or not.
        edges: ``unique_id_l``, ``unique_id_r`` of the links to follow (all of them count).
    """
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    spark = nodes.sparkSession
    _checkpoint(spark, None)
    db_api = _db_api(spark)
    clusters = cluster_pairwise_predictions_at_threshold(
        nodes.select("unique_id"), edges.select("unique_id_l", "unique_id_r"), db_api, "unique_id"
    )
    return clusters.as_spark_dataframe().select("unique_id", "cluster_id")


def link_persons(
    df: DataFrame,
    columns: Mapping[str, str],
    *,
    match_probability: float = DEFAULT_MATCH_PROBABILITY,
    min_pair_probability: float = 0.01,
    checkpoint_dir: str | None = None,
    max_u_pairs: float = 1e6,
) -> PersonLinks:
    """Cluster the records of a person table into persons.

    Args:
        df: One row per record.
        columns: Role → column (see ``healthlake.empi.names.ROLES``); ``record_id`` required.
        match_probability: Pairs at or above it are linked (clusters are their connected components).
        min_pair_probability: Scored pairs below it are not returned.
        checkpoint_dir: Where Spark writes intermediate tables (breaks long lineages); default a
            temporary folder, on a cluster a shared path.
        max_u_pairs: Random pairs sampled to estimate u values.

    Returns:
        The clusters, the scored pairs and the trained model.
    """
    prepared = standardize_person_columns(df, columns).persist()
    model = train_model(prepared, max_u_pairs=max_u_pairs, checkpoint_dir=checkpoint_dir)
    pairs = score_pairs(model, prepared, min_pair_probability=min_pair_probability)
    clusters = cluster_pairs(prepared, pairs.where(F.col("match_probability") >= match_probability))
    log.debug("empi: linked with %d comparisons", len(model["comparisons"]))
    return PersonLinks(clusters=clusters, pairs=pairs, model=model)
