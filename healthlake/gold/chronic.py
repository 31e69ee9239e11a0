"""Chronic-disease management (慢病管理): ``gold.chronic_disease_registry``, ``gold.chronic_disease_monthly``
and ``gold.chronic_disease_indicators``.

A resident is *registered* for hypertension or diabetes from their first follow-up under the national
basic public health service (``silver.chronic_followup``), at the grassroots institution that manages
them (the institution of their latest follow-up). Per month, at the end of the month:

* ``standard_managed`` (规范管理): at least ``STANDARD_FOLLOWUPS`` (4) follow-ups in the 12 months ending
  with the month; ``standard_management_rate`` = ``standard_managed / registered``.
* ``controlled`` (控制): the reading of the person's latest follow-up with one (at or before the month's end)
  is below target: blood pressure < 140/90 mmHg (systolic and diastolic of that follow-up) for
  hypertension, fasting glucose < 7.0 mmol/L for diabetes; ``control_rate`` = ``controlled / registered``
  (a registered patient without any reading counts as not controlled).

Days and months are those of the region's time zone (``region.timezone``, passed as ``zone``): a follow-up
at 00:30 on 1 February Beijing time counts in February, and a month ends at its last local midnight.

``chronic_disease_monthly`` holds each registered person's state at every month's end, and the indicators
are its counts. A person's monthly rows and registry rows depend on their own follow-ups only, so a day of
new data recomputes the persons it touches and then the indicators of the months their rows changed.
"""

from __future__ import annotations

import logging

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from healthlake import io
from healthlake.catalog import (
    GOLD_CHRONIC_INDICATORS,
    GOLD_CHRONIC_MONTHLY,
    GOLD_CHRONIC_REGISTRY,
    SILVER_AREA,
    SILVER_CHRONIC_FOLLOWUP,
    SILVER_INSTITUTION,
    SILVER_OBSERVATION,
    SILVER_PERSON_XREF,
)
from healthlake.derived import DerivedTable, Inputs, Write, merge, rebuild, replace_where, unchanged
from healthlake.gold.areas import registered_places, roll_up
from healthlake.gold.changes import PATIENT, fed_changes, persons_of, relinked_persons, union
from healthlake.gold.patients import person_events
from healthlake.gold.utilization import with_rates
from healthlake.localtime import local_date, local_month

log = logging.getLogger(__name__)

DISEASES = {"I10": "hypertension", "E11": "diabetes"}
"""Follow-up disease categories (``silver.chronic_followup.disease_icd10_category``) → registry disease."""
STANDARD_FOLLOWUPS = 4
SBP, DBP, FASTING_GLUCOSE = "8480-6", "8462-4", "14771-0"
"""LOINC codes of the control measurements (``silver.observation.loinc``; fasting glucose in mmol/L)."""
_READINGS = {SBP: "_sbp", DBP: "_dbp", FASTING_GLUCOSE: "_fbg"}
SBP_TARGET, DBP_TARGET, GLUCOSE_TARGET = 140.0, 90.0, 7.0
INDICATOR_MEASURES = ("registered", "standard_managed", "controlled")
CONTROL_LOINC = tuple(_READINGS)
INDICATOR_RATES = {
    "standard_management_rate": ("standard_managed", "registered"),
    "control_rate": ("controlled", "registered"),
}


def _latest() -> Column:
    """Orders a person's follow-ups: by time, then id (two at the same minute)."""
    return F.struct("followup_time", "source_record_id")


