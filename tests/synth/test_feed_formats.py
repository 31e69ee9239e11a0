"""Each feed's files follow their standard: FHIR R4 JSON, HL7 v2.5 ER7, CSV with declared columns."""

from __future__ import annotations

import json

from fhir.resources.R4B import get_fhir_model_class

from healthlake.synth.feeds import CSV_COLUMNS, DRIFT_COLUMN
from tests.synth.conftest import Generated
from tests.synth.landing_reader import HL7_CHARSETS


def test_fhir_resources_validate_against_the_r4_models(region: Generated) -> None:
    seen: dict[str, int] = {}
    patients: dict[str, set[str]] = {}
    subjects: list[tuple[str, str]] = []
    for f in region.files:
        if f.feed != "fhir":
            continue
        for res in f.parsed:
            if res is None:
                continue
            get_fhir_model_class(res["resourceType"]).model_validate(res)
            seen[res["resourceType"]] = seen.get(res["resourceType"], 0) + 1
            if f.path.suffix == ".ndjson":
                if res["resourceType"] == "Patient":
                    patients.setdefault(f.institution_id, set()).add(res["id"])
                elif "subject" in res:
                    subjects.append((f.institution_id, res["subject"]["reference"]))
    assert {
        "Patient",
        "Encounter",
        "Condition",
        "Observation",
        "MedicationRequest",
        "Procedure",
        "AllergyIntolerance",
    } <= seen.keys()
    # Relative references resolve within the institution's export, but for Patient lines sent malformed.
    assert all(ref.startswith("Patient/") for _, ref in subjects)
    unresolved = {(inst, ref) for inst, ref in subjects if ref.split("/")[1] not in patients.get(inst, set())}
    broken = sum(p is None for f in region.files if f.path.name.startswith("Patient_") for p in f.parsed)
    assert len(unresolved) <= broken


def test_fhir_bundles_are_transactions_with_resolvable_urn_references(region: Generated) -> None:
    bundles = [f for f in region.files if f.path.suffix == ".json"]
    assert bundles
    for f in bundles:
        bundle = json.loads(f.path.read_text(encoding="utf-8"))
        get_fhir_model_class("Bundle").model_validate(bundle)
        assert bundle["type"] == "transaction"
        urls = {e["fullUrl"] for e in bundle["entry"]}
        for e in bundle["entry"]:
            ref = e["resource"].get("subject", {}).get("reference")
            if ref:
                assert ref.startswith("urn:uuid:") and ref in urls


def test_hl7_messages_parse_with_a_standard_library(region: Generated) -> None:
    files = [f for f in region.files if f.feed == "hl7v2"]
    types, encodings, separators, mllp, segments = set(), set(), set(), set(), set()
    for f in files:
        mllp.add(f.mllp)
        separators |= f.separators
        for msg in f.parsed:
            if msg is None:
                continue
            msh = msg.segment("MSH")
            assert str(msh[12]) == "2.5"
            encodings.add(HL7_CHARSETS[str(msh[18])])
            types.add(f"{msh[9][0][0]}^{msh[9][0][1]}")
            pid = msg.segment("PID")
            assert str(pid[3]).split("~")[0].split("^")[4] == "MR"
            names = {str(segment[0]) for segment in msg}
            segments |= names
            for pr1 in msg.segments("PR1") if "PR1" in names else ():
                assert str(pr1[3][0][2]) == "I9CP" and str(pr1[5]).endswith("+0800")
            for al1 in msg.segments("AL1") if "AL1" in names else ():
                assert str(al1[2]) in ("DA", "FA") and str(al1[3][0][2]) == "SCT"
    assert {"ADT^A01", "ADT^A03", "ADT^A04", "ADT^A08", "ADT^A11", "ORU^R01"} <= types
    assert {"PID", "PV1", "DG1", "AL1", "PR1", "OBX"} <= segments
    assert {"utf-8", "gbk"} <= encodings or {"utf-8", "gb18030"} <= encodings
    assert {True, False} <= mllp
    assert "\r" in separators and ({"\n", "\r\n"} & separators)


def test_hl7_escapes_delimiters_in_text(region: Generated) -> None:
    escaped = [f for f in region.files if f.feed == "hl7v2" for rec in f.records if b"\\T\\" in rec]
    assert escaped  # 耳鼻喉&头颈外科 is sent as 耳鼻喉\T\头颈外科


def test_csv_extracts_have_the_declared_columns(region: Generated) -> None:
    drift = 0
    stems = set()
    for f in region.files:
        if f.feed not in ("csv", "public_health", "location"):
            continue
        stem = f.path.name.split("_2")[0]
        stems.add(stem)
        declared = list(CSV_COLUMNS[stem])
        if f.header == [*declared, DRIFT_COLUMN]:
            drift += 1
        else:
            assert f.header == declared, f.path
        good = [r for r in f.parsed if r is not None]
        assert all(len(r) == len(f.header) for r in good)
    assert stems == set(CSV_COLUMNS)
    assert drift > 0  # schema drift: some sites add a column half-way
    encodings = {f.encoding for f in region.files if f.feed == "csv"}
    assert encodings == {"utf-8", "gbk"}


def test_glucose_units_and_lab_codes_differ_by_site(region: Generated) -> None:
    units, local_codes = set(), set()
    for f in region.files:
        for rec in f.parsed:
            if rec is None:
                continue
            if f.feed == "fhir" and rec["resourceType"] == "Observation" and rec["code"]["text"] == "葡萄糖":
                units.add(rec["valueQuantity"]["unit"])
                local_codes.add(rec["code"]["coding"][0]["system"].startswith("urn:healthlake:institution:"))
            elif f.feed == "hl7v2" and str(rec.segment("MSH")[9][0][0]) == "ORU":
                for obx in rec.segments("OBX"):
                    if str(obx[3][0][1]) == "葡萄糖":
                        units.add(str(obx[6]))
                        local_codes.add(str(obx[3][0][2]) != "LN")
            elif f.feed == "csv" and rec.get("glucose_unit"):
                units.add(rec["glucose_unit"])
    assert units == {"mmol/L", "mg/dL"}
    assert local_codes == {True, False}
