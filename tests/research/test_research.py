"""The research zone: re-tokenised keys, generalisation, suppression, k-anonymity, cohorts and Table 1.

Every expected value is worked out by hand in the comments. Real Spark and real Delta tables; the silver
tables of the cohort tests are written once for the module (only the columns the cohort reads).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import statistics
import zoneinfo
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from healthlake import io
from healthlake.privacy.tokens import token_of, tokenizer
from healthlake.research import (
    MEMBER_COLUMNS,
    Cohort,
    age_band,
    birth_year,
    county_of,
    drop_direct_identifiers,
    is_direct_identifier,
    k_anonymity,
    k_anonymity_classes,
    retokenize,
    suppress_small_cells,
)
from healthlake.research.extracts import encounter_extract, patient_extract

KEY = os.environ["HEALTHLAKE_HMAC_KEY"].encode()  # set by tests/conftest.py
UTC = dt.UTC


def ts(y: int, m: int, d: int) -> dt.datetime:
    """Noon UTC (20:00 in Beijing, the region's zone): the same date in both."""
    return dt.datetime(y, m, d, 12, 0, tzinfo=UTC)


# --- de-identification -------------------------------------------------------------------------------


def test_retokenize_is_per_extract_and_stable(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("P1", 1), ("P2", 2), ("P1", 3), (None, 4)], "person_id string, n int"
    ).withColumn("copy", F.col("person_id"))
    out = retokenize(df, "person_id", "study_a", KEY)
    out = retokenize(out, "copy", "study_b", KEY, alias="key_b")
    assert out.columns == ["person_id", "n", "key_b"]  # replaced in place, alias at the same position
    rows = sorted(out.collect(), key=lambda r: r.n)
    a = [r.person_id for r in rows]
    b = [r.key_b for r in rows]
    # Same extract + key: the same token every time (computed independently of Spark).
    assert a[0] == a[2] == token_of(KEY, "extract:study_a", "P1")
    assert a[1] == token_of(KEY, "extract:study_a", "P2")
    assert b[0] == b[2] == token_of(KEY, "extract:study_b", "P1")
    # Two extracts: unrelated keys; never the person_id itself; NULL stays NULL.
    assert a[0] != b[0] and a[1] != b[1]
    assert not {"P1", "P2"} & {*a[:3], *b[:3]}
    assert len(a[0]) == 64
    assert a[3] is None and b[3] is None


def test_token_kinds_accept_extracts_only_with_safe_names() -> None:
    tokenizer(KEY, "resident_id")  # the existing kinds still work
    tokenizer(KEY, "extract:htn_2026")
    for bad in ("bogus", "extract:", "extract:a:b", "extract:a b", "extract:_x"):
        with pytest.raises(ValueError):
            tokenizer(KEY, bad)


def test_age_bands_birth_years_and_counties(spark: SparkSession) -> None:
    rows = [
        # age, birth date, area code → band, birth year, county
        (None, None, None),
        (-1, dt.date(1960, 3, 15), "360102001"),  # township → its county
        (0, None, "360102"),  # a county stays
        (4, None, "360100"),  # a city stays (coarser than a county)
        (5, None, "360000"),  # a province stays
        (84, None, "441900003"),  # a township directly under a city → the city
        (85, None, "360102001002"),  # a 12-digit village code → county
        (120, None, "36010"),  # 5 digits: not a code
        (9, None, "abc"),
        (10, None, " 360102 "),  # blanks around are trimmed
    ]
    df = spark.createDataFrame(rows, "age int, birth_date date, area string")
    got = df.select(
        age_band("age").alias("band"), birth_year("birth_date").alias("year"), county_of("area").alias("c")
    ).collect()
    assert [r.band for r in got] == [
        None,
        None,
        "00-04",
        "00-04",
        "05-09",
        "80-84",
        "85+",
        "85+",
        "05-09",
        "10-14",
    ]
    assert [r.year for r in got][:3] == [None, 1960, None]
    assert [r.c for r in got] == [
        None,
        "360102",
        "360102",
        "360100",
        "360000",
        "441900",
        "360102",
        None,
        None,
        "360102",
    ]


