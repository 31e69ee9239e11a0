"""OMOP CDM 5.4 tables built from silver: pure ``DataFrame -> DataFrame`` transformations.

Nothing here reads, writes or runs an action; ``healthlake.pipelines.omop`` reads silver, keeps the id map
(``omop.id_map``) and writes the tables. Every function returns all columns of its CDM table, in CDM order
and with CDM types (``CDM_COLUMNS``); what silver does not hold is NULL.

Vocabulary: only concept ids confirmed from a public source are mapped (the dicts below, sources in
``docs/omop.md``). Anything else gets concept 0 ("No matching concept") and keeps its code in the
``*_source_value`` column, with ``*_source_concept_id`` 0.

Dates and times: every ``*_date`` column is the local date, and ``measurement_time`` the local clock, of the
region's time zone (``region.timezone``, passed as ``zone``); every ``*_datetime`` column is the instant as
silver holds it (a UTC timestamp: shown in the region's zone it reads as the local clock).

Rows kept: events that are not cancelled and whose source patient the EMPI linked
(``silver.person_xref``) to an exported person. A person is exported when active in ``silver.person`` and
with a known birth year (``year_of_birth`` is required by the CDM).
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from healthlake.localtime import local_date, local_time_of_day

NO_MATCHING_CONCEPT = 0
"""Concept 0, "No matching concept": the CDM's value for a code we cannot map."""

EHR = 32817
"""Type concept "EHR" (vocabulary Type Concept, code OMOP4976890): the provenance of every row we export."""

GENDER_CONCEPTS: dict[str, int] = {"M": 8507, "F": 8532}
"""``silver.person.sex`` → gender concept (MALE, FEMALE); 'U' and NULL get 0."""

VISIT_CONCEPTS: dict[str, int] = {"inpatient": 9201, "outpatient": 9202, "emergency": 9203}
"""``silver.encounter.encounter_class`` → visit concept (Inpatient Visit, Outpatient Visit, Emergency Room
Visit); 'other' gets 0."""

MEASUREMENT_CONCEPTS: dict[str, int] = {
    "8480-6": 3004249,  # Systolic blood pressure
    "8462-4": 3012888,  # Diastolic blood pressure
    "8867-4": 3027018,  # Heart rate
    "8310-5": 3020891,  # Body temperature
    "14749-6": 3013826,  # Glucose [Moles/volume] in Serum or Plasma
    "2345-7": 3004501,  # Glucose [Mass/volume] in Serum or Plasma: a source code (silver stores 14749-6)
    "1558-6": 3037110,  # Fasting glucose [Mass/volume] in Serum or Plasma: a source code (silver: 14771-0)
}
"""LOINC code → standard measurement concept: of ``silver.observation.loinc`` for the measurement, of the
LOINC code as sent for the source concept."""

UNIT_CONCEPTS: dict[str, int] = {
    "mm[Hg]": 8876,  # millimeter mercury column
    "mmol/L": 8753,  # millimole per liter
    "umol/L": 8749,  # micromole per liter
    "Cel": 586323,  # degree Celsius
}
"""UCUM unit (``silver.observation.unit``) → unit concept. '/min' and '10*9/L' are left unmapped (0): their
concept ids could not be confirmed from a source."""

ENTITY_PERSON = "person"
ENTITY_VISIT = "visit_occurrence"
ENTITY_CONDITION = "condition_occurrence"
ENTITY_MEASUREMENT = "measurement"
ENTITY_DRUG = "drug_exposure"
ENTITIES = (ENTITY_PERSON, ENTITY_VISIT, ENTITY_CONDITION, ENTITY_MEASUREMENT, ENTITY_DRUG)
"""The ``entity`` values of the id map; each is also the OMOP table whose primary key it gives."""

ID_MAP_COLUMNS = ("entity", "source_key", "omop_id")
"""Columns of the id map: ``entity`` (string), ``source_key`` (string), ``omop_id`` (bigint)."""

