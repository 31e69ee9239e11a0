"""The gold tables on small hand-made inputs, against values worked out by hand (times are Beijing wall
clocks); and their days near local midnight and a month's end, against pandas."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from healthlake.gold.areas import area_paths, institution_paths
from healthlake.gold.chronic import (
    chronic_disease_indicators,
    chronic_disease_monthly,
    chronic_disease_registry,
    followup_readings,
)
from healthlake.gold.encounters import encounter_facts, with_institution_area
from healthlake.gold.patients import (
    allergy_summary,
    chronic_conditions,
    immunization_count,
    last_test,
    patient_360,
    patient_360_update,
    procedure_summary,
    visit_summary,
)
from healthlake.gold.utilization import utilization_daily

ZONE = "Asia/Shanghai"
D = dt.date


def T(*args: int) -> dt.datetime:
    """A Beijing wall-clock time (Spark stores its instant)."""
    return dt.datetime(*args, tzinfo=zoneinfo.ZoneInfo(ZONE))


FOLLOWUP_SCHEMA = (
    "institution_id string, source_record_id string, source_patient_id string, "
    "disease_icd10_category string, followup_time timestamp"
)
PROCEDURE_SCHEMA = (
    "institution_id string, source_record_id string, source_patient_id string, performed_time timestamp, "
    "status string, is_cancelled boolean"
)
ALLERGY_SCHEMA = (
    "institution_id string, source_record_id string, source_patient_id string, code string, "
    "clinical_status string, verification_status string, is_cancelled boolean"
)
PENICILLIN, SULFONAMIDE, PEANUT, EGGS, MILK = "764146007", "387406002", "762952008", "102263004", "3718001"


@pytest.fixture(scope="module")
def areas(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [
            ("110000", "省", "province", None),
            ("110100", "甲市", "city", "110000"),
            ("110101", "甲县", "county", "110100"),
            ("110101001", "甲镇", "township", "110101"),
            ("110200", "乙市", "city", "110000"),
            ("110201", "乙县", "county", "110200"),
        ],
        "area_code string, name string, level string, parent_code string",
    )


@pytest.fixture(scope="module")
def places(spark: SparkSession, areas: DataFrame) -> DataFrame:
    institutions = spark.createDataFrame(
        [
            ("CT1", "甲镇卫生院", "110101001"),  # a township clinic
            ("HK1", "甲县人民医院", "110101"),  # a county hospital
            ("HC1", "甲市第一人民医院", "110100"),  # a city hospital, under no county
            ("HK2", "乙县人民医院", "110201"),
        ],
        "institution_id string, name string, area_code string",
    )
    return institution_paths(institutions, areas)


def test_area_paths_reach_the_province(areas: DataFrame, places: DataFrame) -> None:
    paths = {r.area_code: r for r in area_paths(areas).collect()}
    town = paths["110101001"]
    assert (town.township_code, town.county_code, town.city_code, town.province_code) == (
        "110101001",
        "110101",
        "110100",
        "110000",
    )
    assert (paths["110100"].county_code, paths["110100"].province_code) == (None, "110000")
    hc1 = next(r for r in places.collect() if r.institution_id == "HC1")
    assert (hc1.county_code, hc1.city_code, hc1.province_code) == (None, "110100", "110000")


def test_utilization_daily_by_hand(spark: SparkSession, areas: DataFrame, places: DataFrame) -> None:
    encounters = spark.createDataFrame(
        [
            ("CT1", "e1", "a1", "outpatient", False, T(2026, 3, 1, 2), None),
            ("HK1", "e2", "b1", "inpatient", False, T(2026, 3, 1, 10), T(2026, 3, 4, 9)),
            ("HC1", "e3", "c1", "inpatient", False, T(2026, 3, 10, 1), T(2026, 3, 10, 20)),  # same-day stay
            ("HK2", "e4", "d2", "emergency", False, T(2026, 3, 1, 3), T(2026, 3, 1, 5)),
            ("HK1", "e5", "b2", "inpatient", False, T(2026, 3, 2, 8), None),  # still in hospital
            ("HK1", "e6", "b1", "outpatient", True, T(2026, 3, 1, 8), None),  # cancelled
            ("HK2", "e7", "d3", "inpatient", False, T(2026, 3, 2, 8), T(2026, 3, 4, 8)),
            ("HK2", "e8", "d4", "inpatient", False, T(2026, 3, 3, 8), T(2026, 3, 4, 18)),
        ],
        "institution_id string, source_record_id string, source_patient_id string, encounter_class string, "
        "is_cancelled boolean, admit_time timestamp, discharge_time timestamp",
    )
    xref = spark.createDataFrame(
        [
            ("CT1", "a1", "P1"),
            ("HK1", "b1", "P1"),
            ("HC1", "c1", "P1"),
            ("HK2", "d2", "P2"),
            ("HK1", "b2", "P2"),
        ]
        + [("HK2", "d3", "P3"), ("HK2", "d4", "P4")],
        "institution_id string, source_patient_id string, person_id string",
    )
    facts = encounter_facts(encounters, xref, zone=ZONE).transform(
        lambda df: with_institution_area(df, places)
    )
    rows = {
        (r.level, r.unit_code, r.date): r
        for r in utilization_daily(facts, places, areas, F.lit(D(2026, 3, 10)), zone=ZONE).collect()
    }

    def at(level: str, unit: str, day: int) -> dict:
        r = rows[(level, unit, D(2026, 3, day))].asDict()
        return {k: v for k, v in r.items() if k not in ("date", "level", "unit_code", "unit_name")}

    hk1_4 = at("institution", "HK1", 4)
    assert hk1_4 == dict(
        outpatient_visits=0,
        emergency_visits=0,
        admissions=0,
        discharges=1,
        discharged_bed_days=3,
        occupied_bed_days=1,  # P2's open stay; P1 left that morning
        index_stays=1,
        readmissions_30d=1,  # P1 came back to another hospital (HC1) six days later
        average_length_of_stay=3.0,
        readmission_rate_30d=1.0,
    )
    assert at("institution", "HK1", 2)["occupied_bed_days"] == 2
    # The open stay is counted every night up to the last day of activity (10 March): 2..10 March.
    assert sum(r.occupied_bed_days for k, r in rows.items() if k[:2] == ("institution", "HK1")) == 3 + 9
    hc1 = at("institution", "HC1", 10)
    assert (hc1["discharged_bed_days"], hc1["occupied_bed_days"], hc1["readmission_rate_30d"]) == (1, 0, 0.0)
    assert ("institution", "HK1", D(2026, 3, 1)) in rows and at("institution", "HK1", 1)[
        "outpatient_visits"
    ] == 0
    # The county: its township clinic plus its county hospital.
    k1 = at("county", "110101", 1)
    assert (k1["outpatient_visits"], k1["admissions"], k1["occupied_bed_days"]) == (1, 1, 1)
    assert rows[("county", "110101", D(2026, 3, 1))].unit_name == "甲县"
    # The city on 10 March: the county hospital's open stay plus the city hospital, which has no county.
    c1 = at("city", "110100", 10)
    assert (c1["admissions"], c1["discharges"], c1["occupied_bed_days"]) == (1, 1, 1)
    # The province on 4 March: rates from the summed counts (1/3, 6/3), not the mean of the cities' rates.
    p = at("province", "110000", 4)
    assert (p["discharges"], p["discharged_bed_days"], p["index_stays"], p["readmissions_30d"]) == (
        3,
        6,
        3,
        1,
    )
    assert p["readmission_rate_30d"] == pytest.approx(1 / 3)
    assert p["average_length_of_stay"] == pytest.approx(2.0)


def _followup_inputs(spark: SparkSession) -> tuple[DataFrame, DataFrame, DataFrame]:
    visits = [  # (followup id, patient, disease category, time, sbp, dbp, fasting glucose)
        ("f1", "a1", "I10", T(2025, 1, 15, 2), 150.0, 95.0, None),
        ("f2", "a1", "I10", T(2025, 4, 15, 2), 130.0, 85.0, None),
        ("f3", "a1", "I10", T(2025, 7, 15, 2), None, None, None),  # seen, not measured
        ("f4", "a1", "I10", T(2025, 10, 15, 2), 145.0, 92.0, None),
        ("f5", "a1", "I10", T(2026, 1, 15, 2), 128.0, 80.0, None),
        ("f6", "a2", "E11", T(2025, 10, 20, 2), None, None, 6.5),
    ]
    followups = spark.createDataFrame(
        [("CT1", f, p, c, t) for f, p, c, t, *_ in visits],
        FOLLOWUP_SCHEMA,
    )
    observations = spark.createDataFrame(
        [
            ("CT1", p, code, value, t, False)
            for _, p, _, t, sbp, dbp, glucose in visits
            for code, value in (("8480-6", sbp), ("8462-4", dbp), ("14771-0", glucose))
            if value is not None
        ]
        + [("HK1", "b1", "8480-6", 180.0, T(2026, 1, 20, 2), False)],  # a hospital reading: not a follow-up's
        "institution_id string, source_patient_id string, loinc string, value double, "
        "observation_time timestamp, is_cancelled boolean",
    )
    xref = spark.createDataFrame(
        [("CT1", "a1", "P1"), ("CT1", "a2", "P2"), ("HK1", "b1", "P1")],
        "institution_id string, source_patient_id string, person_id string",
    )
    return followups, observations, xref


def test_chronic_registry_and_indicators_by_hand(
    spark: SparkSession, areas: DataFrame, places: DataFrame
) -> None:
    followups, observations, xref = _followup_inputs(spark)
    registry = {
        (r.person_id, r.disease): r
        for r in chronic_disease_registry(
            followups, observations, xref, F.lit(D(2026, 1, 31)), zone=ZONE
        ).collect()
    }
    p1 = registry[("P1", "hypertension")]
    assert (p1.registered_on, p1.managing_institution_id, p1.followups_12m) == (D(2025, 1, 15), "CT1", 4)
    assert p1.is_standard_managed and p1.is_controlled  # 128/80 on 15 January
    p2 = registry[("P2", "diabetes")]
    assert (p2.followups_12m, p2.is_standard_managed, p2.is_controlled) == (1, False, True)

    indicators = chronic_disease_indicators(
        followups, observations, xref, places, areas, F.lit(D(2026, 1, 31)), zone=ZONE
    )
    got = {
        (r.month, r.disease): (r.registered, r.standard_managed, r.controlled)
        for r in indicators.where("level = 'institution'").collect()
    }
    htn = {month: got[(month, "hypertension")] for month, disease in got if disease == "hypertension"}
    assert len(htn) == 13  # January 2025 to January 2026
    assert htn[D(2025, 1, 1)] == (1, 0, 0)  # 150/95
    assert htn[D(2025, 4, 1)] == (1, 0, 1)  # 130/85
    assert htn[D(2025, 7, 1)] == (1, 0, 1)  # no reading in July: April's stands
    assert htn[D(2025, 10, 1)] == (1, 1, 0)  # the fourth follow-up in 12 months; 145/92
    assert htn[D(2025, 12, 1)] == (1, 1, 0)
    assert htn[D(2026, 1, 1)] == (1, 1, 1)  # February 2025 to January 2026: still four
    assert got[(D(2025, 10, 1), "diabetes")] == (1, 0, 1) and (D(2025, 9, 1), "diabetes") not in got
    province = {(r.month, r.disease): r for r in indicators.where("level = 'province'").collect()}[
        (D(2026, 1, 1), "hypertension")
    ]
    assert (province.registered, province.control_rate, province.standard_management_rate) == (1, 1.0, 1.0)


def test_patient_360_by_hand(spark: SparkSession, areas: DataFrame) -> None:
    persons = spark.createDataFrame(
        [
            ("P1", "active", "tok1", "F", D(1960, 6, 15), "110101001", 2, 2),
            ("P9", "merged", "tok9", "M", D(1970, 1, 1), "110101", 1, 1),
        ],
        "person_id string, status string, resident_id_token string, sex string, birth_date date, "
        "area_code string, record_count bigint, institution_count bigint",
    )
    xref = spark.createDataFrame(
        [("CT1", "a1", "P1"), ("HK1", "b1", "P1")],
        "institution_id string, source_patient_id string, person_id string",
    )
    facts = spark.createDataFrame(
        [
            ("CT1", "e1", "P1", "outpatient", T(2025, 3, 1, 2)),
            ("HK1", "e2", "P1", "inpatient", T(2025, 5, 1, 2)),
            ("HK1", "e3", "P1", "outpatient", T(2025, 9, 1, 2)),
        ],
        "institution_id string, source_record_id string, person_id string, encounter_class string, "
        "admit_time timestamp",
    )
    diagnoses = spark.createDataFrame(
        [
            ("HK1", "b1", "I10", T(2025, 5, 1, 3), False),
            ("CT1", "a1", "E11", T(2025, 3, 1, 3), False),
            ("HK1", "b1", "N18", T(2025, 5, 1, 3), True),  # cancelled
            ("HK1", "b1", "J06", T(2025, 9, 1, 3), False),  # not chronic
        ],
        "institution_id string, source_patient_id string, icd10_category string, diagnosis_time timestamp, "
        "is_cancelled boolean",
    )
    followups = spark.createDataFrame(
        [("CT1", "f1", "a1", "I10", T(2025, 2, 1, 2))],
        FOLLOWUP_SCHEMA,
    )
    immunizations = spark.createDataFrame(
        [("CT1", "a1", False), ("CT1", "a1", True)],
        "institution_id string, source_patient_id string, is_cancelled boolean",
    )
    nat_tests = spark.createDataFrame(
        [
            ("L1", "n1", "zz", T(2025, 1, 1), None, "positive"),
            ("CT1", "n2", "a1", T(2025, 6, 1), None, "negative"),
        ]
        + [("CT1", "n3", "a1", T(2025, 4, 1), None, "positive")],
        "institution_id string, source_record_id string, source_patient_id string, sample_time timestamp, "
        "report_time timestamp, result string",
    )
    out = patient_360(
        persons,
        xref,
        facts,
        diagnoses,
        followups,
        immunizations,
        nat_tests,
        spark.createDataFrame([], PROCEDURE_SCHEMA),
        spark.createDataFrame([], ALLERGY_SCHEMA),
        area_paths(areas),
        F.lit(D(2026, 1, 1)),
        zone=ZONE,
    ).collect()
    assert [r.person_id for r in out] == ["P1"]  # merged persons are not residents of their own
    p = out[0]
    assert (p.sex, p.birth_year, p.age, p.age_band) == ("F", 1960, 65, "65-69")
    assert (p.county_code, p.city_code, p.province_code) == ("110101", "110100", "110000")
    assert [(c.condition, c.first_diagnosed) for c in p.chronic_conditions] == [
        ("diabetes", D(2025, 3, 1)),
        ("hypertension", D(2025, 2, 1)),  # managed by the clinic before the hospital diagnosed it
    ]
    assert (p.has_hypertension, p.has_diabetes) == (True, True)
    assert (p.outpatient_visits, p.emergency_visits, p.admissions) == (2, 0, 1)
    assert (p.last_encounter_institution_id, p.last_encounter_class) == ("HK1", "outpatient")
    last_test = T(2025, 6, 1).astimezone(dt.UTC).replace(tzinfo=None)  # collected in the session's UTC
    assert (p.immunizations, p.last_nat_test_result, p.last_nat_test_time) == (1, "negative", last_test)
    assert (p.source_records, p.institutions) == (2, 2)
    assert (p.procedure_count, p.last_procedure_date, p.allergy_count, p.allergies) == (0, None, 0, [])
    assert "name_token" not in out[0].asDict()


def test_patient_360_procedures_and_allergies_by_hand(spark: SparkSession, areas: DataFrame) -> None:
    """Procedures performed (not cancelled, not in preparation) and active allergies (not resolved,
    refuted or cancelled) of every record linked to the person; the last procedure's Beijing date."""
    persons = spark.createDataFrame(
        [
            ("P1", "active", "tok1", "F", D(1960, 6, 15), "110101001", 2, 2),
            ("P2", "active", "tok2", "M", D(1980, 1, 1), "110101", 1, 1),
        ],
        "person_id string, status string, resident_id_token string, sex string, birth_date date, "
        "area_code string, record_count bigint, institution_count bigint",
    )
    xref = spark.createDataFrame(
        [("CT1", "a1", "P1"), ("HK1", "b1", "P1"), ("HK2", "c1", "P2")],
        "institution_id string, source_patient_id string, person_id string",
    )
    procedures = spark.createDataFrame(
        [
            ("HK1", "pr1", "b1", T(2025, 5, 1, 10), "completed", False),
            # 07:30 in Beijing is 23:30 UTC the day before: the last procedure's date is 2 September.
            ("HK1", "pr2", "b1", T(2025, 9, 2, 7, 30), "completed", False),
            ("HK1", "pr3", "b1", T(2025, 12, 1, 9), "entered-in-error", True),  # later, but cancelled
            ("HK1", "pr4", "b1", None, "preparation", False),  # planned, not performed
            ("CT1", "pr5", "a1", T(2025, 3, 1, 9), None, False),  # HL7 PR1: no status
            ("ZZ1", "pr9", "zz", T(2025, 11, 1, 9), "completed", False),  # a patient no person has
        ],
        PROCEDURE_SCHEMA,
    )
    allergies = spark.createDataFrame(
        [
            ("HK1", "al1", "b1", PENICILLIN, "active", "confirmed", False),
            ("CT1", "al2", "a1", PENICILLIN, None, None, False),  # the same substance, another hospital
            ("HK1", "al3", "b1", MILK, "resolved", "confirmed", False),
            ("HK1", "al4", "b1", PEANUT, None, "entered-in-error", True),
            ("HK1", "al5", "b1", SULFONAMIDE, "active", "refuted", False),
            ("CT1", "al6", "a1", EGGS, "active", "unconfirmed", False),
            ("CT1", "al7", "a1", None, "active", None, False),  # named by its text only
        ],
        ALLERGY_SCHEMA,
    )
    facts = spark.createDataFrame(
        [],
        "institution_id string, source_record_id string, person_id string, encounter_class string, "
        "admit_time timestamp",
    )
    diagnoses = spark.createDataFrame(
        [],
        "institution_id string, source_patient_id string, icd10_category string, diagnosis_time timestamp, "
        "is_cancelled boolean",
    )
    out = patient_360(
        persons,
        xref,
        facts,
        diagnoses,
        spark.createDataFrame([], FOLLOWUP_SCHEMA),
        spark.createDataFrame([], "institution_id string, source_patient_id string, is_cancelled boolean"),
        spark.createDataFrame(
            [],
            "institution_id string, source_record_id string, source_patient_id string, "
            "sample_time timestamp, report_time timestamp, result string",
        ),
        procedures,
        allergies,
        area_paths(areas),
        F.lit(D(2026, 1, 1)),
        zone=ZONE,
    )
    rows = {
        r.person_id: (r.procedure_count, r.last_procedure_date, r.allergy_count, r.allergies)
        for r in out.collect()
    }
    assert rows == {
        "P1": (3, D(2025, 9, 2), 4, [EGGS, PENICILLIN]),
        "P2": (0, None, 0, []),
    }
    assert out.schema["allergies"].dataType.simpleString() == "array<string>"


