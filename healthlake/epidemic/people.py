"""Who and where: the persons the epidemic tables count, their home areas, and the residents.

A test, a vaccination or an isolation order belongs to a source patient; the EMPI
(``silver.person_xref``) says which person that is, and ``gold.patient_360`` where the person lives (the
area path township → province) and their age band. Residents are the persons the population registry
holds: the denominator of every coverage figure.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from healthlake.catalog import GOLD_PATIENT_360, SILVER_PATIENT_RECORD, SILVER_PERSON_XREF
from healthlake.derived import Inputs
from healthlake.gold.areas import PATH_COLUMNS

PLACE_COLUMNS = ("area_code", *PATH_COLUMNS)
"""A person's home area and its path up to the province (``gold.patient_360``)."""
REGISTRY_SOURCE = "csv_registry"
"""``silver.patient_record.record_source`` of the population registry's records."""
UNKNOWN_AREA = "unknown"
"""``unit_code`` of the rows counting persons whose area at that level is not known."""


def with_person(events: DataFrame, person_xref: DataFrame) -> DataFrame:
    """Source-patient events with their EMPI ``person_id`` (NULL for a patient not linked yet)."""
    links = person_xref.select("institution_id", "source_patient_id", "person_id")
    return events.join(links, ["institution_id", "source_patient_id"], "left")


def person_places(patients: DataFrame) -> DataFrame:
    """``person_id``, the home area path and ``age_band`` of each person (from ``gold.patient_360``)."""
    return patients.select("person_id", *PLACE_COLUMNS, "age_band")


def residents(patient_records: DataFrame, person_xref: DataFrame) -> DataFrame:
    """The persons the population registry holds (one row each: ``person_id``)."""
    registry = patient_records.where(F.col("record_source") == REGISTRY_SOURCE).select(
        "institution_id", "source_patient_id"
    )
    return (
        with_person(registry, person_xref)
        .where(F.col("person_id").isNotNull())
        .select("person_id")
        .distinct()
    )


def places(inputs: Inputs) -> DataFrame:
    """``person_places`` of the run (made once)."""
    return inputs.once("epidemic.places", lambda: person_places(inputs.read(GOLD_PATIENT_360)))


def run_residents(inputs: Inputs) -> DataFrame:
    """``residents`` of the run (made once)."""
    return inputs.once(
        "epidemic.residents",
        lambda: residents(inputs.read(SILVER_PATIENT_RECORD), inputs.read(SILVER_PERSON_XREF)),
    )


def moved_persons(inputs: Inputs) -> DataFrame:
    """Persons whose home area or age band differs from the last run's ``gold.patient_360`` (``person_id``).

    ``gold.patient_360`` is publish's table, pinned here like silver: comparing the version the last run
    read with this run's finds the persons whose past rows count under another area now.
    """
    now = person_places(inputs.read(GOLD_PATIENT_360))
    if inputs.last is None or GOLD_PATIENT_360 not in inputs.last.versions:
        return now.select("person_id")
    before = person_places(inputs.read_before(GOLD_PATIENT_360))
    return (
        now.exceptAll(before).select("person_id").union(before.exceptAll(now).select("person_id")).distinct()
    )


def residents_moved(inputs: Inputs) -> bool:
    """Whether the set of residents differs from the last run's (a birth, a death, a move in or out).

    Compares the residents of the pinned registry and links with those of the versions the last run read;
    False when neither input moved.
    """
    if inputs.last is None:
        return True
    if not (inputs.moved(SILVER_PATIENT_RECORD) or inputs.moved(SILVER_PERSON_XREF)):
        return False
    before = residents(inputs.read_before(SILVER_PATIENT_RECORD), inputs.read_before(SILVER_PERSON_XREF))
    now = run_residents(inputs)
    differ = now.exceptAll(before).union(before.exceptAll(now)).limit(1)
    return bool(differ.count())


def roll_up_areas(per_area: DataFrame, keys: list[str], measures: list[str], names: DataFrame) -> DataFrame:
    """Additive measures of rows placed by a person's area path, summed to every area level.

    Args:
        per_area: Rows with ``keys``, the path columns (``township_code`` … ``province_code``) and the
            additive ``measures``.
        keys: Grouping columns besides the area (e.g. ``date``).
        measures: Additive columns (never rates: recompute those from the sums).
        names: ``silver.area`` (``area_code``, ``name``).

    Returns:
        ``keys``, ``level`` (``township``, ``county``, ``city``, ``province``), ``unit_code``, ``unit_name``
        and the measures. Rows of persons whose area is not known at a level are summed under
        ``unit_code`` ``unknown`` at that level, so every level adds up to the same total.
    """
    labels = names.select(F.col("area_code").alias("unit_code"), F.col("name").alias("unit_name"))
    levels = [c.removesuffix("_code") for c in PATH_COLUMNS]
    out = None
    for level in levels:
        code = F.coalesce(F.col(f"{level}_code"), F.lit(UNKNOWN_AREA)).alias("unit_code")
        summed = (
            per_area.groupBy(*keys, code)
            .agg(*[F.sum(m).alias(m) for m in measures])
            .join(F.broadcast(labels), "unit_code", "left")
            .withColumn("level", F.lit(level))
        )
        out = summed if out is None else out.unionByName(summed)
    assert out is not None
    return out.select(*keys, "level", "unit_code", "unit_name", *measures)
