"""``healthlake publish``: the first run rebuilds gold, later runs merge in only what silver changed and
give the same tables as a full rebuild; one-line errors."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import zoneinfo
from pathlib import Path

import pandas as pd
import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from healthlake import catalog, cli, io
from healthlake.config import PublishSettings, load_config
from healthlake.gold.registry import GOLD
from healthlake.pipelines import publish
from healthlake.pipelines.conform import CDF
from tests.conftest import assert_gold_equals_a_full_rebuild
from tests.jobs import run_job

T = dt.datetime
ENCOUNTER_SCHEMA = (
    "institution_id string, source_record_id string, source_patient_id string, encounter_class string, "
    "is_cancelled boolean, admit_time timestamp, discharge_time timestamp"
)
PERSON_SCHEMA = (
    "person_id string, status string, resident_id_token string, sex string, birth_date date, "
    "area_code string, record_count bigint, institution_count bigint"
)
XREF_SCHEMA = "institution_id string, source_patient_id string, person_id string"
FOLLOWUP_SCHEMA = (
    "institution_id string, source_record_id string, source_patient_id string, followup_time timestamp, "
    "disease_icd10_category string"
)
OBSERVATION_SCHEMA = (
    "institution_id string, source_record_id string, source_patient_id string, loinc string, value double, "
    "observation_time timestamp, is_cancelled boolean"
)
SBP, DBP, GLUCOSE = "8480-6", "8462-4", "14771-0"
DIAGNOSIS_SCHEMA = (
    "institution_id string, source_record_id string, source_patient_id string, icd10_category string, "
    "diagnosis_time timestamp, is_cancelled boolean"
)
PROCEDURE_SCHEMA = (
    "institution_id string, source_record_id string, source_patient_id string, performed_time timestamp, "
    "status string, is_cancelled boolean"
)
ALLERGY_SCHEMA = (
    "institution_id string, source_record_id string, source_patient_id string, code string, "
    "clinical_status string, verification_status string, is_cancelled boolean"
)
PENICILLIN, MILK = "764146007", "3718001"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _write(spark: SparkSession, lake: str, name: str, rows: list[tuple], schema: str, *, cdf: bool) -> None:
    df = spark.createDataFrame(rows, schema)
    io.create_table(spark, lake, name, df.schema, properties=CDF if cdf else None)
    io.append(df, lake, name)


def _day1(spark: SparkSession, lake: str) -> None:
    stay = T(2026, 3, 1, 9)
    _write(
        spark,
        lake,
        catalog.SILVER_ENCOUNTER,
        [
            # P1's history: two earlier stays (a later run recomputes from the first of them on).
            ("H1", "e0", "H1-7", "inpatient", False, T(2026, 1, 5, 9), T(2026, 1, 8, 9)),
            ("H2", "e00", "H2-9", "inpatient", False, T(2026, 2, 1, 9), T(2026, 2, 3, 9)),
            # A clinic visit between those stays and the day-2 change: its fact is not recomputed.
            ("H1", "e7", "H1-7", "outpatient", False, T(2026, 2, 15, 9), T(2026, 2, 15, 10)),
            ("H1", "e1", "H1-7", "inpatient", False, stay, stay + dt.timedelta(days=3)),
            ("H2", "e2", "H2-9", "inpatient", False, stay + dt.timedelta(days=40), None),
            ("H2", "e3", "H2-9", "emergency", False, stay, stay + dt.timedelta(hours=2)),
            ("H2", "e4", "H2-5", "outpatient", False, stay, None),
            ("H1", "e8", "H1-4", "outpatient", False, T(2026, 3, 5, 9), T(2026, 3, 5, 10)),
        ],
        ENCOUNTER_SCHEMA,
        cdf=True,
    )
    _write(
        spark,
        lake,
        catalog.SILVER_PERSON_XREF,
        [("H1", "H1-7", "P1"), ("H2", "H2-9", "P1"), ("H2", "H2-5", "P2"), ("H1", "H1-4", "P4")],
        XREF_SCHEMA,
        cdf=True,  # as `healthlake link` creates it; the persons have none (a lake linked before it did)
    )
    _write(
        spark,
        lake,
        catalog.SILVER_PERSON,
        [
            ("P1", "active", "tok1", "F", dt.date(1950, 1, 1), "110101", 2, 2),
            ("P2", "active", "tok2", "M", dt.date(1980, 4, 15), "110101", 1, 1),  # birthday between the runs
            ("P4", "active", "tok4", "F", dt.date(1970, 9, 1), "110101", 1, 1),
        ],
        PERSON_SCHEMA,
        cdf=False,
    )
    _write(
        spark,
        lake,
        "silver.diagnosis",
        [("H1", "d1", "H1-7", "I10", stay, False)],
        DIAGNOSIS_SCHEMA,
        cdf=True,
    )
    # Chronic-disease follow-ups and their readings. P1 has four hypertension follow-ups in the 12 months
    # to day 1's as_of (2026-04-10); the one of 2025-04-15 leaves that window by day 2's (2026-04-20).
    p1 = [T(2025, 4, 15, 9), T(2026, 1, 10, 9), T(2026, 2, 10, 9), T(2026, 3, 10, 9)]
    _write(
        spark,
        lake,
        catalog.SILVER_CHRONIC_FOLLOWUP,
        [
            *[("H1", f"f1-{i}", "H1-7", t, "I10") for i, t in enumerate(p1)],
            ("H2", "f2", "H2-5", T(2026, 4, 2, 9), "E11"),
            ("H1", "f4", "H1-4", T(2026, 4, 1, 9), "I10"),
        ],
        FOLLOWUP_SCHEMA,
        cdf=True,
    )
    _write(
        spark,
        lake,
        catalog.SILVER_OBSERVATION,
        [
            ("H1", "o1s", "H1-7", SBP, 130.0, p1[-1], False),
            ("H1", "o1d", "H1-7", DBP, 85.0, p1[-1], False),
            ("H2", "o2", "H2-5", GLUCOSE, 8.0, T(2026, 4, 2, 9), False),
            ("H1", "o4s", "H1-4", SBP, 150.0, T(2026, 4, 1, 9), False),
            ("H1", "o4d", "H1-4", DBP, 95.0, T(2026, 4, 1, 9), False),
        ],
        OBSERVATION_SCHEMA,
        cdf=True,
    )
    # P1 had two operations (one is cancelled on day 2); P4 has a penicillin allergy on record.
    _write(
        spark,
        lake,
        catalog.SILVER_PROCEDURE,
        [
            ("H1", "pr1", "H1-7", stay + dt.timedelta(hours=3), "completed", False),
            ("H2", "pr2", "H2-9", T(2026, 2, 1, 12), "completed", False),
        ],
        PROCEDURE_SCHEMA,
        cdf=True,
    )
    _write(
        spark,
        lake,
        catalog.SILVER_ALLERGY,
        [("H1", "al1", "H1-4", PENICILLIN, "active", "confirmed", False)],
        ALLERGY_SCHEMA,
        cdf=True,
    )


def _day2(spark: SparkSession, lake: str) -> None:
    """A readmission at another hospital, a cancellation, an unlinked patient, a relink, new diagnoses, a
    cancelled procedure, and a person (P4) whose events were only added to (a procedure and an allergy
    among them)."""
    readmit = T(2026, 3, 12, 9)
    io.upsert(
        spark.createDataFrame(
            [
                ("H2", "e5", "H2-9", "inpatient", False, readmit, readmit + dt.timedelta(days=5)),
                ("H2", "e3", "H2-9", "emergency", True, T(2026, 3, 1, 9), T(2026, 3, 1, 11)),
                ("H3", "e6", "H3-1", "outpatient", False, T(2026, 4, 20, 8), None),
                # P4 only gains a stay and a diagnosis: their view is updated from the stored row.
                ("H1", "e9", "H1-4", "inpatient", False, T(2026, 4, 1, 9), T(2026, 4, 3, 9)),
            ],
            ENCOUNTER_SCHEMA,
        ),
        lake,
        catalog.SILVER_ENCOUNTER,
        ["institution_id", "source_record_id"],
    )
    io.upsert(
        spark.createDataFrame([("H2", "H2-5", "P3")], XREF_SCHEMA),
        lake,
        catalog.SILVER_PERSON_XREF,
        ["institution_id", "source_patient_id"],
    )
    io.upsert(
        spark.createDataFrame(
            [("P3", "active", "tok3", "M", dt.date(1990, 1, 1), "110101", 1, 1)], PERSON_SCHEMA
        ),
        lake,
        catalog.SILVER_PERSON,
        ["person_id"],
    )
    # P4 is followed up again, controlled now; P1's March reading is corrected, out of control.
    io.append(
        spark.createDataFrame([("H1", "f4b", "H1-4", T(2026, 4, 15, 9), "I10")], FOLLOWUP_SCHEMA),
        lake,
        catalog.SILVER_CHRONIC_FOLLOWUP,
    )
    io.upsert(
        spark.createDataFrame(
            [
                ("H1", "o1s", "H1-7", SBP, 145.0, T(2026, 3, 10, 9), False),
                ("H1", "o4bs", "H1-4", SBP, 120.0, T(2026, 4, 15, 9), False),
                ("H1", "o4bd", "H1-4", DBP, 80.0, T(2026, 4, 15, 9), False),
            ],
            OBSERVATION_SCHEMA,
        ),
        lake,
        catalog.SILVER_OBSERVATION,
        ["institution_id", "source_record_id"],
    )
    io.append(
        spark.createDataFrame(
            [
                ("H2", "d2", "H2-5", "E11", T(2026, 4, 20, 9), False),
                ("H1", "d3", "H1-4", "I10", T(2026, 4, 1, 10), False),
            ],
            DIAGNOSIS_SCHEMA,
        ),
        lake,
        "silver.diagnosis",
    )
    io.upsert(
        spark.createDataFrame(
            [
                ("H1", "pr1", "H1-7", T(2026, 3, 1, 12), "entered-in-error", True),
                ("H1", "pr4", "H1-4", T(2026, 4, 1, 11), "completed", False),
            ],
            PROCEDURE_SCHEMA,
        ),
        lake,
        catalog.SILVER_PROCEDURE,
        ["institution_id", "source_record_id"],
    )
    io.append(
        spark.createDataFrame(
            [
                ("H1", "al4", "H1-4", MILK, "active", "confirmed", False),
                ("H2", "al3", "H2-5", PENICILLIN, None, None, False),  # P3's, relinked today
            ],
            ALLERGY_SCHEMA,
        ),
        lake,
        catalog.SILVER_ALLERGY,
    )


def test_publish_then_incremental_equals_a_full_rebuild(
    spark: SparkSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    lake = str(tmp_path / "lake")
    _day1(spark, lake)
    code, out, _ = _run(capsys, "publish", "--lake", lake)
    assert code == 0 and "gold.encounter_facts" in out and "gold.patient_360" in out
    # Registered in the catalog for SQL users.
    assert spark.sql("SELECT count(*) FROM gold.encounter_facts").first()[0] == 8
    first = io.read_table(spark, lake, catalog.GOLD_ENCOUNTER_FACTS)
    layout = DeltaTable.forPath(spark, io.table_path(lake, catalog.GOLD_ENCOUNTER_FACTS)).detail().first()
    assert layout["partitionColumns"] == ["encounter_class"]
    assert {r.source_record_id: r.readmitted_30d for r in first.collect()} == {
        "e0": True,  # e00 follows 24 days after its discharge, at another hospital
        "e00": True,  # e1 follows 26 days after its discharge
        "e1": False,  # the next admission (e2) is 37 days after discharge
        "e2": None,
        "e3": None,
        "e4": None,
        "e7": None,
        "e8": None,
    }

    _day2(spark, lake)
    cfg = load_config(overrides={"lake_root": lake})
    extract_version = io.latest_version(spark, lake, catalog.RESEARCH_PATIENTS)
    # The day's run is killed first, after its MERGE into gold.encounter_facts. It logged nothing, so the
    # next run starts from the same last run and must find the same changes (the readmission moves a
    # March day of gold.utilization_daily), though some of them are merged already.
    fault = f"kill-after:{catalog.GOLD_ENCOUNTER_FACTS}:1"
    assert run_job("publish", ["--lake", lake], HEALTHLAKE_FAULT=fault) == -signal.SIGKILL
    assert io.read_table(spark, lake, catalog.GOLD_PUBLISH_LOG).count() == 1
    with caplog.at_level(logging.INFO, logger="healthlake"):
        step = publish.run(spark, cfg)
    assert step.mode == "incremental" and step.as_of == dt.date(2026, 4, 20)
    # Every table the silver of these two days feeds was updated, none rebuilt (the derived-table
    # contract); the exchange volumes need bronze (tests/gold/test_gold_region.py checks them).
    assert step.built == {t.name: "absent" if t.requires else "incremental" for t in GOLD}
    # P4 only gained events; P1 had one revised, P2's record moved to P3, who is new.
    assert "patient view of 1 persons updated, of 3 recomputed from history" in caplog.text
    # P1 (a reading revised in March, a follow-up out of the window), P2 and P3 (relinked), P4 (followed up).
    assert "chronic-disease rows of 4 persons recomputed, from 2026-03-01" in caplog.text
    # A daily run leaves the research release as it was; a new release name rebuilds it from this gold.
    assert step.release is None
    assert io.latest_version(spark, lake, catalog.RESEARCH_PATIENTS) == extract_version
    cfg = load_config(overrides={"lake_root": lake, "research.release": "release-2"})
    released = publish.run(spark, cfg)
    assert (released.mode, released.release, released.as_of) == ("unchanged", "release-2", step.as_of)
    incremental = assert_gold_equals_a_full_rebuild(spark, cfg, tmp_path / "rebuilt", released)

    facts = {r.source_record_id: r for r in incremental[catalog.GOLD_ENCOUNTER_FACTS].collect()}
    # e1 (H1) was followed 8 days after its discharge by e5 at H2: a readmission across institutions.
    assert facts["e1"].readmitted_30d is True and facts["e5"].is_readmission_30d is True
    assert "e3" not in facts and facts["e6"].person_id is None and facts["e4"].person_id == "P3"
    people = {r.person_id: r for r in incremental[catalog.GOLD_PATIENT_360].collect()}
    assert people["P2"].age == 46 and people["P2"].outpatient_visits == 0 and people["P3"].has_diabetes
    assert (people["P4"].admissions, people["P4"].last_encounter_class, people["P4"].has_hypertension) == (
        1,
        "inpatient",
        True,
    )
    # P4's added procedure and allergy (updated from the stored row); P1's operation of 1 March cancelled.
    assert (people["P4"].procedure_count, people["P4"].last_procedure_date) == (1, dt.date(2026, 4, 1))
    assert (people["P4"].allergy_count, people["P4"].allergies) == (2, [MILK, PENICILLIN])
    assert (people["P1"].procedure_count, people["P1"].last_procedure_date) == (1, dt.date(2026, 2, 1))
    assert (people["P3"].allergy_count, people["P3"].allergies, people["P2"].allergies) == (
        1,
        [PENICILLIN],
        [],
    )

    registry = {(r.person_id, r.disease): r for r in incremental[catalog.GOLD_CHRONIC_REGISTRY].collect()}
    assert set(registry) == {("P1", "hypertension"), ("P3", "diabetes"), ("P4", "hypertension")}
    p1 = registry["P1", "hypertension"]
    assert (p1.followups_12m, p1.is_standard_managed, p1.is_controlled) == (3, False, False)
    assert registry["P4", "hypertension"].is_controlled and registry["P4", "hypertension"].followups_12m == 2
    monthly = incremental[catalog.GOLD_CHRONIC_MONTHLY].where("person_id = 'P1'").orderBy("month").collect()
    assert [(r.month.month, r.followups_12m, r.is_controlled) for r in monthly[-2:]] == [
        (3, 4, False),
        (4, 3, False),
    ]

    # Nothing new: the next run writes nothing and reports the tables as they stand.
    versions = {t: io.latest_version(spark, lake, t) for t in incremental}
    again = publish.run(spark, cfg)
    assert again.mode == "unchanged" and again.tables == released.tables and again.as_of == step.as_of
    assert again.release is None
    assert {t: io.latest_version(spark, lake, t) for t in incremental} == versions
    log = io.read_table(spark, lake, catalog.GOLD_PUBLISH_LOG).orderBy("finished_at").collect()
    assert [(r.mode, r.release) for r in log] == [
        ("full", "release-1"),
        ("incremental", None),
        ("unchanged", "release-2"),
    ]
    assert log[-1].versions[catalog.SILVER_ENCOUNTER] == io.latest_version(
        spark, lake, catalog.SILVER_ENCOUNTER
    )


def test_publish_increments_only_from_the_configured_lake_size(
    spark: SparkSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lake = str(tmp_path / "lake")
    _day1(spark, lake)
    events = publish.SIZED_BY
    rows = sum(io.read_table(spark, lake, t).count() for t in events if io.is_table(spark, lake, t))
    assert rows > 0
    silver = publish.inputs_of(spark, lake, publish._input_versions(spark, lake))
    with caplog.at_level(logging.INFO, logger="healthlake.pipelines.publish"):
        assert publish._worth_incrementing(silver, rows)
        assert "event rows" not in caplog.text
        assert publish._worth_incrementing(silver, 0)
        assert not publish._worth_incrementing(silver, rows + 1)
    assert f"silver holds {rows} event rows, under publish.incremental_min_rows ({rows + 1})" in caplog.text
    # The default is the measured size from which increments pay; the tests set 0 (tests/conftest.py).
    assert PublishSettings().incremental_min_rows == 20_000_000
    assert load_config().publish.incremental_min_rows == 0


def test_publish_errors_are_one_line(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "publish", "--lake", str(tmp_path / "nowhere"))
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err
    (tmp_path / "lake").mkdir()
    code, _, err = _run(capsys, "publish", "--lake", str(tmp_path / "lake"))
    assert code == 2 and err.count("\n") == 1
    assert "silver.encounter is not in the lake" in err and "healthlake conform" in err


def test_as_of_and_days_are_local_and_an_incremental_day_equals_a_full_rebuild(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Events at 00:30 and 07:59 Beijing time, whose UTC date is the day before: ``as_of``, ages, the days
    of ``gold.utilization_daily`` and a readmission are those of the Beijing calendar (by pandas), on the
    first run and on an incremental one, which gives the gold of a full rebuild."""
    lake = str(tmp_path / "lake")
    tz = zoneinfo.ZoneInfo("Asia/Shanghai")

    def wall(text: str | None) -> dt.datetime | None:
        return None if text is None else dt.datetime.fromisoformat(text).replace(tzinfo=tz)

    day1 = [  # record, class, admitted, discharged (Beijing wall clocks)
        ("e1", "inpatient", "2026-01-30 07:59", "2026-01-31 23:30"),
        ("e2", "outpatient", "2026-02-01 00:30", None),  # the last event: as_of is 1 February
    ]
    day2 = [
        ("e3", "inpatient", "2026-02-02 07:00", "2026-02-03 00:30"),  # two Beijing days after e1's discharge
        ("e4", "outpatient", "2026-02-03 07:59", None),
    ]

    def rows(visits: list[tuple]) -> list[tuple]:
        return [("H1", r, "H1-7", c, False, wall(a), wall(d)) for r, c, a, d in visits]

    _write(spark, lake, catalog.SILVER_ENCOUNTER, rows(day1), ENCOUNTER_SCHEMA, cdf=True)
    _write(spark, lake, catalog.SILVER_PERSON_XREF, [("H1", "H1-7", "P1")], XREF_SCHEMA, cdf=True)
    born = dt.date(2008, 2, 1)  # 18 on the first run's as_of; 17 on the UTC date before it
    _write(
        spark,
        lake,
        catalog.SILVER_PERSON,
        [("P1", "active", "tok1", "F", born, "110101", 1, 1)],
        PERSON_SCHEMA,
        cdf=False,
    )
    cfg = load_config(overrides={"lake_root": lake})

    def last_local_day(visits: list[tuple]) -> dt.date:
        return max(pd.Timestamp(t, tz=tz).date() for _, _, a, d in visits for t in (a, d) if t is not None)

    first = publish.run(spark, cfg)
    assert first.mode == "full" and first.as_of == last_local_day(day1) == dt.date(2026, 2, 1)
    person = io.read_table(spark, lake, catalog.GOLD_PATIENT_360).first()
    assert person.age == 18

    io.append(spark.createDataFrame(rows(day2), ENCOUNTER_SCHEMA), lake, catalog.SILVER_ENCOUNTER)
    second = publish.run(spark, cfg)
    assert second.mode == "incremental" and second.as_of == last_local_day(day1 + day2) == dt.date(2026, 2, 3)
    tables = assert_gold_equals_a_full_rebuild(spark, cfg, tmp_path / "rebuilt", second)

    facts = {r.source_record_id: r for r in tables[catalog.GOLD_ENCOUNTER_FACTS].collect()}
    days = {r: pd.Timestamp(a, tz=tz).date() for r, _, a, _ in day1 + day2}
    assert {r: f.admit_date for r, f in facts.items()} == days
    gap = (days["e3"] - pd.Timestamp(day1[0][3], tz=tz).date()).days
    assert (
        (facts["e1"].days_to_next_admission, facts["e1"].readmitted_30d) == (gap, 1 <= gap <= 30) == (2, True)
    )
    utilization = tables[catalog.GOLD_UTILIZATION_DAILY].where("level = 'institution'").collect()
    discharged = {r.date: r.discharges for r in utilization if r.discharges}
    want = {pd.Timestamp(d, tz=tz).date(): 1 for _, c, _, d in day1 + day2 if c == "inpatient"}
    assert discharged == want == {dt.date(2026, 1, 31): 1, dt.date(2026, 2, 3): 1}
