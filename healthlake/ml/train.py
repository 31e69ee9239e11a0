"""``healthlake train MODEL``: train a model on its gold feature table, track it, register it, promote it.

One MLflow run per training (experiment ``healthlake-<model>``) holds:

* parameters: the estimator and its parameters, the inputs, the time split and the rows on each side;
* the input: the feature table as an MLflow Delta dataset with the version read;
* metrics on the hold-out: ROC AUC, PR AUC, Brier score, calibration slope and intercept (classifiers),
  the same per subgroup (``roc_auc.sex.F`` …) so that a group served worse is visible;
* ``mlflow.models.evaluate``'s plots (ROC, precision-recall, calibration) and a feature-importance plot;
* tags: the git commit of the code and healthlake's version;
* the model (``log_model(name="model")``) with its signature and an input example, registered as
  ``healthlake-<model>``.

**Estimator.** ``auto`` (every model's default) fits each of ``ESTIMATORS`` on the earlier training
months, keeps the one with the better ``champion_metric`` on the latest quarter of them (never the
hold-out, which stays unseen until the final figures), and trains it on every training month.

**Baseline.** A model with a baseline rule (``ModelSpec.baseline``) is promoted only when it also beats
that rule on the hold-out.

**Time split.** The labelled rows of the latest ``ml.holdout_months`` local months are held out; the model
trains on the months before. **Promotion.** The registry alias ``champion`` moves to the new version only
when it beats the champion's ``champion_metric`` on the same hold-out rows (the champion is loaded and
scored on them); otherwise the run's tag ``healthlake.promotion`` says why not and the alias stays.

Training pulls pandas from gold at one boundary (``toPandas`` of the training months, sampled down to
``ml.max_training_rows``); scoring the region never does (``healthlake.ml.score``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io as io_text
import logging
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from healthlake import __version__, io
from healthlake.errors import HealthlakeError, UsageError
from healthlake.logs import progress
from healthlake.ml import monitoring
from healthlake.ml.models import AUTO, ESTIMATORS, ModelSpec, build_pipeline, model_spec
from healthlake.ml.tracking import experiment_id, registered_name, tracking
from healthlake.naming import table_path

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from healthlake.config import Config

log = logging.getLogger(__name__)

CHAMPION = "champion"
"""The registry alias of the version ``healthlake score`` uses."""
MIN_SUBGROUP_ROWS = 20
"""Subgroups with fewer hold-out rows (or one class only) get no metrics of their own: too noisy to read."""


class TrainingError(HealthlakeError):
    """A model cannot be trained: no feature table, or too few labelled rows in the training window."""


@dataclass
class TrainResult:
    """What one training did.

    Attributes:
        model: The model's name.
        run_id: The MLflow run.
        version: The registered version.
        metrics: Hold-out metrics of the new version.
        promoted: Whether the ``champion`` alias moved to it.
        reason: Why it was (or was not) promoted.
        champion_metric: The former champion's metric on the same hold-out (None: there was none).
        features_version: The feature table's Delta version trained on.
        train_rows: Rows trained on.
        holdout_rows: Rows held out.
        holdout_months: The local months held out (first days).
        seconds: Wall time.
        estimator: The estimator trained.
        selection: How it was chosen (given, or ``auto``'s figures).
    """

    model: str
    run_id: str
    version: int
    metrics: dict[str, float]
    promoted: bool
    reason: str
    champion_metric: float | None
    features_version: int
    train_rows: int
    holdout_rows: int
    holdout_months: list[dt.date] = field(default_factory=list)
    seconds: float = 0.0
    estimator: str = ""
    selection: str = ""


def split_months(months: list[dt.date], holdout: int) -> tuple[list[dt.date], list[dt.date]]:
    """The months to train on and the latest ``holdout`` months to hold out (both sorted).

    Raises:
        TrainingError: When fewer than ``holdout + 1`` months hold labelled rows.
    """
    ordered = sorted(set(months))
    if len(ordered) <= holdout:
        raise TrainingError(
            f"{len(ordered)} month(s) of labelled rows: training needs more than ml.holdout_months "
            f"({holdout}); lower it or wait for more data"
        )
    return ordered[:-holdout], ordered[-holdout:]


def regressor_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Errors of predictions ``p`` for actual counts ``y``: ``mae``, ``rmse``, ``mape`` (over actuals
    above 0), ``mean`` (of the actuals) and ``rows``."""
    out = {"rows": float(len(y))}
    if len(y) == 0:
        return out
    error = np.asarray(p, dtype=float) - np.asarray(y, dtype=float)
    out["mae"] = float(np.mean(np.abs(error)))
    out["rmse"] = float(np.sqrt(np.mean(error**2)))
    out["mean"] = float(np.mean(y))
    positive = np.asarray(y) > 0
    if positive.any():
        out["mape"] = float(np.mean(np.abs(error[positive]) / np.asarray(y, dtype=float)[positive]))
    return out


def baseline_metrics(spec: ModelSpec, y: np.ndarray, rule: pd.Series) -> dict[str, float]:
    """The baseline rule's hold-out metrics, ``baseline_<metric>``: a classifier's rule is a ranking (the
    last reading's severity is no probability), so its ROC and PR AUC; a regressor's rule is a forecast,
    so its errors."""
    values = rule.astype("float64").fillna(0.0).to_numpy()
    if spec.kind == "classifier":
        from sklearn.metrics import average_precision_score, roc_auc_score

        if len(np.unique(y)) < 2:
            return {}
        return {
            "baseline_roc_auc": float(roc_auc_score(y, values)),
            "baseline_pr_auc": float(average_precision_score(y, values)),
        }
    figures = regressor_metrics(y, values)
    return {f"baseline_{k}": v for k, v in figures.items() if k in ("mae", "rmse", "mape")}


def metrics_of(spec: ModelSpec, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """``classifier_metrics`` or ``regressor_metrics``, by the model's kind."""
    return classifier_metrics(y, p) if spec.kind == "classifier" else regressor_metrics(y, p)


def _predict(pipeline: Any, spec: ModelSpec, x: pd.DataFrame) -> np.ndarray:
    """The score: the label's probability (a classifier) or the prediction (a regressor)."""
    if spec.kind == "classifier":
        return np.asarray(pipeline.predict_proba(x))[:, 1]
    return np.asarray(pipeline.predict(x), dtype=float)


def classifier_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Discrimination and calibration of probabilities ``p`` for labels ``y`` (0/1).

    Returns:
        ``roc_auc``, ``pr_auc`` (average precision), ``brier``, ``calibration_slope`` and
        ``calibration_intercept`` (a logistic fit of ``y`` on the logit of ``p``: 1 and 0 when calibrated),
        ``prevalence`` and ``rows``; the AUCs and calibration only when both classes occur.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    out = {"rows": float(len(y)), "prevalence": float(np.mean(y)) if len(y) else float("nan")}
    if len(y) == 0:
        return out
    out["brier"] = float(brier_score_loss(y, p))
    if len(np.unique(y)) < 2:
        return out
    out["roc_auc"] = float(roc_auc_score(y, p))
    out["pr_auc"] = float(average_precision_score(y, p))
    clipped = np.clip(p, 1e-6, 1 - 1e-6)
    logit = np.log(clipped / (1 - clipped)).reshape(-1, 1)
    fit = LogisticRegression(C=1e12, max_iter=1000).fit(logit, y)  # unpenalised
    out["calibration_slope"] = float(fit.coef_[0][0])
    out["calibration_intercept"] = float(fit.intercept_[0])
    return out


def metric_key(*parts: str) -> str:
    """An MLflow metric name of ``parts`` (letters, digits, ``_ - . /`` and spaces only)."""
    text = ".".join(parts)
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in text.replace("+", "plus"))


SUBGROUP_METRICS = (
    "roc_auc",
    "pr_auc",
    "brier",
    "calibration_slope",
    "rows",
    "prevalence",
    "mae",
    "mape",
    "mean",
)


def subgroup_metrics(frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, spec: ModelSpec) -> dict[str, float]:
    """``metrics_of`` per value of each of the model's subgroup columns (``roc_auc.sex.F``, ``mae.kind.…``),
    for values with at least ``MIN_SUBGROUP_ROWS`` rows (and, for a classifier, both classes)."""
    out: dict[str, float] = {}
    for column in spec.subgroups:
        values = frame[column].astype("string").fillna("unknown").to_numpy()
        for value in sorted(set(values)):
            mask = values == value
            if mask.sum() < MIN_SUBGROUP_ROWS:
                continue
            if spec.kind == "classifier" and len(np.unique(y[mask])) < 2:
                continue
            for name, figure in metrics_of(spec, y[mask], p[mask]).items():
                if name in SUBGROUP_METRICS:
                    out[metric_key(name, column, str(value))] = figure
    return out


AUTO_FALLBACK = "gradient_boosting"
"""``auto``'s estimator when the training months cannot be split (one month, or one class early on): the
one that did better on small data."""
VALIDATION_SHARE = 0.25
"""The share of the training months (the latest, at least one) ``auto`` judges the estimators on."""


def choose_estimator(
    spec: ModelSpec, frame: pd.DataFrame, inputs: list[str]
) -> tuple[str, str, dict[str, float]]:
    """The estimator ``auto`` trains: each of ``ESTIMATORS`` (with its defaults) is fitted on the earlier
    training months and judged by ``spec.champion_metric`` on the latest ``VALIDATION_SHARE`` of them.

    Args:
        spec: The model.
        frame: The training rows (pandas, as ``_to_pandas`` gives them; the hold-out is not among them).
        inputs: The inputs trained on.

    Returns:
        The estimator, a sentence saying why, and each estimator's validation figure
        (``validation.<metric>.<estimator>``).
    """
    months = sorted(set(frame[spec.month]))
    if len(months) < 2:
        return AUTO_FALLBACK, f"auto: {AUTO_FALLBACK} (one training month: nothing to validate on)", {}
    validation = months[-max(1, int(len(months) * VALIDATION_SHARE)) :]
    late = frame[spec.month].isin(validation).to_numpy()
    x = model_inputs(frame, spec, inputs)
    y = frame[spec.label].astype(int if spec.kind == "classifier" else float).to_numpy()
    if spec.kind == "classifier" and (len(np.unique(y[~late])) < 2 or len(np.unique(y[late])) < 2):
        return AUTO_FALLBACK, f"auto: {AUTO_FALLBACK} (one outcome only in the earlier or later months)", {}
    metric = spec.champion_metric
    figures: dict[str, float] = {}
    for name in ESTIMATORS:
        pipeline = build_pipeline(spec, name, {}, tuple(inputs))
        pipeline.fit(x[~late], y[~late])
        figure = metrics_of(spec, y[late], _predict(pipeline, spec, x[late])).get(metric, float("nan"))
        if not np.isnan(figure):
            figures[name] = figure
    if not figures:
        return AUTO_FALLBACK, f"auto: {AUTO_FALLBACK} (no {metric} on the validation months)", {}
    # Ties go to the first of ESTIMATORS: the simpler model.
    best = (max if spec.higher_is_better else min)(figures, key=lambda k: figures[k])
    said = ", ".join(f"{k} {v:.4f}" for k, v in figures.items())
    reason = (
        f"auto: {best} ({metric} on {validation[0]}..{validation[-1]}, fitted on the months before: {said})"
    )
    return best, reason, {metric_key("validation", metric, k): v for k, v in figures.items()}


def _git_commit() -> str | None:
    """The git commit of the healthlake code running, when it runs from a checkout."""
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _training_frames(
    spark: SparkSession, cfg: Config, spec: ModelSpec
) -> tuple[DataFrame, int, list[dt.date], list[dt.date]]:
    """The labelled rows of the feature table at its latest version, that version, and the split."""
    lake = cfg.lake_root
    if not io.is_table(spark, lake, spec.features_table):
        raise TrainingError(
            f"{spec.features_table} is not in the lake {lake}: run `healthlake features` first"
        )
    version = io.latest_version(spark, lake, spec.features_table)
    table = io.read_table(spark, lake, spec.features_table, version=version)
    labelled = table.where(F.col(spec.label).isNotNull())
    # One row per month with labels: bounded by the calendar, not by the region.
    months = [r[0] for r in labelled.select(spec.month).distinct().collect()]
    if not months:
        raise TrainingError(f"{spec.features_table} holds no labelled row yet: nothing to train on")
    train_months, holdout_months = split_months(months, cfg.ml.holdout_months)
    return labelled, version, train_months, holdout_months


def model_inputs(frame: pd.DataFrame, spec: ModelSpec, inputs: list[str]) -> pd.DataFrame:
    """The model's input columns as it is trained and called: numbers (and flags) as float64, a missing
    one NaN, categories as text. The signature then says double for every number, so a count that is
    missing at scoring time (a lag before a series starts) is no schema error."""

    def text(column: pd.Series) -> pd.Series:
        # Text for every category (a weekday 7 is "7", as Spark casts it at scoring time); None if missing.
        return column.map(lambda v: None if pd.isna(v) else str(v)).astype("object")

    return pd.DataFrame(
        {c: frame[c].astype("float64") if c in spec.numeric else text(frame[c]) for c in inputs}
    )


def _to_pandas(df: DataFrame, spec: ModelSpec) -> pd.DataFrame:
    extra = (spec.baseline,) if spec.baseline else ()
    columns = list(dict.fromkeys((*spec.key, spec.month, *spec.subgroups, *spec.inputs, *extra, spec.label)))
    frame = df.select(*columns).toPandas()
    # Sorted by key: the same rows give the same model whatever order Spark returned them in.
    return frame.sort_values(list(spec.key), kind="stable").reset_index(drop=True)


def _feature_importance_figure(pipeline: Any, x: pd.DataFrame, y: np.ndarray, spec: ModelSpec) -> Any:
    """A bar chart of permutation importance (drop in ROC AUC) of each input on the hold-out."""
    # A Figure of its own, not pyplot's: no backend is chosen and nothing shows up in a notebook's output.
    from matplotlib.figure import Figure
    from sklearn.inspection import permutation_importance

    scoring = "roc_auc" if spec.kind == "classifier" else "neg_mean_absolute_error"
    result = permutation_importance(pipeline, x, y, scoring=scoring, n_repeats=5, random_state=0)
    order = np.argsort(result.importances_mean)[-15:]
    fig = Figure(figsize=(7, 0.35 * len(order) + 1.2))
    ax = fig.subplots()
    ax.barh([x.columns[i] for i in order], result.importances_mean[order], xerr=result.importances_std[order])
    ax.set_xlabel(f"drop in {'ROC AUC' if spec.kind == 'classifier' else 'MAE'} when shuffled")
    ax.set_title(f"{spec.name}: permutation importance on the hold-out")
    fig.tight_layout()
    return fig


def _dataset(df: DataFrame, path: str, version: int, name: str, label: str, rows: int) -> Any:
    """The feature table as an MLflow Delta dataset (path and version), with its known row count."""
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.spark_dataset import SparkDataset

    class _DeltaDataset(SparkDataset):
        @property
        def profile(self) -> dict[str, int]:
            # MLflow's own profile counts the rows with a Python job over the table: the count is known.
            return {"num_rows": rows}

    # As text: MLflow leaves a falsy version out of the source it records, and a table's first version is 0.
    source = DeltaDatasetSource(path=path, delta_table_version=str(version))  # type: ignore[arg-type]
    return _DeltaDataset(df=df, source=source, targets=label, name=f"{name}@v{version}")


def _own_types(pipeline: Any) -> list[str]:
    """The types of ``pipeline`` skops does not trust by default (``numpy.dtype``, the boosting trees …).

    MLflow saves scikit-learn models in the skops format, which refuses to load types it was not told to
    trust. These are the types of the pipeline healthlake itself just fitted, nothing read from outside.
    """
    import skops.io

    return list(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))