def followup_readings(
    followups: DataFrame, observations: DataFrame, person_xref: DataFrame, *, with_values: bool = False
) -> DataFrame:
    """Each follow-up of a registry disease with its person, place, time and control status.

    A follow-up's measurements are the observations the same institution recorded for the same patient at
    the follow-up's time (``silver.observation`` rows from the follow-up extract). ``controlled`` is NULL
    when the follow-up has no reading for its disease (a blood pressure needs both halves).

    Returns:
        ``person_id``, ``disease``, ``institution_id``, ``followup_time``, ``source_record_id``,
        ``controlled``; with ``with_values`` also the reading: ``sbp``, ``dbp``, ``fasting_glucose``.
    """
    disease = F.create_map(*[F.lit(x) for kv in DISEASES.items() for x in kv])[
        F.col("disease_icd10_category")
    ]
    loinc = F.col("loinc")
    values = (
        observations.where(
            ~F.coalesce(F.col("is_cancelled"), F.lit(False))
            & loinc.isin(SBP, DBP, FASTING_GLUCOSE)
            & F.col("value").isNotNull()
        )
        .groupBy("institution_id", "source_patient_id", F.col("observation_time").alias("followup_time"))
        .agg(*[F.max(F.when(loinc == code, F.col("value"))).alias(name) for code, name in _READINGS.items()])
    )
    hypertensive = F.col("disease") == "hypertension"
    controlled = F.when(hypertensive, (F.col("_sbp") < SBP_TARGET) & (F.col("_dbp") < DBP_TARGET)).otherwise(
        F.col("_fbg") < GLUCOSE_TARGET
    )
    return (
        person_events(followups.where(F.col("followup_time").isNotNull()), person_xref)
        .withColumn("disease", disease)  # the registry's name replaces the feed's (Chinese) one
        .where(F.col("disease").isNotNull())
        .join(values, ["institution_id", "source_patient_id", "followup_time"], "left")
        .select(
            "person_id",
            "disease",
            "institution_id",
            "followup_time",
            "source_record_id",
            controlled.alias("controlled"),
            *(
                [
                    F.col("_sbp").alias("sbp"),
                    F.col("_dbp").alias("dbp"),
                    F.col("_fbg").alias("fasting_glucose"),
                ]
                if with_values
                else []
            ),
        )
    )


def registry_from_readings(readings: DataFrame, as_of: Column, *, zone: str) -> DataFrame:
    """One row per registered (person, disease) with their management and control as of ``as_of``.

    Args:
        readings: ``followup_readings`` (of every person wanted, with all their follow-ups).
        as_of: The local date the registry describes (a date Column).
        zone: The region's time zone: a follow-up's date is its local date.

    Returns:
        ``person_id``, ``disease``, ``registered_on``, ``managing_institution_id``,
        ``last_followup_date``, ``followups_12m`` (follow-ups in the 12 months ending ``as_of``),
        ``is_standard_managed``, ``last_reading_time``, ``is_controlled``.
    """
    day = local_date(F.col("followup_time"), zone)
    fu = readings.withColumn("_day", day).where(F.col("_day") <= as_of)
    year_ago = F.add_months(as_of, -12)
    read = F.col("controlled").isNotNull()
    registry = fu.groupBy("person_id", "disease").agg(
        F.min("_day").alias("registered_on"),
        F.max_by("institution_id", _latest()).alias("managing_institution_id"),
        F.max("_day").alias("last_followup_date"),
        F.count_if(F.col("_day") > year_ago).alias("followups_12m"),
        F.max(F.when(read, F.col("followup_time"))).alias("last_reading_time"),
        F.max_by("controlled", F.when(read, _latest())).alias("is_controlled"),
    )
    return registry.select(
        "person_id",
        "disease",
        "registered_on",
        "managing_institution_id",
        "last_followup_date",
        "followups_12m",
        (F.col("followups_12m") >= STANDARD_FOLLOWUPS).alias("is_standard_managed"),
        "last_reading_time",
        F.coalesce("is_controlled", F.lit(False)).alias("is_controlled"),
    )


def registry_window_moved(followup_time: Column, before: Column, now: Column, *, zone: str) -> Column:
    """Whether a follow-up at ``followup_time`` counts differently in a registry as of ``before`` and one
    as of ``now`` (local dates of ``zone``): it entered or left the 12-month window, or came into the
    registry (dated after ``before``). The registry rows of its person change; nothing else about them
    depends on the date."""
    day = local_date(followup_time, zone)

    def between(a: Column, b: Column) -> Column:
        return (day > F.least(a, b)) & (day <= F.greatest(a, b))

    return between(before, now) | between(F.add_months(before, -12), F.add_months(now, -12))


