"""``notebooks/modelling.ipynb`` runs top to bottom on the model region: features → train → compare →
plots → promote → score."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ml.conftest import ModelRegion
from tests.test_notebooks import execute


def test_modelling_notebook_trains_compares_promotes_and_scores(
    model_region: ModelRegion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = model_region.copy(tmp_path / "lake")
    monkeypatch.setenv("HEALTHLAKE_LAKE_ROOT", cfg.lake_root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    outputs = execute("modelling.ipynb", tmp_path, timeout=600)
    text = "".join(o.get("text", "") for o in outputs)
    assert "version 1: ROC AUC" in text and "version 2: ROC AUC" in text
    assert "champion is now version" in text
    # The readmission rate, the subgroup comparison, two logged plots and the score histogram.
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 5
    assert list((Path(cfg.lake_root) / "gold" / "predictions_readmission").glob("score_date=*"))
