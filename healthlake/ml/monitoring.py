"""``gold.model_monitoring``: how a model's inputs and scores drift from its training, and how it performs
once outcomes are known.

**Reference.** At training, each input's distribution on the training rows is kept with the run
(``monitoring/reference.json``): numbers as deciles (the bin edges and each bin's share, missing values a
bin of their own), categories as the shares of the commonest values (the rest ``other``, missing
``missing``), and the score's deciles on the training rows.

**Drift.** At each scoring run the same bins are counted over the region's rows in Spark (one pass, one
aggregate row: the counts are bounded by the bins, not by the region), and the population stability index
of each input and of the score is ``Σ (a − e) · ln(a / e)`` over the bins, shares below ``1e-4`` floored.
Under 0.1 is stable; 0.1–0.25 a shift worth a look; over 0.25 (``DRIFT_PSI``) a drifted input.

**Realised performance.** A prediction made while its outcome was unknown (``label_known`` false) is
judged once the feature table knows it: the scores of earlier scoring days whose labels are known now are
counted into 1,000 score bins in Spark; the ROC AUC, the Brier score and the calibration are computed from
those bins on the driver (exact to the bin width). A regressor's (the demand model's) realised error is
the mean absolute error of those predictions, one Spark aggregate.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

DRIFT_PSI = 0.25
"""An input whose population stability index exceeds this has drifted (the usual rule of thumb)."""
TOP_CATEGORIES = 20
"""Categories kept by name in a reference (the rest count as ``other``)."""
SCORE_BINS = 1000
"""Score bins of the realised-performance counts."""
_FLOOR = 1e-4

MONITORING_SCHEMA = (
    "model string, model_version int, score_date date, scored_at timestamp, rows bigint, score_mean double, "
    "score_quantiles array<double>, score_psi double, input_psi map<string,double>, "
    "drifted_inputs array<string>, outcome_rows bigint, realised_from date, realised_roc_auc double, "
    "realised_brier double, realised_calibration_slope double, realised_calibration_intercept double, "
    "realised_mae double"
)


def reference_of(frame: pd.DataFrame, numeric: list[str], categorical: list[str], scores: np.ndarray) -> dict:
    """The training reference of each input and of the score (see the module), JSON-ready."""
    out: dict[str, Any] = {"numeric": {}, "categorical": {}}
    for column in numeric:
        values = pd.to_numeric(frame[column].astype("float64"), errors="coerce")
        present = values.dropna().to_numpy()
        edges = sorted(set(np.quantile(present, np.linspace(0.1, 0.9, 9)).tolist())) if len(present) else []
        out["numeric"][column] = {"edges": edges, "shares": _numeric_shares(values.to_numpy(), edges)}
    for column in categorical:
        values = frame[column].astype("string")
        counts = values.value_counts(dropna=True)
        kept = [str(v) for v in counts.index[:TOP_CATEGORIES]]
        shares = [float((values == v).mean()) for v in kept]
        other = float((values.notna() & ~values.isin(kept)).mean())
        out["categorical"][column] = {"values": kept, "shares": [*shares, other, float(values.isna().mean())]}
    edges = sorted(set(np.quantile(scores, np.linspace(0.1, 0.9, 9)).tolist())) if len(scores) else []
    out["score"] = {"edges": edges, "shares": _numeric_shares(scores, edges)}
    return out


def _numeric_shares(values: np.ndarray, edges: list[float]) -> list[float]:
    """Shares of ``values`` in the bins ``edges`` cut (a value on an edge goes to the bin below), then
    the share missing."""
    values = np.asarray(values, dtype="float64")
    n = len(values)
    if n == 0:
        return [0.0] * (len(edges) + 2)
    missing = np.isnan(values)
    bins = np.searchsorted(np.asarray(edges), values[~missing], side="left")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    return [float(c) / n for c in counts] + [float(missing.sum()) / n]


def numeric_bin(column: Column, edges: list[float]) -> Column:
    """The bin of ``numeric_shares``'s cut a value falls in (0 … len(edges)); -1 for NULL or NaN."""
    value = column.cast("double")
    index = sum((F.when(value > F.lit(e), 1).otherwise(0) for e in edges), F.lit(0))
    return F.when(value.isNull() | F.isnan(value), F.lit(-1)).otherwise(index)