def test_patient_360_update_equals_a_recomputation(spark: SparkSession, areas: DataFrame) -> None:
    """A stored view combined with added events equals the view recomputed from the whole history."""
    person_schema = (
        "person_id string, status string, resident_id_token string, sex string, birth_date date, "
        "area_code string, record_count bigint, institution_count bigint"
    )
    before_persons = [
        (f"P{i}", "active", f"tok{i}", "F", D(1960, 6, 15), "110101001", 1, 1) for i in range(1, 8)
    ]
    now_persons = [p for p in before_persons if p[0] not in ("P4", "P5")] + [
        ("P4", "active", "tok4", "F", D(1960, 6, 15), "110201", 2, 2),  # moved, and a second record
        ("P5", "merged", "tok5", "F", D(1960, 6, 15), "110101001", 1, 1),
    ]
    xref = spark.createDataFrame(
        [("CT1", f"a{i}", f"P{i}") for i in range(1, 8)],
        "institution_id string, source_patient_id string, person_id string",
    )
    fact_schema = (
        "institution_id string, source_record_id string, person_id string, encounter_class string, "
        "admit_time timestamp"
    )
    old_facts = [("CT1", f"e{i}", f"P{i}", "outpatient", T(2025, 9, 1, 2)) for i in range(1, 8)]
    new_facts = [
        ("HK1", "n1", "P1", "inpatient", T(2025, 12, 1, 2)),  # later: the new latest
        ("HK1", "n2", "P2", "emergency", T(2025, 1, 1, 2)),  # earlier: a new first encounter only
        ("HK1", "n3", "P3", "inpatient", T(2025, 9, 1, 2)),  # ties the stored latest
        ("HK1", "n7", "P7", "outpatient", None),  # no admission time
    ]
    dx_schema = (
        "institution_id string, source_patient_id string, icd10_category string, diagnosis_time timestamp, "
        "is_cancelled boolean"
    )
    old_dx = [("CT1", "a1", "I10", T(2025, 5, 1), False), ("CT1", "a2", "E11", T(2025, 5, 1), False)]
    new_dx = [
        ("CT1", "a1", "E11", T(2025, 12, 1), False),  # a new condition
        ("CT1", "a2", "E11", T(2025, 2, 1), False),  # an earlier first diagnosis
        ("CT1", "a2", "I10", T(2025, 12, 1), True),  # cancelled
    ]
    shot_schema = "institution_id string, source_patient_id string, is_cancelled boolean"
    old_shots, new_shots = [("CT1", "a1", False)], [("CT1", "a1", False), ("CT1", "a2", True)]
    test_schema = (
        "institution_id string, source_record_id string, source_patient_id string, sample_time timestamp, "
        "report_time timestamp, result string"
    )
    old_tests = [
        ("CT1", "t1", "a1", T(2025, 6, 1), None, "negative"),
        ("CT1", "t6", "a6", T(2025, 6, 1), None, "negative"),
    ]
    new_tests = [
        ("CT1", "u1", "a1", None, T(2025, 12, 2), "positive"),  # later, by its report time
        ("CT1", "u6", "a6", T(2025, 6, 1), None, "positive"),  # ties the stored latest
    ]
    old_procedures = [
        ("CT1", "p1", "a1", T(2025, 5, 1, 9), "completed", False),
        ("CT1", "p2", "a2", T(2025, 8, 1, 9), "completed", False),
    ]
    new_procedures = [
        ("CT1", "q1", "a1", T(2025, 12, 1, 7), "completed", False),  # a later last date
        ("CT1", "q2", "a2", T(2025, 3, 1, 9), None, False),  # earlier: the last date stays
        ("CT1", "q4", "a4", T(2025, 10, 1, 9), "entered-in-error", True),
    ]
    old_allergies = [("CT1", "g1", "a1", PENICILLIN, "active", "confirmed", False)]
    new_allergies = [
        ("CT1", "h1", "a1", PENICILLIN, None, None, False),  # the same substance again
        ("CT1", "h2", "a2", MILK, "active", "confirmed", False),
        ("CT1", "h4", "a4", PEANUT, "resolved", "confirmed", False),
    ]
    followups = spark.createDataFrame([("CT1", "f1", "a2", "I10", T(2025, 3, 1))], FOLLOWUP_SCHEMA)
    no_followups = followups.limit(0)
    paths = area_paths(areas)

    def frame(rows: list[tuple], schema: str) -> DataFrame:
        return spark.createDataFrame(rows, schema)

    stored = patient_360(
        frame(before_persons, person_schema),
        xref,
        frame(old_facts, fact_schema),
        frame(old_dx, dx_schema),
        followups,
        frame(old_shots, shot_schema),
        frame(old_tests, test_schema),
        frame(old_procedures, PROCEDURE_SCHEMA),
        frame(old_allergies, ALLERGY_SCHEMA),
        paths,
        F.lit(D(2025, 12, 1)),
        zone=ZONE,
    )
    now, as_of = frame(now_persons, person_schema), F.lit(D(2026, 6, 20))  # P1-P7 turn 66 on 06-15
    updated = patient_360_update(
        stored,
        now,
        visit_summary(frame(new_facts, fact_schema)),
        chronic_conditions(frame(new_dx, dx_schema), no_followups, xref, zone=ZONE),
        immunization_count(frame(new_shots, shot_schema), xref),
        last_test(frame(new_tests, test_schema), xref),
        procedure_summary(frame(new_procedures, PROCEDURE_SCHEMA), xref, zone=ZONE),
        allergy_summary(frame(new_allergies, ALLERGY_SCHEMA), xref),
        paths,
        as_of,
    )
    full = patient_360(
        now,
        xref,
        frame(old_facts + new_facts, fact_schema),
        frame(old_dx + new_dx, dx_schema),
        followups,
        frame(old_shots + new_shots, shot_schema),
        frame(old_tests + new_tests, test_schema),
        frame(old_procedures + new_procedures, PROCEDURE_SCHEMA),
        frame(old_allergies + new_allergies, ALLERGY_SCHEMA),
        paths,
        as_of,
        zone=ZONE,
    )
    flagged = {r.person_id for r in updated.where("_recompute").collect()}
    assert flagged == {"P3", "P6", "P7"}  # ties in time and an undated encounter
    kept = updated.where(~F.col("_recompute")).drop("_recompute")
    assert {r.person_id for r in kept.collect()} == {"P1", "P2", "P4"}  # P5 is no longer a resident
    assertDataFrameEqual(kept, full.join(kept.select("person_id"), "person_id", "left_semi"))
    p1 = kept.where("person_id = 'P1'").first()
    assert (p1.last_encounter_class, p1.admissions, p1.immunizations, p1.last_nat_test_result) == (
        "inpatient",
        1,
        2,
        "positive",
    )
    assert [c.condition for c in p1.chronic_conditions] == ["diabetes", "hypertension"]
    assert (p1.procedure_count, p1.last_procedure_date, p1.allergy_count, p1.allergies) == (
        2,
        D(2025, 12, 1),
        2,
        [PENICILLIN],
    )
    p2 = kept.where("person_id = 'P2'").first()
    assert (p2.procedure_count, p2.last_procedure_date, p2.allergies) == (2, D(2025, 8, 1), [MILK])
    p4 = kept.where("person_id = 'P4'").first()
    assert (p4.procedure_count, p4.last_procedure_date, p4.allergy_count, p4.allergies) == (0, None, 0, [])


