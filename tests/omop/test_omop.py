"""OMOP CDM 5.4 export: concept mapping, kept and left-out rows, stable ids across re-runs, no identifiers.

One small silver lake, exported once by ``omop.run``; then a new encounter arrives and the next export's
steps run against the same lake: ``update_id_map`` with its keys, then the ``cdm`` transforms of the tables
the encounter touches. Every expected value below was worked out by hand from the rows written in
``exports``. (Spark jobs, Delta commits and Delta scans are what cost time here: the fixture writes only
what ``run`` needs and collects each group of tables in one job.)
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from healthlake import catalog, io
from healthlake.config import load_config
from healthlake.omop import cdm
from healthlake.pipelines import omop
from healthlake.privacy.tokens import extract_kind, load_key, token_of
from tests.omop.cdm_v54 import SPEC, spark_type

PERSONS = (
    "person_id string, status string, merged_into string, resident_id_token string, name_token string, "
    "phone_token string, address_token string, insurance_no_token string, sex string, birth_date date, "
    "area_code string"
)
XREF = "institution_id string, source_patient_id string, person_id string"
ENCOUNTERS = (
    "institution_id string, source_record_id string, source_patient_id string, encounter_class string, "
    "is_cancelled boolean, admit_time timestamp, discharge_time timestamp, discharge_disposition string"
)
DIAGNOSES = (
    "institution_id string, source_record_id string, source_patient_id string, source_encounter_id string, "
    "code_system string, code string, diagnosis_time timestamp, is_cancelled boolean, is_primary boolean, "
    "icd10_code string"
)
OBSERVATIONS = (
    "institution_id string, source_record_id string, source_patient_id string, source_encounter_id string, "
    "code_system string, code string, value_original double, unit_original string, "
    "observation_time timestamp, is_cancelled boolean, loinc string, value double, unit string"
)
MEDICATIONS = (
    "institution_id string, source_record_id string, source_patient_id string, source_encounter_id string, "
    "medication_code string, medication_name string, dosage_text string, authored_at timestamp, "
    "is_cancelled boolean"
)

# Source patient numbers and identity tokens: none may reach an OMOP table.
MRN_A, MRN_A2, MRN_B, MRN_C, MRN_X = "MRN-H1-0001", "MRN-C9-0777", "MRN-H1-0002", "MRN-H2-0003", "MRN-H3-0009"
SECRETS = (
    MRN_A,
    MRN_A2,
    MRN_B,
    MRN_C,
    MRN_X,
    *(
        f"TOK-{kind}-{p}"
        for kind in ("RID", "NAME", "PHONE", "ADDR", "INS")
        for p in ("P1", "P2", "P3", "P9")
    ),
    "360102001",  # area codes
    "360103",
    "1980-05-17",  # a full birth date
)


ZONE = "Asia/Shanghai"


def _t(day: str, hour: int = 9, minute: int = 0) -> dt.datetime:
    """A Beijing wall-clock time of 2026 (the region's time zone, the default ``region.timezone``)."""
    return dt.datetime.fromisoformat(f"2026-{day}T{hour:02d}:{minute:02d}:00+08:00")


def _person(pid: str, status: str, sex: str | None, born: dt.date | None, area: str) -> tuple[Any, ...]:
    tokens = tuple(f"TOK-{kind}-{pid}" for kind in ("RID", "NAME", "PHONE", "ADDR", "INS"))
    return (pid, status, "P1" if status == "retired" else None, *tokens, sex, born, area)


def _key(institution: str, record: str) -> str:
    return json.dumps([institution, record], separators=(",", ":"))


def _collect_all(frames: dict[str, DataFrame]) -> tuple[dict[str, list[Row]], dict[str, StructType]]:
    """Rows and schema of every frame, in one Spark job.

    Each frame becomes one struct column of a union (the others NULL on its rows), so one ``collect`` serves
    them all instead of a job (and a Delta snapshot read) per table; the struct keeps names, order and types.
    """
    parts = [
        frame.select(F.lit(i).alias("_frame"), F.struct(*[F.col(c) for c in frame.columns]).alias(f"_{i}"))
        for i, frame in enumerate(frames.values())
    ]
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part, allowMissingColumns=True)
    rows = union.collect()
    tables = {name: [r[f"_{i}"] for r in rows if r["_frame"] == i] for i, name in enumerate(frames)}
    types = {name: union.schema[f"_{i}"].dataType for i, name in enumerate(frames)}
    return tables, types


