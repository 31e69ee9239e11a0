"""``gold.encounter_facts``: one row per encounter with its person, length of stay and 30-day readmission.

Pure ``DataFrame -> DataFrame`` functions; the publish stage reads silver and writes gold.

**30-day readmission** (computed across institutions: a readmission to another hospital counts). An
inpatient stay that ended (a discharge time, not cancelled) is *readmitted* when the same person's next
inpatient admission, at any institution, starts 1 to 30 days after the discharge date. An admission on the
discharge day itself is a transfer (one episode of care), not a readmission. Stays of records not linked to
a person (no ``silver.person_xref`` row) get NULL: whether they were readmitted is unknown.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

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


def encounter_facts(encounters: DataFrame, person_xref: DataFrame) -> DataFrame:
    """One row per encounter that was not cancelled, with its person and readmission flags.

    Args:
        encounters: ``silver.encounter``.
        person_xref: ``silver.person_xref`` (``institution_id``, ``source_patient_id`` → ``person_id``).

    Returns:
        ``ENCOUNTER_FACT_COLUMNS``: ``length_of_stay_days`` (discharge date minus admission date, inpatient
        stays that ended; 0 for a same-day stay), ``is_index_stay`` (an inpatient stay that ended, of a
        linked person: the denominator of the readmission rate), ``readmitted_30d`` (see the module),
        ``is_readmission_30d`` (this admission follows the person's previous discharge by 1–30 days), and
        ``days_to_next_admission``.
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
    gap = F.datediff(F.to_date("_next"), F.to_date("discharge_time"))
    since = F.datediff(F.to_date("admit_time"), F.to_date("_previous"))
    index = ended & linked
    stay_days = F.greatest(F.datediff(F.to_date("discharge_time"), F.to_date("admit_time")), F.lit(0))
    return facts.select(
        *keys,
        "person_id",
        "encounter_class",
        "admit_time",
        "discharge_time",
        F.to_date("admit_time").alias("admit_date"),
        F.when(ended, stay_days).alias("length_of_stay_days"),
        index.alias("is_index_stay"),
        F.when(index, F.coalesce(gap.between(1, READMISSION_DAYS), F.lit(False))).alias("readmitted_30d"),
        F.when(inpatient & linked, F.coalesce(since.between(1, READMISSION_DAYS), F.lit(False))).alias(
            "is_readmission_30d"
        ),
        F.when(index, gap).alias("days_to_next_admission"),
    )


def with_institution_area(facts: DataFrame, institution_paths: DataFrame) -> DataFrame:
    """Add the institution's area: ``institution_area_code``, ``township_code`` … ``province_code``.

    Args:
        facts: ``encounter_facts`` rows.
        institution_paths: ``healthlake.gold.areas.institution_paths``.
    """
    places = institution_paths.drop("institution_name")
    return facts.join(F.broadcast(places), "institution_id", "left")
