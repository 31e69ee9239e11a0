"""``gold.encounter_facts``: one row per encounter with its person, length of stay and 30-day readmission.

Pure ``DataFrame -> DataFrame`` functions, and the table's definition (``ENCOUNTER_FACTS``: its full build
and its incremental rule, ``healthlake.derived``).

**Days are local.** Times are instants (UTC); every date and day count here is taken on the calendar of the
region's time zone (``region.timezone``, passed as ``zone``; ``healthlake.localtime``): an admission at
03:00 Beijing time is on that Beijing day.

**30-day readmission** (computed across institutions: a readmission to another hospital counts). An
inpatient stay that ended (a discharge time, not cancelled) is *readmitted* when the same person's next
inpatient admission, at any institution, starts 1 to 30 local days after the discharge date. An admission on
the discharge day itself is a transfer (one episode of care), not a readmission. Stays of records not linked
to a person (no ``silver.person_xref`` row) get NULL: whether they were readmitted is unknown.
"""

from __future__ import annotations

import logging

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from healthlake import io
from healthlake.catalog import (
    GOLD_ENCOUNTER_FACTS,
    SILVER_AREA,
    SILVER_ENCOUNTER,
    SILVER_INSTITUTION,
    SILVER_PERSON_XREF,
)
from healthlake.derived import DerivedTable, Inputs, Write, merge
from healthlake.gold.areas import registered_places
from healthlake.gold.changes import (
    PATIENT,
    RECORD,
    changed_patients,
    encounter_changes,
    link_changes,
    relinked_persons,
    union,
)
from healthlake.localtime import local_date, local_days_between

log = logging.getLogger(__name__)

READMISSION_DAYS = 30
"""Days after a discharge within which a new inpatient admission counts as a readmission."""

ENCOUNTER_FACT_COLUMNS = (
    "institution_id",
    "source_record_id",
    "person_id",
    "encounter_class",
    "admit_time",
    "discharge_time",
    "admit_date",
    "length_of_stay_days",
    "is_index_stay",
    "readmitted_30d",
    "is_readmission_30d",
    "days_to_next_admission",
)


def encounter_facts(encounters: DataFrame, person_xref: DataFrame, *, zone: str) -> DataFrame:
    """One row per encounter that was not cancelled, with its person and readmission flags.

    Args:
        encounters: ``silver.encounter``.
        person_xref: ``silver.person_xref`` (``institution_id``, ``source_patient_id`` → ``person_id``).
        zone: The region's time zone, whose calendar gives the dates and day counts.

    Returns:
        ``ENCOUNTER_FACT_COLUMNS``: ``admit_date`` (the local date of ``admit_time``),
        ``length_of_stay_days`` (local discharge date minus local admission date, inpatient stays that
        ended; 0 for a same-day stay), ``is_index_stay`` (an inpatient stay that ended, of a linked person:
        the denominator of the readmission rate), ``readmitted_30d`` (see the module),
        ``is_readmission_30d`` (this admission follows the person's previous discharge by 1–30 local
        days), and ``days_to_next_admission`` (local days).
    """
    keys = ["institution_id", "source_record_id"]
    persons = person_xref.select("institution_id", "source_patient_id", "person_id")
    kept = encounters.where(~F.coalesce(F.col("is_cancelled"), F.lit(False))).join(
        persons, ["institution_id", "source_patient_id"], "left"
    )
    inpatient = F.col("encounter_class") == "inpatient"
    ended = inpatient & F.col("discharge_time").isNotNull() & F.col("admit_time").isNotNull()
    linked = F.col("person_id").isNotNull()
    # The next and previous inpatient admissions of the same person, at whichever institution.
    order = Window.partitionBy("person_id").orderBy("admit_time", *keys)
    stays = kept.where(inpatient & linked & F.col("admit_time").isNotNull()).select(
        *keys,
        F.lead("admit_time").over(order).alias("_next"),
        F.lag(F.when(ended, F.col("discharge_time"))).over(order).alias("_previous"),
    )
    facts = kept.join(stays, keys, "left")
    admitted, discharged = F.col("admit_time"), F.col("discharge_time")
    gap = local_days_between(discharged, F.col("_next"), zone)
    since = local_days_between(F.col("_previous"), admitted, zone)
    index = ended & linked
    stay_days = F.greatest(local_days_between(admitted, discharged, zone), F.lit(0))
    return facts.select(
        *keys,
        "person_id",
        "encounter_class",
        "admit_time",
        "discharge_time",
        local_date(admitted, zone).alias("admit_date"),
        F.when(ended, stay_days).alias("length_of_stay_days"),
        index.alias("is_index_stay"),
        F.when(index, F.coalesce(gap.between(1, READMISSION_DAYS), F.lit(False))).alias("readmitted_30d"),
        F.when(inpatient & linked, F.coalesce(since.between(1, READMISSION_DAYS), F.lit(False))).alias(
            "is_readmission_30d"
        ),
        F.when(index, gap).alias("days_to_next_admission"),
    )


