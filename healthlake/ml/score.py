"""``healthlake score MODEL``: score the whole region with the champion, in Spark, and monitor it.

The champion (``models:/healthlake-<model>@champion``, resolved to its version number first, so that the
version written is the version scored) is loaded as a Spark UDF (``mlflow.pyfunc.spark_udf``): the
model runs in the executors' Python workers, on Arrow batches, and the region never passes through the
driver. Every row of the model's feature table is scored.

``gold.predictions_<model>``: one row per (feature key, ``score_date``), partitioned by ``score_date``:
the key, ``person_id``, ``score`` (the probability of the label), ``label_known`` (whether the outcome
was already known when scored), ``model_version``, ``features_version``, ``scored_at`` (UTC instant) and
``score_date`` (the features' ``as_of``, a local day). Re-scoring the same day replaces that day's rows
(``replaceWhere``), so a re-run after success or after a crash never duplicates. The same run appends (or
replaces) its row of ``gold.model_monitoring`` (``healthlake.ml.monitoring``), judging the predictions of
the last ``ml.outcome_days`` scoring days whose outcomes have become known since.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType

from healthlake import io
from healthlake.catalog import GOLD_MODEL_MONITORING, predictions_table
from healthlake.errors import HealthlakeError
from healthlake.logs import progress
from healthlake.ml import monitoring
from healthlake.ml.models import ModelSpec, model_spec
from healthlake.ml.tracking import registered_name, tracking
from healthlake.ml.train import CHAMPION
from healthlake.pipelines.features import features_as_of

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from healthlake.config import Config

log = logging.getLogger(__name__)


class ScoringError(HealthlakeError):
    """A model cannot be scored: no champion yet, or no feature table."""


@dataclass
class ScoreResult:
    """What one scoring run wrote.

    Attributes:
        model: The model's name.
        version: The registered version scored (the champion's).
        rows: Rows scored.
        score_date: The local day the predictions are of.
        table: The predictions table.
        monitoring: The run's ``gold.model_monitoring`` row.
        seconds: Wall time.
    """

    model: str
    version: int
    rows: int
    score_date: dt.date
    table: str
    monitoring: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def champion_version(spec: ModelSpec) -> tuple[int, str]:
    """The champion's version number and its run id, in the current tracking store.

    Raises:
        ScoringError: When the model has no champion yet.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    name = registered_name(spec.name)
    try:
        found = mlflow.MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        raise ScoringError(
            f"{name} has no {CHAMPION} version yet: run `healthlake train {spec.name}` first"
        ) from None
    return int(found.version), str(found.run_id)


def scored_frame(features: DataFrame, spec: ModelSpec, udf: Any, inputs: list[str]) -> DataFrame:
    """``features`` with ``score``: the UDF applied to the model's inputs (a struct in signature order)."""
    # As trained (``train.model_inputs``): numbers and flags as doubles, categories as text.
    typed = [F.col(c).cast("double" if c in spec.numeric else "string").alias(c) for c in inputs]
    predicted = udf(F.struct(*typed))
    score = predicted[1] if spec.kind == "classifier" else predicted
    extra = [c for c in ("person_id",) if c in features.columns]
    return features.select(
        *spec.key,
        *extra,
        *[c for c in inputs if c not in spec.key],
        F.col(spec.label).isNotNull().alias("label_known"),
        score.alias("score"),
    )


def score(spark: SparkSession, cfg: Config, model: str) -> ScoreResult:
    """Score every row of ``model``'s feature table with its champion; write the predictions and the
    monitoring row of the run.

    Raises:
        UsageError: For an unknown model.
        ScoringError: When there is no champion or no feature table.
    """
    import mlflow

    started = time.monotonic()
    spec = model_spec(model)
    lake = cfg.lake_root
    if not io.is_table(spark, lake, spec.features_table):
        raise ScoringError(
            f"{spec.features_table} is not in the lake {lake}: run `healthlake features` first"
        )
    score_date = features_as_of(spark, lake)
    features_version = io.latest_version(spark, lake, spec.features_table)
    features = io.read_table(spark, lake, spec.features_table, version=features_version)
    with tracking(cfg):
        version, run_id = champion_version(spec)
        uri = f"models:/{registered_name(spec.name)}/{version}"
        info = mlflow.models.get_model_info(uri)
        if info.signature is None:
            raise ScoringError(f"{uri} has no signature: it was not logged by `healthlake train`")
        inputs = [c.name for c in info.signature.inputs.inputs if c.name is not None]
        result_type = ArrayType(DoubleType()) if spec.kind == "classifier" else DoubleType()
        # env_manager="local": the executors run the model in healthlake's own environment, which
        # trained it (the workers of a cluster get it from spark-submit like every other dependency).
        udf = mlflow.pyfunc.spark_udf(spark, uri, result_type=result_type, env_manager="local")
        reference = mlflow.artifacts.load_dict(f"runs:/{run_id}/monitoring/reference.json")
    scored_at = dt.datetime.now(dt.UTC)
    scored = scored_frame(features, spec, udf, inputs)
    rows = scored.drop(*[c for c in inputs if c not in spec.key]).withColumns(
        {
            "model_version": F.lit(version),
            "features_version": F.lit(features_version).cast("long"),
            "scored_at": F.lit(scored_at),
            "score_date": F.lit(score_date),
        }
    )
    table = predictions_table(spec.name)
    day = f"score_date = DATE'{score_date.isoformat()}'"
    if io.is_table(spark, lake, table):
        io.replace_where(rows, lake, table, day)
    else:
        io.overwrite(rows, lake, table, partition_by=["score_date"])
    written = io.read_table(spark, lake, table).where(day)
    count = written.count()
    row = _monitor(spark, cfg, spec, written, features, reference, version, score_date, scored_at)
    seconds = time.monotonic() - started
    progress(
        log,
        f"score {spec.name}",
        count,
        seconds,
        f"{registered_name(spec.name)} version {version} → {table} ({score_date}); "
        f"score PSI {row['score_psi']:.3f}, {len(row['drifted_inputs'])} drifted input(s)",
    )
    return ScoreResult(spec.name, version, count, score_date, table, row, seconds)


def _monitor(
    spark: SparkSession,
    cfg: Config,
    spec: ModelSpec,
    written: DataFrame,
    features: DataFrame,
    reference: dict,
    version: int,
    score_date: dt.date,
    scored_at: dt.datetime,
) -> dict[str, Any]:
    """Write the run's ``gold.model_monitoring`` row (replacing one of the same model and day)."""
    lake = cfg.lake_root
    inputs = [*reference["numeric"], *reference["categorical"]]
    with_inputs = written.select(*spec.key, "score").join(features.select(*spec.key, *inputs), list(spec.key))
    counts = io.one_row(with_inputs.agg(*monitoring.drift_aggregates(reference, "score"))).asDict()
    input_psi, score_psi = monitoring.drift_from_counts(reference, counts)
    stats = io.one_row(
        written.agg(
            F.avg("score").alias("mean"),
            F.percentile_approx("score", [i / 10 for i in range(11)], 10_000).alias("quantiles"),
        )
    )
    realised: dict[str, float] = {}
    realised_from = None
    table = predictions_table(spec.name)
    # The last ml.outcome_days scoring days only (partitions pruned): the run's cost stays bounded however
    # long the model has been scored. A key scored on several days while its outcome was unknown is judged
    # once, by its latest prediction (the one made with the most known).
    since = score_date - dt.timedelta(days=cfg.ml.outcome_days)
    earlier = (
        io.read_table(spark, lake, table)
        .where(
            (F.col("score_date") < F.lit(score_date))
            & (F.col("score_date") >= F.lit(since))
            & ~F.col("label_known")
        )
        .groupBy(*spec.key)
        .agg(F.max_by("score", "score_date").alias("score"), F.max("score_date").alias("score_date"))
    )
    judged = earlier.join(
        features.where(F.col(spec.label).isNotNull()).select(*spec.key, spec.label), list(spec.key)
    )
    if spec.kind == "classifier":
        bins = monitoring.binned_outcomes(judged, "score", spec.label).toPandas()  # at most SCORE_BINS rows
        realised = monitoring.realised_metrics(bins)
    else:
        error = io.one_row(
            judged.agg(
                F.count("*").alias("rows"), F.avg(F.abs(F.col("score") - F.col(spec.label))).alias("mae")
            )
        )
        if error["rows"]:
            realised = {"rows": float(error["rows"]), "mae": float(error["mae"])}
    if realised:
        realised_from = io.one_row(judged.agg(F.min("score_date")))[0]
    row = {
        "model": spec.name,
        "model_version": version,
        "score_date": score_date,
        "scored_at": scored_at,
        "rows": int(counts["_rows"]),
        "score_mean": float(stats["mean"]) if stats["mean"] is not None else None,
        "score_quantiles": [float(q) for q in stats["quantiles"] or []],
        "score_psi": float(score_psi),
        "input_psi": {k: float(v) for k, v in input_psi.items()},
        "drifted_inputs": sorted(k for k, v in input_psi.items() if v > monitoring.DRIFT_PSI),
        "outcome_rows": int(realised.get("rows", 0)),
        "realised_from": realised_from,
        "realised_roc_auc": realised.get("roc_auc"),
        "realised_brier": realised.get("brier"),
        "realised_calibration_slope": realised.get("calibration_slope"),
        "realised_calibration_intercept": realised.get("calibration_intercept"),
        "realised_mae": realised.get("mae"),
    }
    frame = spark.createDataFrame([row], monitoring.MONITORING_SCHEMA)
    same_run = f"model = '{spec.name}' AND score_date = DATE'{score_date.isoformat()}'"
    if io.is_table(spark, lake, GOLD_MODEL_MONITORING):
        io.replace_where(frame, lake, GOLD_MODEL_MONITORING, same_run)
    else:
        io.overwrite(frame, lake, GOLD_MODEL_MONITORING)
    return row