def test_drop_direct_identifiers_leaves_none(spark: SparkSession) -> None:
    person = (
        "person_id string, status string, merged_into string, resident_id_token string, name_token string, "
        "phone_token string, address_token string, insurance_no_token string, sex string, birth_date date, "
        "area_code string, record_count bigint"
    )
    extra = (
        "institution_id string, source_patient_id string, source_record_id string, identity_hash string, "
        "name string, phone string, address string, national_id string, resident_id string, "
        "insurance_no string, home_address string, Contact_Phone string, token string, _source_file string, "
        "medication_name string, icd10_category string"
    )
    df = spark.createDataFrame([], f"{person}, {extra}")  # columns only: no Spark job
    assert drop_direct_identifiers(df).columns == [
        "person_id",  # the research key once re-tokenised (retokenize runs first)
        "status",
        "sex",
        "birth_date",
        "area_code",
        "record_count",
        "institution_id",
        "medication_name",
        "icd10_category",
    ]
    assert is_direct_identifier("PHONE") and is_direct_identifier("guardian_resident_id")
    assert not is_direct_identifier("vaccine_name") and not is_direct_identifier("telephone_consult_count_x")


# --- disclosure control ------------------------------------------------------------------------------


def test_suppress_small_cells(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [
            ("a", 4, 100, 0.04),  # 4 < 5: suppressed, and its rate
            ("b", 5, 100, 0.05),  # 5 kept
            ("c", 0, 100, 0.0),  # 0 kept: it discloses no one
            ("d", 10, 3, 3.33),  # denominator 3 suppressed → the rate too, the numerator stays
            ("e", None, 50, None),  # no count: nothing to suppress
        ],
        "cell string, cases bigint, population bigint, rate double",
    )
    out = suppress_small_cells(df, ["cases", "population"], rates={"rate": ("cases", "population")})
    got = {r.cell: (r.cases, r.population, r.rate, r.suppressed) for r in out.collect()}
    assert got == {
        "a": (None, 100, None, True),
        "b": (5, 100, 0.05, False),
        "c": (0, 100, 0.0, False),
        "d": (10, None, None, True),
        "e": (None, 50, None, False),
    }
    with pytest.raises(ValueError):
        suppress_small_cells(df, ["cases"], rates={"rate": ("cases", "population")})


def test_complementary_suppression_within_groups(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [
            ("A", "x", 4),  # primary
            ("A", "y", 12),
            ("A", "z", 6),  # the smallest other positive cell of A: complementary
            ("A", "w", 0),  # zeros never complement
            ("C", "x", 2),  # two primaries in C: neither recoverable from C's total alone
            ("C", "y", 3),
            ("C", "z", 20),
            ("D", "x", 6),  # nothing small in D
            ("D", "y", 7),
        ],
        "county string, band string, cases bigint",
    )
    out = suppress_small_cells(df, ["cases"], complementary_by=["county"])
    got = {(r.county, r.band): (r.cases, r.suppressed) for r in out.collect()}
    assert got == {
        ("A", "x"): (None, True),
        ("A", "y"): (12, False),
        ("A", "z"): (None, True),
        ("A", "w"): (0, False),
        ("C", "x"): (None, True),
        ("C", "y"): (None, True),
        ("C", "z"): (20, False),
        ("D", "x"): (6, False),
        ("D", "y"): (7, False),
    }


def test_k_anonymity_report(spark: SparkSession) -> None:
    # Classes: (F,40-44,A) × 5, (M,40-44,A) × 3, (M,85+,B) × 1, (F,30-34,NULL) × 6 → 15 records.
    rows = (
        [("F", "40-44", "A")] * 5
        + [("M", "40-44", "A")] * 3
        + [("M", "85+", "B")]
        + [("F", "30-34", None)] * 6
    )
    df = spark.createDataFrame(rows, "sex string, age_band string, county string")
    qis = ["sex", "age_band", "county"]
    reports = k_anonymity(df, qis, k=5).unionByName(k_anonymity(df, qis, k=1)).collect()
    assert [r.asDict() for r in reports] == [
        {
            "quasi_identifiers": "sex, age_band, county",
            "k": 5,
            "records": 15,
            "equivalence_classes": 4,
            "min_class_size": 1,
            "classes_below_k": 2,  # the classes of 3 and 1
            "records_below_k": 4,
            "is_k_anonymous": False,
        },
        {
            "quasi_identifiers": "sex, age_band, county",
            "k": 1,
            "records": 15,
            "equivalence_classes": 4,
            "min_class_size": 1,
            "classes_below_k": 0,
            "records_below_k": 0,
            "is_k_anonymous": True,
        },
    ]
    sizes = {(r.sex, r.county): r.class_size for r in k_anonymity_classes(df, ["sex", "county"]).collect()}
    assert sizes == {("F", "A"): 5, ("M", "A"): 3, ("M", "B"): 1, ("F", None): 6}


