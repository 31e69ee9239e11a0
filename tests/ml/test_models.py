"""Train, register, promote, score and monitor the readmission model against a real MLflow store."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from sklearn.metrics import brier_score_loss, roc_auc_score

from healthlake import cli, io
from healthlake.catalog import GOLD_MODEL_MONITORING, GOLD_READMISSION_FEATURES, predictions_table
from healthlake.config import Config
from healthlake.errors import UsageError
from healthlake.ml import monitoring
from healthlake.ml.models import ESTIMATORS, READMISSION
from healthlake.ml.score import ScoreResult, ScoringError, score
from healthlake.ml.tracking import registered_name, tracking
from healthlake.ml.train import CHAMPION, TrainingError, TrainResult, model_inputs, train
from healthlake.naming import table_path
from tests.ml.conftest import ModelRegion

NAME = registered_name("readmission")


@dataclass
class Trained:
    cfg: Config
    first: TrainResult  # all inputs: the champion
    worse: TrainResult  # one input (sex): must not take the alias
    scored: ScoreResult
    rescored: ScoreResult


@pytest.fixture(scope="module")
def trained(
    spark: SparkSession, model_region: ModelRegion, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trained]:
    """Two trainings and two scorings on a copy of the region, in the embedded default store."""
    saved = {k: os.environ.pop(k, None) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    try:
        cfg = model_region.copy(tmp_path_factory.mktemp("trained") / "lake", holdout_months=6)
        first = train(spark, cfg, "readmission", run_name="all inputs")
        worse = train(spark, cfg, "readmission", inputs=("sex",), run_name="sex only")
        scored = score(spark, cfg, "readmission")
        rescored = score(spark, cfg, "readmission")
        assert mlflow.active_run() is None
        yield Trained(cfg, first, worse, scored, rescored)
    finally:
        for key, value in saved.items():
            if value is not None:
                os.environ[key] = value


def test_the_embedded_store_lives_under_the_lake(trained: Trained) -> None:
    root = Path(trained.cfg.lake_root) / "mlflow"
    assert (root / "mlflow.db").is_file()
    assert list((root / "artifacts" / "readmission").rglob("feature_importance.png"))
    assert not Path("mlruns").exists() and not Path("mlflow.db").exists()  # nothing in the working folder


def test_the_first_version_is_the_champion_and_a_worse_one_is_not(trained: Trained) -> None:
    assert (trained.first.version, trained.first.promoted) == (1, True)
    assert (trained.worse.version, trained.worse.promoted) == (2, False)
    assert trained.worse.metrics["roc_auc"] < trained.first.metrics["roc_auc"]
    assert trained.worse.reason.startswith("not promoted")
    # Compared on the same hold-out: the champion's figure there is the first run's own.
    assert trained.worse.champion_metric == pytest.approx(trained.first.metrics["roc_auc"])
    with tracking(trained.cfg):
        client = mlflow.MlflowClient()
        assert int(client.get_model_version_by_alias(NAME, CHAMPION).version) == 1
        run = client.get_run(trained.worse.run_id)
        assert run.data.tags["healthlake.promoted"] == "false"
        assert run.data.metrics["champion_roc_auc"] == pytest.approx(trained.first.metrics["roc_auc"])


def test_a_run_records_its_data_parameters_metrics_plots_and_model(trained: Trained) -> None:
    with tracking(trained.cfg):
        client = mlflow.MlflowClient()
        run = client.get_run(trained.first.run_id)
        params, metrics = run.data.params, run.data.metrics
        assert params["features_version"] == str(trained.first.features_version)
        # auto: both estimators judged on the latest training months, the better one trained.
        assert params["estimator"] == trained.first.estimator and trained.first.estimator in ESTIMATORS
        assert params["estimator_selection"].startswith(f"auto: {trained.first.estimator} (roc_auc on ")
        validation = {e: metrics[f"validation.roc_auc.{e}"] for e in ESTIMATORS}
        assert max(validation, key=lambda e: validation[e]) == trained.first.estimator
        for name in ("roc_auc", "pr_auc", "brier", "calibration_slope", "calibration_intercept"):
            assert np.isfinite(metrics[name]), name
        assert any(k.startswith("roc_auc.sex.") for k in metrics)
        assert any(k.startswith("roc_auc.city_code.") for k in metrics)
        dataset = run.inputs.dataset_inputs[0].dataset
        assert dataset.source_type == "delta_table"
        source = json.loads(dataset.source)
        assert source["path"] == table_path(trained.cfg.lake_root, GOLD_READMISSION_FEATURES)
        assert int(source["delta_table_version"]) == trained.first.features_version
        assert dataset.name == f"{GOLD_READMISSION_FEATURES}@v{trained.first.features_version}"
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"feature_importance.png", "roc_curve_plot.png", "calibration_curve_plot.png"} <= artifacts
        reference = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/monitoring/reference.json")
        info = mlflow.models.get_model_info(f"models:/{NAME}/1")
        assert info.signature is not None and info.saved_input_example_info is not None
    assert set(reference["numeric"]) | set(reference["categorical"]) == set(READMISSION.inputs)


def test_the_model_comes_near_the_generators_true_risk(
    spark: SparkSession, trained: Trained, model_region: ModelRegion
) -> None:
    """On the same hold-out, the model's ROC AUC against the AUC of the risk the generator drew from (the
    ceiling), and its Brier score against the prevalence's. The issue's 0.03 is the benchmark's target, on
    a region large enough to read it (``benchmarks/ml.py``): here ~370 stays train the model."""
    table = io.read_table(spark, trained.cfg.lake_root, GOLD_READMISSION_FEATURES)
    holdout = table.where(
        F.col("discharge_month").isin(trained.first.holdout_months) & F.col("readmitted_30d").isNotNull()
    ).toPandas()
    truth = model_region.truth_table("readmissions")
    joined = holdout.merge(
        truth,
        left_on=["institution_id", "source_record_id"],
        right_on=["institution_id", "source_encounter_id"],
        suffixes=("", "_truth"),
    )
    assert len(joined) == len(holdout) == trained.first.holdout_rows
    y = joined["readmitted_30d"].astype(int)
    truth_auc = roc_auc_score(y, joined["true_risk"])
    assert trained.first.metrics["roc_auc"] >= max(0.65, truth_auc - 0.12)
    assert trained.first.metrics["brier"] < y.mean() * (1 - y.mean())  # better than the prevalence alone
    assert trained.first.metrics["brier"] > brier_score_loss(y, joined["true_risk"]) - 0.01


def test_scoring_writes_every_row_once_with_the_champions_own_predictions(
    spark: SparkSession, trained: Trained
) -> None:
    lake = trained.cfg.lake_root
    features = io.read_table(spark, lake, GOLD_READMISSION_FEATURES).toPandas()
    predictions = io.read_table(spark, lake, predictions_table("readmission")).toPandas()
    assert trained.scored.rows == trained.rescored.rows == len(features) == len(predictions)
    assert not predictions.duplicated(["institution_id", "source_record_id", "score_date"]).any()
    assert set(predictions["model_version"]) == {1}
    assert predictions["score"].between(0, 1).all()
    # The UDF's scores are the model's: the same rows through the pyfunc in this process.
    with tracking(trained.cfg):
        model = mlflow.pyfunc.load_model(f"models:/{NAME}@{CHAMPION}")
    inputs = [c.name for c in model.metadata.get_input_schema().inputs]
    local = np.asarray(model.predict(model_inputs(features, READMISSION, inputs)))[:, 1]
    merged = features.assign(local=local).merge(predictions, on=["institution_id", "source_record_id"])
    assert np.allclose(merged["local"], merged["score"])


def test_one_monitoring_row_per_scoring_day_with_drift_against_training(
    spark: SparkSession, trained: Trained
) -> None:
    rows = io.read_table(spark, trained.cfg.lake_root, GOLD_MODEL_MONITORING).toPandas()
    rows = rows[rows["model"] == "readmission"]
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["rows"] == trained.scored.rows and row["model_version"] == 1
    assert set(row["input_psi"]) == set(READMISSION.inputs)
    # The region scored is the population the model trained on, and more recent months of it: its ages are
    # as they were; its visits are not (the generated visit history covers the last 365 days only).
    assert row["input_psi"]["age"] < 0.1 and row["score_psi"] < monitoring.DRIFT_PSI
    drifted = {k for k, v in row["input_psi"].items() if v > monitoring.DRIFT_PSI}
    assert set(row["drifted_inputs"]) == drifted
    assert row["outcome_rows"] == 0  # nothing scored earlier yet


def test_earlier_predictions_are_judged_once_their_outcomes_are_known(
    spark: SparkSession, trained: Trained, tmp_path: Path
) -> None:
    """Predictions made on an earlier day while outcomes were unknown get a realised AUC when known."""
    cfg = trained.cfg.model_copy(update={"lake_root": str(tmp_path / "lake")})
    shutil.copytree(trained.cfg.lake_root, cfg.lake_root)
    table = table_path(cfg.lake_root, predictions_table("readmission"))
    # As if scored a month earlier, when no outcome was known yet.
    DeltaTable.forPath(spark, table).update(
        set={"score_date": F.date_sub(F.col("score_date"), 30), "label_known": F.lit(False)}
    )
    # Two earlier scorings with the opposite scores: 40 days ago (a key is judged by its latest
    # prediction, the month-old one) and 200 days ago (past ml.outcome_days: not read).
    month_old = io.read_table(spark, cfg.lake_root, predictions_table("readmission"))
    month_old = month_old.where(F.col("score_date") == month_old.agg(F.max("score_date")).first()[0])
    for days in (10, 170):
        io.append(
            month_old.withColumns(
                {"score_date": F.date_sub(F.col("score_date"), days), "score": 1 - F.col("score")}
            ),
            cfg.lake_root,
            predictions_table("readmission"),
        )
    result = score(spark, cfg, "readmission")
    features = io.read_table(spark, cfg.lake_root, GOLD_READMISSION_FEATURES).toPandas()
    earlier = io.read_table(spark, cfg.lake_root, predictions_table("readmission")).where(
        F.col("score_date") == F.date_sub(F.lit(result.score_date), 30)
    )
    judged = earlier.toPandas().merge(
        features[features["readmitted_30d"].notna()], on=["institution_id", "source_record_id"]
    )
    expected = roc_auc_score(judged["readmitted_30d"].astype(int), judged["score"])
    assert result.monitoring["outcome_rows"] == len(judged) > 400
    assert result.monitoring["realised_roc_auc"] == pytest.approx(expected, abs=0.002)
    assert result.monitoring["realised_brier"] == pytest.approx(
        brier_score_loss(judged["readmitted_30d"].astype(int), judged["score"]), abs=0.002
    )


def test_binned_outcomes_give_sklearns_auc_and_brier(spark: SparkSession) -> None:
    rng = np.random.default_rng(3)
    p = rng.random(5000)
    y = rng.random(5000) < p
    df = spark.createDataFrame(pd.DataFrame({"score": p, "label": y}))
    got = monitoring.realised_metrics(monitoring.binned_outcomes(df, "score", "label").toPandas())
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=0.002)
    assert got["brier"] == pytest.approx(brier_score_loss(y, p), abs=0.001)
    assert got["calibration_slope"] == pytest.approx(1.0, abs=0.15)


def test_a_shifted_input_is_reported_as_drifted(spark: SparkSession) -> None:
    rng = np.random.default_rng(4)
    train_frame = pd.DataFrame({"age": rng.uniform(20, 60, 2000), "sex": rng.choice(["M", "F"], 2000)})
    reference = monitoring.reference_of(train_frame, ["age"], ["sex"], rng.random(2000))
    now = pd.DataFrame(
        {"age": rng.uniform(50, 90, 3000), "sex": rng.choice(["M", "F"], 3000), "score": rng.random(3000)}
    )
    counts = spark.createDataFrame(now).agg(*monitoring.drift_aggregates(reference, "score")).first()
    psi, score_psi = monitoring.drift_from_counts(reference, counts.asDict())
    assert psi["age"] > monitoring.DRIFT_PSI > psi["sex"]
    assert score_psi < 0.1


def test_bad_requests_are_one_line_errors(
    spark: SparkSession,
    trained: Trained,
    model_region: ModelRegion,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(
        UsageError, match="unknown model 'nosuch': expected one of chronic_control, demand, readmission"
    ):
        train(spark, trained.cfg, "nosuch")
    assert cli.main(["train", "nosuch", "--lake", trained.cfg.lake_root]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip().count("\n") == 0
    fresh = trained.cfg.model_copy(
        update={"ml": trained.cfg.ml.model_copy(update={"tracking_uri": f"sqlite:///{tmp_path}/empty.db"})}
    )
    with pytest.raises(ScoringError, match="has no champion version yet: run `healthlake train readmission`"):
        score(spark, fresh, "readmission")
    too_long = fresh.model_copy(update={"ml": fresh.ml.model_copy(update={"holdout_months": 36})})
    with pytest.raises(TrainingError, match="training needs more than ml.holdout_months"):
        train(spark, too_long, "readmission")
    too_few = fresh.model_copy(update={"ml": fresh.ml.model_copy(update={"min_training_rows": 10**6})})
    with pytest.raises(TrainingError, match="labelled row\\(s\\) in the training window"):
        train(spark, too_few, "readmission")
    with pytest.raises(UsageError, match="unknown input"):
        train(spark, fresh, "readmission", inputs=("shoe_size",))
    with pytest.raises(
        UsageError, match="unknown estimator 'forest': expected one of auto, logistic_regression"
    ):
        train(spark, fresh, "readmission", estimator="forest")
    with pytest.raises(UsageError, match=r"estimator parameters \(C\) need a named estimator"):
        train(spark, fresh, "readmission", params={"C": 0.5})
    assert mlflow.active_run() is None


def test_the_chronic_control_model_beats_the_last_reading(spark: SparkSession, trained: Trained) -> None:
    result = train(spark, trained.cfg, "chronic_control")
    assert (result.version, result.promoted) == (1, True)
    assert result.metrics["roc_auc"] > result.metrics["baseline_roc_auc"]
    assert any(k.startswith("roc_auc.disease.") for k in result.metrics)
    scored = score(spark, trained.cfg, "chronic_control")
    rows = io.read_table(spark, trained.cfg.lake_root, "gold.chronic_control_features").count()
    assert scored.rows == rows and scored.table == predictions_table("chronic_control")
    with tracking(trained.cfg):
        run = mlflow.MlflowClient().get_run(result.run_id)
    assert run.data.metrics["baseline_roc_auc"] == pytest.approx(result.metrics["baseline_roc_auc"])


def test_the_demand_model_beats_seasonal_naive_seven_days_ahead(
    spark: SparkSession, trained: Trained
) -> None:
    cfg = trained.cfg.model_copy(update={"ml": trained.cfg.ml.model_copy(update={"holdout_months": 2})})
    result = train(spark, cfg, "demand")
    assert (result.version, result.promoted) == (1, True)
    assert result.metrics["mae"] < result.metrics["baseline_mae"]
    assert any(k.startswith("mae.measure.") for k in result.metrics)
    scored = score(spark, cfg, "demand")
    predictions = io.read_table(spark, cfg.lake_root, predictions_table("demand"))
    assert (
        scored.rows
        == predictions.count()
        == io.read_table(spark, cfg.lake_root, "gold.demand_features").count()
    )
    # Next week's forecasts are among them: the rows whose target day is still ahead.
    assert predictions.where(~F.col("label_known")).count() > 0


def test_a_scheduler_trains_and_scores_with_the_jobs(model_region: ModelRegion, tmp_path: Path) -> None:
    """`jobs/train.py` and `jobs/score.py`, each in its own process and JVM, as a scheduler runs them."""
    from tests.jobs import run_job

    cfg = model_region.copy(tmp_path / "lake")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'jobs.db'}"}
    assert run_job("train", ["chronic_control", "--lake", cfg.lake_root], **env) == 0
    assert run_job("score", ["chronic_control", "--lake", cfg.lake_root], **env) == 0
    predictions = Path(cfg.lake_root) / "gold" / "predictions_chronic_control"
    assert list(predictions.glob("score_date=*/*.parquet"))
    assert (tmp_path / "artifacts").is_dir()  # a SQLite store's artifacts sit beside its file
