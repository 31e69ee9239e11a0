"""``gold.vaccination_coverage``: the outbreak vaccine's coverage of the resident population, by day.

Grain: one row per (``date``, ``level``, ``unit_code``, ``age_band``) from the first day the outbreak vaccine
(``epidemic.vaccine_codes``) was given in the lake up to ``as_of``, for every area and age band with
residents or vaccinated persons. Areas roll up township → county → city → province as in
``gold.epidemic_daily``; ``age_band`` is the 5-year band of the person's age at ``as_of``
(``gold.patient_360``; ``unknown`` without a birth date).

Doses: a person's n-th dose is their n-th recorded (not cancelled) vaccination with the outbreak vaccine,
in time order, whatever dose number the site wrote (sites number doses inconsistently, and a series
started elsewhere is still one series); vaccinations of one person on the same local day count once.

Measures (cumulative at the end of the local day ``date``): ``residents`` (persons the population registry
holds, the denominator), ``vaccinated`` (residents with at least one dose), ``full_series`` (with
``epidemic.full_series_doses`` doses), ``booster`` (with ``epidemic.booster_dose`` doses), and
``coverage_*`` = each over ``residents``; ``non_resident_vaccinated``: vaccinated persons the registry does
not hold (visitors, workers from elsewhere), counted where their records place them.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from healthlake.catalog import (
    GOLD_PATIENT_360,
    GOLD_VACCINATION_COVERAGE,
    SILVER_AREA,
    SILVER_IMMUNIZATION,
    SILVER_PATIENT_RECORD,
    SILVER_PERSON_XREF,
)
from healthlake.derived import DerivedTable, Inputs, Write, merge
from healthlake.epidemic.people import places, roll_up_areas, run_residents, with_person
from healthlake.gold.areas import PATH_COLUMNS
from healthlake.localtime import local_date

VACCINE_CODES = "epidemic.vaccine_codes"
FULL_SERIES_DOSES = "epidemic.full_series_doses"
BOOSTER_DOSE = "epidemic.booster_dose"
"""Run settings (``Inputs.settings``)."""

MEASURES = ["residents", "vaccinated", "full_series", "booster", "non_resident_vaccinated"]
COVERAGE = {
    "coverage_vaccinated": "vaccinated",
    "coverage_full_series": "full_series",
    "coverage_booster": "booster",
}


def dose_milestones(
    immunizations: DataFrame,
    person_xref: DataFrame,
    *,
    zone: str,
    vaccine_codes: tuple[str, ...],
    full_series_doses: int,
    booster_dose: int,
) -> DataFrame:
    """Per vaccinated person, the local days they got their first dose, completed the series, got a booster.

    Returns:
        ``person_id``, ``first_dose_date``, ``full_series_date``, ``booster_date`` (NULL when not reached).
    """
    doses = (
        with_person(
            immunizations.where(
                F.col("vaccine_code").isin(*vaccine_codes)
                & F.col("vaccinated_at").isNotNull()
                & ~F.coalesce(F.col("is_cancelled"), F.lit(False))
            ),
            person_xref,
        )
        .where(F.col("person_id").isNotNull())
        .select("person_id", local_date(F.col("vaccinated_at"), zone).alias("day"))
        .distinct()
    )
    nth = F.row_number().over(Window.partitionBy("person_id").orderBy("day"))
    numbered = doses.select("person_id", "day", nth.alias("n"))
    return numbered.groupBy("person_id").agg(
        F.min(F.when(F.col("n") == 1, F.col("day"))).alias("first_dose_date"),
        F.min(F.when(F.col("n") == full_series_doses, F.col("day"))).alias("full_series_date"),
        F.min(F.when(F.col("n") == booster_dose, F.col("day"))).alias("booster_date"),
    )


def vaccination_coverage(
    milestones: DataFrame,
    residents: DataFrame,
    person_places: DataFrame,
    areas: DataFrame,
    *,
    as_of: dt.date,
) -> DataFrame:
    """Cumulative coverage per day, area level and age band (see the module).

    Args:
        milestones: ``dose_milestones``.
        residents: ``healthlake.epidemic.people.residents``.
        person_places: ``healthlake.epidemic.people.person_places``.
        areas: ``silver.area`` (names).
        as_of: The last day.
    """
    people = (
        milestones.join(residents.withColumn("resident", F.lit(True)), "person_id", "full")
        .join(person_places, "person_id", "left")
        .select(
            "person_id",
            *PATH_COLUMNS,
            F.coalesce(F.col("age_band"), F.lit("unknown")).alias("age_band"),
            F.coalesce(F.col("resident"), F.lit(False)).alias("resident"),
            "first_dose_date",
            "full_series_date",
            "booster_date",
        )
    )
    # Each person adds 1 to their group's running totals on the day they reach each milestone.
    group = ["_group", *PATH_COLUMNS, "age_band"]
    people = people.withColumn(
        "_group", F.concat_ws("|", *[F.coalesce(F.col(c), F.lit("")) for c in (*PATH_COLUMNS, "age_band")])
    )
    resident = F.col("resident")
    steps = [
        ("vaccinated", "first_dose_date", resident),
        ("full_series", "full_series_date", resident),
        ("booster", "booster_date", resident),
        ("non_resident_vaccinated", "first_dose_date", ~resident),
    ]
    increments = None
    for measure, day, who in steps:
        rows = people.where(who & F.col(day).isNotNull() & (F.col(day) <= F.lit(as_of))).select(
            "_group", F.col(day).alias("date"), F.lit(1).cast("long").alias(measure)
        )
        increments = rows if increments is None else increments.unionByName(rows, allowMissingColumns=True)
    assert increments is not None
    per_day = increments.groupBy("_group", "date").agg(*[F.sum(m).alias(m) for m, _, _ in steps])
    groups = people.groupBy(*group).agg(F.sum(resident.cast("long")).alias("residents"))
    # The calendar: every local day from the first dose given in the lake to as_of (none without doses).
    start = people.where(F.col("first_dose_date") <= F.lit(as_of)).agg(F.min("first_dose_date").alias("s"))
    days = start.select(F.explode(F.sequence(F.col("s"), F.lit(as_of))).alias("date"))
    running = Window.partitionBy("_group").orderBy("date").rowsBetween(Window.unboundedPreceding, 0)
    cumulative = (
        groups.crossJoin(F.broadcast(days))
        .join(per_day, ["_group", "date"], "left")
        .select(
            "date",
            *PATH_COLUMNS,
            "age_band",
            "residents",
            *[F.sum(F.coalesce(F.col(m), F.lit(0))).over(running).alias(m) for m, _, _ in steps],
        )
    )
    summed = roll_up_areas(cumulative, ["date", "age_band"], MEASURES, areas)
    return summed.select(
        "date",
        "level",
        "unit_code",
        "unit_name",
        "age_band",
        *MEASURES,
        *[
            F.when(F.col("residents") > 0, F.col(numerator) / F.col("residents")).alias(name)
            for name, numerator in COVERAGE.items()
        ],
    )


def _build(inputs: Inputs) -> DataFrame:
    settings = inputs.settings
    milestones = dose_milestones(
        inputs.read(SILVER_IMMUNIZATION),
        inputs.read(SILVER_PERSON_XREF),
        zone=inputs.zone,
        vaccine_codes=tuple(settings.get(VACCINE_CODES, ("COVID19",))),
        full_series_doses=int(settings.get(FULL_SERIES_DOSES, 2)),
        booster_dose=int(settings.get(BOOSTER_DOSE, 3)),
    )
    return vaccination_coverage(
        milestones, run_residents(inputs), places(inputs), inputs.read(SILVER_AREA), as_of=inputs.as_of
    )


def _update(inputs: Inputs) -> Write:
    """The whole series recomputed, only the rows that differ written.

    Age bands are taken at ``as_of``: a person's birthday moves them to another band on every past day
    of the series, and a new resident raises every day's denominator, so no day range bounds what a run
    changes. The computation is per group and day (areas x age bands x days), small next to the events;
    MERGE rewrites only the files whose rows changed.
    """
    return merge(_build(inputs), inputs.stored(GOLD_VACCINATION_COVERAGE))


VACCINATION_COVERAGE = DerivedTable(
    name=GOLD_VACCINATION_COVERAGE,
    key=("date", "level", "unit_code", "age_band"),
    reads=(SILVER_IMMUNIZATION, SILVER_PERSON_XREF, SILVER_PATIENT_RECORD, GOLD_PATIENT_360, SILVER_AREA),
    build=_build,
    update=_update,
)
