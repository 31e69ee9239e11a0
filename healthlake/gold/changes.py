"""What a day of silver changes touches, shared by the person-level gold tables' incremental rules.

Every gold table that is per person (encounter facts, the patient view, chronic-disease rows) is touched
by the same things: source patients with changed events, links of the EMPI that moved (a record now of
another person), and golden records that changed. Each set is made once per run (``Inputs.once``) and kept
as a local checkpoint where several tables join it.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from healthlake import io
from healthlake.catalog import SILVER_ENCOUNTER, SILVER_PERSON, SILVER_PERSON_XREF
from healthlake.derived import Inputs

PATIENT = ["institution_id", "source_patient_id"]
"""A source patient: the institution and its own patient number."""
RECORD = ["institution_id", "source_record_id"]
"""A source record: the institution and its own record number."""
_PERSON_COLUMNS = [
    "person_id",
    "status",
    "resident_id_token",
    "sex",
    "birth_date",
    "area_code",
    "record_count",
    "institution_count",
]


def union(frames: list[DataFrame]) -> DataFrame:
    """The rows of every frame (by column name)."""
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def fed_changes(inputs: Inputs, table: str, cols: list[str]) -> DataFrame:
    """``cols`` of the rows ``table``'s change feed holds since the last run (none when it did not move)."""
    feed = inputs.changes(table)
    return (feed if feed is not None else inputs.read(table).limit(0)).select(cols)


def link_changes(inputs: Inputs) -> DataFrame:
    """``(institution_id, source_patient_id, person_id)`` links added or removed since the last run (cached).

    From the xref's change feed when it has one (``healthlake link`` creates it so): rows whose link did
    not move come along too (an update's two images), which only widens what is recomputed. Otherwise the
    two versions are compared in full.
    """

    def make() -> DataFrame:
        cols = [*PATIENT, "person_id"]
        if io.has_change_feed(inputs.spark, inputs.lake, SILVER_PERSON_XREF):
            return inputs.keep(fed_changes(inputs, SILVER_PERSON_XREF, cols))
        before = inputs.read_before(SILVER_PERSON_XREF).select(cols)
        now = inputs.read(SILVER_PERSON_XREF).select(cols)
        return inputs.keep(now.subtract(before).unionByName(before.subtract(now)))

    return inputs.once("gold.changes.links", make)


def encounter_changes(inputs: Inputs) -> DataFrame | None:
    """The encounters changed since the last run (both images of an update): record, patient and
    ``admit_time`` (cached); None when ``silver.encounter`` did not move."""
    if inputs.changes(SILVER_ENCOUNTER) is None:
        return None

    def make() -> DataFrame:
        feed = inputs.changes(SILVER_ENCOUNTER)
        assert feed is not None
        return inputs.keep(feed.select(*RECORD, *PATIENT, "admit_time"))

    return inputs.once("gold.changes.encounters", make)


def changed_patients(inputs: Inputs) -> DataFrame:
    """Source patients with a changed encounter or link (cached)."""

    def make() -> DataFrame:
        patients = [link_changes(inputs).select(*PATIENT)]
        encounters = encounter_changes(inputs)
        if encounters is not None:
            patients.append(encounters.select(*PATIENT))
        return inputs.keep(union(patients).distinct())

    return inputs.once("gold.changes.patients", make)


def persons_of(inputs: Inputs, patients: DataFrame) -> DataFrame:
    """The persons (before and now) of some source patients."""
    before = inputs.read_before(SILVER_PERSON_XREF)
    return union(
        [
            x.join(patients, PATIENT, "left_semi").select("person_id")
            for x in (inputs.read(SILVER_PERSON_XREF), before)
        ]
    )


def relinked_persons(inputs: Inputs) -> DataFrame:
    """Persons whose links moved since the last run, before or after (a local checkpoint): their
    person-level rows are recomputed from their whole history."""

    def make() -> DataFrame:
        links = link_changes(inputs)
        relinked = union([persons_of(inputs, links.select(*PATIENT)), links.select("person_id")])
        return inputs.materialised(relinked.where(F.col("person_id").isNotNull()).distinct())

    return inputs.once("gold.changes.relinked", make)


def person_changes(inputs: Inputs) -> DataFrame:
    """``person_id`` of the golden records changed since the last run (change feed, else a comparison)."""
    if io.has_change_feed(inputs.spark, inputs.lake, SILVER_PERSON):
        return fed_changes(inputs, SILVER_PERSON, ["person_id"])
    before = inputs.read_before(SILVER_PERSON).select(_PERSON_COLUMNS)
    now = inputs.read(SILVER_PERSON).select(_PERSON_COLUMNS)
    return now.subtract(before).select("person_id").unionByName(before.subtract(now).select("person_id"))
