"""Where models are tracked: the MLflow tracking store and registry, and its embedded default.

``ml.tracking_uri`` when set, else ``MLFLOW_TRACKING_URI`` (any tracking server), else the embedded
default that needs nothing running: a SQLite store (MLflow 3 deprecates the file store) and an artifact
folder, under ``<lake_root>/mlflow`` when the lake is a local folder (``./mlflow`` when it is on object
storage). A SQLite store keeps its artifacts in ``artifacts/`` beside its file; a tracking server decides
where its own go. The registry is the tracking store's own.

SQLite takes one writer at a time: the first ``healthlake train`` creates the store's tables, so run one
before starting trainings side by side (``docs/models.md``).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from healthlake.config import is_uri
from healthlake.errors import HealthlakeError

if TYPE_CHECKING:
    from healthlake.config import Config

log = logging.getLogger(__name__)

EMBEDDED_FOLDER = "mlflow"
"""The embedded store's folder under a local lake root: ``mlflow.db`` and ``artifacts/``."""
QUIET = ("mlflow", "alembic")
"""Loggers held at ERROR unless ``-v``: MLflow's INFO lines (store migrations, "Active model is set …")
are about its internals, not what a user asked for."""


ENVIRONMENT = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
"""Environment variables MLflow's URI setters write."""


class TrackingError(HealthlakeError):
    """The tracking store cannot be reached or has no such model."""


def registered_name(model: str) -> str:
    """The registry name of a healthlake model: ``healthlake-<model>``."""
    return f"healthlake-{model}"


def experiment_name(model: str) -> str:
    """The MLflow experiment a model's trainings are runs of."""
    return f"healthlake-{model}"


def embedded_root(cfg: Config) -> Path:
    """The embedded store's folder: ``<lake_root>/mlflow`` for a local lake, else ``./mlflow``."""
    lake = cfg.lake_root
    if lake.startswith("file:"):
        lake = lake.removeprefix("file:").removeprefix("//")
    elif is_uri(lake):
        return Path(EMBEDDED_FOLDER).resolve()
    return Path(lake).resolve() / EMBEDDED_FOLDER


def tracking_uri(cfg: Config) -> str:
    """The tracking URI models use (see the module)."""
    if cfg.ml.tracking_uri:
        return cfg.ml.tracking_uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{embedded_root(cfg) / 'mlflow.db'}"


def artifact_root(uri: str) -> Path | None:
    """Where a store's artifacts go: ``artifacts/`` beside a SQLite file (the embedded default, or one
    configured), None for a tracking server (it decides)."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent / "artifacts"
    return None


def quiet_mlflow(verbose: bool = False) -> None:
    """Hold MLflow's and Alembic's loggers at ERROR and silence MLflow's warnings (unless ``verbose``)."""
    if verbose:
        return
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"mlflow(\..*)?")
    warnings.filterwarnings("ignore", category=UserWarning, message=r".*[Ii]nteger column")
    # MLflow prints a "View run … at" line per run to a tracking server: not a healthlake result.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


@dataclass(frozen=True)
class Store:
    """The tracking store a block uses: its URI, and the artifact root of the embedded default (None: the
    tracking server decides where artifacts go)."""

    uri: str
    artifact_root: Path | None


@contextmanager
def tracking(cfg: Config) -> Iterator[Store]:
    """Point MLflow at the configured store for the block.

    Creates the embedded store's folder (and, through the first client call, its tables) when it is used.
    """
    import mlflow

    from healthlake.logs import verbose

    quiet_mlflow(verbose())
    uri = tracking_uri(cfg)
    store = Store(uri, artifact_root(uri))
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    before_tracking, before_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    # MLflow's setters also export the URI to the environment (for child processes): put it back after, or
    # the next block would read its own URI back as the user's MLFLOW_TRACKING_URI.
    environment = {name: os.environ.get(name) for name in ENVIRONMENT}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield store
    finally:
        mlflow.set_tracking_uri(before_tracking)
        mlflow.set_registry_uri(before_registry)
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def experiment_id(store: Store, model: str) -> str:
    """The id of the model's experiment in ``store`` (the current one), created on first use.

    In the embedded store its artifacts go under ``<root>/artifacts/<model>``; a tracking server decides
    its own artifact location.
    """
    import mlflow

    name = experiment_name(model)
    try:
        found = mlflow.get_experiment_by_name(name)
    except Exception as exc:  # the store's own error types differ by backend
        raise TrackingError(
            f"cannot reach the MLflow tracking store {mlflow.get_tracking_uri()}: {exc}"
        ) from exc
    if found is not None:
        return str(found.experiment_id)
    location = (store.artifact_root / model).as_uri() if store.artifact_root is not None else None
    return str(mlflow.create_experiment(name, artifact_location=location))
