"""``healthlake epidemic``: silver and gold → the epidemic-control tables (``docs/epidemic.md``).

Runs after ``publish`` (it reads ``gold.patient_360`` for each person's home area and age band). The
tables are the registry ``healthlake.epidemic.registry.EPIDEMIC`` on the derived-table contract: pinned
inputs, one Delta commit per table, incremental after the first run, and the log row
(``gold.epidemic_log``) written last, so a re-run after success or after a crash gives the same tables.

``as_of`` is a local date of ``region.timezone``: the last day of testing or vaccination in the pinned
silver unless ``--as-of`` says otherwise (never the wall clock: the same inputs give the same tables).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from healthlake import io
from healthlake.catalog import (
    GOLD_EPIDEMIC_LOG,
    GOLD_PATIENT_360,
    SILVER_AREA,
    SILVER_DIAGNOSIS,
    SILVER_IMMUNIZATION,
    SILVER_ISOLATION_ORDER,
    SILVER_LOCATION_EVENT,
    SILVER_NAT_POOL,
    SILVER_NAT_TEST,
    SILVER_PATIENT_RECORD,
    SILVER_PERSON_XREF,
)
from healthlake.derived import Inputs, LastRun, last_logged_run, log_run, refresh, rows_and_versions
from healthlake.epidemic import cases, contacts, daily, health_code, risk, vaccination
from healthlake.epidemic.contacts import ContactParameters
from healthlake.epidemic.registry import EPIDEMIC
from healthlake.errors import HealthlakeError
from healthlake.localtime import local_date
from healthlake.logs import timed
from healthlake.spark import UNION_WITHOUT_PARTITIONING, sql_conf

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from healthlake.config import Config

log = logging.getLogger(__name__)

REQUIRED = {
    SILVER_PATIENT_RECORD: "conform",
    SILVER_PERSON_XREF: "link",
    GOLD_PATIENT_360: "publish",
}
EMPTY = {
    SILVER_AREA: "area_code string, name string, level string, parent_code string",
    SILVER_NAT_TEST: (
        "institution_id string, source_record_id string, source_patient_id string, sample_time timestamp, "
        "report_time timestamp, result string, sample_mode string, pool_id string"
    ),
    SILVER_NAT_POOL: (
        "institution_id string, source_record_id string, pool_id string, sample_time timestamp, "
        "report_time timestamp, pool_size int, result string"
    ),
    SILVER_ISOLATION_ORDER: (
        "institution_id string, source_record_id string, source_patient_id string, category string, "
        "place_type string, start_time timestamp, planned_end_time timestamp, released_at timestamp"
    ),
    SILVER_DIAGNOSIS: (
        "institution_id string, source_patient_id string, icd10_code string, diagnosis_time timestamp, "
        "is_cancelled boolean"
    ),
    SILVER_LOCATION_EVENT: (
        "institution_id string, source_record_id string, phone_token string, event_time timestamp, "
        "lat double, lon double, accuracy_m double"
    ),
    SILVER_IMMUNIZATION: (
        "institution_id string, source_patient_id string, vaccine_code string, vaccinated_at timestamp, "
        "is_cancelled boolean"
    ),
}
"""Empty stand-ins for inputs a lake may lack (a region without that feed)."""
INPUTS = tuple(dict.fromkeys((*REQUIRED, *EMPTY)))
"""Every table a run reads, pinned when it starts."""
TABLES = tuple(t.name for t in EPIDEMIC)


class EpidemicError(HealthlakeError):
    """The epidemic stage cannot run: what it builds from is not in the lake yet."""


@dataclass
class EpidemicResult:
    """What one ``healthlake epidemic`` run wrote.

    Attributes:
        tables: Table → its rows after the run.
        as_of: The local day the run is as of.
        mode: ``full``, ``incremental`` or ``unchanged``.
        built: Table → what the run did to it (``full``, ``incremental``, ``unchanged``, ``absent``).
        versions: Input → the version read.
        seconds: Wall time.
    """

    tables: dict[str, int] = field(default_factory=dict)
    as_of: dt.date | None = None
    mode: str = "full"
    built: dict[str, str] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def settings_of(cfg: Config) -> dict[str, object]:
    """The run settings the tables' rules read (``Inputs.settings``), from ``epidemic:``."""
    e = cfg.epidemic
    return {
        cases.DISEASE_CODES: e.disease_codes,
        daily.CASE_ACTIVE_DAYS: e.case_active_days,
        daily.MOVING_DAYS: e.moving_days,
        vaccination.VACCINE_CODES: e.vaccine_codes,
        vaccination.FULL_SERIES_DOSES: e.full_series_doses,
        vaccination.BOOSTER_DOSE: e.booster_dose,
        health_code.HEALTH_CODE_RULES: dict(e.health_code_rules),
        health_code.QUARANTINE_DAYS: e.quarantine_days,
        risk.RISK_AREA_DAYS: e.risk_area_days,
        risk.HIGH_RISK_CASES: e.high_risk_cases,
    }


