"""Train and score against a real `mlflow server` on 127.0.0.1 (``MLFLOW_TRACKING_URI``), started and
stopped by the test."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from pyspark.sql import SparkSession

from healthlake.ml.score import score
from healthlake.ml.tracking import registered_name
from healthlake.ml.train import CHAMPION, train
from tests.ml.conftest import ModelRegion


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tracking_server(tmp_path: Path) -> Iterator[str]:
    """A `mlflow server` with a SQLite backend and proxied artifacts; its URI. Stopped afterwards."""
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "served-artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_train_and_score_against_a_tracking_server(
    spark: SparkSession,
    model_region: ModelRegion,
    tracking_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    cfg = model_region.copy(tmp_path / "lake")
    trained = train(spark, cfg, "readmission")
    assert (trained.version, trained.promoted) == (1, True)
    scored = score(spark, cfg, "readmission")
    assert scored.version == 1 and scored.rows == model_region.features.tables["gold.readmission_features"]
    client = mlflow.MlflowClient(tracking_uri=tracking_server, registry_uri=tracking_server)
    assert int(client.get_model_version_by_alias(registered_name("readmission"), CHAMPION).version) == 1
    # The server holds the artifacts; nothing went to the lake's embedded store.
    assert list((tmp_path / "served-artifacts").rglob("MLmodel"))
    assert not (Path(cfg.lake_root) / "mlflow").exists()
    assert mlflow.active_run() is None
