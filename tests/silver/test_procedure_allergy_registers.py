"""Procedures, allergies and the practitioner and organization registers on hand-made FHIR and HL7 v2.

Expected values come from the standards: FHIR R4 (``Procedure.status`` not-done and entered-in-error,
``performed[x]``, ``AllergyIntolerance.verificationStatus``), HL7 v2 tables 0127 (allergen type), 0128
(severity), 0206 (action code D = delete) and 0396 (coding systems: I10P = ICD-10-PCS, C4 = CPT-4,
RXNORM); a date alone is the local midnight of ``Asia/Shanghai`` (docs/silver.md, Times and days),
computed here with ``zoneinfo``.
"""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
from pyspark.sql import SparkSession

from healthlake import io
from healthlake.config import Config, load_config
from healthlake.pipelines import conform, ingest

ZONE = ZoneInfo("Asia/Shanghai")
UTC = dt.UTC


def _utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, zone: dt.tzinfo = ZONE
) -> dt.datetime:
    """A wall-clock time of ``zone`` as the naive UTC datetime Spark returns in a UTC session."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=zone).astimezone(UTC).replace(tzinfo=None)


def _coding(system: str, code: str, display: str) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}]}


CPT, PCS, SCT = (
    "http://www.ama-assn.org/go/cpt",
    "http://www.cms.gov/Medicare/Coding/ICD10",
    "http://snomed.info/sct",
)


def _procedure(pid: str, **fields: object) -> dict:
    resource = {
        "resourceType": "Procedure",
        "id": pid,
        "meta": {"lastUpdated": "2026-01-05T10:00:00+08:00"},
        "status": "completed",
        "code": _coding(CPT, "44950", "Appendectomy"),
        "subject": {"reference": "Patient/P1"},
        "encounter": {"reference": "Encounter/E1"},
    }
    resource.update(fields)
    return {k: v for k, v in resource.items() if v is not None}


FHIR = [
    _procedure("p-done", performedDateTime="2026-01-05T09:00:00+08:00"),
    _procedure("p-not-done", status="not-done", code=_coding(PCS, "0DTJ4ZZ", "Resection of appendix")),
    _procedure("p-error", status="entered-in-error", performedDateTime="2026-01-05T08:00:00+08:00"),
    _procedure("p-planned", status="preparation"),
    _procedure("p-no-time"),  # completed, but when?
    _procedure(
        "p-backwards",
        code=_coding(SCT, "80146002", "Appendectomy"),
        performedPeriod={"start": "2026-01-05T10:00:00+08:00", "end": "2026-01-05T09:00:00+08:00"},
    ),
    _procedure("p-nobody", subject=None, performedDateTime="2026-01-05T09:00:00+08:00"),
    {
        "resourceType": "AllergyIntolerance",
        "id": "a-error",
        "verificationStatus": {"coding": [{"code": "entered-in-error"}]},
        "type": "allergy",
        "category": ["medication", "biologic"],
        "criticality": "high",
        "code": _coding("http://www.nlm.nih.gov/research/umls/rxnorm", "7980", "Penicillin G"),
        "patient": {"reference": "Patient/P1"},
        "onsetDateTime": "2020-03-01T10:00:00+08:00",
        "recordedDate": "2026-01-05T09:00:00+08:00",
        "reaction": [
            {"severity": "severe", "manifestation": [{"coding": [{"display": "Anaphylaxis"}]}]},
            {"severity": "mild", "manifestation": [{"text": "Hives"}]},
        ],
    },
    {
        "resourceType": "AllergyIntolerance",
        "id": "a-text-only",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "criticality": "extreme",  # not low | high | unable-to-assess
        "code": {"text": "芒果"},
        "patient": {"reference": "Patient/P1"},
    },
    {"resourceType": "AllergyIntolerance", "id": "a-nothing", "patient": {"reference": "Patient/P1"}},
    {
        "resourceType": "Practitioner",
        "id": "dr-zhang",
        "identifier": [
            {"system": "urn:healthlake:id:hh-staff", "value": "S-17"},
            {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"},
        ],
        "name": [{"family": "张", "given": ["三"]}],
        "gender": "male",
        "qualification": [{"code": {"text": "主治医师"}}],
    },
    {"resourceType": "Practitioner", "id": "dr-nameless", "gender": "M"},
    {
        "resourceType": "Organization",
        "id": "org-1",
        "identifier": [{"system": "urn:healthlake:id:uscc", "value": "12360100491500000X"}],
        "name": "南昌市第一医院",
        "type": [
            _coding("http://terminology.hl7.org/CodeSystem/organization-type", "prov", "Healthcare Provider")
        ],
        "telecom": [
            {"system": "email", "value": "info@example.org"},
            {"system": "phone", "value": "0791-1234567"},
        ],
        "address": [{"city": "南昌市", "state": "江西省"}],
    },
]


def _adt(trigger: str, control: str, when: str, visit: str, *segments: str) -> str:
    msh = (
        f"MSH|^~\\&|HIS|HH|HL|REGION|{when}||ADT^{trigger}^ADT_A01|{control}|P|2.5|||AL|NE|CHN|UNICODE UTF-8"
    )
    pv1 = "PV1|1|I" + "|" * 17 + visit
    return "\r".join([msh, "PID|1||Q9^^^HH^MR||李^娜||19540605|F", pv1, *segments]) + "\r"


HL7 = "".join(
    [
        _adt(
            "A01",
            "c1",
            "20260105100000+0800",
            "V9",
            "PR1|1||0UT90ZZ^Resection of uterus^I10P||20260105093000+0800",
            "PR1|2||71045^Xray exam chest 1 view^C4||20260105",
            "PR1|3||44950^Appendectomy^C4||20260105094000+0800" + "|" * 15 + "D",  # PR1-20 = D: deleted
            "AL1|1|DA^Drug allergy^HL70127|70618^Penicillin^RXNORM|SV^Severe^HL70128|Hives|20200301",
            "AL1|2|FA|Peanut|MO|Wheeze~Rash",
        ),
        # The admission is cancelled: its procedures with it, not the patient's allergies.
        _adt(
            "A11",
            "c2",
            "20260105120000+0800",
            "V9",
            "PR1|1||0UT90ZZ^Resection of uterus^I10P||20260105093000+0800",
            "AL1|1|DA^Drug allergy^HL70127|70618^Penicillin^RXNORM|SV^Severe^HL70128|Hives|20200301",
        ),
        # No visit number: a procedure key would be shared by every such message.
        _adt("A08", "c3", "20260105130000+0800", "", "PR1|1||71045^Xray^C4||20260105"),
    ]
)


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("procedures")
    fhir = root / "landing" / "fhir" / "HF" / "2026-01-05" / "resources.ndjson"
    fhir.parent.mkdir(parents=True)
    fhir.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in FHIR) + "\n", encoding="utf-8")
    hl7 = root / "landing" / "hl7v2" / "HH" / "2026-01-05" / "adt.hl7"
    hl7.parent.mkdir(parents=True)
    hl7.write_text(HL7, encoding="utf-8")
    cfg = load_config(overrides={"landing_root": str(root / "landing"), "lake_root": str(root / "lake")})
    ingest.run(spark, cfg)
    conform.run(spark, cfg)
    return cfg


def _rows(spark: SparkSession, cfg: Config, table: str) -> dict[tuple[str, str], object]:
    rows = io.read_table(spark, cfg.lake_root, table).collect()
    out = {(r.institution_id, r.source_record_id): r for r in rows}
    assert len(out) == len(rows), f"{table}: a key twice"
    return out


def _quarantined(spark: SparkSession, cfg: Config, table: str) -> dict[str | None, set[str]]:
    rows = (
        io.read_table(spark, cfg.lake_root, "silver.quarantine").where(f"silver_table = '{table}'").collect()
    )
    return {r.source_record_id: set(r.failed_rules) for r in rows}


def test_fhir_procedures_status_code_systems_and_times(spark: SparkSession, lake: Config) -> None:
    got = _rows(spark, lake, "silver.procedure")
    fhir = {key[1]: r for key, r in got.items() if key[0] == "HF"}
    assert set(fhir) == {"p-done", "p-not-done", "p-error", "p-planned"}
    done = fhir["p-done"]
    assert (done.source_patient_id, done.source_encounter_id) == ("P1", "E1")
    assert (done.code_system, done.code, done.display, done.status) == (
        "CPT",
        "44950",
        "Appendectomy",
        "completed",
    )
    assert (done.performed_time, done.performed_end_time) == (_utc(2026, 1, 5, 9), None)
    assert done._event_time == _utc(2026, 1, 5, 10)  # meta.lastUpdated
    assert done.is_cancelled is False
    assert (fhir["p-not-done"].code_system, fhir["p-not-done"].is_cancelled) == ("ICD-10-PCS", True)
    assert fhir["p-error"].is_cancelled is True
    assert fhir["p-error"].performed_time == _utc(2026, 1, 5, 8)
    assert (fhir["p-planned"].performed_time, fhir["p-planned"].is_cancelled) == (None, False)
    quarantined = _quarantined(spark, lake, "silver.procedure")
    assert quarantined["p-no-time"] == {"performed_time_present"}
    assert quarantined["p-backwards"] == {"performed_end_after_start"}
    assert quarantined["p-nobody"] == {"source_patient_id_present"}


def test_hl7_pr1_segments_keyed_by_visit_and_cancelled_with_their_admission(
    spark: SparkSession, lake: Config
) -> None:
    got = {key[1]: r for key, r in _rows(spark, lake, "silver.procedure").items() if key[0] == "HH"}
    assert set(got) == {"V9-PR1-1", "V9-PR1-2", "V9-PR1-3"}
    first, second, third = got["V9-PR1-1"], got["V9-PR1-2"], got["V9-PR1-3"]
    assert (first.source_patient_id, first.source_encounter_id) == ("Q9", "V9")
    assert (first.code_system, first.code, first.display) == ("ICD-10-PCS", "0UT90ZZ", "Resection of uterus")
    assert first.performed_time == _utc(2026, 1, 5, 9, 30)
    assert (first.is_cancelled, first._event_time) == (True, _utc(2026, 1, 5, 12))  # the A11 is later
    assert (second.code_system, second.performed_time, second.is_cancelled) == (
        "CPT",
        _utc(2026, 1, 5),
        False,
    )
    assert (third.code, third.is_cancelled) == ("44950", True)  # action code D
    # The message without a visit number: its procedure is quarantined, not keyed "PR1-1".
    assert _quarantined(spark, lake, "silver.procedure")[None] == {"source_record_id_present"}


def test_fhir_allergies(spark: SparkSession, lake: Config) -> None:
    fhir = {key[1]: r for key, r in _rows(spark, lake, "silver.allergy").items() if key[0] == "HF"}
    assert set(fhir) == {"a-error"}
    a = fhir["a-error"]
    assert (a.source_patient_id, a.code_system, a.code, a.display) == ("P1", "RxNorm", "7980", "Penicillin G")
    assert (a.category, a.allergy_type, a.criticality) == ("medication", "allergy", "high")
    assert (a.severity, a.reaction) == ("severe", "Anaphylaxis")  # the first reaction
    assert (a.verification_status, a.clinical_status, a.is_cancelled) == ("entered-in-error", None, True)
    assert (a.onset_time, a.recorded_time) == (_utc(2020, 3, 1, 10), _utc(2026, 1, 5, 9))
    quarantined = _quarantined(spark, lake, "silver.allergy")
    assert quarantined["a-text-only"] == {"criticality_valid"}
    assert quarantined["a-nothing"] == {"allergen_present"}


def test_hl7_al1_segments_keyed_by_patient_and_mapped_to_fhir_vocabularies(
    spark: SparkSession, lake: Config
) -> None:
    got = {key[1]: r for key, r in _rows(spark, lake, "silver.allergy").items() if key[0] == "HH"}
    assert set(got) == {"Q9-AL1-1", "Q9-AL1-2"}
    drug, food = got["Q9-AL1-1"], got["Q9-AL1-2"]
    assert (drug.source_patient_id, drug.source_encounter_id) == ("Q9", None)
    assert (drug.code_system, drug.code, drug.display) == ("RxNorm", "70618", "Penicillin")
    assert (drug.category, drug.allergy_type, drug.severity, drug.reaction) == (
        "medication",
        "allergy",
        "severe",
        "Hives",
    )
    assert (drug.onset_time, drug.is_cancelled) == (_utc(2020, 3, 1), False)  # the A11 cancels no allergy
    assert (food.code_system, food.code, food.display) == (None, "Peanut", None)
    assert (food.category, food.allergy_type, food.severity, food.reaction) == (
        "food",
        "allergy",
        "moderate",
        "Wheeze",
    )
    assert food.onset_time is None


def test_registers(spark: SparkSession, lake: Config) -> None:
    (dr,) = _rows(spark, lake, "silver.practitioner").values()
    assert (dr.source_record_id, dr.identifier_system, dr.identifier) == ("dr-zhang", "NPI", "1234567893")
    assert (dr.name, dr.gender, dr.qualification) == ("张三", "male", "主治医师")
    assert _quarantined(spark, lake, "silver.practitioner") == {
        "dr-nameless": {"name_present", "gender_valid"}
    }
    (org,) = _rows(spark, lake, "silver.organization").values()
    assert (org.identifier_system, org.identifier) == ("urn:healthlake:id:uscc", "12360100491500000X")
    assert (org.name, org.organization_type) == ("南昌市第一医院", "Healthcare Provider")
    assert (org.city, org.state, org.telecom) == ("南昌市", "江西省", "0791-1234567")