def _wall(text: str | None) -> dt.datetime | None:
    """A Beijing wall clock ``YYYY-MM-DD HH:MM`` as an aware datetime."""
    return None if text is None else dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(ZONE))


def _local_day(text: str | None) -> dt.date | None:
    """The Beijing date of a wall clock, by pandas."""
    return None if text is None else pd.Timestamp(text, tz=ZONE).date()


def test_a_stay_without_a_discharge_fills_a_bed_for_the_longest_plausible_stay_at_most(
    spark: SparkSession, areas: DataFrame, places: DataFrame
) -> None:
    # Admitted in 2024 and never discharged (its A03 was lost): counted for 10 nights, not 2 years; a stay
    # opened 3 days before `through` is counted up to it, as before.
    visits = [("old", "2024-01-01 10:00"), ("new", "2026-03-30 10:00")]
    encounters = spark.createDataFrame(
        [("HK1", r, f"p-{r}", "inpatient", False, _wall(a), None) for r, a in visits],
        "institution_id string, source_record_id string, source_patient_id string, encounter_class string, "
        "is_cancelled boolean, admit_time timestamp, discharge_time timestamp",
    )
    xref = spark.createDataFrame(
        [("HK1", f"p-{r}", f"P-{r}") for r, _ in visits],
        "institution_id string, source_patient_id string, person_id string",
    )
    facts = encounter_facts(encounters, xref, zone=ZONE).transform(
        lambda df: with_institution_area(df, places)
    )
    daily = utilization_daily(facts, places, areas, F.lit(D(2026, 4, 2)), zone=ZONE, max_open_nights=10)
    nights = {
        r.date: r.occupied_bed_days
        for r in daily.where("level = 'institution' AND occupied_bed_days > 0").collect()
    }
    old = {D(2024, 1, 1) + dt.timedelta(days=n): 1 for n in range(10)}
    new = {D(2026, 3, 30) + dt.timedelta(days=n): 1 for n in range(4)}
    assert nights == old | new