def chronic_disease_monthly(readings: DataFrame, through: Column, *, zone: str) -> DataFrame:
    """One row per registered (person, disease) and month, from registration to ``through``'s month.

    The state at the month's end that ``chronic_disease_indicators`` counts: a person's rows depend on their
    own follow-ups only, so a day's changes are recomputed for the persons they touch.

    Args:
        readings: ``followup_readings`` (of every person wanted, with all their follow-ups).
        through: The last local date covered (a date Column).
        zone: The region's time zone: a follow-up counts in its local month.

    Returns:
        ``person_id``, ``disease``, ``month`` (first local day), ``institution_id`` (of the
        latest follow-up by the month's end), ``followups`` (in the month), ``followups_12m`` (in the 12
        months ending with it), ``is_standard_managed`` (``followups_12m`` ≥ ``STANDARD_FOLLOWUPS``) and
        ``is_controlled`` (the latest reading by the month's end is below target; False without one).
    """
    fu = readings.withColumn("month", local_month(F.col("followup_time"), zone)).where(
        F.col("month") <= F.trunc(through, "month")
    )
    per_month = fu.groupBy("person_id", "disease", "month").agg(
        F.count("*").alias("_n"),
        F.max_by("institution_id", _latest()).alias("_inst"),
        F.max_by("controlled", F.when(F.col("controlled").isNotNull(), _latest())).alias("_controlled"),
    )
    # One row per registered patient and month, from registration to `through`: a window over these rows
    # gives the rolling 12-month follow-up count and the latest reading without a range join.
    months = (
        per_month.groupBy("person_id", "disease")
        .agg(F.min("month").alias("_from"))
        .select(
            "person_id",
            "disease",
            F.explode(F.sequence("_from", F.trunc(through, "month"), F.expr("interval 1 month"))).alias(
                "month"
            ),
        )
    )
    timeline = Window.partitionBy("person_id", "disease").orderBy("month")
    so_far = timeline.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    n12 = F.sum(F.coalesce("_n", F.lit(0))).over(timeline.rowsBetween(-11, Window.currentRow))
    return months.join(per_month, ["person_id", "disease", "month"], "left").select(
        "person_id",
        "disease",
        "month",
        F.last("_inst", ignorenulls=True).over(so_far).alias("institution_id"),
        F.coalesce("_n", F.lit(0)).alias("followups"),
        n12.alias("followups_12m"),
        (n12 >= STANDARD_FOLLOWUPS).alias("is_standard_managed"),
        F.coalesce(F.last("_controlled", ignorenulls=True).over(so_far), F.lit(False)).alias("is_controlled"),
    )


def indicators_from_monthly(monthly: DataFrame, institution_paths: DataFrame, areas: DataFrame) -> DataFrame:
    """``chronic_disease_indicators`` counted from ``chronic_disease_monthly`` rows (any set of months).

    Args:
        monthly: ``chronic_disease_monthly`` rows of every person for the months wanted.
        institution_paths: ``healthlake.gold.areas.institution_paths``.
        areas: ``silver.area``.
    """
    per_institution = monthly.groupBy("institution_id", "month", "disease").agg(
        F.count("*").alias("registered"),
        F.count_if("is_standard_managed").alias("standard_managed"),
        F.count_if("is_controlled").alias("controlled"),
    )
    return with_rates(
        roll_up(per_institution, ["month", "disease"], INDICATOR_MEASURES, institution_paths, areas),
        INDICATOR_RATES,
    )


def chronic_disease_registry(
    followups: DataFrame, observations: DataFrame, person_xref: DataFrame, as_of: Column, *, zone: str
) -> DataFrame:
    """One row per registered (person, disease) with their management and control as of ``as_of``.

    Args:
        followups: ``silver.chronic_followup``.
        observations: ``silver.observation``.
        person_xref: ``silver.person_xref``.
        as_of: The local date the registry describes (a date Column).
        zone: The region's time zone.

    Returns:
        The columns of ``registry_from_readings``.
    """
    return registry_from_readings(followup_readings(followups, observations, person_xref), as_of, zone=zone)