_EVENTS = ("omop.condition_occurrence", "omop.measurement", "omop.drug_exposure")
NEW_KEY = ("visit_occurrence", _key("H1", "e6"))
"""The id map key of the encounter that arrives after the first export."""


@pytest.fixture(scope="module")
def exports(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Silver written by hand and exported; then the id step and tables of the export after a new encounter.

    ``first``: every ``omop.*`` table and the id map as the export wrote them (``first_types``: their
    schemas; ``first_rows``: what ``run`` returned). ``second``: the id map after ``update_id_map`` got the
    same keys plus the new encounter's, and ``person``, ``visit_occurrence`` and ``observation_period``
    rebuilt from it.
    """
    lake = str(tmp_path_factory.mktemp("omop") / "lake")
    born1, born2, born3 = dt.date(1980, 5, 17), dt.date(1975, 11, 2), dt.date(2001, 1, 30)
    persons = [
        _person("P1", "active", "M", born1, "360102001"),
        _person("P2", "active", "F", born2, "360103"),
        _person("P3", "active", "U", born3, "360103"),
        _person("P4", "active", "M", born2, "360103"),  # no event, so no observation period: not exported
        _person("P5", "active", "F", None, "360103"),  # no birth year: not exported (CDM requires it)
        _person("P9", "retired", "M", born1, "360102001"),  # merged into P1
    ]
    xref = [("H1", MRN_A, "P1"), ("C9", MRN_A2, "P1"), ("H1", MRN_B, "P2"), ("H2", MRN_C, "P3")]
    encounters = [
        ("H1", "e1", MRN_A, "inpatient", False, _t("03-01"), _t("03-05", 11), "home"),
        ("C9", "e2", MRN_A2, "outpatient", False, _t("03-10"), _t("03-10", 10), None),
        ("H1", "e3", MRN_B, "emergency", False, _t("03-02", 23, 30), None, None),
        ("H1", "e4", MRN_B, "outpatient", True, _t("03-20"), None, None),  # cancelled
        ("H2", "e5", MRN_C, "other", False, _t("04-01"), None, None),
        ("H3", "x1", MRN_X, "inpatient", False, _t("03-01"), _t("03-02"), None),  # patient not linked
    ]
    diagnoses = [
        ("H1", "d1", MRN_A, "e1", "ICD-10", "I10.x00", _t("03-01", 10), False, True, "I10.x00"),
        ("H1", "d2", MRN_B, "e3", "local", "LOCALDX", _t("03-02", 23, 45), False, False, None),
        ("H1", "d3", MRN_B, "e3", "ICD-10", "J06.900", _t("03-02"), True, True, "J06.900"),  # cancelled
        ("H3", "d4", MRN_X, "x1", "ICD-10", "J20.900", _t("03-01"), False, True, "J20.900"),  # not linked
        (
            "H1",
            "d5",
            MRN_B,
            "e4",
            "ICD-10",
            "E11.900",
            _t("03-20"),
            False,
            True,
            "E11.900",
        ),  # visit cancelled
    ]
    observations = [
        (
            "H1",
            "o1",
            MRN_A,
            "e1",
            "local",
            "SBP",
            150.0,
            "mmHg",
            _t("03-02", 8, 15),
            False,
            "8480-6",
            150.0,
            "mm[Hg]",
        ),
        (
            "H1",
            "o2",
            MRN_A,
            "e1",
            "LOINC",
            "8310-5",
            37.2,
            "℃",
            _t("03-02", 8, 20),
            False,
            "8310-5",
            37.2,
            "Cel",
        ),
        (
            "C9",
            "o3",
            MRN_A2,
            None,
            "local",
            "FBG",
            110.0,
            "mg/dL",
            _t("02-20", 7),
            False,
            None,
            6.1,
            "mmol/L",
        ),
        (
            "H1",
            "o4",
            MRN_B,
            "e3",
            "local",
            "HR",
            88.0,
            "bpm",
            _t("03-02", 23, 40),
            False,
            "8867-4",
            88.0,
            "/min",
        ),
        (
            "H1",
            "o5",
            MRN_B,
            "e3",
            "local",
            "SBP",
            1.0,
            "mmHg",
            _t("05-09"),
            True,
            "8480-6",
            1.0,
            "mm[Hg]",
        ),  # cancelled
        # glucose sent as mass/volume in mg/dL, stored by silver as moles/volume in mmol/L
        (
            "H1",
            "o6",
            MRN_A,
            "e1",
            "LOINC",
            "2345-7",
            126.0,
            "mg/dL",
            _t("03-02", 9),
            False,
            "14749-6",
            7.0,
            "mmol/L",
        ),
    ]
    medications = [
        ("H1", "m1", MRN_A, "e1", "X01", "氨氯地平", f"qd, for {MRN_A}", _t("03-03"), False),
        ("C9", "m2", MRN_A2, "e2", None, "Metformin", "bid", _t("03-25"), False),
        ("H1", "m3", MRN_B, "e3", "X02", "Aspirin", "qd", _t("05-01"), True),  # cancelled
    ]
    silver = {
        catalog.SILVER_PERSON: spark.createDataFrame(persons, PERSONS),
        catalog.SILVER_PERSON_XREF: spark.createDataFrame(xref, XREF),
        catalog.SILVER_ENCOUNTER: spark.createDataFrame(encounters, ENCOUNTERS),
        catalog.SILVER_DIAGNOSIS: spark.createDataFrame(diagnoses, DIAGNOSES),
        catalog.SILVER_OBSERVATION: spark.createDataFrame(observations, OBSERVATIONS),
        catalog.SILVER_MEDICATION: spark.createDataFrame(medications, MEDICATIONS),
    }
    for table, frame in silver.items():
        io.append(frame, lake, table)

    cfg = load_config(overrides={"lake_root": lake})
    first_rows = omop.run(spark, cfg)
    written = {t: io.read_table(spark, lake, t) for t in (*omop.OMOP_TABLES, catalog.OMOP_ID_MAP)}
    first, first_types = _collect_all(written)

    # Then a new encounter arrives. The next export's id step on the same lake, given (as run gives it) every
    # key to export: the first export's keys plus the new encounter's. Old keys must keep their ids.
    keys = [(r["entity"], r["source_key"]) for r in first[catalog.OMOP_ID_MAP]] + [NEW_KEY]
    keys_frame = spark.createDataFrame(keys, "entity string, source_key string")
    map_rows = omop.update_id_map(spark, lake, keys_frame).collect()
    # The tables the new encounter touches, built from the new map by the cdm transforms run applies (the
    # other event tables as written), on in-memory frames: no Delta scan.
    id_map = spark.createDataFrame(map_rows, first_types[catalog.OMOP_ID_MAP])
    new_visit = [("H1", "e6", MRN_B, "outpatient", False, _t("04-15"), _t("04-15", 10), None)]
    encounters = silver[catalog.SILVER_ENCOUNTER].unionByName(spark.createDataFrame(new_visit, ENCOUNTERS))
    persons, xref = silver[catalog.SILVER_PERSON], silver[catalog.SILVER_PERSON_XREF]
    second, second_types = _collect_all(
        {"omop.visit_occurrence": cdm.visit_occurrence(encounters, xref, persons, id_map, zone=ZONE)}
    )
    # observation_period from the visits just collected, as run builds it from the visits it wrote; then
    # person, from those periods.
    tables, types = {**first, **second}, {**first_types, **second_types}
    inputs = [spark.createDataFrame(tables[t], types[t]) for t in ("omop.visit_occurrence", *_EVENTS)]
    periods = cdm.observation_period(*inputs)
    second["omop.observation_period"] = periods.collect()
    second["omop.person"] = cdm.person(persons, id_map, periods).collect()
    second[catalog.OMOP_ID_MAP] = map_rows
    return {"first": first, "second": second, "first_rows": first_rows, "first_types": first_types}


def _ids(snapshot: dict[str, list[Row]], entity: str) -> dict[str, int]:
    return {r["source_key"]: r["omop_id"] for r in snapshot[catalog.OMOP_ID_MAP] if r["entity"] == entity}


def _by_key(snapshot: dict[str, list[Row]], table: str, entity: str, id_column: str) -> dict[str, Row]:
    """Rows of an event table by source record id (e.g. 'e1'), through the id map."""
    record = {omop_id: json.loads(key)[1] for key, omop_id in _ids(snapshot, entity).items()}
    return {record[r[id_column]]: r for r in snapshot[f"omop.{table}"]}


def test_counts_and_cdm_columns(spark: SparkSession, exports: dict[str, Any]) -> None:
    assert exports["first_rows"] == {
        "omop.person": 3,
        "omop.observation_period": 3,
        "omop.visit_occurrence": 4,
        "omop.condition_occurrence": 3,
        "omop.drug_exposure": 2,
        "omop.measurement": 5,
    }
    # run's counts are the rows written; after the new encounter one more visit is exported.
    assert {t: len(exports["first"][t]) for t in omop.OMOP_TABLES} == exports["first_rows"]
    assert len(exports["second"]["omop.visit_occurrence"]) == 5
    assert set(omop.OMOP_TABLES) == {f"omop.{t}" for t in SPEC}
    for table, columns in SPEC.items():
        row = exports["first"][f"omop.{table}"][0]
        assert tuple(row.asDict()) == tuple(name for name, _ in columns), table
        # The written Delta table has exactly the CDM v5.4 columns, in order, with their types.
        fields = exports["first_types"][f"omop.{table}"].fields
        want = [(name, spark_type(name, sql)) for name, sql in columns]
        assert [(f.name, f.dataType.simpleString()) for f in fields] == want, table


def _empi(snapshot: dict[str, list[Row]]) -> dict[int, str]:
    """OMOP person_id → EMPI person_id, through the id map (person_source_value is a release key)."""
    return {omop_id: key for key, omop_id in _ids(snapshot, cdm.ENTITY_PERSON).items()}


def test_person_maps_sex_and_keeps_birth_year_and_month_only(exports: dict[str, Any]) -> None:
    empi = _empi(exports["first"])
    people = {empi[r["person_id"]]: r for r in exports["first"]["omop.person"]}
    # The source value is the research release's key for the person: not the EMPI id.
    release = load_config().research.release
    assert {r["person_source_value"] for r in people.values()} == {
        token_of(load_key(), extract_kind(release), p) for p in people
    }
    # P4 has no event (no observation period), P5 no birth year, P9 was merged into P1
    assert set(people) == {"P1", "P2", "P3"}
    periods = {r["person_id"] for r in exports["first"]["omop.observation_period"]}
    assert periods == {r["person_id"] for r in exports["first"]["omop.person"]}
    assert "P4" in {key for key in _ids(exports["first"], cdm.ENTITY_PERSON)}  # its id is kept for later
    got = {
        p: (r["gender_concept_id"], r["gender_source_value"], r["year_of_birth"], r["month_of_birth"])
        for p, r in people.items()
    }
    assert got == {"P1": (8507, "M", 1980, 5), "P2": (8532, "F", 1975, 11), "P3": (0, "U", 2001, 1)}
    for r in people.values():
        assert r["day_of_birth"] is None and r["birth_datetime"] is None and r["location_id"] is None
        assert (r["race_concept_id"], r["ethnicity_concept_id"], r["gender_source_concept_id"]) == (0, 0, 0)


def test_visits_map_encounter_class_and_skip_cancelled_and_unlinked(exports: dict[str, Any]) -> None:
    first = exports["first"]
    visits = _by_key(first, "visit_occurrence", "visit_occurrence", "visit_occurrence_id")
    assert set(visits) == {"e1", "e2", "e3", "e5"}  # e4 cancelled, x1 not linked
    got = {
        k: (r["visit_concept_id"], r["visit_source_value"], r["visit_start_date"], r["visit_end_date"])
        for k, r in visits.items()
    }
    assert got == {
        "e1": (9201, "inpatient", dt.date(2026, 3, 1), dt.date(2026, 3, 5)),
        "e2": (9202, "outpatient", dt.date(2026, 3, 10), dt.date(2026, 3, 10)),
        "e3": (9203, "emergency", dt.date(2026, 3, 2), dt.date(2026, 3, 2)),  # no discharge: ends on start
        "e5": (0, "other", dt.date(2026, 4, 1), dt.date(2026, 4, 1)),
    }
    assert {r["visit_type_concept_id"] for r in visits.values()} == {32817}
    assert visits["e1"]["discharged_to_source_value"] == "home"
    # The person's previous visit, across institutions.
    assert visits["e2"]["preceding_visit_occurrence_id"] == visits["e1"]["visit_occurrence_id"]
    assert visits["e1"]["preceding_visit_occurrence_id"] is None
    assert visits["e2"]["person_id"] == visits["e1"]["person_id"] == _ids(first, cdm.ENTITY_PERSON)["P1"]


def test_conditions_keep_icd10_as_source_value_with_concept_zero(exports: dict[str, Any]) -> None:
    first = exports["first"]
    conditions = _by_key(first, "condition_occurrence", "condition_occurrence", "condition_occurrence_id")
    visit_ids = _ids(first, "visit_occurrence")
    assert set(conditions) == {"d1", "d2", "d5"}  # d3 cancelled, d4 not linked
    got = {
        k: (
            r["condition_concept_id"],
            r["condition_source_value"],
            r["condition_source_concept_id"],
            r["condition_status_source_value"],
            r["condition_start_date"],
            r["visit_occurrence_id"],
        )
        for k, r in conditions.items()
    }
    assert got == {
        "d1": (0, "I10.x00", 0, "primary", dt.date(2026, 3, 1), visit_ids[_key("H1", "e1")]),
        "d2": (0, "LOCALDX", 0, "secondary", dt.date(2026, 3, 2), visit_ids[_key("H1", "e3")]),
        "d5": (0, "E11.900", 0, "primary", dt.date(2026, 3, 20), None),  # its visit was cancelled
    }


def test_measurements_map_known_loinc_and_ucum_and_keep_unmapped_codes(exports: dict[str, Any]) -> None:
    measurements = _by_key(exports["first"], "measurement", "measurement", "measurement_id")
    assert set(measurements) == {"o1", "o2", "o3", "o4", "o6"}  # o5 cancelled
    got = {
        k: (
            r["measurement_concept_id"],
            r["measurement_source_value"],
            r["measurement_source_concept_id"],
            r["value_as_number"],
            r["unit_concept_id"],
            r["unit_source_value"],
        )
        for k, r in measurements.items()
    }
    assert got == {
        "o1": (3004249, "SBP", 0, 150.0, 8876, "mm[Hg]"),  # local code mapped to LOINC 8480-6 in silver
        "o2": (3020891, "8310-5", 3020891, 37.2, 586323, "Cel"),  # the source code is the LOINC code
        "o3": (0, "FBG", 0, 6.1, 8753, "mmol/L"),  # no LOINC: concept 0, code kept
        "o4": (3027018, "HR", 0, 88.0, 0, "/min"),  # '/min' not verified: unit concept 0
        "o6": (3013826, "2345-7", 3004501, 7.0, 8753, "mmol/L"),  # the concept of each code
    }
    assert measurements["o1"]["measurement_time"] == "08:15:00"
    assert measurements["o3"]["value_source_value"] == "110.0 mg/dL"
    assert measurements["o3"]["visit_occurrence_id"] is None
    assert {r["measurement_type_concept_id"] for r in measurements.values()} == {32817}


def test_drugs_keep_code_or_name_and_drop_free_text(exports: dict[str, Any]) -> None:
    drugs = _by_key(exports["first"], "drug_exposure", "drug_exposure", "drug_exposure_id")
    assert set(drugs) == {"m1", "m2"}  # m3 cancelled
    got = {
        k: (r["drug_concept_id"], r["drug_source_value"], r["drug_exposure_start_date"], r["sig"])
        for k, r in drugs.items()
    }
    assert got == {
        "m1": (0, "X01", dt.date(2026, 3, 3), None),
        "m2": (0, "Metformin", dt.date(2026, 3, 25), None),
    }


def test_observation_period_spans_first_to_last_event(exports: dict[str, Any]) -> None:
    first = exports["first"]
    people = _empi(first)
    periods = {
        people[r["person_id"]]: (
            r["observation_period_start_date"],
            r["observation_period_end_date"],
            r["observation_period_id"] == r["person_id"],
            r["period_type_concept_id"],
        )
        for r in first["omop.observation_period"]
    }
    assert periods == {
        # Lab on 02-20 (no visit) … drug at another clinic on 03-25.
        "P1": (dt.date(2026, 2, 20), dt.date(2026, 3, 25), True, 32817),
        # 03-02 visit … 03-20 diagnosis; the cancelled drug order of 05-01 does not count.
        "P2": (dt.date(2026, 3, 2), dt.date(2026, 3, 20), True, 32817),
        "P3": (dt.date(2026, 4, 1), dt.date(2026, 4, 1), True, 32817),
    }
    second = {
        r["person_id"]: r["observation_period_end_date"] for r in exports["second"]["omop.observation_period"]
    }
    assert second[[p for p, name in people.items() if name == "P2"][0]] == dt.date(2026, 4, 15)


def test_ids_are_unique_and_the_same_after_a_second_run(exports: dict[str, Any]) -> None:
    first, second = exports["first"], exports["second"]
    for snapshot in (first, second):
        keys = [(r["entity"], r["source_key"]) for r in snapshot[catalog.OMOP_ID_MAP]]
        assert len(keys) == len(set(keys))
        ids = [r["omop_id"] for r in snapshot[catalog.OMOP_ID_MAP]]
        assert len(ids) == len(set(ids))
        for table, columns in SPEC.items():
            if f"omop.{table}" in snapshot:
                pk = [r[columns[0][0]] for r in snapshot[f"omop.{table}"]]
                assert len(pk) == len(set(pk)) and None not in pk, table
    before, after = (
        {(r["entity"], r["source_key"]): r["omop_id"] for r in first[catalog.OMOP_ID_MAP]},
        {(r["entity"], r["source_key"]): r["omop_id"] for r in second[catalog.OMOP_ID_MAP]},
    )
    assert {k: after[k] for k in before} == before  # nothing renumbered
    assert set(after) - set(before) == {NEW_KEY}
    assert after[NEW_KEY] not in before.values()
    assert set(_empi(first).items()) <= set(_empi(second).items())
    assert {r["person_id"] for r in first["omop.person"]} == {r["person_id"] for r in second["omop.person"]}
    old_visits = {r["visit_occurrence_id"]: r["visit_start_date"] for r in first["omop.visit_occurrence"]}
    new_visits = {r["visit_occurrence_id"]: r["visit_start_date"] for r in second["omop.visit_occurrence"]}
    assert {k: new_visits[k] for k in old_visits} == old_visits


def test_no_identifier_or_token_reaches_omop(exports: dict[str, Any]) -> None:
    # silver's direct identifiers and quasi-identifiers that must not be copied as columns
    banned = {"resident_id", "name", "phone", "address", "insurance_no", "area_code", "birth_date"}
    banned |= {"source_patient_id", "source_record_id", "institution_id", "dosage_text"}
    for snapshot in (exports["first"], exports["second"]):
        for table, rows in snapshot.items():
            for column in rows[0].asDict():
                assert column not in banned and not column.endswith("_token"), f"{table}.{column}"
            values = [v for r in rows for v in r.asDict().values() if isinstance(v, str)]
            leaked = {s for s in SECRETS for v in values if s in v}
            assert not leaked, f"{table} holds {leaked}"


def test_a_missing_input_names_the_stage_to_run(spark: SparkSession, lake: str) -> None:
    with pytest.raises(omop.OmopError) as error:
        omop.run(spark, load_config(overrides={"lake_root": lake}))
    message = str(error.value)
    assert "\n" not in message
    assert "silver.person is not in the lake" in message and "`healthlake link`" in message
    assert not (Path(lake) / "omop").exists()


def test_dates_and_clock_times_are_local_near_midnight(spark: SparkSession) -> None:
    """Events at 00:30 and 07:59 Beijing time (the UTC date is the day before) and on a month's last
    evening: every CDM date is the Beijing date, ``measurement_time`` the Beijing clock, by pandas."""
    walls = {  # record → Beijing wall clock
        "v1": "2026-01-31 23:30",  # a stay from the month's last evening …
        "v1-end": "2026-02-01 07:59",  # … to early next morning
        "v2": "2026-03-01 00:30",  # a clinic visit just after midnight, no end time
        "d1": "2026-02-01 00:30",
        "o1": "2026-01-05 07:59",
        "m1": "2026-02-01 00:30",
    }
    tz = zoneinfo.ZoneInfo(ZONE)
    at = {k: dt.datetime.fromisoformat(v).replace(tzinfo=tz) for k, v in walls.items()}
    persons = spark.createDataFrame([_person("P1", "active", "F", dt.date(1980, 5, 17), "360103")], PERSONS)
    xref = spark.createDataFrame([("H1", MRN_A, "P1")], XREF)
    encounters = spark.createDataFrame(
        [
            ("H1", "v1", MRN_A, "inpatient", False, at["v1"], at["v1-end"], None),
            ("H1", "v2", MRN_A, "outpatient", False, at["v2"], None, None),
        ],
        ENCOUNTERS,
    )
    diagnoses = spark.createDataFrame(
        [
            ("H1", "d1", MRN_A, "v1", "ICD-10", "I10", at["d1"], False, True, "I10"),
            ("H1", "d2", MRN_A, "v2", "ICD-10", "I10", None, False, True, "I10"),  # dated by its visit
        ],
        DIAGNOSES,
    )
    observations = spark.createDataFrame(
        [
            (
                "H1",
                "o1",
                MRN_A,
                "v1",
                "LOINC",
                "8480-6",
                150.0,
                "mm[Hg]",
                at["o1"],
                False,
                "8480-6",
                150.0,
                "mm[Hg]",
            )
        ],
        OBSERVATIONS,
    )
    medications = spark.createDataFrame(
        [("H1", "m1", MRN_A, "v1", "X01", "Aspirin", "qd", at["m1"], False)], MEDICATIONS
    )
    keys = [("person", "P1")] + [
        (entity, _key("H1", record))
        for entity, record in (
            ("visit_occurrence", "v1"),
            ("visit_occurrence", "v2"),
            ("condition_occurrence", "d1"),
            ("condition_occurrence", "d2"),
            ("measurement", "o1"),
            ("drug_exposure", "m1"),
        )
    ]
    id_map = spark.createDataFrame(
        [(e, k, i) for i, (e, k) in enumerate(keys, start=1)],
        "entity string, source_key string, omop_id bigint",
    )
    ids = {json.loads(k)[1] if k.startswith("[") else k: i for i, (_, k) in enumerate(keys, start=1)}
    visits = cdm.visit_occurrence(encounters, xref, persons, id_map, zone=ZONE).cache()
    tables, _ = _collect_all(
        {
            "visit": visits,
            "condition": cdm.condition_occurrence(diagnoses, xref, persons, id_map, visits, zone=ZONE),
            "measurement": cdm.measurement(observations, xref, persons, id_map, visits, zone=ZONE),
            "drug": cdm.drug_exposure(medications, xref, persons, id_map, visits, zone=ZONE),
        }
    )
    visits.unpersist()

    def day(key: str) -> dt.date:
        return pd.Timestamp(walls[key], tz=ZONE).date()

    got_visits = {
        r["visit_occurrence_id"]: (r["visit_start_date"], r["visit_end_date"]) for r in tables["visit"]
    }
    assert got_visits == {ids["v1"]: (day("v1"), day("v1-end")), ids["v2"]: (day("v2"), day("v2"))}
    got_conditions = {r["condition_occurrence_id"]: r["condition_start_date"] for r in tables["condition"]}
    assert got_conditions == {ids["d1"]: day("d1"), ids["d2"]: day("v2")}
    (measured,) = tables["measurement"]
    clock = pd.Timestamp(walls["o1"], tz=ZONE).strftime("%H:%M:%S")
    assert (measured["measurement_date"], measured["measurement_time"]) == (day("o1"), clock)
    (drug,) = tables["drug"]
    assert (drug["drug_exposure_start_date"], drug["drug_exposure_end_date"]) == (day("m1"), day("m1"))
    # Spelled out: each date (but the stay's start) and the clock differ from the UTC ones.
    assert got_visits[ids["v1"]] == (dt.date(2026, 1, 31), dt.date(2026, 2, 1))
    assert (measured["measurement_date"], measured["measurement_time"]) == (dt.date(2026, 1, 5), "07:59:00")
    assert got_conditions[ids["d2"]] == dt.date(2026, 3, 1)