# --- cohorts -----------------------------------------------------------------------------------------

# Persons: id, status, sex, birth date, area code.
PERSONS = [
    ("P1", "active", "F", dt.date(1960, 3, 15), "360102001"),
    ("P2", "active", "M", dt.date(1990, 6, 30), "360102"),
    ("P3", "active", "M", dt.date(2008, 1, 16), "360102001"),
    ("P4", "active", "F", dt.date(1970, 12, 31), "360203002"),
    ("P5", "active", "F", dt.date(1950, 7, 1), "360100"),
    ("P6", "active", "M", dt.date(1980, 5, 5), "360102001"),
    ("P7", "active", None, dt.date(1985, 1, 1), "360102001"),
    ("P8", "retired", "M", dt.date(1970, 1, 1), "360102001"),
    ("P9", "active", "F", dt.date(1970, 1, 1), "360102001"),
    ("P10", "active", "M", dt.date(2008, 1, 15), "unknown"),
    ("P11", "active", "F", dt.date(1975, 1, 1), "360102001"),
] + [(f"Q{i}", "active", "F", dt.date(1979 + i, 1, 1), "360203002") for i in range(1, 6)]


# Source patients → persons. P10 is two patients at two institutions.
def _patient(person: str) -> tuple[str, str]:
    """The person's patient at H1: P1 → s1, Q1 → q1."""
    return ("H1", f"s{person[1:]}") if person[0] == "P" else ("H1", person.lower())


XREF = [(*_patient(p[0]), p[0]) for p in PERSONS] + [("H2", "t10", "P10")]


def _all_three(person: str, day: dt.datetime) -> tuple[list, list, list]:
    """Events meeting every include criterion on ``day``: I10, SBP 150, an outpatient visit."""
    inst, spid = _patient(person)
    return (
        [(inst, spid, "I10.x00", "I10", day, False)],
        [(inst, spid, "8480-6", 150.0, True, day, False)],
        [(inst, spid, "outpatient", day, False)],
    )


