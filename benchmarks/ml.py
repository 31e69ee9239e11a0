"""Benchmark the models on gold (issue 32): the readmission model against the generator's true risk, the
feature build, and scoring a million rows with ``spark_udf``.

1. **A region with history.** ``--people`` residents, ``--days`` days, ``--history-days`` of inpatient
   stays, ``--visit-history-days`` of visits and 400 days of follow-ups, generated, ingested, conformed,
   linked and published (not timed here: ``benchmarks/`` has a benchmark per stage), then ``healthlake
   features`` (timed: records are the silver and gold rows it reads).
2. **Quality.** ``healthlake train readmission`` with each estimator (``--estimators``), against an
   embedded MLflow store. On the hold-out each trained on, the model's ROC AUC and Brier score next to the
   AUC and Brier score of the true risk the generator drew every stay's readmission from (the ceiling).
   The issue's target: within 0.03 of the true risk's AUC. Then ``chronic_control`` and ``demand``, each
   against its baseline (the last reading; the seasonal-naive forecast) on its own hold-out.
3. **Scoring.** The feature table replicated to ``--score-rows`` rows (each stay repeated with a new key),
   then scored by the champion with ``mlflow.pyfunc.spark_udf`` into a Delta table (what ``healthlake
   score`` does), against two same-run yardsticks: the same rows read and written without a model (the
   floor: Spark's own I/O), and the pandas path a user would write instead (``toPandas`` on the driver,
   ``predict_proba``, ``createDataFrame``, write).

    python benchmarks/ml.py --people 20000 --history-days 730 --score-rows 1000000
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from pyspark.sql.types import ArrayType, DoubleType  # noqa: E402
from sklearn.metrics import brier_score_loss, roc_auc_score  # noqa: E402

from healthlake import io  # noqa: E402
from healthlake.catalog import GOLD_READMISSION_FEATURES  # noqa: E402
from healthlake.config import load_config  # noqa: E402
from healthlake.ml.models import READMISSION  # noqa: E402
from healthlake.ml.tracking import registered_name, tracking  # noqa: E402
from healthlake.ml.train import model_inputs, train  # noqa: E402
from healthlake.pipelines import conform, features, ingest, link, publish  # noqa: E402
from healthlake.spark import get_spark  # noqa: E402
from healthlake.synth import generate_region  # noqa: E402


def _line(*cells: object) -> None:
    print(" | ".join(str(c) for c in cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--history-days", type=int, default=730)
    parser.add_argument("--score-rows", type=int, default=1_000_000)
    parser.add_argument("--estimators", default="auto,logistic_regression,gradient_boosting")
    parser.add_argument("--holdout-months", type=int, default=6, help="readmission's hold-out months")
    parser.add_argument("--visit-history-days", type=int, default=120)
    parser.add_argument("--work", default=None, help="work folder (default: a temporary one, removed after)")
    parser.add_argument("--keep", action="store_true", help="reuse the region in --work when it is there")
    args = parser.parse_args()
    os.environ.setdefault("HEALTHLAKE_HMAC_KEY", "benchmark-only-key-0123456789abcdef")
    work = Path(args.work or tempfile.mkdtemp(prefix="hl-ml-bench-"))
    lake, landing, truth = work / "lake", work / "landing", work / "truth"
    cfg = load_config(
        overrides={
            "lake_root": str(lake),
            "landing_root": str(landing),
            "truth_root": str(truth),
            "synth": {
                "people": args.people,
                "days": args.days,
                "seed": 32,
                "ping_share": 0.0,
                "followup_history_days": 400,
                "inpatient_history_days": args.history_days,
                "visit_history_days": args.visit_history_days,
                "persons_per_shard": 5000,
            },
            "ml": {"holdout_months": args.holdout_months, "tracking_uri": f"sqlite:///{work}/mlflow.db"},
        }
    )
    spark = get_spark("benchmark-ml", cfg)
    machine = f"{os.cpu_count()} cores, {platform.platform()}"
    print(f"machine: {machine}; spark {spark.version}, {spark.sparkContext.master}")
    if not (args.keep and (lake / "gold" / "publish_log").exists()):
        shutil.rmtree(work / "lake", ignore_errors=True)
        shutil.rmtree(landing, ignore_errors=True)
        shutil.rmtree(truth, ignore_errors=True)
        started = time.monotonic()
        generate_region(spark, cfg.synth, str(landing), str(truth))
        ingest.run(spark, cfg)
        conform.run(spark, cfg)
        link.run(spark, cfg)
        publish.run(spark, cfg)
        print(
            f"region: {args.people:,} people, {args.history_days} days of inpatient history, "
            f"generated and published in {time.monotonic() - started:.0f} s"
        )
    read = sum(
        io.read_table(spark, str(lake), t).count()
        for t in (
            "gold.encounter_facts",
            "silver.encounter",
            "silver.diagnosis",
            "silver.observation",
            "silver.chronic_followup",
            "silver.person_xref",
            "silver.person",
        )
    )
    started = time.monotonic()
    built = features.run(spark, cfg, full=True)
    seconds = time.monotonic() - started
    _line("step", "records", "seconds", "records/s", "records/s/core")
    cores = spark.sparkContext.defaultParallelism
    _line(
        "features (rows read)",
        f"{read:,}",
        f"{seconds:.1f}",
        f"{read / seconds:,.0f}",
        f"{read / seconds / cores:,.0f}",
    )
    for name, rows in sorted(built.tables.items()):
        _line(f"  {name} rows written", f"{rows:,}", "", "", "")

    # 2. Quality against the true risk.
    truth_risk = pd.read_parquet(truth / "readmissions.parquet")[
        ["institution_id", "source_encounter_id", "true_risk"]
    ]
    table = io.read_table(spark, str(lake), GOLD_READMISSION_FEATURES)
    print()
    _line(
        "estimator",
        "train rows",
        "hold-out rows",
        "model AUC",
        "true-risk AUC",
        "gap",
        "model Brier",
        "true-risk Brier",
        "seconds",
    )
    for estimator in args.estimators.split(","):
        result = train(spark, cfg, "readmission", estimator=estimator)
        holdout = (
            table.where(
                F.col("discharge_month").isin(result.holdout_months) & F.col("readmitted_30d").isNotNull()
            )
            .select("institution_id", "source_record_id", "readmitted_30d")
            .toPandas()
            .merge(
                truth_risk,
                left_on=["institution_id", "source_record_id"],
                right_on=["institution_id", "source_encounter_id"],
            )
        )
        y = holdout["readmitted_30d"].astype(int)
        true_auc, true_brier = (
            roc_auc_score(y, holdout["true_risk"]),
            brier_score_loss(y, holdout["true_risk"]),
        )
        auc = result.metrics["roc_auc"]
        _line(
            estimator if estimator != "auto" else f"auto → {result.estimator}",
            f"{result.train_rows:,}",
            f"{result.holdout_rows:,} ({len(holdout):,} matched)",
            f"{auc:.4f}",
            f"{true_auc:.4f}",
            f"{true_auc - auc:+.4f}",
            f"{result.metrics['brier']:.4f}",
            f"{true_brier:.4f}",
            f"{result.seconds:.1f}",
        )

    # The other two models against their baselines (chronic control: the last reading; demand: seasonal
    # naive), each on its own hold-out months.
    print()
    _line("model", "estimator", "train rows", "hold-out rows", "metric", "model", "baseline", "seconds")
    for model, months, metric in (("chronic_control", 3, "roc_auc"), ("demand", 1, "mae")):
        other = cfg.model_copy(update={"ml": cfg.ml.model_copy(update={"holdout_months": months})})
        result = train(spark, other, model)
        _line(
            model,
            "default",
            f"{result.train_rows:,}",
            f"{result.holdout_rows:,}",
            metric,
            f"{result.metrics[metric]:.4f}",
            f"{result.metrics[f'baseline_{metric}']:.4f}",
            f"{result.seconds:.1f}",
        )

    # 3. Scoring N rows: spark_udf against Spark's own I/O and the pandas path.
    base = table.select(*READMISSION.key, *READMISSION.inputs, "readmitted_30d")
    n = base.count()
    copies = -(-args.score_rows // n)
    many = (
        base.crossJoin(spark.range(copies).withColumnRenamed("id", "_copy"))
        .withColumn("source_record_id", F.concat_ws("#", "source_record_id", F.col("_copy").cast("string")))
        .drop("_copy")
        .limit(args.score_rows)
    )
    io.overwrite(many.repartition(cores * 2), str(lake), "gold.bench_score_input")
    rows = io.read_table(spark, str(lake), "gold.bench_score_input")
    total = rows.count()
    inputs = list(READMISSION.inputs)
    with tracking(cfg):
        import mlflow

        uri = f"models:/{registered_name('readmission')}@champion"
        udf = mlflow.pyfunc.spark_udf(spark, uri, result_type=ArrayType(DoubleType()), env_manager="local")
        model = mlflow.pyfunc.load_model(uri)
    print()
    _line("scoring", "rows", "seconds", "rows/s", "rows/s/core", "vs floor")
    started = time.monotonic()
    io.overwrite(
        rows.select(*READMISSION.key, F.lit(0.0).alias("score")), str(lake), "gold.bench_score_floor"
    )
    floor = time.monotonic() - started
    _line(
        "floor: read + write, no model",
        f"{total:,}",
        f"{floor:.1f}",
        f"{total / floor:,.0f}",
        f"{total / floor / cores:,.0f}",
        "1.00x",
    )
    started = time.monotonic()
    typed = [F.col(c).cast("double" if c in READMISSION.numeric else "string").alias(c) for c in inputs]
    scored = rows.select(*READMISSION.key, udf(F.struct(*typed))[1].alias("score"))
    io.overwrite(scored, str(lake), "gold.bench_score_udf")
    udf_seconds = time.monotonic() - started
    _line(
        "spark_udf (healthlake score)",
        f"{total:,}",
        f"{udf_seconds:.1f}",
        f"{total / udf_seconds:,.0f}",
        f"{total / udf_seconds / cores:,.0f}",
        f"{udf_seconds / floor:.2f}x",
    )
    started = time.monotonic()
    frame = rows.select(*READMISSION.key, *inputs).toPandas()
    frame["score"] = np.asarray(model.predict(model_inputs(frame, READMISSION, inputs)))[:, 1]
    io.overwrite(
        spark.createDataFrame(frame[[*READMISSION.key, "score"]]), str(lake), "gold.bench_score_pandas"
    )
    pandas_seconds = time.monotonic() - started
    _line(
        "pandas on the driver (toPandas)",
        f"{total:,}",
        f"{pandas_seconds:.1f}",
        f"{total / pandas_seconds:,.0f}",
        f"{total / pandas_seconds / cores:,.0f}",
        f"{pandas_seconds / floor:.2f}x",
    )
    same = (
        io.read_table(spark, str(lake), "gold.bench_score_udf")
        .join(
            io.read_table(spark, str(lake), "gold.bench_score_pandas").withColumnRenamed("score", "other"),
            list(READMISSION.key),
        )
        .agg(F.max(F.abs(F.col("score") - F.col("other"))))
        .first()[0]
    )
    print(f"largest difference between the spark_udf and pandas scores: {same:.2e}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
