"""The models healthlake trains: what each reads, predicts and is judged by, and its scikit-learn pipeline.

A model is a ``ModelSpec``: its feature table, key, label, input columns (numeric and categorical), the
local-month column its time split runs on, the subgroups its metrics are broken down by, and the metric a
new version must beat the champion on. Its pipeline is a ``ColumnTransformer`` (impute and scale the
numbers, one-hot the categories) and an estimator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from healthlake.catalog import GOLD_CHRONIC_CONTROL_FEATURES, GOLD_DEMAND_FEATURES, GOLD_READMISSION_FEATURES
from healthlake.errors import UsageError
from healthlake.ml import chronic_control, demand, readmission

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


@dataclass(frozen=True)
class ModelSpec:
    """One model: its data, its label and how versions are compared.

    Attributes:
        name: The model's name (``healthlake train <name>``; registered as ``healthlake-<name>``).
        features_table: The gold feature table it trains on and scores.
        key: The table's key (a prediction's key).
        label: The label column (NULL: not known yet).
        kind: ``classifier`` (the score is the probability of the label) or ``regressor``.
        numeric: Numeric (and boolean) inputs.
        categorical: Categorical inputs.
        month: The column of the local month a row belongs to (the time split's unit).
        subgroups: Columns the metrics are also computed per value of (fairness across groups).
        champion_metric: The hold-out metric a new version must beat the champion on.
        higher_is_better: Whether a larger ``champion_metric`` is better.
        estimator: The default estimator: one of ``ESTIMATORS``, or ``auto`` (the better of them on the
            latest training months, ``healthlake.ml.train.choose_estimator``).
        baseline: A column whose value is the simple rule a model must beat (its ROC AUC on the hold-out is
            logged as ``baseline_roc_auc``), None when there is none.
        baseline_name: What that rule is, in words.
    """

    name: str
    features_table: str
    key: tuple[str, ...]
    label: str
    kind: Literal["classifier", "regressor"]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    month: str
    subgroups: tuple[str, ...]
    champion_metric: str
    higher_is_better: bool
    estimator: str
    baseline: str | None = None
    baseline_name: str = ""

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every input column, in the order the model reads them."""
        return (*self.numeric, *self.categorical)


AUTO = "auto"
"""The estimator "as the data says": each of ``ESTIMATORS`` is fitted on the earlier training months and
judged on the latest ones; the better one is trained on all of them. Logistic regression wins on a
region's thousands of stays, gradient boosting on a few hundred (``BENCHMARKS.md``, models)."""

_READMISSION_CATEGORICAL = (
    "sex",
    "discharge_disposition",
    "diagnosis_chapter",
    "diagnosis_category",
    "city_code",
)

READMISSION = ModelSpec(
    name="readmission",
    features_table=GOLD_READMISSION_FEATURES,
    key=readmission.KEY,
    label="readmitted_30d",
    kind="classifier",
    numeric=tuple(c for c in readmission.FEATURE_COLUMNS if c not in _READMISSION_CATEGORICAL),
    categorical=_READMISSION_CATEGORICAL,
    month="discharge_month",
    subgroups=("sex", "age_band", "city_code"),
    champion_metric="roc_auc",
    higher_is_better=True,
    estimator=AUTO,
)
"""30-day readmission after an inpatient discharge (clinical)."""

_CHRONIC_CATEGORICAL = ("disease", "sex", "city_code")

CHRONIC_CONTROL = ModelSpec(
    name="chronic_control",
    features_table=GOLD_CHRONIC_CONTROL_FEATURES,
    key=chronic_control.KEY,
    label="uncontrolled_next",
    kind="classifier",
    numeric=tuple(c for c in chronic_control.FEATURE_COLUMNS if c not in _CHRONIC_CATEGORICAL),
    categorical=_CHRONIC_CATEGORICAL,
    month="followup_month",
    subgroups=("sex", "age_band", "city_code", "disease"),
    champion_metric="roc_auc",
    higher_is_better=True,
    estimator=AUTO,
    baseline="severity",
    baseline_name="the last reading (how far over or under target it is)",
)
"""Whether a managed hypertension or diabetes patient's next follow-up reading is over target
(clinical, research)."""

_DEMAND_CATEGORICAL = ("measure", "kind", "target_weekday", "city_code")

DEMAND = ModelSpec(
    name="demand",
    features_table=GOLD_DEMAND_FEATURES,
    key=demand.KEY,
    label="value_ahead",
    kind="regressor",
    numeric=tuple(c for c in demand.FEATURE_COLUMNS if c not in _DEMAND_CATEGORICAL),
    categorical=_DEMAND_CATEGORICAL,
    month="month",
    subgroups=("measure", "kind", "city_code"),
    champion_metric="mae",
    higher_is_better=False,
    # Trees, not auto: a count forecast must not run away when an input leaves the range it was trained on.
    # On the benchmark region the winter wave's fever-clinic counts in the hold-out were past anything in
    # training; ridge, better on the validation months, extrapolated them to an MAE of 28.7 against seasonal
    # naive's 3.5 (gradient boosting: 3.0). BENCHMARKS.md, models.
    estimator="gradient_boosting",
    baseline="value",
    baseline_name="seasonal naive: the count seven days before the target day",
)
"""Outpatient visits and admissions per institution seven days ahead (management)."""

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (READMISSION, CHRONIC_CONTROL, DEMAND)}
"""Every model by name."""

