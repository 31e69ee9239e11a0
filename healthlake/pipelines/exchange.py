"""``healthlake epidemic export`` / ``import``: risk-person lists to and from neighbouring regions.

Export reads ``gold.risk_persons`` and, for the persons on the list only, their clear identity from the
vault (``healthlake.epidemic.exchange``); it writes one file outside the lake and appends a row to
``vault.disclosure_log`` (when, who — ``HEALTHLAKE_OPERATOR`` or the login name —, to which region, how many
persons, where). The list's rows are never logged.

Import copies a received list into the landing zone's ``public_health`` feed, the sending region in the
institution's place (``<landing>/public_health/region-<code>/<local day>/regional_risk_list_<day>.csv``), and
runs ingest on that feed: the list lands in ``bronze.csv_records`` with its provenance, exactly once (a file
already landed with the same bytes is not landed again).
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from healthlake import io
from healthlake.catalog import (
    GOLD_RISK_PERSONS,
    SILVER_PATIENT_RECORD,
    SILVER_PERSON_XREF,
    VAULT_DISCLOSURE_LOG,
    VAULT_IDENTITY,
)
from healthlake.epidemic.exchange import LIST_COLUMNS, LIST_EXTRACT, region_prefix, risk_list
from healthlake.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from healthlake.config import Config

log = logging.getLogger(__name__)

FORMATS = ("csv", "parquet")
_LOG_SCHEMA = (
    "disclosed_at timestamp, operator string, purpose string, to_region string, persons long, path string"
)


@dataclass
class ExportResult:
    """What an export wrote: the file and how many persons it lists."""

    path: str
    persons: int


def export_list(
    spark: SparkSession, cfg: Config, *, to_region: str, out: str, fmt: str = "csv"
) -> ExportResult:
    """Write the risk persons last seen in ``to_region`` to ``out`` (one CSV or Parquet file) and log it.

    Raises:
        ConfigError: When ``region.code`` is not set or ``to_region`` is not an area code.
        UsageError: When the lake has no risk persons yet, ``out`` exists, or ``fmt`` is unknown.
    """
    from_region = cfg.region.code
    if from_region is None:
        raise ConfigError(
            "region.code is not set: give this region's GB/T 2260 code (e.g. 360000) in the config"
        )
    region_prefix(to_region)  # a one-line error for a bad code, before any work
    if fmt not in FORMATS:
        raise UsageError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    target = Path(out)
    if target.exists():
        raise UsageError(f"{out} exists: name a new file (a list is written once)")
    lake = cfg.lake_root
    for table, stage in ((GOLD_RISK_PERSONS, "epidemic"), (VAULT_IDENTITY, "conform")):
        if not io.is_table(spark, lake, table):
            raise UsageError(f"{table} is not in the lake {lake}: run `healthlake {stage}` first")
    rows = risk_list(
        io.read_table(spark, lake, GOLD_RISK_PERSONS),
        io.read_table(spark, lake, SILVER_PATIENT_RECORD),
        io.read_table(spark, lake, SILVER_PERSON_XREF),
        io.read_table(spark, lake, VAULT_IDENTITY),
        from_region=from_region,
        to_region=to_region,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    # Spark writes a folder of parts: one part (a list is a region's risk persons somewhere else, small),
    # then moved to the name asked for. The folder sits beside the target, on the same file system.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as tmp:
        folder = Path(tmp) / "list"
        writer = rows.coalesce(1).write
        if fmt == "csv":
            writer.option("header", True).option("encoding", "UTF-8").csv(str(folder))
        else:
            writer.parquet(str(folder))
        (part,) = folder.glob(f"part-*.{fmt}" if fmt == "parquet" else "part-*.csv")
        shutil.move(str(part), target)
    written = spark.read.csv(str(target), header=True) if fmt == "csv" else spark.read.parquet(str(target))
    persons = written.count()
    operator = os.environ.get("HEALTHLAKE_OPERATOR") or getpass.getuser()
    entry = (
        dt.datetime.now(dt.UTC),
        operator,
        "regional_risk_list",
        to_region,
        persons,
        str(target.resolve()),
    )
    io.append(spark.createDataFrame([entry], _LOG_SCHEMA), lake, VAULT_DISCLOSURE_LOG)
    log.info(
        "exported %s persons last seen in %s to %s (logged in %s)",
        persons,
        to_region,
        out,
        VAULT_DISCLOSURE_LOG,
    )
    return ExportResult(str(target), persons)


def landed_path(cfg: Config, from_region: str, day: dt.date) -> Path:
    """Where an imported list from ``from_region`` received on local ``day`` lands."""
    return (
        Path(cfg.landing_root)
        / "public_health"
        / f"region-{from_region}"
        / day.isoformat()
        / f"{LIST_EXTRACT}_{day:%Y%m%d}.csv"
    )


def import_list(spark: SparkSession, cfg: Config, path: str, *, from_region: str) -> Path:
    """Land a list received from ``from_region`` in the ``public_health`` feed and ingest that feed.

    Returns:
        Where the list landed.

    Raises:
        ConfigError: When ``from_region`` is not an area code.
        UsageError: When the file is missing or its header is not a list's.
    """
    region_prefix(from_region)
    source = Path(path)
    if not source.is_file():
        raise UsageError(f"{path} is not a file: give the list a region sent (CSV)")
    with source.open(encoding="utf-8-sig", errors="replace") as f:
        header = f.readline().strip().split(",")
    missing = [c for c in LIST_COLUMNS if c not in header]
    if missing:
        raise UsageError(f"{path} is not a risk-person list: its header lacks {', '.join(missing)}")
    day = dt.datetime.now(ZoneInfo(cfg.region.timezone)).date()
    target = landed_path(cfg, from_region, day)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    landed = target.parent.parent.glob(f"*/{LIST_EXTRACT}_*.csv")  # every day this region's lists landed
    same = [p for p in landed if _digest(p) == digest]
    if same:  # landed before: ingest takes it once, whatever the name
        target = same[0]
    else:
        n = 1
        while target.exists():  # a second, different list the same day
            n += 1
            target = target.with_name(f"{LIST_EXTRACT}_{day:%Y%m%d}_{n}.csv")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    from healthlake.pipelines import ingest

    ingest.run(spark, cfg, only=["public_health"])
    return target


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