def contact_parameters(cfg: Config, reference_lat: float | None) -> ContactParameters:
    """``epidemic.contacts`` as ``ContactParameters``: the preset with the keys set in the configuration,
    and the projection's reference latitude pinned (so a cell names the same square on every run)."""
    settings = cfg.epidemic.contacts.model_dump(exclude={"preset"}, exclude_none=True)
    return ContactParameters.preset(cfg.epidemic.contacts.preset, **settings, reference_lat=reference_lat)


def _region_latitude(spark: SparkSession, lake: str) -> float | None:
    """The mean latitude of the region's areas (``silver.area``), None without positions."""
    if not io.is_table(spark, lake, SILVER_AREA):
        return None
    areas = io.read_table(spark, lake, SILVER_AREA)
    if "lat" not in areas.columns:
        return None
    mean = io.one_row(areas.agg(F.avg("lat")))[0]  # one aggregate row
    return round(float(mean), 4) if mean is not None else None


def last_activity(inputs: Inputs) -> dt.date | None:
    """The last local day of testing (sample or report) or vaccination in the pinned silver."""
    zone = inputs.zone

    def day(table: str, column: str) -> F.Column:
        return F.max(local_date(F.col(column), zone))

    days = [
        io.one_row(
            inputs.read(SILVER_NAT_TEST).agg(
                day(SILVER_NAT_TEST, "sample_time"), day(SILVER_NAT_TEST, "report_time")
            )
        ),
        io.one_row(inputs.read(SILVER_IMMUNIZATION).agg(day(SILVER_IMMUNIZATION, "vaccinated_at"))),
    ]
    known = [d for row in days for d in row if d is not None]
    return max(known) if known else None


def run(
    spark: SparkSession, cfg: Config, *, as_of: dt.date | None = None, full: bool = False
) -> EpidemicResult:
    """Bring the epidemic tables up to date with silver and gold.

    Args:
        spark: Session.
        cfg: Configuration (``lake_root``, ``region``, ``epidemic``).
        as_of: The local day the tables run up to; by default the last day of testing or vaccination.
        full: Rebuild every table, whatever the log says.

    Returns:
        The tables and their rows, ``as_of`` and the mode.

    Raises:
        EpidemicError: When a required input is missing, or there is no activity to date the run by.
    """
    started = time.monotonic()
    lake = cfg.lake_root
    for table, stage in REQUIRED.items():
        if not io.is_table(spark, lake, table):
            raise EpidemicError(f"{table} is not in the lake {lake}: run `healthlake {stage}` first")
    logged = None if full else _logged_run(spark, lake)
    versions = {t: io.latest_version(spark, lake, t) for t in INPUTS if io.is_table(spark, lake, t)}
    inputs = Inputs(
        spark,
        lake,
        versions,
        cfg.region.timezone,
        last=logged[0] if logged is not None else None,
        settings={
            **settings_of(cfg),
            contacts.CONTACT_PARAMETERS: contact_parameters(cfg, _region_latitude(spark, lake)),
        },
        empty=EMPTY,
        derived=TABLES,
        cached=(SILVER_AREA,),
    )
    day = as_of or last_activity(inputs)
    if day is None:
        raise EpidemicError(
            "silver holds no NAT test or vaccination yet: nothing to report (or pass --as-of YYYY-MM-DD)"
        )
    result = EpidemicResult(as_of=day, versions=dict(versions))
    if logged is not None and logged[0].versions == versions and logged[0].as_of == day:
        result.mode, result.tables = "unchanged", dict(logged[1])
        return result
    inputs.as_of = day

    def step(name: str) -> AbstractContextManager[None]:
        return timed(log, f"epidemic {name}")

    with sql_conf(spark, UNION_WITHOUT_PARTITIONING):
        result.built = refresh(inputs, EPIDEMIC, full=logged is None, step=step)
    result.mode = (
        "incremental" if any(h in ("incremental", "unchanged") for h in result.built.values()) else "full"
    )
    rows, written = rows_and_versions(spark, lake, TABLES)
    result.tables.update(rows)
    result.seconds = time.monotonic() - started
    _log_run(spark, lake, result, written)  # the commit point: the next run increments from here
    return result


def _logged_run(spark: SparkSession, lake: str) -> tuple[LastRun, dict[str, int]] | None:
    """The inputs, tables and ``as_of`` of the last finished run, if any."""
    return last_logged_run(spark, lake, GOLD_EPIDEMIC_LOG)


def _log_run(spark: SparkSession, lake: str, result: EpidemicResult, written: dict[str, int]) -> None:
    assert result.as_of is not None
    log_run(
        spark,
        lake,
        GOLD_EPIDEMIC_LOG,
        mode=result.mode,
        as_of=result.as_of,
        versions=result.versions,
        tables=result.tables,
        seconds=result.seconds,
        written=written,
    )
