"""The notebooks run top to bottom in a fresh kernel, so they never rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import Published

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def execute(name: str, folder: Path, timeout: int = 300) -> list[dict]:
    """Run ``notebooks/<name>`` top to bottom in a fresh kernel (working in ``folder``); its outputs.

    Fails when a cell raised.
    """
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    return outputs


@pytest.mark.parametrize("name", ["quickstart.ipynb"])
def test_notebook_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUICKSTART_DIR", str(tmp_path / "work"))
    execute(name, tmp_path, timeout=600)
    assert (tmp_path / "work" / "truth" / "manifest.json").is_file()


def test_researcher_notebook_reads_the_published_lake_without_spark(
    published_region: Published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTHLAKE_LAKE_ROOT", published_region.cfg.lake_root)
    outputs = execute("researcher.ipynb", tmp_path)
    # Its last cell checks that no JVM came up; two charts were drawn.
    assert any("no Spark: True" in o.get("text", "") for o in outputs)
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 1