def _events() -> tuple[list, list, list]:
    dx: list = []  # institution, patient, icd10_code, icd10_category, time, cancelled
    obs: list = []  # institution, patient, loinc, value, value_in_range, time, cancelled
    enc: list = []  # institution, patient, class, admit time, cancelled

    def add(parts: tuple[list, list, list]) -> None:
        dx.extend(parts[0])
        obs.extend(parts[1])
        enc.extend(parts[2])

    # P1: I10 on Jan 5 and Feb 10, SBP 150 on Mar 1, outpatient Jan 20 → index Mar 1 (all met), age 65.
    dx.append(("H1", "s1", "I10.x00", "I10", ts(2026, 2, 10), False))
    dx.append(("H1", "s1", "I10.x00", "I10", ts(2026, 1, 5), False))
    obs.append(("H1", "s1", "8480-6", 150.0, True, ts(2026, 3, 1), False))
    enc.append(("H1", "s1", "outpatient", ts(2026, 1, 20), False))
    # P2: I15 on the window's last day (inclusive), SBP 145 Jun 1, inpatient May 1 → index Dec 31, 36.
    dx.append(("H1", "s2", "I15.000", "I15", ts(2026, 12, 31), False))
    obs.append(("H1", "s2", "8480-6", 145.0, True, ts(2026, 6, 1), False))
    enc.append(("H1", "s2", "inpatient", ts(2026, 5, 1), False))
    # P3: like P10 but born a day later: 17 at the index date → too young.
    add(_all_three("P3", ts(2026, 1, 15)))
    # P4: qualifies but has E11 in the window → excluded.
    add(_all_three("P4", ts(2026, 4, 1)))
    dx.append(("H1", "s4", "E11.900", "E11", ts(2026, 4, 2), False))
    # P5: qualifies on Jul 1 (76th birthday); E11 on 2025-12-31 is outside the window → stays.
    add(_all_three("P5", ts(2026, 7, 1)))
    dx.append(("H1", "s5", "E11.900", "E11", ts(2025, 12, 31), False))
    # P6: SBP 130 (below 140) and 400 flagged implausible → no qualifying observation.
    add(_all_three("P6", ts(2026, 2, 1)))
    obs[-1] = ("H1", "s6", "8480-6", 130.0, True, ts(2026, 2, 1), False)
    obs.append(("H1", "s6", "8480-6", 400.0, False, ts(2026, 2, 2), False))
    # P7: its only I10 is the day before the window.
    add(_all_three("P7", ts(2026, 2, 1)))
    dx[-1] = ("H1", "s7", "I10.x00", "I10", ts(2025, 12, 31), False)
    # P8: a retired person.
    add(_all_three("P8", ts(2026, 2, 1)))
    # P9: its I10 was cancelled.
    add(_all_three("P9", ts(2026, 2, 1)))
    dx[-1] = ("H1", "s9", "I10.x00", "I10", ts(2026, 2, 1), True)
    # P10: I10 at H1 on Jan 15 (18th birthday); SBP and outpatient at H2 → one person, index Jan 15, 18.
    dx.append(("H1", "s10", "I10.x00", "I10", ts(2026, 1, 15), False))
    obs.append(("H2", "t10", "8480-6", 160.0, True, ts(2026, 1, 10), False))
    enc.append(("H2", "t10", "outpatient", ts(2026, 1, 12), False))
    # P11: only an emergency visit.
    add(_all_three("P11", ts(2026, 2, 1)))
    enc[-1] = ("H1", "s11", "emergency", ts(2026, 2, 1), False)
    # A patient the EMPI has not linked: ignored.
    add(
        (
            [("H1", "s99", "I10.x00", "I10", ts(2026, 2, 1), False)],
            [("H1", "s99", "8480-6", 150.0, True, ts(2026, 2, 1), False)],
            [("H1", "s99", "outpatient", ts(2026, 2, 1), False)],
        )
    )
    # Q1-Q5: born 1980-1984-01-01, all criteria on 2026-01-10 → ages 46, 45, 44, 43, 42.
    for i in range(1, 6):
        add(_all_three(f"Q{i}", ts(2026, 1, 10)))
    return dx, obs, enc