_CDM_SPEC: dict[str, str] = {
    "person": (
        "person_id bigint, gender_concept_id int, year_of_birth int, month_of_birth int, day_of_birth int, "
        "birth_datetime timestamp, race_concept_id int, ethnicity_concept_id int, location_id bigint, "
        "provider_id bigint, care_site_id bigint, person_source_value string, gender_source_value string, "
        "gender_source_concept_id int, race_source_value string, race_source_concept_id int, "
        "ethnicity_source_value string, ethnicity_source_concept_id int"
    ),
    "observation_period": (
        "observation_period_id bigint, person_id bigint, observation_period_start_date date, "
        "observation_period_end_date date, period_type_concept_id int"
    ),
    "visit_occurrence": (
        "visit_occurrence_id bigint, person_id bigint, visit_concept_id int, visit_start_date date, "
        "visit_start_datetime timestamp, visit_end_date date, visit_end_datetime timestamp, "
        "visit_type_concept_id int, provider_id bigint, care_site_id bigint, visit_source_value string, "
        "visit_source_concept_id int, admitted_from_concept_id int, admitted_from_source_value string, "
        "discharged_to_concept_id int, discharged_to_source_value string, "
        "preceding_visit_occurrence_id bigint"
    ),
    "condition_occurrence": (
        "condition_occurrence_id bigint, person_id bigint, condition_concept_id int, "
        "condition_start_date date, condition_start_datetime timestamp, condition_end_date date, "
        "condition_end_datetime timestamp, condition_type_concept_id int, condition_status_concept_id int, "
        "stop_reason string, provider_id bigint, "
        "visit_occurrence_id bigint, visit_detail_id bigint, condition_source_value string, "
        "condition_source_concept_id int, condition_status_source_value string"
    ),
    "drug_exposure": (
        "drug_exposure_id bigint, person_id bigint, drug_concept_id int, drug_exposure_start_date date, "
        "drug_exposure_start_datetime timestamp, drug_exposure_end_date date, "
        "drug_exposure_end_datetime timestamp, "
        "verbatim_end_date date, drug_type_concept_id int, stop_reason string, refills int, quantity double, "
        "days_supply int, sig string, route_concept_id int, lot_number string, provider_id bigint, "
        "visit_occurrence_id bigint, visit_detail_id bigint, drug_source_value string, "
        "drug_source_concept_id int, route_source_value string, dose_unit_source_value string"
    ),
    "measurement": (
        "measurement_id bigint, person_id bigint, measurement_concept_id int, measurement_date date, "
        "measurement_datetime timestamp, measurement_time string, measurement_type_concept_id int, "
        "operator_concept_id int, value_as_number double, value_as_concept_id int, unit_concept_id int, "
        "range_low double, range_high double, provider_id bigint, visit_occurrence_id bigint, "
        "visit_detail_id bigint, measurement_source_value string, measurement_source_concept_id int, "
        "unit_source_value string, unit_source_concept_id int, value_source_value string, "
        "measurement_event_id bigint, meas_event_field_concept_id int"
    ),
}

CDM_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    table: tuple((name, sql_type) for name, sql_type in (part.split() for part in spec.split(",")))
    for table, spec in _CDM_SPEC.items()
}
"""OMOP table → its CDM 5.4 columns ``(name, Spark SQL type)`` in CDM order. Ids are BIGINT."""

_LINK = ["institution_id", "source_patient_id"]


def source_key(*columns: Column | str) -> Column:
    """An unambiguous text key from several columns: a JSON array such as ``["H1","e1"]``.

    A plain separator would let ``("a|b", "c")`` and ``("a", "b|c")`` collide; JSON quoting cannot.
    """
    return F.to_json(F.array(*[F.col(c) if isinstance(c, str) else c for c in columns]))