def psi(actual: list[float], expected: list[float]) -> float:
    """Population stability index of shares ``actual`` against ``expected`` (same bins)."""
    total = 0.0
    for a, e in zip(actual, expected, strict=True):
        a, e = max(a, _FLOOR), max(e, _FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def drift_aggregates(reference: dict, score: str) -> list[Column]:
    """One aggregate per bin of every input and of the score: what ``drift_from_counts`` reads."""
    aggs: list[Column] = [F.count("*").alias("_rows")]
    for i, (column, ref) in enumerate(reference["numeric"].items()):
        b = numeric_bin(F.col(column), ref["edges"])
        aggs += [F.count_if(b == k).alias(f"_n{i}_{k}") for k in range(len(ref["edges"]) + 1)]
        aggs.append(F.count_if(b == -1).alias(f"_n{i}_na"))
    for i, (column, ref) in enumerate(reference["categorical"].items()):
        c = F.col(column).cast("string")
        aggs += [F.count_if(c == F.lit(v)).alias(f"_c{i}_{k}") for k, v in enumerate(ref["values"])]
        aggs.append(F.count_if(c.isNotNull() & ~c.isin(ref["values"])).alias(f"_c{i}_other"))
        aggs.append(F.count_if(c.isNull()).alias(f"_c{i}_na"))
    s = numeric_bin(F.col(score), reference["score"]["edges"])
    aggs += [F.count_if(s == k).alias(f"_s_{k}") for k in range(len(reference["score"]["edges"]) + 1)]
    aggs.append(F.count_if(s == -1).alias("_s_na"))
    return aggs


def drift_from_counts(reference: dict, counts: dict[str, int]) -> tuple[dict[str, float], float]:
    """Each input's PSI and the score's, from the one row of ``drift_aggregates``."""
    rows = max(counts["_rows"], 1)
    out: dict[str, float] = {}
    for i, (column, ref) in enumerate(reference["numeric"].items()):
        keys = [f"_n{i}_{k}" for k in range(len(ref["edges"]) + 1)] + [f"_n{i}_na"]
        out[column] = psi([counts[k] / rows for k in keys], ref["shares"])
    for i, (column, ref) in enumerate(reference["categorical"].items()):
        keys = [f"_c{i}_{k}" for k in range(len(ref["values"]))] + [f"_c{i}_other", f"_c{i}_na"]
        out[column] = psi([counts[k] / rows for k in keys], ref["shares"])
    keys = [f"_s_{k}" for k in range(len(reference["score"]["edges"]) + 1)] + ["_s_na"]
    return out, psi([counts[k] / rows for k in keys], reference["score"]["shares"])


def binned_outcomes(judged: DataFrame, score: str, label: str) -> DataFrame:
    """Scores with known outcomes counted into ``SCORE_BINS`` bins: ``_bin``, ``n``, ``positives``,
    ``score_sum`` (a small frame: at most ``SCORE_BINS`` rows)."""
    b = F.least(F.floor(F.col(score) * SCORE_BINS).cast("int"), F.lit(SCORE_BINS - 1))
    return judged.groupBy(b.alias("_bin")).agg(
        F.count("*").alias("n"),
        F.count_if(F.col(label)).alias("positives"),
        F.sum(score).alias("score_sum"),
    )


def realised_metrics(bins: pd.DataFrame) -> dict[str, float]:
    """ROC AUC, Brier score and calibration of binned outcomes (``binned_outcomes`` as pandas).

    The AUC counts pairs across bins exactly and pairs within a bin as ties (half); the Brier score and the
    calibration take each bin's mean score for its rows.
    """
    if bins.empty:
        return {}
    b = bins.sort_values("_bin")
    n, pos = b["n"].to_numpy(dtype=float), b["positives"].to_numpy(dtype=float)
    neg = n - pos
    mean = b["score_sum"].to_numpy(dtype=float) / n
    out = {"rows": float(n.sum())}
    out["brier"] = float((pos * (1 - mean) ** 2 + neg * mean**2).sum() / n.sum())
    if pos.sum() == 0 or neg.sum() == 0:
        return out
    below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
    out["roc_auc"] = float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))
    from sklearn.linear_model import LogisticRegression

    p = np.clip(mean, 1e-6, 1 - 1e-6)
    logit = np.log(p / (1 - p))
    x = np.concatenate([logit, logit]).reshape(-1, 1)
    y = np.concatenate([np.ones_like(pos), np.zeros_like(neg)])
    w = np.concatenate([pos, neg])
    keep = w > 0
    fit = LogisticRegression(C=1e12, max_iter=1000).fit(x[keep], y[keep], sample_weight=w[keep])
    out["calibration_slope"] = float(fit.coef_[0][0])
    out["calibration_intercept"] = float(fit.intercept_[0])
    return out
