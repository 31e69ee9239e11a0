"""Conform on hand-made feeds: one set of clinical facts in three formats, updates, cancellations, rules."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from healthlake import io
from healthlake.config import Config, RegionSettings, load_config
from healthlake.pipelines import conform, ingest, publish
from tests.silver.test_identifiers_and_codes import with_check

RESIDENT_ID = with_check("36010219800203123")  # 17th digit 3: male, born 1980-02-03
PATIENT = "P001"
VISIT = "V001"


def _config(root: Path) -> Config:
    return load_config(overrides={"landing_root": str(root / "landing"), "lake_root": str(root / "lake")})


def _land(root: Path, feed: str, institution: str, day: str, name: str, content: str | bytes) -> None:
    path = root / "landing" / feed / institution / day / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)


def _segment(name: str, fields: dict[int, str]) -> str:
    """An HL7 segment with field n (1-based) set to ``fields[n]``."""
    values = [""] * max(fields)
    for n, value in fields.items():
        values[n - 1] = value
    return "|".join([name, *values])


def _fhir_facts() -> str:
    patient = {
        "resourceType": "Patient",
        "id": PATIENT,
        "meta": {"versionId": "1", "lastUpdated": "2026-01-05T09:40:00+08:00"},
        "identifier": [
            {"system": "urn:healthlake:institution:HF:mrn", "value": PATIENT},
            {"system": "urn:healthlake:id:cn-resident", "value": RESIDENT_ID.lower()},
        ],
        "name": [{"family": "张", "given": ["伟"]}],
        "gender": "male",
        "birthDate": "1980-02-03",
        "telecom": [{"system": "phone", "value": "+86 138 1234 5678"}],
        "address": [
            {
                "text": "幸福路1号",
                "extension": [{"url": "urn:healthlake:fhir:area-code", "valueString": "360102001"}],
            }
        ],
    }
    encounter = {
        "resourceType": "Encounter",
        "id": VISIT,
        "meta": {"versionId": "1", "lastUpdated": "2026-01-05T09:40:00+08:00"},
        "status": "finished",
        "class": {"code": "AMB"},
        "type": [{"text": "内科"}],
        "subject": {"reference": f"Patient/{PATIENT}"},
        "period": {"start": "2026-01-05T09:00:00+08:00"},
        "diagnosis": [
            {"condition": {"reference": "Condition/c-b"}, "rank": 2},
            {"condition": {"reference": "Condition/c-a"}, "rank": 1},
        ],
    }

    def condition(cid: str, code: str, text: str) -> dict:
        return {
            "resourceType": "Condition",
            "id": cid,
            "meta": {"versionId": "1", "lastUpdated": "2026-01-05T09:40:00+08:00"},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": code, "display": text}]},
            "subject": {"reference": f"Patient/{PATIENT}"},
            "encounter": {"reference": f"Encounter/{VISIT}"},
            "recordedDate": "2026-01-05T09:00:00+08:00",
        }

    def observation(
        oid: str, code: str, quantity: dict | None = None, components: list | None = None
    ) -> dict:
        resource = {
            "resourceType": "Observation",
            "id": oid,
            "status": "final",
            "meta": {"versionId": "1", "lastUpdated": "2026-01-05T09:40:00+08:00"},
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": f"Patient/{PATIENT}"},
            "encounter": {"reference": f"Encounter/{VISIT}"},
            "effectiveDateTime": "2026-01-05T09:00:00+08:00",
        }
        if quantity:
            resource["valueQuantity"] = quantity
        if components:
            resource["component"] = [
                {"code": {"coding": [{"system": "http://loinc.org", "code": c}]}, "valueQuantity": q}
                for c, q in components
            ]
        return resource

    pressures = [("8480-6", {"value": 150, "unit": "mmHg"}), ("8462-4", {"value": 95, "unit": "mm[Hg]"})]
    lines = [
        patient,
        encounter,
        condition("c-a", "I10x00", "原发性高血压"),
        condition("c-b", "e11.900", "2型糖尿病"),
        observation("o-glu", "2345-7", {"value": 126, "unit": "mg/dL"}),
        observation("o-bp", "85354-9", components=pressures),  # a panel: one row per component
    ]
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in lines) + "\n"


def _hl7_facts() -> str:
    segments = [
        "MSH|^~\\&|HIS|HH|HEALTHLAKE|REGION|20260105094000+0800||ADT^A04^ADT_A01|m1|P|2.5|||AL|NE|CHN|"
        "UNICODE UTF-8",
        "EVN|A04|20260105094000+0800",
        f"PID|1||{PATIENT}^^^HH^MR~{RESIDENT_ID}^^^CHN^NI||张^伟||19800203|M|||幸福路1号^^西安市^江南省^^CHN^H^^360102001"
        "||8613812345678^PRN^CP",
        _segment("PV1", {1: "1", 2: "O", 10: "内科", 19: VISIT, 44: "20260105090000+0800"}),
        "DG1|1||I10.X00^原发性高血压^I10||20260105090000+0800|F",
        "DG1|2||E11900^2型糖尿病^I10||20260105090000+0800|F",
    ]
    results = [
        "MSH|^~\\&|HIS|HH|HEALTHLAKE|REGION|20260105094000+0800||ORU^R01^ORU_R01|m2|P|2.5|||AL|NE|CHN|"
        "UNICODE UTF-8",
        f"PID|1||{PATIENT}^^^HH^MR",
        _segment("PV1", {1: "1", 2: "O", 10: "内科", 19: VISIT}),
        f"OBR|1|{VISIT}-L||LAB",
        "OBX|1|NM|SBP^收缩压^99LOC||150|mm[Hg]|||||F|||20260105090000+0800",
        "OBX|2|NM|DBP^舒张压^99LOC||95|mm[Hg]|||||F|||20260105090000+0800",
        "OBX|3|NM|GLU^葡萄糖^99LOC||126|mg/dL|||||F|||20260105090000+0800",
    ]
    return "\r".join(segments) + "\r" + "\r".join(results) + "\r"


def _csv_facts() -> str:
    records = (
        "record_id,institution_id,patient_no,name,sex,birth_date,id_number,phone,address,township_code,"
        "family_record_no,chronic_conditions,created_at,updated_at\n"
        f"D1,HC,{PATIENT},张伟,男,1980-02-03,{RESIDENT_ID},13812345678,幸福路1号,360102001,F1,,"
        "2010-01-01 09:00:00,2026-01-05 09:40:00\n"
    )
    visits = (
        "visit_id,institution_id,patient_no,name,id_number,visit_time,visit_type,department,diagnosis_code,"
        "diagnosis_name,secondary_diagnosis_codes,sbp,dbp,glucose,glucose_unit,record_status,updated_at\n"
        f"{VISIT},HC,{PATIENT},张伟,{RESIDENT_ID},2026-01-05 09:00:00,门诊,内科,i10.x00,原发性高血压,E11.900,"
        "150,95,126,mg/dL,new,2026-01-05 09:40:00\n"
    )
    return records, visits


def _run(spark: SparkSession, cfg: Config) -> list[conform.ConformResult]:
    ingest.run(spark, cfg)
    return conform.run(spark, cfg)


def _table(spark: SparkSession, cfg: Config, name: str) -> DataFrame:
    return io.read_table(spark, cfg.lake_root, name)


@pytest.fixture(scope="module")
def three_formats(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("three_formats")
    _land(root, "fhir", "HF", "2026-01-05", "facts_20260105.ndjson", _fhir_facts())
    _land(root, "hl7v2", "HH", "2026-01-05", "messages_20260105.hl7", _hl7_facts())
    records, visits = _csv_facts()
    _land(root, "csv", "HC", "2026-01-05", "health_records_20260105.csv", records)
    _land(root, "csv", "HC", "2026-01-05", "visits_20260105.csv", visits)
    cfg = _config(root)
    _run(spark, cfg)
    return cfg


def _by_feed(df: DataFrame, columns: list[str]) -> dict[str, DataFrame]:
    return {
        feed: df.where(F.col("_source_feed") == feed).select(*columns) for feed in ("fhir", "hl7v2", "csv")
    }


def test_the_same_facts_in_three_formats_give_the_same_silver_rows(
    spark: SparkSession, three_formats: Config
) -> None:
    cfg = three_formats
    checks = {
        "silver.patient_record": [
            "source_record_id",
            "resident_id_token",
            "name_token",
            "phone_token",
            "address_token",
            "sex",
            "birth_date",
            "area_code",
            "resident_id_valid",
            "birth_date_matches_id",
            "sex_matches_id",
            "_event_time",
        ],
        "silver.encounter": [
            "source_record_id",
            "source_patient_id",
            "encounter_class",
            "status",
            "is_cancelled",
            "admit_time",
            "discharge_time",
            "department",
            "_event_time",
        ],
        "silver.diagnosis": [
            "source_patient_id",
            "source_encounter_id",
            "code_system",
            "icd10_code",
            "icd10_category",
            "is_primary",
            "diagnosis_time",
            "is_cancelled",
        ],
        "silver.observation": [
            "source_patient_id",
            "source_encounter_id",
            "loinc",
            F.round("value", 3).alias("value"),
            "unit",
            "observation_time",
            "is_cancelled",
        ],
    }
    for table, columns in checks.items():
        rows = _by_feed(_table(spark, cfg, table), columns)
        assert rows["fhir"].count() >= 1, table
        assertDataFrameEqual(rows["hl7v2"], rows["fhir"])
        assertDataFrameEqual(rows["csv"], rows["fhir"])
    diagnoses = _table(spark, cfg, "silver.diagnosis").where(F.col("_source_feed") == "fhir")
    assert {(r.icd10_code, r.is_primary) for r in diagnoses.collect()} == {
        ("I10.x00", True),
        ("E11.900", False),
    }
    observations = _table(spark, cfg, "silver.observation").where(F.col("_source_feed") == "fhir")
    assert {(r.loinc, round(r.value, 2), r.unit) for r in observations.collect()} == {
        ("14749-6", 6.99, "mmol/L"),
        ("8480-6", 150.0, "mm[Hg]"),
        ("8462-4", 95.0, "mm[Hg]"),
    }
    (patient,) = _table(spark, cfg, "silver.patient_record").where(F.col("_source_feed") == "fhir").collect()
    assert (patient.sex, str(patient.birth_date), patient.resident_id_valid) == ("M", "1980-02-03", True)


def test_identifiers_only_in_the_vault(spark: SparkSession, three_formats: Config) -> None:
    cfg = three_formats
    clear = {RESIDENT_ID, "张伟", "13812345678", "幸福路1号"}
    for name in (*conform.conformed_tables(), "silver.quarantine"):
        if not io.is_table(spark, cfg.lake_root, name):
            continue
        df = _table(spark, cfg, name)
        strings = [f.name for f in df.schema.fields if f.dataType.simpleString() == "string"]
        leaks = df.where(
            F.greatest(
                *[F.lit(False), *[F.col(c).isin(*clear) | F.col(c).contains(RESIDENT_ID) for c in strings]]
            )
        )
        assert leaks.isEmpty(), name
    vault = {(r.kind, r.value) for r in _table(spark, cfg, "vault.identity").collect()}
    assert {("resident_id", RESIDENT_ID), ("name", "张伟"), ("phone", "13812345678")} <= vault


def test_reconciliation_and_a_rerun_changes_nothing(spark: SparkSession, three_formats: Config) -> None:
    cfg = three_formats
    log = _table(spark, cfg, "silver.conform_log").where(F.col("status") == conform.FINISHED).collect()
    assert log
    for row in log:
        assert (
            row.bronze_rows
            == row.conformed + row.superseded + row.quarantined + row.duplicates + row.not_modelled
        )
        bronze = _table(spark, cfg, row.bronze_table).count()
        assert row.bronze_rows == bronze
    tables = [t for t in conform.conformed_tables() if io.is_table(spark, cfg.lake_root, t)]
    versions = {t: io.latest_version(spark, cfg.lake_root, t) for t in tables}
    assert conform.run(spark, cfg) == []
    assert {t: io.latest_version(spark, cfg.lake_root, t) for t in tables} == versions


def _adt(trigger: str, control: str, when: str, discharge: str = "", segments: tuple[str, ...] = ()) -> str:
    pv1 = {1: "1", 2: "I", 10: "骨科", 19: "I9", 44: "20260105080000+0800"}
    if discharge:
        pv1[45] = discharge
    msh = (
        f"MSH|^~\\&|HIS|HH|HL|REGION|{when}+0800||ADT^{trigger}^ADT_A01|{control}|P|2.5|||AL|NE|CHN|"
        "UNICODE UTF-8"
    )
    pid = "PID|1||Q9^^^HH^MR||李^娜||19540605|F"
    return "\r".join([msh, f"EVN|{trigger}|{when}+0800", pid, _segment("PV1", pv1), *segments]) + "\r"


def test_out_of_order_update_and_cancellation(spark: SparkSession, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    # The discharge (later event) arrives first; the admission (earlier event) a day later.
    _land(
        tmp_path,
        "hl7v2",
        "HH",
        "2026-01-06",
        "a.hl7",
        _adt("A03", "c2", "20260106100000", "20260106100000+0800"),
    )
    _run(spark, cfg)
    _land(tmp_path, "hl7v2", "HH", "2026-01-07", "b.hl7", _adt("A01", "c1", "20260105080000"))
    _run(spark, cfg)
    (row,) = _table(spark, cfg, "silver.encounter").collect()
    assert (row.status, row.discharge_time is not None, row.is_cancelled) == ("finished", True, False)
    _land(tmp_path, "hl7v2", "HH", "2026-01-08", "c.hl7", _adt("A11", "c3", "20260107090000"))
    _run(spark, cfg)
    (row,) = _table(spark, cfg, "silver.encounter").collect()
    assert (row.status, row.is_cancelled) == ("cancelled", True)
    # The same cancellation sent again is a counted duplicate, not a new version.
    _land(tmp_path, "hl7v2", "HH", "2026-01-09", "d.hl7", _adt("A11", "c3", "20260107090000"))
    (result,) = _run(spark, cfg)
    assert (result.bronze_rows, result.duplicates) == (1, 1)
    assert _table(spark, cfg, "silver.encounter").count() == 1


def test_bad_values_end_in_quarantine_with_the_rule_that_failed(spark: SparkSession, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    dg1 = ("DG1|1||XYZ^?^I10||20260105080000+0800|F",)
    oru = (
        "MSH|^~\\&|HIS|HH|HL|REGION|20260105090000+0800||ORU^R01^ORU_R01|c9|P|2.5|||AL|NE|CHN|UNICODE UTF-8\r"
        "PID|1||Q9^^^HH^MR\rOBR|1|I9-L||LAB\r"
        "OBX|1|NM|2345-7^葡萄糖^LN||900|mmol/L|||||F|||20260105090000+0800\r"
        "OBX|2|NM|XYZ9^?^99LOC||1|mmol/L|||||F|||20260105090000+0800\r"
    )
    _land(tmp_path, "hl7v2", "HH", "2026-01-05", "results.hl7", oru)
    # Discharged the day before admission.
    bad = _adt("A03", "c1", "20260105080000", "20260104080000+0800", dg1)
    _land(tmp_path, "hl7v2", "HH", "2026-01-05", "bad.hl7", bad)
    future = "P2,2096-01-01"  # born in the future: a negative age
    records = (
        "record_id,institution_id,patient_no,name,sex,birth_date,id_number,phone,address,township_code,"
        f"family_record_no,chronic_conditions,created_at,updated_at\nD2,HC,{future.split(',')[0]},王五,男,"
        f"{future.split(',')[1]},,,,360102001,F2,,2010-01-01 09:00:00,2026-01-05 09:00:00\n"
    )
    _land(tmp_path, "csv", "HC", "2026-01-05", "health_records_20260105.csv", records)
    _run(spark, cfg)
    rules = {
        (r.silver_table, rule)
        for r in _table(spark, cfg, "silver.quarantine").collect()
        for rule in r.failed_rules
    }
    assert ("silver.encounter", "discharge_after_admit") in rules
    assert ("silver.diagnosis", "icd10_code_valid") in rules
    assert ("silver.patient_record", "birth_date_plausible") in rules
    assert ("silver.observation", "value_plausible") in rules  # glucose 900 mmol/L
    assert ("silver.observation", "code_mapped_to_loinc") in rules  # a local code no map knows
    metrics = (
        _table(spark, cfg, "silver.dq_metrics").where(F.col("rule") == "discharge_after_admit").collect()
    )
    assert sum(m.rows_failed for m in metrics) == 1


def test_a_record_sent_twice_is_in_silver_once(spark: SparkSession, tmp_path: Path) -> None:
    # An exact re-send later in the same file, and again in a later file of a later day: the record is
    # stored once, and each copy is counted as a duplicate of it (issue 29: both copies were dropped).
    cfg = _config(tmp_path)
    records, visits = _csv_facts()
    header, row = visits.splitlines()
    other = row.replace(VISIT, "V002").replace("09:00:00", "10:00:00")
    _land(tmp_path, "csv", "HC", "2026-01-05", "visits_20260105.csv", f"{header}\n{row}\n{other}\n{row}\n")
    _land(
        tmp_path, "csv", "HC", "2026-01-05", "health_records_20260105.csv", records + records.split("\n")[1]
    )
    (first,) = _run(spark, cfg)
    _land(tmp_path, "csv", "HC", "2026-01-06", "visits_20260106.csv", f"{header}\n{row}\n")
    (second,) = _run(spark, cfg)
    encounters = _table(spark, cfg, "silver.encounter")
    assert sorted(r.source_record_id for r in encounters.collect()) == [VISIT, "V002"]
    (stored,) = encounters.where(F.col("source_record_id") == VISIT).collect()
    assert (stored._source_file.endswith("visits_20260105.csv"), stored._record_offset) == (True, 1)
    assert (
        _table(spark, cfg, "silver.patient_record").where(F.col("source_record_id") == PATIENT).count() == 1
    )
    assert (first.bronze_rows, first.duplicates, second.bronze_rows, second.duplicates) == (5, 2, 1, 1)
    assert _table(spark, cfg, "silver.quarantine").isEmpty()


def test_a_patient_known_only_from_a_visit_has_a_patient_record(spark: SparkSession, tmp_path: Path) -> None:
    # A clinic's visit row names its patient (number, name, ID number): that is a source patient record
    # the EMPI must see, even when the clinic sent no health record for them.
    # A clinic in London: its wall clocks are read in the region's zone, not Beijing's.
    cfg = _config(tmp_path).model_copy(update={"region": RegionSettings(timezone="Europe/London")})
    _, visits = _csv_facts()
    _land(tmp_path, "csv", "HC", "2026-01-05", "visits_20260105.csv", visits)
    _run(spark, cfg)
    (admitted,) = _table(spark, cfg, "silver.encounter").select(F.unix_seconds("admit_time")).first()
    assert admitted == 1767603600  # 2026-01-05 09:00 in London (winter) is 09:00 UTC
    (record,) = _table(spark, cfg, "silver.patient_record").collect()
    assert (record.institution_id, record.source_record_id, record.record_source) == (
        "HC",
        PATIENT,
        "csv_visit",
    )
    assert record.resident_id_token is not None and record.name_token is not None
    assert record.birth_date_matches_id is None  # a visit states no birth date


def test_the_row_level_reconciliation_places_each_row_by_what_silver_holds(
    spark: SparkSession, tmp_path: Path
) -> None:
    lake = str(tmp_path / "lake")
    pointer = "_bronze_table string, _bronze_version long, _source_file string, _record_offset int"
    held = [
        ("HC", "A", "h1", "bronze.csv_records", 1, "f", 1),
        ("HC", "B", "h2", "bronze.csv_records", 1, "f", 2),
        ("HC", "C", "h3", "bronze.csv_records", 1, "f", 3),
    ]
    schema = f"institution_id string, source_record_id string, _row_hash string, {pointer}"
    io.append(spark.createDataFrame(held, schema), lake, "silver.encounter")
    parsed = [
        ("HC", "A", "h1", "conformed", "bronze.csv_records", 1, "f", 1),  # silver holds this very row
        ("HC", "B", "h2", "conformed", "bronze.csv_records", 2, "g", 1),  # same content, other row
        ("HC", "C", "h9", "conformed", "bronze.csv_records", 2, "g", 2),  # another version of the key
        ("HC", "D", "h4", "conformed", "bronze.csv_records", 2, "g", 3),  # key not in silver: lost
        ("HC", "E", "h5", "quarantined", "bronze.csv_records", 2, "g", 4),
    ]
    classified = spark.createDataFrame(
        parsed,
        f"institution_id string, source_record_id string, _row_hash string, _outcome string, {pointer}",
    ).withColumn("_bronze_order", F.lit(2))
    verified = conform._verify(spark, lake, "silver.encounter", classified)
    assert {(r.source_record_id, r._outcome) for r in verified.collect()} == {
        ("A", "conformed"),
        ("B", "duplicate"),
        ("C", "superseded"),
        ("D", "lost"),
        ("E", "quarantined"),
    }


def test_mistyped_years_and_implausible_stays_are_quarantined_and_do_not_move_as_of(
    spark: SparkSession, tmp_path: Path
) -> None:
    # 2204 for 2024: a discharge, a follow-up and a record version dated after the record arrived; and a
    # stay of 400 days. Each would move the region's as_of or explode a day sequence downstream.
    cfg = _config(tmp_path)
    typo = _adt("A03", "c1", "20260106100000", "22040106100000+0800")
    long_stay = _adt("A03", "c2", "20260106100000", "20260106100000+0800").replace(
        "20260105080000+0800", "20241202080000+0800"
    )
    ok = _adt("A03", "c3", "20260106100000", "20260106100000+0800").replace("I9", "I10")
    _land(tmp_path, "hl7v2", "HH", "2026-01-06", "a.hl7", typo + long_stay.replace("I9", "I11") + ok)
    followups = (
        "followup_id,institution_id,patient_no,name,id_number,followup_date,disease,sbp,dbp,fasting_glucose,"
        "glucose_unit,next_followup_date\n"
        f"F1,HC,{PATIENT},张伟,{RESIDENT_ID},2204-01-05 09:00:00,高血压,150,95,,,2204-04-05\n"
        f"F2,HC,{PATIENT},张伟,{RESIDENT_ID},2026-01-05 09:00:00,高血压,150,95,,,2026-04-05\n"
    )
    _land(tmp_path, "csv", "HC", "2026-01-06", "followups_20260106.csv", followups)
    _run(spark, cfg)
    failed = {
        (r.silver_table, r.source_record_id, rule)
        for r in _table(spark, cfg, "silver.quarantine").collect()
        for rule in r.failed_rules
    }
    assert ("silver.encounter", "I9", "time_not_after_arrival") in failed
    assert ("silver.encounter", "I11", "stay_length_plausible") in failed
    assert ("silver.chronic_followup", "F1", "time_not_after_arrival") in failed
    assert ("silver.observation", "F1-sbp", "time_not_after_arrival") in failed
    assert {r.source_record_id for r in _table(spark, cfg, "silver.encounter").collect()} == {"I10"}
    assert {r.source_record_id for r in _table(spark, cfg, "silver.chronic_followup").collect()} == {"F2"}
    # Nor does the 2204 discharge move the day gold is published as of: I10's discharge, 2026-01-06 local
    # (tests/gold/test_as_of.py has the rest of as_of).
    assert publish._as_of(publish.inputs_of(spark, cfg.lake_root, {})) == dt.date(2026, 1, 6)
    # A limit wide enough lets the stay through: the thresholds come from the configuration (checked on
    # the stay itself: a second conform would cost a minute and test nothing more).
    wide = load_config(overrides={"conform": {"max_stay_days": 500}})
    stay = spark.createDataFrame(
        [(dt.datetime(2024, 12, 2), dt.datetime(2026, 1, 6))],
        "admit_time timestamp, discharge_time timestamp",
    )

    def stay_failed(config: Config) -> bool:
        (encounter,) = [e for e in conform.entities(config) if e.table == "silver.encounter"]
        (rule,) = [r for r in encounter.rules() if r.name == "stay_length_plausible"]
        return not stay.select(F.coalesce(rule.condition, F.lit(False))).first()[0]

    assert stay_failed(cfg) and not stay_failed(wide)


def _txns(lake: str, table: str) -> list[tuple[str, int]]:
    """The (txnAppId, txnVersion) pairs the commits of a Delta table recorded, in commit order."""
    found = []
    for commit in sorted((Path(lake) / table.replace(".", "/") / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "txn" in action:
                found.append((action["txn"]["appId"], int(action["txn"]["version"])))
    return found


def test_one_run_takes_every_bronze_table_and_a_range_an_older_release_planned_is_finished_alone(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = _config(tmp_path)
    lake = cfg.lake_root
    _land(tmp_path, "hl7v2", "HH", "2026-01-05", "messages_20260105.hl7", _hl7_facts())
    ingest.run(spark, cfg)
    hl7_end = io.latest_version(spark, lake, "bronze.hl7v2_messages")
    # The log as a release before run numbers left it after a crash: HL7's range planned, not finished.
    legacy = spark.createDataFrame(
        [("bronze.hl7v2_messages", 0, hl7_end, "planned")],
        "bronze_table string, start_version long, end_version long, status string",
    ).withColumn("logged_at", F.current_timestamp())
    io.append(legacy, lake, "silver.conform_log")
    records, visits = _csv_facts()
    _land(tmp_path, "csv", "HC", "2026-01-05", "health_records_20260105.csv", records)
    _land(tmp_path, "csv", "HC", "2026-01-05", "visits_20260105.csv", visits)
    _land(tmp_path, "fhir", "HF", "2026-01-05", "facts_20260105.ndjson", _fhir_facts())
    ingest.run(spark, cfg)
    results = conform.run(spark, cfg)
    ranges = [(r.bronze_table, r.start_version, r.end_version) for r in results]
    csv_end = io.latest_version(spark, lake, "bronze.csv_records")
    fhir_end = io.latest_version(spark, lake, "bronze.fhir_resources")
    assert ranges == [
        ("bronze.hl7v2_messages", 0, hl7_end),  # alone, first
        ("bronze.fhir_resources", 0, fhir_end),  # then one run over the rest, in BRONZE_INPUTS order
        ("bronze.csv_records", 0, csv_end),
    ]
    assert results[1].seconds == results[2].seconds != results[0].seconds
    log = _table(spark, cfg, "silver.conform_log").where(F.col("status") == conform.FINISHED)
    assert sorted((r.bronze_table, r.run_number) for r in log.collect()) == [
        ("bronze.csv_records", 1),
        ("bronze.fhir_resources", 1),
        ("bronze.hl7v2_messages", None),
    ]
    # The older release's txn for the range it planned; the run number for the new run.
    assert _txns(lake, "silver.dq_metrics") == [
        ("healthlake-conform-bronze.hl7v2_messages", hl7_end),
        ("healthlake-conform", 1),
    ]
    # Patient, visit and diagnoses from three formats in one run: each bronze row is accounted for.
    for result in results:
        assert result.bronze_rows == (
            result.conformed
            + result.superseded
            + result.duplicates
            + result.quarantined
            + result.not_modelled
        )
    assert conform.run(spark, cfg) == []