def test_utilization_days_and_midnight_census_are_local(
    spark: SparkSession, areas: DataFrame, places: DataFrame
) -> None:
    """Visits and stays at 00:30 and 07:59 Beijing time (the UTC date before) and on a month's last
    evening: each counts on its Beijing day, and the census is taken at Beijing midnight."""
    visits = [  # record, class, admitted, discharged (Beijing wall clocks)
        ("i1", "inpatient", "2026-03-01 07:59", "2026-03-03 00:30"),  # in a bed at two local midnights
        ("i2", "inpatient", "2026-03-02 00:30", "2026-03-02 23:30"),  # at none: a same-day stay
        ("i3", "inpatient", "2026-03-31 23:30", None),  # the month's last evening, still in hospital
        ("o1", "outpatient", "2026-03-01 00:30", None),
        ("m1", "emergency", "2026-03-01 07:59", "2026-03-01 09:00"),
    ]
    through = D(2026, 4, 2)
    encounters = spark.createDataFrame(
        [("HK1", r, f"p-{r}", c, False, _wall(a), _wall(d)) for r, c, a, d in visits],
        "institution_id string, source_record_id string, source_patient_id string, encounter_class string, "
        "is_cancelled boolean, admit_time timestamp, discharge_time timestamp",
    )
    xref = spark.createDataFrame(
        [("HK1", f"p-{r}", f"P-{r}") for r, *_ in visits],
        "institution_id string, source_patient_id string, person_id string",
    )
    facts = encounter_facts(encounters, xref, zone=ZONE).transform(
        lambda df: with_institution_area(df, places)
    )
    measures = [
        "outpatient_visits",
        "emergency_visits",
        "admissions",
        "discharges",
        "discharged_bed_days",
        "occupied_bed_days",
    ]
    got = (
        utilization_daily(facts, places, areas, F.lit(through), zone=ZONE)
        .where("level = 'institution'")
        .select("date", *measures)
        .toPandas()
        .set_index("date")
        .sort_index()
    )
    # The same from the wall clocks, by pandas: every Beijing day of March to `through`.
    days = pd.date_range("2026-03-01", through).date
    want = pd.DataFrame(0, index=pd.Index(days, name="date"), columns=measures)
    for _, cls, admitted, discharged in visits:
        start, end = _local_day(admitted), _local_day(discharged)
        want.loc[
            start, {"outpatient": "outpatient_visits", "emergency": "emergency_visits"}.get(cls, "admissions")
        ] += 1
        if cls != "inpatient":
            continue
        if end is not None:
            want.loc[end, "discharges"] += 1
            want.loc[end, "discharged_bed_days"] += max(1, (end - start).days)
        last_night = (end or through + dt.timedelta(days=1)) - dt.timedelta(days=1)
        for night in pd.date_range(start, last_night).date:  # in a bed at the midnight ending `night`
            want.loc[night, "occupied_bed_days"] += 1
    want = want[want.sum(axis=1) > 0]
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    # Spelled out: i1 was in a bed at the midnights ending 1 and 2 March, i2 at none.
    assert list(got.occupied_bed_days[[D(2026, 3, 1), D(2026, 3, 2)]]) == [1, 1]
    assert got.admissions[D(2026, 3, 31)] == 1 and got.outpatient_visits[D(2026, 3, 1)] == 1