def chronic_disease_indicators(
    followups: DataFrame,
    observations: DataFrame,
    person_xref: DataFrame,
    institution_paths: DataFrame,
    areas: DataFrame,
    through: Column,
    *,
    zone: str,
) -> DataFrame:
    """Registered, standard-managed and controlled patients per month, disease, institution and area.

    Args:
        followups: ``silver.chronic_followup``.
        observations: ``silver.observation``.
        person_xref: ``silver.person_xref``.
        institution_paths: ``healthlake.gold.areas.institution_paths``.
        areas: ``silver.area``.
        through: The last local date covered (a date Column); months run from the first follow-up's to
            its.
        zone: The region's time zone, whose months these are.

    Returns:
        ``month`` (first day), ``disease``, ``level``, ``unit_code``, ``unit_name``, the counts
        ``INDICATOR_MEASURES`` and the rates ``INDICATOR_RATES``. A patient counts at the institution that
        managed them last (by the month's end) and at every area above it.
    """
    readings = followup_readings(followups, observations, person_xref)
    monthly = chronic_disease_monthly(readings, through, zone=zone)
    return indicators_from_monthly(monthly, institution_paths, areas)


# ---------------------------------------------------------------------------------------------------------
# The three tables. A person's monthly and registry rows depend on their own follow-ups only: a day
# recomputes the persons it touches (their follow-ups or control readings changed, their links moved, or a
# follow-up entered or left the registry's 12-month window), merges their rows, then recounts the indicators
# of every month from the first one whose rows changed. A run in a new month (every registered person gains
# a row) rebuilds the three instead.

_MONTHLY_KEY = ("person_id", "disease", "month")
_REGISTRY_KEY = ("person_id", "disease")
_READS = (SILVER_CHRONIC_FOLLOWUP, SILVER_OBSERVATION, SILVER_PERSON_XREF)


def _all_readings(inputs: Inputs) -> DataFrame:
    """Every follow-up with its readings (cached for the run: the registry and the months both use it)."""
    return inputs.once(
        "gold.chronic.readings",
        lambda: inputs.keep(
            followup_readings(
                inputs.read(SILVER_CHRONIC_FOLLOWUP),
                inputs.read(SILVER_OBSERVATION),
                inputs.read(SILVER_PERSON_XREF),
            )
        ),
    )


def _new_month(inputs: Inputs) -> bool:
    """Whether the run is in another month than the last one, or the last left one of the tables out."""
    last = inputs.last
    assert last is not None
    if (inputs.as_of.year, inputs.as_of.month) != (last.as_of.year, last.as_of.month):
        return True
    return any(
        t not in last.written for t in (GOLD_CHRONIC_REGISTRY, GOLD_CHRONIC_MONTHLY, GOLD_CHRONIC_INDICATORS)
    )


def _affected_persons(inputs: Inputs) -> DataFrame:
    """The persons whose chronic-disease rows a run recomputes (a local checkpoint, made once)."""

    def make() -> DataFrame:
        assert inputs.last is not None
        patients = [fed_changes(inputs, SILVER_CHRONIC_FOLLOWUP, PATIENT)]
        readings_changed = inputs.changes(SILVER_OBSERVATION)
        if readings_changed is not None:
            patients.append(readings_changed.where(F.col("loinc").isin(*CONTROL_LOINC)).select(*PATIENT))
        if inputs.as_of != inputs.last.as_of:
            moved = registry_window_moved(
                F.col("followup_time"), F.lit(inputs.last.as_of), F.lit(inputs.as_of), zone=inputs.zone
            )
            patients.append(inputs.read(SILVER_CHRONIC_FOLLOWUP).where(moved).select(*PATIENT))
        persons = union([persons_of(inputs, union(patients).distinct()), relinked_persons(inputs)])
        return inputs.materialised(persons.where(F.col("person_id").isNotNull()).distinct())

    return inputs.once("gold.chronic.persons", make)


def _affected_readings(inputs: Inputs) -> DataFrame:
    """The follow-ups and readings of the affected persons (cached for the run)."""

    def make() -> DataFrame:
        persons = _affected_persons(inputs)
        xref = inputs.materialised(inputs.read(SILVER_PERSON_XREF).join(persons, "person_id", "left_semi"))
        patients = xref.select(*PATIENT)
        return inputs.keep(
            followup_readings(
                inputs.read(SILVER_CHRONIC_FOLLOWUP).join(patients, PATIENT, "left_semi"),
                inputs.read(SILVER_OBSERVATION).join(patients, PATIENT, "left_semi"),
                xref,
            )
        )

    return inputs.once("gold.chronic.affected_readings", make)