def source_keys(
    persons: DataFrame,
    person_xref: DataFrame,
    encounters: DataFrame,
    diagnoses: DataFrame,
    observations: DataFrame,
    medications: DataFrame,
) -> DataFrame:
    """The ``(entity, source_key)`` pairs that need an OMOP id: one per row the tables will export.

    Args:
        persons: ``silver.person``.
        person_xref: ``silver.person_xref``.
        encounters: ``silver.encounter``.
        diagnoses: ``silver.diagnosis``.
        observations: ``silver.observation``.
        medications: ``silver.medication``.

    Returns:
        Distinct ``entity``, ``source_key``: persons keyed by their EMPI ``person_id``, events by
        ``source_key(institution_id, source_record_id)``.
    """
    kept = _exported_persons(persons).select("person_id")
    links = person_xref.select(*_LINK, "person_id").join(kept, "person_id")
    parts = [kept.select(F.lit(ENTITY_PERSON).alias("entity"), F.col("person_id").alias("source_key"))]
    for entity, events in (
        (ENTITY_VISIT, encounters),
        (ENTITY_CONDITION, diagnoses),
        (ENTITY_MEASUREMENT, observations),
        (ENTITY_DRUG, medications),
    ):
        linked = _not_cancelled(events).join(links, _LINK)
        parts.append(
            linked.select(
                F.lit(entity).alias("entity"),
                source_key("institution_id", "source_record_id").alias("source_key"),
            )
        )
    keys = parts[0]
    for part in parts[1:]:
        keys = keys.unionByName(part)
    return keys.distinct()


def person(persons: DataFrame, id_map: DataFrame, observation_periods: DataFrame) -> DataFrame:
    """``person``: one row per exported EMPI person with an observation period, birth year and month only.

    A golden record with no exported event (a resident known only from a health record, say) has no time
    in observation, and OHDSI tools expect every person to have some (DQD's person-completeness check on
    ``observation_period``): such persons are left out until they have an event.

    Args:
        persons: ``silver.person`` (the golden records).
        id_map: The id map (``entity``, ``source_key``, ``omop_id``) holding every exported person.
        observation_periods: The exported ``observation_period``.

    Returns:
        CDM ``person``. ``person_source_value`` is the EMPI ``person_id`` here; the export pipeline replaces
        it with the research release's key before writing. The day of birth, location and the identity
        tokens are not exported.
    """
    ids = _ids(id_map, ENTITY_PERSON).withColumnRenamed("source_key", "person_id")
    observed = observation_periods.select(F.col("person_id").alias("omop_id"))
    kept = _exported_persons(persons).join(ids, "person_id").join(observed, "omop_id", "left_semi")
    return _conform(
        kept.select(
            F.col("omop_id").alias("person_id"),
            _lookup(GENDER_CONCEPTS, F.col("sex")).alias("gender_concept_id"),
            F.year("birth_date").alias("year_of_birth"),
            # Month but not day: the full birth date is a quasi-identifier we need not export.
            F.month("birth_date").alias("month_of_birth"),
            F.lit(NO_MATCHING_CONCEPT).alias("race_concept_id"),
            F.lit(NO_MATCHING_CONCEPT).alias("ethnicity_concept_id"),
            F.col("person_id").alias("person_source_value"),
            F.col("sex").alias("gender_source_value"),
            F.lit(NO_MATCHING_CONCEPT).alias("gender_source_concept_id"),
            F.lit(NO_MATCHING_CONCEPT).alias("race_source_concept_id"),
            F.lit(NO_MATCHING_CONCEPT).alias("ethnicity_source_concept_id"),
        ),
        "person",
    )


def visit_occurrence(
    encounters: DataFrame, person_xref: DataFrame, persons: DataFrame, id_map: DataFrame, *, zone: str
) -> DataFrame:
    """``visit_occurrence``: one row per encounter that was not cancelled, of a linked person.

    Args:
        encounters: ``silver.encounter``.
        person_xref: ``silver.person_xref``.
        persons: ``silver.person``.
        id_map: The id map, holding every exported person and encounter.
        zone: The region's time zone (dates are local dates).

    Returns:
        CDM ``visit_occurrence``. An encounter without an admission time is left out (the start date is
        required); one without a discharge time ends on its start (the CDM requires an end date).
        ``preceding_visit_occurrence_id`` is the person's previous visit at any institution.
    """
    visits = _events(encounters, person_xref, persons, id_map, ENTITY_VISIT).where(
        F.col("admit_time").isNotNull()
    )
    end = F.coalesce(F.col("discharge_time"), F.col("admit_time"))
    previous = Window.partitionBy("_person").orderBy("admit_time", "_id")
    return _conform(
        visits.select(
            F.col("_id").alias("visit_occurrence_id"),
            F.col("_person").alias("person_id"),
            _lookup(VISIT_CONCEPTS, F.col("encounter_class")).alias("visit_concept_id"),
            local_date(F.col("admit_time"), zone).alias("visit_start_date"),
            F.col("admit_time").alias("visit_start_datetime"),
            local_date(end, zone).alias("visit_end_date"),
            end.alias("visit_end_datetime"),
            F.lit(EHR).alias("visit_type_concept_id"),
            F.col("encounter_class").alias("visit_source_value"),
            F.lit(NO_MATCHING_CONCEPT).alias("visit_source_concept_id"),
            F.lit(NO_MATCHING_CONCEPT).alias("admitted_from_concept_id"),
            F.lit(NO_MATCHING_CONCEPT).alias("discharged_to_concept_id"),
            F.col("discharge_disposition").alias("discharged_to_source_value"),
            F.lag("_id").over(previous).alias("preceding_visit_occurrence_id"),
        ),
        "visit_occurrence",
    )