def test_chronic_months_and_windows_are_local(
    spark: SparkSession, areas: DataFrame, places: DataFrame
) -> None:
    """Follow-ups on a month's last evening and in the next month's first hours (the UTC date is the last
    day of the month before) count in their Beijing month, and in the registry by their Beijing date."""
    walls = ["2025-03-01 00:30", "2026-01-31 23:30", "2026-02-01 00:30", "2026-03-01 07:59"]
    followups = spark.createDataFrame(
        [("CT1", f"f{i}", "a1", "I10", _wall(w)) for i, w in enumerate(walls)], FOLLOWUP_SCHEMA
    )
    observations = spark.createDataFrame(
        [],
        "institution_id string, source_patient_id string, loinc string, value double, "
        "observation_time timestamp, is_cancelled boolean",
    )
    xref = spark.createDataFrame(
        [("CT1", "a1", "P1")], "institution_id string, source_patient_id string, person_id string"
    )
    readings = followup_readings(followups, observations, xref)
    monthly = (
        chronic_disease_monthly(readings, F.lit(D(2026, 3, 31)), zone=ZONE)
        .select("month", "followups", "followups_12m")
        .toPandas()
        .set_index("month")
        .sort_index()
    )
    # By pandas: each follow-up's Beijing month, then per month its count and the 12 months to it.
    months = pd.Series([pd.Timestamp(w, tz=ZONE).to_period("M") for w in walls])
    span = pd.period_range(months.min(), "2026-03", freq="M")
    want = pd.DataFrame(
        {
            "followups": [int((months == m).sum()) for m in span],
            "followups_12m": [int(((months > m - 12) & (months <= m)).sum()) for m in span],
        },
        index=pd.Index([m.start_time.date() for m in span], name="month"),
    )
    pd.testing.assert_frame_equal(monthly, want, check_dtype=False)
    assert (monthly.followups[D(2026, 1, 1)], monthly.followups[D(2026, 2, 1)]) == (1, 1)
    assert monthly.followups_12m[D(2026, 2, 1)] == 3  # March 2025 to February 2026

    registry = chronic_disease_registry(
        followups, observations, xref, F.lit(D(2026, 1, 31)), zone=ZONE
    ).first()
    dates = sorted(_local_day(w) for w in walls)
    as_of = D(2026, 1, 31)
    upto = [d for d in dates if d <= as_of]
    year_ago = (pd.Timestamp(as_of) - pd.DateOffset(months=12)).date()
    assert (registry.registered_on, registry.last_followup_date, registry.followups_12m) == (
        upto[0],
        upto[-1],
        sum(d > year_ago for d in upto),
    )
    assert (registry.registered_on, registry.followups_12m) == (D(2025, 3, 1), 2)  # not 1 February's