def _stored_of_affected(inputs: Inputs, table: str, columns: list[str]) -> DataFrame:
    rows = inputs.stored(table).join(_affected_persons(inputs), "person_id", "left_semi").select(*columns)
    return inputs.keep(rows)


def _registry_build(inputs: Inputs) -> DataFrame:
    return registry_from_readings(_all_readings(inputs), F.lit(inputs.as_of), zone=inputs.zone)


def _registry_update(inputs: Inputs) -> Write:
    if _new_month(inputs):
        return rebuild()
    if _affected_persons(inputs).isEmpty():
        return unchanged()
    registry = registry_from_readings(_affected_readings(inputs), F.lit(inputs.as_of), zone=inputs.zone)
    return merge(registry, _stored_of_affected(inputs, GOLD_CHRONIC_REGISTRY, registry.columns))


def _monthly_build(inputs: Inputs) -> DataFrame:
    return chronic_disease_monthly(_all_readings(inputs), F.lit(inputs.as_of), zone=inputs.zone)


def _monthly_update(inputs: Inputs) -> Write:
    if _new_month(inputs):
        return rebuild()
    if _affected_persons(inputs).isEmpty():
        return unchanged()
    monthly = chronic_disease_monthly(_affected_readings(inputs), F.lit(inputs.as_of), zone=inputs.zone)
    stored = _stored_of_affected(inputs, GOLD_CHRONIC_MONTHLY, monthly.columns)
    return merge(inputs.keep(monthly), stored)


def _indicators_build(inputs: Inputs) -> DataFrame:
    monthly = inputs.read(GOLD_CHRONIC_MONTHLY)
    return indicators_from_monthly(monthly, registered_places(inputs), inputs.read(SILVER_AREA))


def _indicators_update(inputs: Inputs) -> Write:
    if _new_month(inputs):
        return rebuild()
    changed = inputs.changed(GOLD_CHRONIC_MONTHLY)
    if changed is None:
        return unchanged()
    since = io.one_row(changed.agg(F.min("month")))[0]  # one aggregate row: the first month that changed
    if log.isEnabledFor(logging.INFO):
        persons = _affected_persons(inputs).count()
        log.info("publish: chronic-disease rows of %d persons recomputed, from %s", persons, since)
    if since is None:
        return unchanged()
    recount = inputs.read(GOLD_CHRONIC_MONTHLY).where(F.col("month") >= F.lit(since))
    indicators = indicators_from_monthly(recount, registered_places(inputs), inputs.read(SILVER_AREA))
    return replace_where(indicators, f"month >= '{since.isoformat()}'")


CHRONIC_REGISTRY = DerivedTable(
    name=GOLD_CHRONIC_REGISTRY,
    key=_REGISTRY_KEY,
    reads=_READS,
    build=_registry_build,
    update=_registry_update,
    fed_by=(SILVER_CHRONIC_FOLLOWUP, SILVER_OBSERVATION),
)
"""``gold.chronic_disease_registry``: one row per registered (person, disease). Incremental: the affected
persons' rows, merged."""

# A day's follow-ups change the persons' rows of their own month (and later ones): with a partition per
# month, the MERGE rewrites that month's files only, and the indicators read the months they recount.
CHRONIC_MONTHLY = DerivedTable(
    name=GOLD_CHRONIC_MONTHLY,
    key=_MONTHLY_KEY,
    reads=_READS,
    build=_monthly_build,
    update=_monthly_update,
    fed_by=(SILVER_CHRONIC_FOLLOWUP, SILVER_OBSERVATION),
    partition_by=("month",),
)
"""``gold.chronic_disease_monthly``: one row per (person, disease, month) registered. Incremental: the
affected persons' rows, merged."""

CHRONIC_INDICATORS = DerivedTable(
    name=GOLD_CHRONIC_INDICATORS,
    key=("month", "disease", "level", "unit_code"),
    reads=(GOLD_CHRONIC_MONTHLY, SILVER_INSTITUTION, SILVER_AREA),
    build=_indicators_build,
    update=_indicators_update,
    rebuild_on=(SILVER_AREA, SILVER_INSTITUTION),
)
"""``gold.chronic_disease_indicators``: one row per (month, disease, level, unit). Incremental: every month
from the first one whose monthly rows changed is recounted from ``gold.chronic_disease_monthly``."""