def condition_occurrence(
    diagnoses: DataFrame,
    person_xref: DataFrame,
    persons: DataFrame,
    id_map: DataFrame,
    visits: DataFrame,
    *,
    zone: str,
) -> DataFrame:
    """``condition_occurrence``: one row per diagnosis that was not cancelled, of a linked person.

    Args:
        diagnoses: ``silver.diagnosis``.
        person_xref: ``silver.person_xref``.
        persons: ``silver.person``.
        id_map: The id map, holding every exported person, encounter and diagnosis.
        visits: The exported ``visit_occurrence`` (a diagnosis points only at a visit that is exported).
        zone: The region's time zone (dates are local dates).

    Returns:
        CDM ``condition_occurrence``: ``condition_concept_id`` 0 (no ICD-10 → SNOMED map is verified here),
        ``condition_source_value`` the ICD-10 code (else the source code), ``condition_status_source_value``
        'primary' or 'secondary'. A diagnosis without a time takes its visit's start; with neither it is
        left out.
    """
    rows = _with_visit(_events(diagnoses, person_xref, persons, id_map, ENTITY_CONDITION), id_map, visits)
    start = F.coalesce(F.col("diagnosis_time"), F.col("_visit_start"))
    return _conform(
        rows.where(start.isNotNull()).select(
            F.col("_id").alias("condition_occurrence_id"),
            F.col("_person").alias("person_id"),
            F.lit(NO_MATCHING_CONCEPT).alias("condition_concept_id"),
            local_date(start, zone).alias("condition_start_date"),
            start.alias("condition_start_datetime"),
            F.lit(EHR).alias("condition_type_concept_id"),
            F.lit(NO_MATCHING_CONCEPT).alias("condition_status_concept_id"),
            F.col("_visit").alias("visit_occurrence_id"),
            F.coalesce(F.col("icd10_code"), F.col("code")).alias("condition_source_value"),
            F.lit(NO_MATCHING_CONCEPT).alias("condition_source_concept_id"),
            F.when(F.col("is_primary"), F.lit("primary"))
            .when(~F.col("is_primary"), F.lit("secondary"))
            .alias("condition_status_source_value"),
        ),
        "condition_occurrence",
    )