def _champion_score(spec: ModelSpec, x: pd.DataFrame) -> tuple[int, np.ndarray] | None:
    """The current champion's version and its predictions for ``x``; None when there is no champion."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    name = registered_name(spec.name)
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    model = mlflow.pyfunc.load_model(f"models:/{name}/{champion.version}")
    inputs = [c.name for c in model.metadata.get_input_schema().inputs]
    predicted = np.asarray(model.predict(model_inputs(x, spec, inputs)))
    scores = predicted[:, 1] if predicted.ndim == 2 else predicted
    return int(champion.version), scores


def train(
    spark: SparkSession,
    cfg: Config,
    model: str,
    *,
    estimator: str | None = None,
    params: dict[str, Any] | None = None,
    inputs: tuple[str, ...] | None = None,
    run_name: str | None = None,
) -> TrainResult:
    """Train ``model`` on its feature table, log the run, register the version, promote it if better.

    Args:
        spark: Session.
        cfg: Configuration (``lake_root``, ``ml``).
        model: The model's name (``healthlake.ml.models.MODELS``).
        estimator: ``logistic_regression``, ``gradient_boosting`` or ``auto`` (the better of the two on the
            latest training months, ``choose_estimator``); the model's default (``auto``) when None.
        params: Estimator parameters (they need a named estimator: the two take different ones).
        inputs: Train on these inputs only (a subset of the model's); all by default.
        run_name: The MLflow run's name.

    Returns:
        The run, the registered version, its hold-out metrics and whether it became the champion.

    Raises:
        UsageError: For an unknown model, estimator or input.
        TrainingError: When the feature table is missing or the training window holds too few rows.
    """
    import mlflow
    from mlflow.models import infer_signature

    started = time.monotonic()
    spec = model_spec(model)
    estimator = estimator or spec.estimator
    params = dict(params or {})

    if estimator not in (AUTO, *ESTIMATORS):
        raise UsageError(f"unknown estimator {estimator!r}: expected one of {', '.join((AUTO, *ESTIMATORS))}")
    if estimator == AUTO and params:
        raise UsageError(
            f"estimator parameters ({', '.join(sorted(params))}) need a named estimator: pass --estimator "
            f"{' or '.join(ESTIMATORS)}"
        )
    if inputs is not None:
        unknown = sorted(set(inputs) - set(spec.inputs))
        if unknown:
            raise UsageError(
                f"unknown input(s) {', '.join(unknown)} of {model}: expected some of {', '.join(spec.inputs)}"
            )
    labelled, version, train_months, holdout_months = _training_frames(spark, cfg, spec)
    in_holdout = F.col(spec.month).isin(holdout_months)
    training = labelled.where(~in_holdout)
    train_count = training.count()
    if train_count < cfg.ml.min_training_rows:
        raise TrainingError(
            f"{train_count} labelled row(s) in the training window of {model} (months before "
            f"{holdout_months[0]}): ml.min_training_rows is {cfg.ml.min_training_rows}"
        )
    if train_count > cfg.ml.max_training_rows:
        training = training.sample(fraction=cfg.ml.max_training_rows / train_count, seed=0)
    train_frame, holdout_frame = _to_pandas(training, spec), _to_pandas(labelled.where(in_holdout), spec)
    chosen = list(inputs or spec.inputs)
    selection = "given"
    validation: dict[str, float] = {}
    if estimator == AUTO:
        estimator, selection, validation = choose_estimator(spec, train_frame, chosen)
    pipeline = build_pipeline(spec, estimator, params, tuple(chosen))
    x_train, x_holdout = model_inputs(train_frame, spec, chosen), model_inputs(holdout_frame, spec, chosen)
    classifier = spec.kind == "classifier"
    label_type = int if classifier else float
    y_train = train_frame[spec.label].astype(label_type).to_numpy()
    y_holdout = holdout_frame[spec.label].astype(label_type).to_numpy()
    pipeline.fit(x_train, y_train)
    scores = _predict(pipeline, spec, x_holdout)
    metrics = metrics_of(spec, y_holdout, scores)
    metrics.update(subgroup_metrics(holdout_frame, y_holdout, scores, spec))
    if spec.baseline:
        metrics.update(baseline_metrics(spec, y_holdout, holdout_frame[spec.baseline]))
    name = registered_name(spec.name)
    lake = cfg.lake_root
    with tracking(cfg) as store:
        experiment = experiment_id(store, spec.name)
        champion = _champion_score(spec, holdout_frame)
        with mlflow.start_run(experiment_id=experiment, run_name=run_name) as run:
            mlflow.log_params(
                {
                    "model": spec.name,
                    "estimator": estimator,
                    "estimator_selection": selection[:500],  # MLflow params hold 6,000 characters
                    **{
                        f"estimator.{k}": v for k, v in pipeline.named_steps["estimator"].get_params().items()
                    },
                    "inputs": ",".join(chosen),
                    "features_table": spec.features_table,
                    "features_version": version,
                    "train_months": f"{train_months[0]}..{train_months[-1]}",
                    "holdout_months": ",".join(str(m) for m in holdout_months),
                    "train_rows": len(train_frame),
                    "holdout_rows": len(holdout_frame),
                }
            )
            mlflow.set_tags({"healthlake.version": __version__, "healthlake.model": spec.name})
            commit = _git_commit()
            if commit:
                mlflow.set_tag("mlflow.source.git.commit", commit)
            dataset = _dataset(
                labelled,
                table_path(lake, spec.features_table),
                version,
                spec.features_table,
                spec.label,
                len(train_frame) + len(holdout_frame),
            )
            mlflow.log_input(dataset, context="training")
            mlflow.log_metrics({**metrics, **validation})
            reference = monitoring.reference_of(
                x_train,
                [c for c in spec.numeric if c in chosen],
                [c for c in spec.categorical if c in chosen],
                _predict(pipeline, spec, x_train),
            )
            mlflow.log_dict(reference, "monitoring/reference.json")
            # A classifier's pyfunc returns the class probabilities (the score is the label's), a
            # regressor's its prediction.
            predict_fn = "predict_proba" if classifier else "predict"
            example = x_holdout.head(100)
            signature = infer_signature(example, getattr(pipeline, predict_fn)(example))
            with contextlib.redirect_stderr(io_text.StringIO()):  # MLflow prints "Created version …"
                info = mlflow.sklearn.log_model(
                    pipeline,
                    name="model",
                    signature=signature,
                    input_example=x_holdout.head(5),
                    pyfunc_predict_fn=predict_fn,
                    registered_model_name=name,
                    skops_trusted_types=_own_types(pipeline),
                )
            with warnings.catch_warnings():
                # The default threshold of 0.5 may predict no positive on a hold-out with few: the ranking
                # metrics are the ones read, and scikit-learn's warning about precision is noise here.
                warnings.simplefilter("ignore")
                mlflow.models.evaluate(
                    info.model_uri,
                    x_holdout.assign(**{spec.label: y_holdout}),
                    targets=spec.label,
                    model_type=spec.kind,
                    evaluators=["default"],
                    evaluator_config={"default": {"log_model_explainability": False}},
                )
            mlflow.log_figure(
                _feature_importance_figure(pipeline, x_holdout, y_holdout, spec), "feature_importance.png"
            )
            new_version = int(info.registered_model_version)
            promoted, reason, former = _decide(spec, metrics, champion, y_holdout)
            if former is not None:
                mlflow.log_metric(f"champion_{spec.champion_metric}", former)
            mlflow.set_tags({"healthlake.promotion": reason, "healthlake.promoted": str(promoted).lower()})
        client = mlflow.MlflowClient()
        if promoted:
            client.set_registered_model_alias(name, CHAMPION, str(new_version))
        client.set_model_version_tag(name, str(new_version), "healthlake.promotion", reason)
    result = TrainResult(
        spec.name,
        run.info.run_id,
        new_version,
        metrics,
        promoted,
        reason,
        former,
        version,
        len(train_frame),
        len(holdout_frame),
        holdout_months,
        time.monotonic() - started,
        estimator,
        selection,
    )
    figure = metrics.get(spec.champion_metric, float("nan"))
    progress(
        log,
        f"train {spec.name}",
        len(train_frame),
        result.seconds,
        f"{name} version {new_version} ({estimator}), hold-out {spec.champion_metric} {figure:.3f}; {reason}",
    )
    return result


def _decide(
    spec: ModelSpec, metrics: dict[str, float], champion: tuple[int, np.ndarray] | None, y: np.ndarray
) -> tuple[bool, str, float | None]:
    """Whether the new version takes the ``champion`` alias, why, and the champion's hold-out metric."""
    metric = spec.champion_metric
    mine = metrics.get(metric)
    if mine is None or np.isnan(mine):
        return False, f"not promoted: the hold-out gives no {metric}", None
    rule = metrics.get(f"baseline_{metric}", float("nan"))
    beats_rule = mine > rule if spec.higher_is_better else mine < rule
    # A model no better than its simple rule (the last reading, seasonal naive) is not worth running.
    if not np.isnan(rule) and not beats_rule:
        return (
            False,
            f"not promoted: {metric} {mine:.4f} does not beat the baseline, {spec.baseline_name} "
            f"({rule:.4f}), on the hold-out",
            None if champion is None else metrics_of(spec, y, champion[1]).get(metric),
        )
    if champion is None:
        return True, f"promoted: first version ({metric} {mine:.4f})", None
    version, scores = champion
    theirs = metrics_of(spec, y, scores).get(metric, float("nan"))
    better = mine > theirs if spec.higher_is_better else mine < theirs
    if better:
        return True, f"promoted: {metric} {mine:.4f} beats champion version {version} ({theirs:.4f})", theirs
    return (
        False,
        f"not promoted: {metric} {mine:.4f} does not beat champion version {version} ({theirs:.4f}) "
        "on the same hold-out",
        theirs,
    )
