"""Epidemic tables on hand-worked examples: cases, the daily curve and vaccination coverage.

Every expected value is worked out by hand from the rows written here (times are Beijing wall clock,
``Asia/Shanghai``, so local days are checked at their edges).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from pyspark.sql import DataFrame, SparkSession

from healthlake.epidemic.cases import epidemic_cases
from healthlake.epidemic.daily import epidemic_daily
from healthlake.epidemic.people import residents
from healthlake.epidemic.vaccination import dose_milestones, vaccination_coverage

ZONE = "Asia/Shanghai"
BJ = ZoneInfo(ZONE)

TESTS = (
    "institution_id string, source_record_id string, source_patient_id string, sample_time timestamp, "
    "report_time timestamp, result string"
)
XREF = "institution_id string, source_patient_id string, person_id string"
DIAGNOSES = (
    "institution_id string, source_patient_id string, icd10_code string, diagnosis_time timestamp, "
    "is_cancelled boolean"
)
PLACES = (
    "person_id string, area_code string, township_code string, county_code string, city_code string, "
    "province_code string, age_band string"
)
AREAS = "area_code string, name string"


def bj(*args: int) -> dt.datetime:
    """A Beijing wall-clock time (an aware datetime: Spark stores the instant)."""
    return dt.datetime(*args, tzinfo=BJ)  # type: ignore[misc]


def _places(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [
            ("P1", "360102001", "360102001", "360102", "360100", "360000", "30-34"),
            ("P2", "360102002", "360102002", "360102", "360100", "360000", "60-64"),
            ("P3", "360102002", "360102002", "360102", "360100", "360000", "30-34"),
            ("P4", None, None, None, None, None, None),
        ],
        PLACES,
    )


def _xref(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [("L1", "a", "P1"), ("L1", "b", "P2"), ("L2", "b2", "P2"), ("L1", "c", "P3"), ("L1", "d", "P4")], XREF
    )


def _areas(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [
            ("360102001", "甲街道"),
            ("360102002", "乙镇"),
            ("360102", "长寿区"),
            ("360100", "南市"),
            ("360000", "江南省"),
        ],
        AREAS,
    )


def _tests(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [
            # P1: positive sampled 23:30 on 1 March, reported 00:30 on 2 March (local days), again on 3 March.
            ("L1", "t1", "a", bj(2026, 3, 1, 23, 30), bj(2026, 3, 2, 0, 30), "positive"),
            ("L1", "t2", "a", bj(2026, 3, 3, 9), bj(2026, 3, 3, 15), "positive"),
            # P2 (two source patients): negative on 1 March, positive at another lab on 2 March 07:59.
            ("L1", "t3", "b", bj(2026, 3, 1, 8), bj(2026, 3, 1, 20), "negative"),
            ("L2", "t4", "b2", bj(2026, 3, 2, 7, 59), bj(2026, 3, 2, 18), "positive"),
            # P3: a pooled sample (no result of its own) and a negative retest the same day.
            ("L1", "t5", "c", bj(2026, 3, 2, 10), None, None),
            ("L1", "t6", "c", bj(2026, 3, 2, 16), bj(2026, 3, 2, 22), "negative"),
            # A positive of a source patient not linked yet: no case, counted under an unknown area.
            ("L1", "t7", "zz", bj(2026, 3, 2, 9), bj(2026, 3, 2, 21), "positive"),
        ],
        TESTS,
    )


def test_a_case_is_a_persons_first_positive_on_local_days(spark: SparkSession) -> None:
    diagnoses = spark.createDataFrame(
        [
            ("L2", "b2", "U07.100", bj(2026, 3, 1, 0, 30), False),  # P2's onset, before the positive
            ("L2", "b2", "U07.1", bj(2026, 2, 20, 0, 30), True),  # cancelled: not the onset
            ("L1", "a", "J18.9", bj(2026, 2, 1, 9), False),  # another disease
        ],
        DIAGNOSES,
    )
    cases = epidemic_cases(
        _tests(spark), diagnoses, _xref(spark), _places(spark), zone=ZONE, disease_codes=("U07.1",)
    )
    rows = {r["person_id"]: r.asDict() for r in cases.collect()}
    assert set(rows) == {"P1", "P2"}  # P3's pool has no result, the unlinked patient is no person
    p1, p2 = rows["P1"], rows["P2"]
    assert p1["positive_tests"] == 2 and p1["first_positive_test_id"] == "t1"
    assert (p1["sample_date"], p1["report_date"], p1["onset_date"]) == (
        dt.date(2026, 3, 1),
        dt.date(2026, 3, 2),
        None,
    )
    assert p1["first_known_at"] == bj(2026, 3, 1, 23, 30).astimezone(dt.UTC).replace(tzinfo=None)
    assert p2["first_positive_institution_id"] == "L2" and p2["positive_tests"] == 1
    assert (p2["sample_date"], p2["report_date"], p2["onset_date"]) == (
        dt.date(2026, 3, 2),
        dt.date(2026, 3, 2),
        dt.date(2026, 3, 1),
    )
    assert p2["first_known_at"] == bj(2026, 3, 1, 0, 30).astimezone(dt.UTC).replace(tzinfo=None)
    assert (p2["township_code"], p2["age_band"]) == ("360102002", "60-64")


def test_the_daily_curve_counts_tests_cases_active_and_moving_figures(spark: SparkSession) -> None:
    diagnoses = spark.createDataFrame([], DIAGNOSES)
    cases = epidemic_cases(
        _tests(spark), diagnoses, _xref(spark), _places(spark), zone=ZONE, disease_codes=("U07.1",)
    )
    daily = epidemic_daily(
        _tests(spark),
        cases,
        _xref(spark),
        _places(spark),
        _areas(spark),
        zone=ZONE,
        as_of=dt.date(2026, 3, 4),
        case_active_days=2,
        moving_days=2,
    )
    cols = [
        "tests",
        "people_tested",
        "resulted_tests",
        "positives",
        "new_cases",
        "active_cases",
        "moving_tests",
        "moving_positives",
        "moving_new_cases",
    ]
    got = {(r["date"].day, r["level"], r["unit_code"]): tuple(r[c] for c in cols) for r in daily.collect()}
    county = {k[0]: v for k, v in got.items() if k[1:] == ("county", "360102")}
    # 1 March: t1 (P1, +) and t3 (P2, -). 2 March: t4 (P2, +), t5 (pooled) and t6 (P3, -): 3 samples of 2
    # people; P1 and P2 both reported (new cases). 3 March: t2 (P1, + again: not a new case).
    # Active 2 days from the report: both cases on 2 and 3 March. Moving sums over 2 days.
    assert county == {
        1: (2, 2, 2, 1, 0, 0, 2, 1, 0),
        2: (3, 2, 2, 1, 2, 2, 5, 2, 2),
        3: (1, 1, 1, 1, 0, 2, 4, 2, 2),
        4: (0, 0, 0, 0, 0, 0, 1, 1, 0),
    }
    # Townships: P1 lives in 360102001, P2 and P3 in 360102002.
    assert got[(2, "township", "360102002")] == (3, 2, 2, 1, 1, 1, 4, 1, 1)
    assert got[(2, "township", "360102001")] == (0, 0, 0, 0, 1, 1, 1, 1, 1)
    # The unlinked patient's positive (2 March) is counted under an unknown area at every level.
    assert got[(2, "province", "unknown")] == (1, 1, 1, 1, 0, 0, 1, 1, 0)
    assert got[(2, "province", "360000")] == county[2]
    positivity = {r["date"].day: r["positivity"] for r in daily.where("unit_code = '360102'").collect()}
    assert positivity == {1: 0.5, 2: 0.5, 3: 1.0, 4: None}
    assert max(k[0] for k in got) == 4  # nothing after as_of


def test_vaccination_coverage_counts_each_residents_nth_dose(spark: SparkSession) -> None:
    immunizations = spark.createDataFrame(
        [
            # P1: two doses (the site wrote dose 1 twice) then a booster: full on 3 March, booster on 5 March.
            ("L1", "a", "COVID19", bj(2026, 3, 1, 9), 1, False),
            ("L1", "a", "COVID19", bj(2026, 3, 3, 0, 10), 1, False),
            ("L1", "a", "COVID19", bj(2026, 3, 5, 9), 3, False),
            # P2: one dose, and a cancelled one; a flu shot that is not the outbreak vaccine.
            ("L1", "b", "COVID19", bj(2026, 3, 2, 23, 50), 1, False),
            ("L1", "b", "COVID19", bj(2026, 3, 4, 9), 2, True),
            ("L1", "b", "Flu", bj(2026, 3, 4, 9), 1, False),
            # P4: not in the registry (a visitor), one dose.
            ("L1", "d", "COVID19", bj(2026, 3, 2, 9), 1, False),
        ],
        "institution_id string, source_patient_id string, vaccine_code string, vaccinated_at timestamp, "
        "dose_number int, is_cancelled boolean",
    )
    milestones = dose_milestones(
        immunizations,
        _xref(spark),
        zone=ZONE,
        vaccine_codes=("COVID19",),
        full_series_doses=2,
        booster_dose=3,
    )
    records = spark.createDataFrame(
        [
            ("R", "r1", "csv_registry"),
            ("R", "r2", "csv_registry"),
            ("R", "r3", "csv_registry"),
            ("L1", "d", "csv_visit"),
        ],
        "institution_id string, source_patient_id string, record_source string",
    )
    xref = _xref(spark).unionByName(
        spark.createDataFrame([("R", "r1", "P1"), ("R", "r2", "P2"), ("R", "r3", "P3")], XREF)
    )
    coverage = vaccination_coverage(
        milestones, residents(records, xref), _places(spark), _areas(spark), as_of=dt.date(2026, 3, 5)
    )
    cols = ["residents", "vaccinated", "full_series", "booster", "non_resident_vaccinated"]
    county = {
        (r["date"].day, r["age_band"]): tuple(r[c] for c in cols)
        for r in coverage.where("level = 'county'").collect()
    }
    # Residents: P1 (30-34), P3 (30-34), P2 (60-64). The first dose in the lake is on 1 March.
    assert {k: v for k, v in county.items() if k[1] == "30-34"} == {
        (1, "30-34"): (2, 1, 0, 0, 0),
        (2, "30-34"): (2, 1, 0, 0, 0),
        (3, "30-34"): (2, 1, 1, 0, 0),
        (4, "30-34"): (2, 1, 1, 0, 0),
        (5, "30-34"): (2, 1, 1, 1, 0),
    }
    assert county[(1, "60-64")] == (1, 0, 0, 0, 0) and county[(2, "60-64")] == (1, 1, 0, 0, 0)
    assert county[(5, "60-64")] == (1, 1, 0, 0, 0)  # the cancelled dose completes nothing
    visitor = {
        r["date"].day: r["non_resident_vaccinated"]
        for r in coverage.where("level = 'county' AND unit_code = 'unknown'").collect()
    }
    assert visitor == {1: 0, 2: 1, 3: 1, 4: 1, 5: 1}
    share = coverage.where(
        "level = 'province' AND unit_code = '360000' AND age_band = '30-34' AND date = '2026-03-05'"
    )
    assert share.first()["coverage_full_series"] == 0.5


def test_a_cases_infectious_window_runs_from_days_before_until_isolation(spark: SparkSession) -> None:
    from healthlake.epidemic.cases import case_windows

    cases = spark.createDataFrame(
        [
            ("P1", bj(2026, 3, 5, 9), bj(2026, 3, 5, 20), bj(2026, 3, 5, 9)),  # isolated on 6 March
            ("P2", bj(2026, 3, 5, 9), bj(2026, 3, 6, 8), bj(2026, 3, 5, 9)),  # no order: until reported
            ("P3", bj(2026, 3, 5, 9), bj(2026, 3, 5, 20), bj(2026, 3, 5, 9)),  # in quarantine since 3 March
        ],
        "person_id string, first_known_at timestamp, first_positive_report_time timestamp, "
        "first_positive_sample_time timestamp",
    )
    isolation = spark.createDataFrame(
        [
            ("P1", bj(2026, 3, 6, 10)),
            ("P1", bj(2026, 3, 7, 10)),
            ("P3", bj(2026, 3, 3, 10)),
            (None, bj(2026, 3, 1)),
        ],
        "person_id string, start_time timestamp",
    )
    utc = {
        r["case_person_id"]: (r["window_start"], r["window_end"])
        for r in case_windows(cases, isolation, days_before=4).collect()
    }

    def naive(t: dt.datetime) -> dt.datetime:
        return t.astimezone(dt.UTC).replace(tzinfo=None)

    assert utc == {
        "P1": (naive(bj(2026, 3, 1, 9)), naive(bj(2026, 3, 6, 10))),
        "P2": (naive(bj(2026, 3, 1, 9)), naive(bj(2026, 3, 6, 8))),
        "P3": (naive(bj(2026, 3, 1, 9)), naive(bj(2026, 3, 3, 10))),
    }