ESTIMATORS = ("logistic_regression", "gradient_boosting")
"""Estimators a model can be trained with (``healthlake train MODEL --estimator``)."""


def model_spec(name: str) -> ModelSpec:
    """The model called ``name``.

    Raises:
        UsageError: For an unknown name (the message lists the known ones).
    """
    spec = MODELS.get(name)
    if spec is None:
        raise UsageError(f"unknown model {name!r}: expected one of {', '.join(sorted(MODELS))}")
    return spec


def build_pipeline(
    spec: ModelSpec, estimator: str, params: dict[str, Any], inputs: tuple[str, ...] | None = None
) -> Pipeline:
    """The scikit-learn pipeline of ``spec`` with ``estimator`` and its ``params``.

    Args:
        spec: The model.
        estimator: ``logistic_regression`` or ``gradient_boosting`` (``ESTIMATORS``).
        params: Keyword arguments of the estimator (``C``, ``max_iter``, ``learning_rate`` …).
        inputs: A subset of ``spec.inputs`` to use (the others are dropped); all by default.

    Raises:
        UsageError: For an unknown estimator or parameter.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    chosen = set(inputs or spec.inputs)
    numeric = [c for c in spec.numeric if c in chosen]
    categorical = [c for c in spec.categorical if c in chosen]
    # Rare categories (a diagnosis seen a handful of times) share one column: no weight is learnt from a
    # few rows, and a category new at scoring time is ignored rather than an error.
    one_hot = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10, sparse_output=False)
    if estimator == "logistic_regression":
        numbers = make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler())
        model: Any = LogisticRegression if spec.kind == "classifier" else Ridge
        defaults: dict[str, Any] = {"max_iter": 2000, "C": 0.1} if spec.kind == "classifier" else {}
    elif estimator == "gradient_boosting":
        # Histogram gradient boosting takes missing values as they are.
        numbers = make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
        )
        model = HistGradientBoostingClassifier if spec.kind == "classifier" else HistGradientBoostingRegressor
        # Small, well-filled leaves and few rounds: on a few hundred stays deeper trees learnt noise and their
        # probabilities were worse than the prevalence's (Brier); scikit-learn stops early from 10,000 rows.
        defaults = {
            "max_iter": 100,
            "learning_rate": 0.05,
            "max_leaf_nodes": 7,
            "min_samples_leaf": 30,
            "random_state": 0,
        }
        if spec.kind == "regressor":
            defaults["loss"] = "poisson"  # counts: the error grows with the level
    else:
        raise UsageError(f"unknown estimator {estimator!r}: expected one of {', '.join(ESTIMATORS)}")
    steps = []
    if numeric:
        steps.append(("numeric", numbers, numeric))
    if categorical:
        steps.append(("categorical", one_hot, categorical))
    try:
        fitted = model(**{**defaults, **params})
    except TypeError as exc:
        raise UsageError(f"bad parameter for {estimator}: {exc}") from exc
    return Pipeline([("prepare", ColumnTransformer(steps)), ("estimator", fitted)])