def recompute_bounds(
    changed: DataFrame, person_xref: DataFrame, stored_facts: DataFrame, whole: DataFrame
) -> DataFrame:
    """From when each affected person's encounter facts must be recomputed after some encounters changed.

    An encounter's facts depend on the person's other encounters only through the inpatient stays just
    before and after it (``_next`` and ``_previous`` in ``encounter_facts``), and only an inpatient
    stay's facts depend on them at all. So when a person's earliest changed encounter was admitted at
    ``t0``, the facts that can move are those of the encounters admitted from ``t0`` on and of the
    inpatient stays from the last one before ``t0`` (call it A: its next admission may now differ) on;
    recomputing them needs the stay before A (B) as well, for A's previous discharge.
    ``recompute_scope`` and ``replaced_scope`` say which encounters and facts those are.

    Args:
        changed: Changed encounter rows (both images of an update), with ``institution_id``,
            ``source_patient_id`` and ``admit_time``.
        person_xref: ``silver.person_xref`` now.
        stored_facts: ``gold.encounter_facts`` as stored (before this change).
        whole: ``person_id`` of persons to recompute whole (their links moved).

    Returns:
        ``person_id``, ``recompute_from`` (inpatient stays admitted from then feed the recomputation;
        null: all encounters), ``keep_from`` (inpatient facts admitted from then are replaced; null: all
        facts) and ``changed_from`` (``t0``: every encounter and fact admitted from then is recomputed
        and replaced): ``t0`` and ``t0`` without a stay before it, A and A with one, B and A with more;
        all three null for ``whole`` persons, for a changed encounter without an admission time, or when
        A and B tie.
    """
    patients = ["institution_id", "source_patient_id"]
    firsts = (
        changed.join(person_xref.select(*patients, "person_id"), patients)
        .groupBy("person_id")
        .agg(
            F.min("admit_time").alias("_t0"),
            F.max(F.col("admit_time").isNull().cast("int")).alias("_undated"),
        )
        .join(whole, "person_id", "left_anti")
    )
    stays = stored_facts.where(
        (F.col("encounter_class") == "inpatient") & F.col("admit_time").isNotNull()
    ).join(firsts.where(F.col("_undated") == 0), "person_id")
    latest_first = Window.partitionBy("person_id").orderBy(
        F.desc("admit_time"), F.desc("institution_id"), F.desc("source_record_id")
    )
    before = (
        stays.where(F.col("admit_time") < F.col("_t0"))
        .select("person_id", "admit_time", F.row_number().over(latest_first).alias("_n"))
        .where(F.col("_n") <= 2)
        .groupBy("person_id")
        .agg(
            F.max(F.when(F.col("_n") == 1, F.col("admit_time"))).alias("_a"),
            F.max(F.when(F.col("_n") == 2, F.col("admit_time"))).alias("_b"),
        )
    )
    bounded = firsts.join(before, "person_id", "left")
    tie = F.col("_b").isNotNull() & (F.col("_b") == F.col("_a"))
    whole_history = (F.col("_undated") == 1) | tie
    none = F.lit(None).cast("timestamp")
    windowed = bounded.select(
        "person_id",
        F.when(whole_history, none).otherwise(F.coalesce("_b", "_a", "_t0")).alias("recompute_from"),
        F.when(whole_history, none).otherwise(F.coalesce("_a", "_t0")).alias("keep_from"),
        F.when(whole_history, none).otherwise(F.col("_t0")).alias("changed_from"),
    )
    return windowed.unionByName(
        whole.select(
            "person_id", none.alias("recompute_from"), none.alias("keep_from"), none.alias("changed_from")
        )
    )


def recompute_scope() -> Column:
    """Whether an encounter, joined to its person's ``recompute_bounds``, feeds the recomputation.

    Outpatient and emergency encounters before ``changed_from`` are left out: their facts depend on no
    other encounter, so they neither move nor move anything.
    """
    return _scope("recompute_from")


def replaced_scope() -> Column:
    """Whether a fact, joined to its person's ``recompute_bounds``, is replaced by the recomputation."""
    return _scope("keep_from")


def _scope(bound: str) -> Column:
    admitted = F.col("admit_time")
    inpatient = F.col("encounter_class") == "inpatient"
    return (
        F.col(bound).isNull() | (admitted >= F.col("changed_from")) | (inpatient & (admitted >= F.col(bound)))
    )


def with_institution_area(facts: DataFrame, institution_paths: DataFrame) -> DataFrame:
    """Add the institution's area: ``institution_area_code``, ``township_code`` … ``province_code``.

    Args:
        facts: ``encounter_facts`` rows.
        institution_paths: ``healthlake.gold.areas.institution_paths``.
    """
    places = institution_paths.drop("institution_name")
    return facts.join(F.broadcast(places), "institution_id", "left")