def measurement(
    observations: DataFrame,
    person_xref: DataFrame,
    persons: DataFrame,
    id_map: DataFrame,
    visits: DataFrame,
    *,
    zone: str,
) -> DataFrame:
    """``measurement``: one row per observation (vital sign or lab result) that was not cancelled.

    Args:
        observations: ``silver.observation``.
        person_xref: ``silver.person_xref``.
        persons: ``silver.person``.
        id_map: The id map, holding every exported person, encounter and observation.
        visits: The exported ``visit_occurrence``.
        zone: The region's time zone (the date and ``measurement_time`` are local).

    Returns:
        CDM ``measurement``: the concept from the silver LOINC code (``MEASUREMENT_CONCEPTS``, else 0);
        ``value_as_number`` in silver's standard unit, whose UCUM code is ``unit_source_value`` and mapped
        by ``UNIT_CONCEPTS`` (else 0); ``measurement_source_value`` the source code; the source concept is
        the concept of the LOINC code as sent (0 for a local code);
        ``value_source_value`` the value and unit as sent.
    """
    rows = _with_visit(
        _events(observations, person_xref, persons, id_map, ENTITY_MEASUREMENT), id_map, visits
    ).where(F.col("observation_time").isNotNull())
    concept = _lookup(MEASUREMENT_CONCEPTS, F.col("loinc"))
    unit_concept = _lookup(UNIT_CONCEPTS, F.col("unit"))
    original = F.concat_ws(" ", F.col("value_original").cast("string"), F.col("unit_original"))
    return _conform(
        rows.select(
            F.col("_id").alias("measurement_id"),
            F.col("_person").alias("person_id"),
            concept.alias("measurement_concept_id"),
            local_date(F.col("observation_time"), zone).alias("measurement_date"),
            F.col("observation_time").alias("measurement_datetime"),
            local_time_of_day(F.col("observation_time"), zone).alias("measurement_time"),
            F.lit(EHR).alias("measurement_type_concept_id"),
            F.col("value").alias("value_as_number"),
            unit_concept.alias("unit_concept_id"),
            F.col("_visit").alias("visit_occurrence_id"),
            F.col("code").alias("measurement_source_value"),
            # A LOINC code as sent is its own source concept (2345-7 for a glucose silver stores as
            # 14749-6); a local code has none in the vocabulary.
            F.when(F.col("code_system") == "LOINC", _lookup(MEASUREMENT_CONCEPTS, F.trim("code")))
            .otherwise(F.lit(NO_MATCHING_CONCEPT))
            .alias("measurement_source_concept_id"),
            F.col("unit").alias("unit_source_value"),
            unit_concept.alias("unit_source_concept_id"),
            F.when(original != "", original).alias("value_source_value"),
        ),
        "measurement",
    )


def drug_exposure(
    medications: DataFrame,
    person_xref: DataFrame,
    persons: DataFrame,
    id_map: DataFrame,
    visits: DataFrame,
    *,
    zone: str,
) -> DataFrame:
    """``drug_exposure``: one row per medication order that was not cancelled.

    Args:
        medications: ``silver.medication``.
        person_xref: ``silver.person_xref``.
        persons: ``silver.person``.
        id_map: The id map, holding every exported person, encounter and medication.
        visits: The exported ``visit_occurrence``.
        zone: The region's time zone (dates are local dates).

    Returns:
        CDM ``drug_exposure``: ``drug_concept_id`` 0 (local drug codes, no verified RxNorm map),
        ``drug_source_value`` the medication code (else its name). The order time is the start; silver
        holds no duration, so the required end date is the start date. The free-text dosage is not
        exported (free text may name people).
    """
    rows = _with_visit(_events(medications, person_xref, persons, id_map, ENTITY_DRUG), id_map, visits).where(
        F.col("authored_at").isNotNull()
    )
    return _conform(
        rows.select(
            F.col("_id").alias("drug_exposure_id"),
            F.col("_person").alias("person_id"),
            F.lit(NO_MATCHING_CONCEPT).alias("drug_concept_id"),
            local_date(F.col("authored_at"), zone).alias("drug_exposure_start_date"),
            F.col("authored_at").alias("drug_exposure_start_datetime"),
            local_date(F.col("authored_at"), zone).alias("drug_exposure_end_date"),
            F.lit(EHR).alias("drug_type_concept_id"),
            F.col("_visit").alias("visit_occurrence_id"),
            F.coalesce(F.col("medication_code"), F.col("medication_name")).alias("drug_source_value"),
            F.lit(NO_MATCHING_CONCEPT).alias("drug_source_concept_id"),
        ),
        "drug_exposure",
    )


