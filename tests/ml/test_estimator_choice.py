"""``auto`` picks the estimator the data favours, judged on the latest training months only."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from healthlake.ml.models import ModelSpec
from healthlake.ml.train import AUTO_FALLBACK, choose_estimator

SPEC = ModelSpec(
    name="toy",
    features_table="gold.toy",
    key=("id",),
    label="y",
    kind="classifier",
    numeric=("a", "b"),
    categorical=(),
    month="month",
    subgroups=(),
    champion_metric="roc_auc",
    higher_is_better=True,
    estimator="auto",
)


def _frame(rows: int, risk: str, months: int = 12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=rows), rng.normal(size=rows)
    # Linear: the log-odds are a straight sum, logistic regression's own shape. Interaction: the outcome
    # depends on whether a and b share a sign, which no straight sum can express and trees can.
    logit = 1.5 * a - 1.0 * b if risk == "linear" else 2.5 * np.sign(a * b)
    y = rng.random(rows) < 1 / (1 + np.exp(-logit))
    first = dt.date(2025, 1, 1)
    month = [
        dt.date(first.year + (first.month - 1 + i) // 12, (first.month - 1 + i) % 12 + 1, 1)
        for i in range(months)
    ]
    return pd.DataFrame(
        {
            "id": np.arange(rows),
            "a": a,
            "b": b,
            "y": y,
            "month": [month[i * months // rows] for i in range(rows)],
        }
    )


def test_a_straight_risk_chooses_logistic_regression_and_an_interaction_boosting() -> None:
    chosen, reason, figures = choose_estimator(SPEC, _frame(1200, "linear"), ["a", "b"])
    assert chosen == "logistic_regression", reason
    assert set(figures) == {"validation.roc_auc.logistic_regression", "validation.roc_auc.gradient_boosting"}
    assert reason.startswith("auto: logistic_regression (roc_auc on 2025-10-01..2025-12-01")
    chosen, reason, figures = choose_estimator(SPEC, _frame(1200, "interaction"), ["a", "b"])
    assert chosen == "gradient_boosting", reason
    assert (
        figures["validation.roc_auc.gradient_boosting"]
        > figures["validation.roc_auc.logistic_regression"] + 0.1
    )


def test_without_months_to_validate_on_auto_falls_back() -> None:
    chosen, reason, figures = choose_estimator(SPEC, _frame(300, "linear", months=1), ["a", "b"])
    assert (chosen, figures) == (AUTO_FALLBACK, {})
    assert "one training month" in reason


def test_a_model_that_does_not_beat_its_baseline_is_not_promoted() -> None:
    """Even as the first version: seasonal naive is the rule a demand forecast must beat."""
    from healthlake.ml.models import DEMAND
    from healthlake.ml.train import _decide

    y = np.array([3.0, 4.0, 5.0])
    promoted, reason, former = _decide(DEMAND, {"mae": 3.6, "baseline_mae": 3.5}, None, y)
    assert (promoted, former) == (False, None)
    assert reason == (
        "not promoted: mae 3.6000 does not beat the baseline, seasonal naive: the count seven days before "
        "the target day (3.5000), on the hold-out"
    )
    assert _decide(DEMAND, {"mae": 3.0, "baseline_mae": 3.5}, None, y)[:2] == (
        True,
        "promoted: first version (mae 3.0000)",
    )
    # Beating the rule is not enough: the champion too (its MAE on these rows is 1.0).
    promoted, reason, former = _decide(DEMAND, {"mae": 3.0, "baseline_mae": 3.5}, (4, y + 1), y)
    assert (promoted, former) == (False, 1.0)
    assert "does not beat champion version 4" in reason