@pytest.fixture(scope="module")
def cohort(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    """A lake with hand-made silver tables, and the cohort of the example in docs/research.md."""
    root = Path(tmp_path_factory.mktemp("research")) / "lake"
    root.mkdir()
    lake = str(root)
    dx, obs, enc = _events()
    tables: list[tuple[str, list, str]] = [
        (
            "silver.person",
            PERSONS,
            "person_id string, status string, sex string, birth_date date, area_code string",
        ),
        ("silver.person_xref", XREF, "institution_id string, source_patient_id string, person_id string"),
        (
            "silver.diagnosis",
            dx,
            "institution_id string, source_patient_id string, icd10_code string, icd10_category string, "
            "diagnosis_time timestamp, is_cancelled boolean",
        ),
        (
            "silver.observation",
            obs,
            "institution_id string, source_patient_id string, loinc string, value double, "
            "value_in_range boolean, observation_time timestamp, is_cancelled boolean",
        ),
        (
            "silver.encounter",
            enc,
            "institution_id string, source_patient_id string, encounter_class string, admit_time timestamp, "
            "is_cancelled boolean",
        ),
    ]
    for name, rows, schema in tables:
        io.append(spark.createDataFrame(rows, schema), lake, name)
    return (
        Cohort(spark, lake, name="htn_2026", key=KEY)
        .include_diagnosis("I10", "I15")
        .include_observation("8480-6", min_value=140)
        .include_encounter("inpatient", "outpatient")
        .exclude_diagnosis("E11")
        .between("2026-01-01", "2026-12-31")
        .age_between(18, None)
    )


def test_cohort_members(cohort: Cohort) -> None:
    members: DataFrame = cohort.build()
    assert tuple(members.columns) == MEMBER_COLUMNS
    got = {r.research_id: tuple(r)[1:] for r in members.collect()}

    def rid(person: str) -> str:
        return token_of(KEY, "extract:htn_2026", person)  # type: ignore[return-value]

    assert got == {
        rid("P1"): (dt.date(2026, 3, 1), "F", 65, "65-69", "360102"),
        rid("P2"): (dt.date(2026, 12, 31), "M", 36, "35-39", "360102"),
        rid("P5"): (dt.date(2026, 7, 1), "F", 76, "75-79", "360100"),
        rid("P10"): (dt.date(2026, 1, 15), "M", 18, "15-19", None),
        rid("Q1"): (dt.date(2026, 1, 10), "F", 46, "45-49", "360203"),
        rid("Q2"): (dt.date(2026, 1, 10), "F", 45, "45-49", "360203"),
        rid("Q3"): (dt.date(2026, 1, 10), "F", 44, "40-44", "360203"),
        rid("Q4"): (dt.date(2026, 1, 10), "F", 43, "40-44", "360203"),
        rid("Q5"): (dt.date(2026, 1, 10), "F", 42, "40-44", "360203"),
    }
    with pytest.raises(ValueError):
        Cohort(cohort.spark, cohort.lake_root, name="no_criteria").build()


AGES = [65, 36, 76, 18, 46, 45, 44, 43, 42]  # the members above; sorted: 18 36 42 43 44 45 46 65 76


def _row(table: pd.DataFrame, characteristic_start: str, level: str = "") -> pd.Series:
    hits = table[table["characteristic"].str.startswith(characteristic_start) & (table["level"] == level)]
    assert len(hits) == 1, (characteristic_start, level)
    return hits.iloc[0]


def test_table_one(cohort: Cohort) -> None:
    table = cohort.table_one()
    assert _row(table, "N")["n"] == 9
    age = _row(table, "Age (years), mean")
    assert age["n"] == 9
    assert math.isclose(age["mean"], 415 / 9)  # 46.11
    assert math.isclose(age["sd"], statistics.stdev(AGES))
    assert age["summary"] == f"46.1 ({statistics.stdev(AGES):.1f})"
    iqr = _row(table, "Age (years), median")
    # Spark's exact percentile interpolates at (n - 1) p: positions 2, 4, 6 of the sorted ages.
    assert (iqr["q1"], iqr["median"], iqr["q3"]) == (42.0, 44.0, 46.0)
    # Sex: F 7, M 2. M < 5 is suppressed, and F with it (F = N - M would give M away); unknown 0 shown.
    assert _row(table, "Sex", "M")["suppressed"] and pd.isna(_row(table, "Sex", "M")["n"])
    assert _row(table, "Sex", "F")["suppressed"] and _row(table, "Sex", "F")["summary"] == "suppressed"
    assert _row(table, "Sex", "unknown")["n"] == 0
    # Every member has I10/I15 by the index date: 9 of 9 (N - n = 0 is no small cell).
    htn = _row(table, "Condition", "hypertension")
    assert (htn["n"], htn["percent"], htn["suppressed"]) == (9, 100.0, False)
    # Diabetes: P5's E11 of 2025-12-31 (before the window, before the index) → 1 → suppressed.
    assert _row(table, "Condition", "diabetes")["suppressed"]
    assert _row(table, "Condition", "stroke")["n"] == 0

    # With threshold 2 only counts of 1 are hidden: the sex counts show.
    loose = cohort.table_one(threshold=2)
    female, male = _row(loose, "Sex", "F"), _row(loose, "Sex", "M")
    assert (female["n"], male["n"]) == (7, 2)
    assert math.isclose(female["percent"], 700 / 9) and female["summary"] == "7 (77.8%)"
    assert _row(loose, "Condition", "diabetes")["suppressed"]


# --- local days ------------------------------------------------------------------------------------------

ZONE = "Asia/Shanghai"


def _wall(text: str | None) -> dt.datetime | None:
    """A Beijing wall clock ``YYYY-MM-DD HH:MM`` as an aware datetime."""
    return None if text is None else dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(ZONE))


def _local(text: str | None, what: str = "date") -> dt.date | None:
    """The Beijing date (or its month's first day) of a wall clock, by pandas."""
    if text is None:
        return None
    day = pd.Timestamp(text, tz=ZONE)
    return day.date() if what == "date" else day.to_period("M").start_time.date()


