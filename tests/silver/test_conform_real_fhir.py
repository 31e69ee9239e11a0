"""Real FHIR samples (Synthea transaction Bundles, a bulk NDJSON export) conform to silver correctly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

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
    assert result.bronze_rows == result.conformed + result.superseded + result.quarantined + result.duplicates
    return cfg.lake_root


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