def _build(inputs: Inputs) -> DataFrame:
    facts = encounter_facts(inputs.read(SILVER_ENCOUNTER), inputs.read(SILVER_PERSON_XREF), zone=inputs.zone)
    places = registered_places(inputs)
    return facts.transform(lambda df: with_institution_area(df, places))


def _update(inputs: Inputs) -> Write:
    """The facts of the encounters a day changed, and of the encounters whose facts depend on them.

    Persons whose links moved are recomputed whole; the others from their first changed encounter
    (``recompute_bounds``); encounters of changed patients that have no person are recomputed too. The
    recomputed facts replace the stored facts of the same scope, so the result equals a full build.
    """
    xref, encounters = inputs.read(SILVER_PERSON_XREF), inputs.read(SILVER_ENCOUNTER)
    changes, patients = encounter_changes(inputs), changed_patients(inputs)
    old_all = inputs.stored(GOLD_ENCOUNTER_FACTS)
    if changes is not None:
        changed = changes
    else:
        no_time = F.lit(None).cast("timestamp").alias("admit_time")
        changed = link_changes(inputs).select(*PATIENT, no_time).limit(0)
    bounds = inputs.materialised(recompute_bounds(changed, xref, old_all, relinked_persons(inputs)))
    # The earliest changed admission: what a dated bound recomputes is an inpatient stay or admitted from
    # then on, so the encounters and facts are narrowed by it before they are joined.
    first_change = io.one_row(changed.agg(F.min("admit_time")))[0]  # one aggregate row
    if log.isEnabledFor(logging.INFO):  # counting is an action: only when someone reads it
        log.info("publish: %d source patients, %d persons changed", patients.count(), bounds.count())
    # Each affected person's encounters in their recompute scope, and every encounter of a changed patient
    # that has no person. Persons recomputed whole (links moved, an undated change) are apart from those
    # with a dated bound, so that each set is joined at its own size.
    unlinked = patients.join(xref, PATIENT, "left_anti")
    whole = inputs.materialised(bounds.where(F.col("changed_from").isNull()).select("person_id"))
    whole_scope = inputs.materialised(
        xref.join(whole, "person_id").select(*PATIENT).unionByName(unlinked.select(*PATIENT))
    )
    inpatient = F.col("encounter_class") == "inpatient"
    recompute = [encounters.join(whole_scope, PATIENT)]
    touched = [old_all.join(whole, "person_id")]
    if first_change is not None:
        dated = inputs.materialised(bounds.where(F.col("changed_from").isNotNull()))
        dated_scope = inputs.materialised(
            xref.join(dated, "person_id").select(*PATIENT, "recompute_from", "changed_from")
        )
        candidate = inpatient | (F.col("admit_time") >= F.lit(first_change))
        recompute.append(
            encounters.where(candidate)
            .join(dated_scope, PATIENT)
            .where(recompute_scope())
            .select(*encounters.columns)
        )
        touched.append(old_all.where(candidate).join(dated, "person_id").where(replaced_scope()))
    places = registered_places(inputs)
    new_facts = (
        encounter_facts(union(recompute), xref, zone=inputs.zone)
        .join(bounds.select("person_id", "keep_from", "changed_from"), "person_id", "left")
        .where(replaced_scope())
        .transform(lambda df: with_institution_area(df, places))
    )
    if changes is not None:
        # The stored facts of changed encounters whose person is in no bound (unlinked before).
        dated_or_undated = F.col("admit_time").isNull()
        if first_change is not None:
            dated_or_undated = dated_or_undated | (F.col("admit_time") >= F.lit(first_change))
        touched.append(
            old_all.where(dated_or_undated).join(changes.select(*RECORD).distinct(), RECORD, "left_semi")
        )
    old_facts = inputs.keep(union([t.select(*old_all.columns) for t in touched]).distinct())
    return merge(inputs.keep(new_facts.select(*old_all.columns)), old_facts)


# A day's MERGE updates stored inpatient stays (the readmission of the stay before a new admission) and adds
# new encounters. With the stays in files of their own it rewrites those files only, and writes the day's
# clinic and emergency visits as new files, instead of rewriting every file of the lake's encounters.
ENCOUNTER_FACTS = DerivedTable(
    name=GOLD_ENCOUNTER_FACTS,
    key=tuple(RECORD),
    reads=(SILVER_ENCOUNTER, SILVER_PERSON_XREF, SILVER_INSTITUTION, SILVER_AREA),
    build=_build,
    update=_update,
    fed_by=(SILVER_ENCOUNTER,),
    rebuild_on=(SILVER_AREA, SILVER_INSTITUTION),
    partition_by=("encounter_class",),
)
"""``gold.encounter_facts``: one row per encounter (``institution_id``, ``source_record_id``) that was not
cancelled. Incremental: the facts in each affected person's recompute scope are recomputed and merged;
since an encounter's facts depend only on the person's stays just before and after it, this equals a full
build."""