def test_cohort_dates_events_and_ages_by_the_local_day(spark: SparkSession, tmp_path: Path) -> None:
    """A window of 2026 holds a diagnosis at 00:30 on 1 January Beijing time (31 December in UTC) and
    not one at 07:59 on 1 January 2027; the index date and age are those of the Beijing day."""
    lake = str(tmp_path / "lake")
    diagnoses = {  # person → Beijing wall clock of their I10 diagnosis
        "A": "2026-01-01 00:30",  # turns 18 that day
        "B": "2026-12-31 23:30",  # the window's last evening
        "C": "2027-01-01 07:59",  # after the window
        "D": "2025-12-31 23:30",  # before it
    }
    born = dt.date(2008, 1, 1)
    tables = [
        (
            "silver.person",
            [(p, "active", "F", born, "360102") for p in diagnoses],
            "person_id string, status string, sex string, birth_date date, area_code string",
        ),
        (
            "silver.person_xref",
            [("H1", f"s{p}", p) for p in diagnoses],
            "institution_id string, source_patient_id string, person_id string",
        ),
        (
            "silver.diagnosis",
            [("H1", f"s{p}", "I10.x00", "I10", _wall(w), False) for p, w in diagnoses.items()],
            "institution_id string, source_patient_id string, icd10_code string, icd10_category string, "
            "diagnosis_time timestamp, is_cancelled boolean",
        ),
    ]
    for name, rows, schema in tables:
        io.append(spark.createDataFrame(rows, schema), lake, name)
    cohort = (
        Cohort(spark, lake, name="local_days", key=KEY, zone=ZONE)
        .include_diagnosis("I10")
        .between("2026-01-01", "2026-12-31")
        .age_between(18, None)
    )
    got = {r.person_id: (r.index_date, r.age_at_index) for r in cohort.members().collect()}
    start, end = dt.date(2026, 1, 1), dt.date(2026, 12, 31)
    want = {}
    for person, wall in diagnoses.items():
        day = _local(wall)
        if start <= day <= end:
            age = day.year - born.year - ((day.month, day.day) < (born.month, born.day))
            want[person] = (day, age)
    assert got == want == {"A": (dt.date(2026, 1, 1), 18), "B": (dt.date(2026, 12, 31), 18)}
    assert Cohort(spark, lake, name="x", key=KEY).zone == "Asia/Shanghai"  # the configured default
    with pytest.raises(ValueError, match="unknown time zone"):
        Cohort(spark, lake, name="x", key=KEY, zone="Asia/Beijing")


def test_extracts_take_local_months_and_dates(spark: SparkSession) -> None:
    first, last, test = "2026-01-31 23:30", "2026-02-01 00:30", "2026-03-01 07:59"
    patients = spark.createDataFrame(
        [
            (
                "P1",
                "F",
                1980,
                "45-49",
                "360102001",
                "360100",
                "360000",
                [],
                False,
                False,
                1,
                0,
                1,
                _wall(first),
                _wall(last),
                "inpatient",
                0,
                _wall(test),
                "negative",
                1,
            )
        ],
        "person_id string, sex string, birth_year int, age_band string, area_code string, city_code string, "
        "province_code string, chronic_conditions array<struct<condition:string,first_diagnosed:date>>, "
        "has_hypertension boolean, has_diabetes boolean, outpatient_visits bigint, emergency_visits bigint, "
        "admissions bigint, first_encounter_time timestamp, last_encounter_time timestamp, "
        "last_encounter_class string, immunizations bigint, last_nat_test_time timestamp, "
        "last_nat_test_result string, institutions bigint",
    )
    row = patient_extract(patients, "release-1", KEY, zone=ZONE).first()
    assert (row.first_encounter_month, row.last_encounter_month, row.last_nat_test_month) == (
        _local(first, "month"),
        _local(last, "month"),
        _local(test, "month"),
    )
    assert (row.first_encounter_month, row.last_encounter_month) == (dt.date(2026, 1, 1), dt.date(2026, 2, 1))
    facts = spark.createDataFrame(
        [
            (
                "P1",
                "H1",
                "360102",
                "360100",
                "inpatient",
                dt.date(2026, 1, 31),
                _wall(last),
                1,
                True,
                False,
                False,
                None,
            )
        ],
        "person_id string, institution_id string, county_code string, city_code string, "
        "encounter_class string, admit_date date, discharge_time timestamp, length_of_stay_days int, "
        "is_index_stay boolean, readmitted_30d boolean, is_readmission_30d boolean, "
        "days_to_next_admission int",
    )
    stay = encounter_extract(facts, "release-1", KEY, zone=ZONE).first()
    assert stay.discharge_date == _local(last) == dt.date(2026, 2, 1)
