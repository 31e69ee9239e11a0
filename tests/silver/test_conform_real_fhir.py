"""Real FHIR samples (Synthea transaction Bundles, a bulk NDJSON export) conform to silver correctly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from healthlake import io
from healthlake.config import load_config
from healthlake.pipelines import conform, ingest

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "fhir"
BUNDLES = TESTDATA / "synthea-r4-bundles"
BULK = TESTDATA / "bulk-ndjson-10-patients"


def _resources(kind: str) -> dict[tuple[str, str], dict]:
    """Every resource of ``kind`` in the samples, keyed by (institution folder, id), references resolved."""
    out = {}
    for path in sorted(BUNDLES.glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        by_url = {e["fullUrl"]: e["resource"]["id"] for e in bundle["entry"] if "fullUrl" in e}
        for entry in bundle["entry"]:
            r = entry["resource"]
            if r["resourceType"] == kind:
                out[("SYNTHEA", r["id"])] = {"resource": r, "refs": by_url}
    for path in sorted(BULK.glob(f"{kind}.*.ndjson")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                out[("BULK", r["id"])] = {"resource": r, "refs": {}}
    return out


def _ref(item: dict, reference: str) -> str:
    return item["refs"].get(reference) or reference.rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> str:
    if not BUNDLES.is_dir():
        pytest.skip("../shared/testdata is not beside the project")
    root = tmp_path_factory.mktemp("real_fhir")
    shutil.copytree(BUNDLES, root / "landing" / "fhir" / "SYNTHEA" / "2026-01-01")
    shutil.copytree(BULK, root / "landing" / "fhir" / "BULK" / "2026-01-01")
    cfg = load_config(overrides={"landing_root": str(root / "landing"), "lake_root": str(root / "lake")})
    ingest.run(spark, cfg)
    (result,) = conform.run(spark, cfg)
    assert result.bronze_rows == (
        result.conformed + result.superseded + result.quarantined + result.duplicates + result.not_modelled
    )
    return cfg.lake_root


def test_well_formed_resources_outside_the_model_are_counted_not_quarantined(
    spark: SparkSession, lake: str
) -> None:
    # A data-quality view of silver.quarantine must not show a Claim as a failure: it is not modelled.
    (log,) = (
        io.read_table(spark, lake, "silver.conform_log").where(F.col("status") == conform.FINISHED).collect()
    )
    counts: dict[str, int] = {}
    for path in sorted(BUNDLES.glob("*.json")):
        for entry in json.loads(path.read_text(encoding="utf-8"))["entry"]:
            kind = entry["resource"]["resourceType"]
            counts[kind] = counts.get(kind, 0) + 1
    for kind in ("Claim", "ExplanationOfBenefit", "CarePlan"):
        assert log.not_modelled_types[kind] >= counts[kind] > 0, kind
    for kind in ("Patient", "Encounter", "Condition", "Procedure", "Organization", "Practitioner"):
        assert counts[kind] > 0 and kind not in log.not_modelled_types, kind
    assert log.not_modelled == sum(log.not_modelled_types.values())
    quarantine = io.read_table(spark, lake, "silver.quarantine")
    assert quarantine.where(F.col("silver_table").isNull()).isEmpty()


def test_each_encounter_appears_once_with_its_patient_and_times(spark: SparkSession, lake: str) -> None:
    expected = _resources("Encounter")
    rows = io.read_table(spark, lake, "silver.encounter").collect()
    got = {(r.institution_id, r.source_record_id): r for r in rows}
    assert len(rows) == len(got) == len(expected) > 100
    for key, item in expected.items():
        r, resource = got[key], item["resource"]
        assert r.source_patient_id == _ref(item, resource["subject"]["reference"])
        assert r.admit_time.isoformat()[:16] == _utc(resource["period"]["start"])[:16]
        assert r.encounter_class in ("outpatient", "emergency", "inpatient", "other")


def test_each_condition_appears_once_with_its_code_encounter_and_patient(
    spark: SparkSession, lake: str
) -> None:
    expected = _resources("Condition")
    rows = io.read_table(spark, lake, "silver.diagnosis").collect()
    got = {(r.institution_id, r.source_record_id): r for r in rows}
    assert len(rows) == len(got) == len(expected) > 100
    for key, item in expected.items():
        r, resource = got[key], item["resource"]
        coding = resource["code"]["coding"][0]
        assert (r.code, r.code_system) == (coding["code"], "SNOMED CT")
        assert r.source_patient_id == _ref(item, resource["subject"]["reference"])
        assert r.source_encounter_id == _ref(item, resource["encounter"]["reference"])


def test_each_patient_is_one_record_with_tokens_only(spark: SparkSession, lake: str) -> None:
    expected = _resources("Patient")
    rows = io.read_table(spark, lake, "silver.patient_record").collect()
    assert {(r.institution_id, r.source_record_id) for r in rows} == set(expected)
    for r in rows:
        resource = expected[(r.institution_id, r.source_record_id)]["resource"]
        assert str(r.birth_date) == resource["birthDate"]
        assert r.name_token is not None and len(r.name_token) == 64


def _utc(value: str) -> str:
    import datetime as dt

    return dt.datetime.fromisoformat(value).astimezone(dt.UTC).replace(tzinfo=None).isoformat()


# The FHIR system URIs of the samples' codings, with the short names docs/silver.md gives them.
FHIR_CODE_SYSTEMS = {
    "http://snomed.info/sct": "SNOMED CT",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
}


def _instant(value: str | None) -> str | None:
    return _utc(value) if value else None


def _iso(value: object) -> str | None:
    return value.isoformat() if value is not None else None


def _silver(spark: SparkSession, lake: str, table: str) -> dict[tuple[str, str], object]:
    rows = io.read_table(spark, lake, table).collect()
    got = {(r.institution_id, r.source_record_id): r for r in rows}
    assert len(got) == len(rows), f"{table}: a key twice"
    return got


def test_each_procedure_appears_once_with_its_patient_encounter_code_and_time(
    spark: SparkSession, lake: str
) -> None:
    expected = _resources("Procedure")
    got = _silver(spark, lake, "silver.procedure")
    assert set(got) == set(expected) and len(expected) > 2000
    for key, item in expected.items():
        r, resource = got[key], item["resource"]
        coding = resource["code"]["coding"][0]
        assert (r.code_system, r.code, r.display) == (
            FHIR_CODE_SYSTEMS[coding["system"]],
            coding["code"],
            coding["display"],
        )
        assert r.source_patient_id == _ref(item, resource["subject"]["reference"])
        assert r.source_encounter_id == _ref(item, resource["encounter"]["reference"])
        period = resource.get("performedPeriod", {})
        assert _iso(r.performed_time) == _instant(resource.get("performedDateTime") or period.get("start"))
        assert _iso(r.performed_end_time) == _instant(period.get("end"))
        assert (r.status, r.is_cancelled) == (
            resource["status"],
            resource["status"] in ("entered-in-error", "not-done"),
        )
        assert _iso(r._event_time) == _iso(
            r._ingested_at if "lastUpdated" not in resource["meta"] else _utc(resource["meta"]["lastUpdated"])
        )


def test_each_allergy_appears_once_with_its_patient_substance_and_reaction(
    spark: SparkSession, lake: str
) -> None:
    expected = _resources("AllergyIntolerance")
    got = _silver(spark, lake, "silver.allergy")
    assert set(got) == set(expected) and len(expected) >= 10
    for key, item in expected.items():
        r, resource = got[key], item["resource"]
        coding = resource["code"]["coding"][0]
        assert (r.code_system, r.code, r.display) == (
            FHIR_CODE_SYSTEMS[coding["system"]],
            coding["code"],
            coding["display"],
        )
        assert r.source_patient_id == _ref(item, resource["patient"]["reference"])
        assert (r.category, r.allergy_type, r.criticality) == (
            resource["category"][0],
            resource["type"],
            resource["criticality"],
        )
        assert r.clinical_status == resource["clinicalStatus"]["coding"][0]["code"]
        verification = resource["verificationStatus"]["coding"][0]["code"]
        assert (r.verification_status, r.is_cancelled) == (verification, verification == "entered-in-error")
        assert _iso(r.recorded_time) == _instant(resource.get("recordedDate"))
        assert _iso(r.onset_time) == _instant(resource.get("onsetDateTime"))
        reactions = resource.get("reaction") or [{}]
        manifestation = (reactions[0].get("manifestation") or [{}])[0]
        assert (r.reaction, r.severity) == (manifestation.get("text"), reactions[0].get("severity"))


def _npi_or_first(resource: dict) -> dict:
    identifiers = resource.get("identifier", [])
    npi = [i for i in identifiers if i["system"] == "http://hl7.org/fhir/sid/us-npi"]
    return (npi or identifiers or [{}])[0]


def test_each_practitioner_is_one_register_entry_with_name_and_npi(spark: SparkSession, lake: str) -> None:
    # Synthea repeats a practitioner in every patient's Bundle that names one: one entry per id.
    expected = _resources("Practitioner")
    got = _silver(spark, lake, "silver.practitioner")
    assert set(got) == set(expected) and len(expected) > 100
    for key, item in expected.items():
        r, resource = got[key], item["resource"]
        name = resource["name"][0]
        assert r.name == name.get("text", " ".join([*name.get("given", []), name["family"]]))
        identifier = _npi_or_first(resource)
        assert (r.identifier, r.identifier_system) == (identifier["value"], "NPI")
        assert (r.gender, r.active) == (resource["gender"], resource["active"])
        assert r.qualification is None  # the samples state none


def test_each_organization_is_one_register_entry_with_name_type_and_place(
    spark: SparkSession, lake: str
) -> None:
    expected = _resources("Organization")
    got = _silver(spark, lake, "silver.organization")
    assert set(got) == set(expected) and len(expected) > 100
    for key, item in expected.items():
        r, resource = got[key], item["resource"]
        identifier = _npi_or_first(resource)
        assert (r.identifier, r.identifier_system) == (identifier["value"], identifier["system"])
        assert (r.name, r.organization_type) == (resource["name"], resource["type"][0]["text"])
        address = resource["address"][0]
        assert (r.city, r.state) == (address["city"], address["state"])
        phones = [t["value"] for t in resource["telecom"] if t["system"] == "phone"]
        assert r.telecom == phones[0]