def observation_period(
    visits: DataFrame, conditions: DataFrame, measurements: DataFrame, drugs: DataFrame
) -> DataFrame:
    """``observation_period``: per person, from the first to the last date of any exported event.

    Args:
        visits: The exported ``visit_occurrence``.
        conditions: The exported ``condition_occurrence``.
        measurements: The exported ``measurement``.
        drugs: The exported ``drug_exposure``.

    Returns:
        CDM ``observation_period``, one period per person with at least one event. Its id is the person's
        id: one period per person makes that unique, and stable because the person id is.
    """
    dates = (
        visits.select("person_id", F.col("visit_start_date").alias("d"))
        .unionByName(visits.select("person_id", F.col("visit_end_date").alias("d")))
        .unionByName(conditions.select("person_id", F.col("condition_start_date").alias("d")))
        .unionByName(measurements.select("person_id", F.col("measurement_date").alias("d")))
        .unionByName(drugs.select("person_id", F.col("drug_exposure_start_date").alias("d")))
        .unionByName(drugs.select("person_id", F.col("drug_exposure_end_date").alias("d")))
    )
    periods = (
        dates.where(F.col("d").isNotNull())
        .groupBy("person_id")
        .agg(
            F.min("d").alias("observation_period_start_date"), F.max("d").alias("observation_period_end_date")
        )
    )
    return _conform(
        periods.select(
            F.col("person_id").alias("observation_period_id"),
            "person_id",
            "observation_period_start_date",
            "observation_period_end_date",
            F.lit(EHR).alias("period_type_concept_id"),
        ),
        "observation_period",
    )


def _exported_persons(persons: DataFrame) -> DataFrame:
    """Active golden records with a birth year (the CDM requires ``year_of_birth``)."""
    return persons.where((F.col("status") == "active") & F.col("birth_date").isNotNull())


def _not_cancelled(events: DataFrame) -> DataFrame:
    """Rows not marked cancelled (a NULL flag counts as not cancelled, as in gold)."""
    return events.where(~F.coalesce(F.col("is_cancelled"), F.lit(False)))


def _ids(id_map: DataFrame, entity: str) -> DataFrame:
    """``source_key``, ``omop_id`` of one entity of the id map."""
    return id_map.where(F.col("entity") == entity).select("source_key", "omop_id")


def _events(
    events: DataFrame, person_xref: DataFrame, persons: DataFrame, id_map: DataFrame, entity: str
) -> DataFrame:
    """Events not cancelled, of an exported person, with ``_person`` (OMOP person id) and ``_id`` (own id).

    Inner joins: a row whose patient has no xref row, or whose person is not exported, is left out.
    """
    person_ids = _ids(id_map, ENTITY_PERSON).select(
        F.col("source_key").alias("person_id"), F.col("omop_id").alias("_person")
    )
    links = (
        person_xref.select(*_LINK, "person_id")
        .join(_exported_persons(persons).select("person_id"), "person_id")
        .join(person_ids, "person_id")
        .drop("person_id")
    )
    own = _ids(id_map, entity).select(F.col("source_key").alias("_key"), F.col("omop_id").alias("_id"))
    keyed = _not_cancelled(events).join(links, _LINK)
    keyed = keyed.withColumn("_key", source_key("institution_id", "source_record_id"))
    return keyed.join(own, "_key")


def _with_visit(events: DataFrame, id_map: DataFrame, visits: DataFrame) -> DataFrame:
    """Add ``_visit`` (the encounter's visit id, NULL unless that visit is exported) and ``_visit_start``."""
    visit_ids = _ids(id_map, ENTITY_VISIT).select(
        F.col("source_key").alias("_visit_key"), F.col("omop_id").alias("_visit")
    )
    exported = visits.select(
        F.col("visit_occurrence_id").alias("_visit"), F.col("visit_start_datetime").alias("_visit_start")
    )
    keyed = events.withColumn("_visit_key", source_key("institution_id", "source_encounter_id"))
    # The id map keeps ids of encounters cancelled since; joining the exported visits keeps the FK valid.
    return keyed.join(visit_ids.join(exported, "_visit"), "_visit_key", "left")


def _lookup(mapping: Mapping[str, int], code: Column) -> Column:
    """The concept of ``code`` in ``mapping``; 0 for a code not in it or NULL."""
    pairs = [F.lit(part) for key, value in mapping.items() for part in (key, value)]
    return F.coalesce(F.create_map(*pairs)[code], F.lit(NO_MATCHING_CONCEPT))


def _conform(df: DataFrame, table: str) -> DataFrame:
    """All CDM columns of ``table`` in CDM order and type; those ``df`` lacks are NULL."""
    present = set(df.columns)
    return df.select(
        *[
            (F.col(name) if name in present else F.lit(None)).cast(sql_type).alias(name)
            for name, sql_type in CDM_COLUMNS[table]
        ]
    )
