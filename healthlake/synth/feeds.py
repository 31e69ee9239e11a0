"""Turn simulated events into each institution's native feed: FHIR R4, HL7 v2.5 ER7, CSV extracts.

Records are collected per landing file, then file- and record-level defects are applied (re-sent
duplicates, malformed records, late files) and the files are written with the institution's encoding.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from healthlake.synth.catalog import CONDITION_BY_NAME, GIVEN_NAME_CHARS, LAB_TESTS
from healthlake.synth.events import (
    Allergy,
    Encounter,
    FollowUp,
    IsolationOrder,
    NatTest,
    Observation,
    Pool,
    Vaccination,
    under_management,
)
from healthlake.synth.identity import homophone_variant, stable_fraction, transpose_digits, typo_variant
from healthlake.synth.mobility import Pings
from healthlake.synth.population import Person
from healthlake.synth.region import PROVINCE_NAME, Institution, Region

if TYPE_CHECKING:
    from healthlake.config import SynthSettings

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
RESIDENT_ID_SYSTEM = "urn:healthlake:id:cn-resident"
INSURANCE_SYSTEM = "urn:healthlake:id:cn-medical-insurance"
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"
ICD9_SYSTEM = "http://hl7.org/fhir/sid/icd-9-cm"  # procedures: the ICD-9-CM-3 volume
SNOMED_SYSTEM = "http://snomed.info/sct"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
HL7_ALLERGEN_TYPE = {"medication": "DA", "food": "FA"}  # table 0127
HL7_SEVERITY = {"severe": "SV", "moderate": "MO", "mild": "MI"}  # table 0128
LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
DRUG_SYSTEM = "urn:healthlake:code:drug"
AREA_EXTENSION = "urn:healthlake:fhir:area-code"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
DISPOSITION_SYSTEM = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
FHIR_DISPOSITION = {"home": "home", "transfer": "other-hcf", "died": "exp", "against-advice": "aadvice"}
HL7_DISPOSITION = {"home": "01", "transfer": "02", "died": "20", "against-advice": "07"}
HL7_CHARSET = {"utf-8": "UNICODE UTF-8", "gbk": "GBK", "gb18030": "GB 18030-2000"}
HL7_STRUCTURE = {
    "A01": "ADT_A01",
    "A04": "ADT_A01",
    "A08": "ADT_A01",
    "A02": "ADT_A02",
    "A03": "ADT_A03",
    "A11": "ADT_A09",
}
HL7_CLASS = {"AMB": "O", "EMER": "E", "IMP": "I"}
CLASS_CN = {"AMB": "门诊", "EMER": "急诊", "IMP": "住院"}
DISEASE_CN = {name: c.display for name, c in CONDITION_BY_NAME.items()}
UUID_NAMESPACE = uuid.UUID("6f1e5a8c-52b4-4c59-9d61-3a0c1d7e2b10")
MLLP_START, MLLP_END = b"\x0b", b"\x1c\r"
BAD_BYTES = b"\xff\xfe\xfd"  # invalid as a lead byte in UTF-8, GBK and GB18030 alike

CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "health_records": (
        "record_id",
        "institution_id",
        "patient_no",
        "name",
        "sex",
        "birth_date",
        "id_number",
        "phone",
        "address",
        "township_code",
        "family_record_no",
        "chronic_conditions",
        "created_at",
        "updated_at",
    ),
    "visits": (
        "visit_id",
        "institution_id",
        "patient_no",
        "name",
        "id_number",
        "visit_time",
        "visit_type",
        "department",
        "diagnosis_code",
        "diagnosis_name",
        "secondary_diagnosis_codes",
        "sbp",
        "dbp",
        "glucose",
        "glucose_unit",
        "record_status",
        "updated_at",
    ),
    "followups": (
        "followup_id",
        "institution_id",
        "patient_no",
        "name",
        "id_number",
        "followup_date",
        "disease",
        "sbp",
        "dbp",
        "fasting_glucose",
        "glucose_unit",
        "next_followup_date",
    ),
    "population_registry": (
        "registry_no",
        "name",
        "sex",
        "birth_date",
        "id_number",
        "phone",
        "address",
        "township_code",
        "household_no",
        "ethnicity",
        "status",
    ),
    "nat_tests": (
        "test_id",
        "lab_id",
        "person_no",
        "name",
        "id_number",
        "phone",
        "sample_type",
        "sample_time",
        "report_time",
        "result",
        "ct_value",
        "sample_mode",
        "pool_id",
    ),
    "nat_pools": ("pool_id", "sample_time", "report_time", "pool_size", "result", "ct_value"),
    "isolation_orders": (
        "order_id",
        "person_no",
        "name",
        "id_number",
        "phone",
        "category",
        "place_type",
        "start_time",
        "planned_end_time",
        "released_at",
    ),
    "vaccinations": (
        "vaccination_id",
        "site_id",
        "person_no",
        "name",
        "id_number",
        "birth_date",
        "vaccine_code",
        "vaccine_name",
        "dose_number",
        "lot_no",
        "vaccinated_at",
    ),
    "pings": ("phone", "ts", "lat", "lon", "accuracy_m"),
}
DRIFT_COLUMN = "remark"
ISOLATION_CATEGORY_CN = {
    "case": "确诊",
    "close_contact": "密接",
    "secondary_contact": "次密接",
    "risk_area": "风险区域",
}
PLACE_TYPE_CN = {
    "centralized": "集中隔离",
    "home": "居家隔离",
}  # the column that schema-drifting sites add half-way through the window


def fhir_time(t: dt.datetime) -> str:
    """FHIR dateTime in China Standard Time."""
    return t.strftime("%Y-%m-%dT%H:%M:%S+08:00")


def hl7_time(t: dt.datetime) -> str:
    """HL7 v2 TS in China Standard Time."""
    return t.strftime("%Y%m%d%H%M%S+0800")


def csv_time(t: dt.datetime) -> str:
    """CSV extracts carry local (Asia/Shanghai) time without an offset, as grassroots systems do."""
    return t.strftime("%Y-%m-%d %H:%M:%S")


def hl7_escape(value: str) -> str:
    """Escape HL7 v2 delimiters in a text value."""
    return (
        value.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
    )


@dataclass(slots=True)
class SourcePatient:
    """A person as one institution registered them: its own patient number and keyed identity."""

    institution_id: str
    patient_no: str
    person: Person
    family: str
    given: str
    national_id: str | None
    phone: str | None
    defects: tuple[str, ...] = ()  # identity keying errors of this record (truth for linkage QA)

    @property
    def name(self) -> str:
        """The name as keyed."""
        return self.family + self.given


Key = tuple[str, str, str]
"""A true record a landing record carries: (silver entity, institution id, the record's id in the feed)."""

_FHIR_ENTITY = {
    "Patient": "patient_record",
    "Encounter": "encounter",
    "Condition": "diagnosis",
    "Observation": "observation",
    "MedicationRequest": "medication",
    "Immunization": "immunization",
    "Procedure": "procedure",
    "AllergyIntolerance": "allergy",
}
LATER_KINDS = ("Procedure_", "AllergyIntolerance_")
"""NDJSON files of resource types the generator sent later in its life: written after the others, so the
defects drawn for the older files are those a seed gave before (``FeedEmitter.write``)."""


@dataclass
class FileBucket:
    """The records of one landing file before defects and encoding."""

    feed: str
    institution: Institution
    day: int
    name: str
    header: str | None = None
    records: list[str] = field(default_factory=list)
    whole: bool = False  # a single document (a FHIR Bundle): written as is, no record-level defects
    whole_records: int = 0
    # Per record (per Bundle entry for a whole document): the true records it carries (``Key``).
    keys: list[tuple[Key, ...]] = field(default_factory=list)


class FileCounts(TypedDict):
    """What ``FeedEmitter.write`` reports of one landing file it wrote."""

    feed: str
    records: int
    malformed: int
    duplicates: int
    late: bool


@dataclass
class Delivery:
    """One copy of a true record in a landing file: where it was written and whether intact."""

    key: Key
    source_file: str  # relative to the landing root: <feed>/<institution>/<day>/<file>
    record_offset: int  # as bronze numbers records (line, message or Bundle entry; CSV header is 0)
    copy: int  # 0: the original; 1: a re-send
    malformed: bool


class FeedEmitter:
    """Collect one shard's feed records per landing file, apply defects, write the files."""

    def __init__(self, region: Region, settings: SynthSettings, shard_id: int) -> None:
        self.region = region
        self.s = settings
        self.rates = settings.rates
        self.shard_id = shard_id
        self.start = settings.start
        self.t_end = dt.datetime.combine(settings.start, dt.time()) + dt.timedelta(days=settings.days)
        self.rng = random.Random(f"feeds:{settings.seed}:{shard_id}")
        self.buckets: dict[tuple[str, str, int, str], FileBucket] = {}
        self.patients: dict[tuple[str, int], SourcePatient] = {}
        self.defects: Counter[str] = Counter()
        self.eligible: Counter[str] = Counter()
        self.counts: Counter[tuple[str, str]] = Counter()
        self.drift_day = settings.days // 2
        self.hl7_serial = 0
        self.county_of = {a.code: a for a in region.areas}
        self.patients_sent: set[tuple[str, int]] = set()
        self.deliveries: list[Delivery] = []

    # -- identity as each institution keyed it --------------------------------------------------------
    def patient(self, inst: Institution, person: Person) -> SourcePatient:
        """The institution's record of a person, created (with its identity defects) on first contact."""
        key = (inst.institution_id, person.index)
        sp = self.patients.get(key)
        if sp is not None:
            return sp
        r, rng = self.rates, self.rng
        salt = int(stable_fraction(inst.institution_id) * 10**9)
        multiplier = (7919, 104729, 15485863, 32452843)[int(stable_fraction("m", inst.institution_id) * 4)]
        number = f"{(person.index * multiplier + salt) % 10**9:09d}"
        prefix = {
            "tertiary_hospital": "M",
            "secondary_hospital": "M",
            "township_health_centre": "JK",
            "village_clinic": "VC",
            "cdc_lab": "NAT",
            "vaccination_site": "YM",
            "population_registry": "RK",
        }[inst.kind]
        family, given = person.surname, person.given
        national_id: str | None = person.national_id
        clean = inst.kind == "population_registry"  # the registry is the authoritative source
        defects: list[str] = []
        if not clean:
            for defect in ("name_typo", "homophone", "id_transposed", "id_missing"):
                self.eligible[defect] += 1
            if rng.random() < r.name_typo:
                self.defects["name_typo"] += 1
                defects.append("name_typo")
                keyed = typo_variant(family, given, rng, GIVEN_NAME_CHARS)
                family, given = (keyed[: len(family)], keyed[len(family) :])
            if rng.random() < r.homophone:
                self.defects["homophone"] += 1
                defects.append("homophone")
                keyed = homophone_variant(family + given, rng)
                family, given = keyed[: len(family)], keyed[len(family) :]
            if rng.random() < r.id_missing:
                self.defects["id_missing"] += 1
                defects.append("id_missing")
                national_id = None
            elif rng.random() < r.id_transposed:
                self.defects["id_transposed"] += 1
                defects.append("id_transposed")
                national_id = transpose_digits(person.national_id, rng)
        # A resident with two phones gave the second number to their township health centre: the EMPI
        # links both phone tokens to one person.
        phone = person.phone2 if person.phone2 and inst.kind == "township_health_centre" else person.phone
        sp = SourcePatient(
            inst.institution_id,
            prefix + number,
            person,
            family,
            given,
            national_id,
            phone,
            tuple(defects),
        )
        self.patients[key] = sp
        return sp

    # -- buckets --------------------------------------------------------------------------------------
    def _day(self, t: dt.datetime) -> int | None:
        """The window's day a record of time ``t`` is sent on: None after the window; history from before
        it (``synth.inpatient_history_days``) arrives with the first day's feeds (the go-live backfill)."""
        if t >= self.t_end:
            return None
        return max(0, (t.date() - self.start).days)

    def _step_day(self, t: dt.datetime) -> int:
        """``_day`` of an encounter step, which ``_encounter_versions`` keeps inside the window."""
        day = self._day(t)
        if day is None:
            raise ValueError(f"encounter step at {t} is after the window (ends {self.t_end})")
        return day

    def _bucket(self, feed: str, inst: Institution, day: int, stem: str, ext: str) -> FileBucket:
        key = (feed, inst.institution_id, day, stem)
        b = self.buckets.get(key)
        if b is None:
            header = None
            if ext == "csv":
                cols = CSV_COLUMNS[stem]
                if inst.schema_drift and day >= self.drift_day:
                    cols = (*cols, DRIFT_COLUMN)
                header = ",".join(cols)
            # The name carries the data's own day, so a late file never collides with that day's file.
            data_day = self.start + dt.timedelta(days=day)
            b = FileBucket(feed, inst, day, f"{stem}_{data_day:%Y%m%d}_s{self.shard_id:04d}.{ext}", header)
            self.buckets[key] = b
        return b

    def _csv(
        self, inst: Institution, t: dt.datetime, stem: str, values: list[object], keys: tuple[Key, ...] = ()
    ) -> None:
        day = self._day(t)
        if day is None:
            return
        b = self._bucket(inst.feed, inst, day, stem, "csv")
        cells = ["" if v is None else str(v).replace(",", "，") for v in values]
        if b.header is not None and b.header.endswith("," + DRIFT_COLUMN):
            cells.append("")
        b.records.append(",".join(cells))
        b.keys.append(keys)

    @staticmethod
    def _patient_key(sp: SourcePatient) -> Key:
        return ("patient_record", sp.institution_id, sp.patient_no)

    @staticmethod
    def _measure_keys(inst: Institution, record_id: str, values: dict[str, object]) -> tuple[Key, ...]:
        """Observation keys of a CSV row's measures: ``<row id>-<column>`` for each column with a value."""
        return tuple(
            ("observation", inst.institution_id, f"{record_id}-{column}")
            for column, value in values.items()
            if value is not None
        )

    @staticmethod
    def procedure_record_id(enc: Encounter, n: int) -> str:
        """The key of the encounter's ``n``-th procedure (from 1) as its feed carries it: the FHIR
        resource id, or the visit number and PR1 set id an HL7 PR1 is keyed by."""
        if enc.institution.feed == "hl7v2":
            return f"{enc.encounter_id}-PR1-{n}"
        return f"{enc.encounter_id}-pr{n}"

    def allergy_record_id(self, enc: Encounter, n: int) -> str:
        """The key of the ``n``-th allergy (from 1) recorded at ``enc`` as its feed carries it: the FHIR
        resource id, or the patient number and AL1 set id (an HL7 allergy belongs to the patient)."""
        if enc.institution.feed == "hl7v2":
            return f"{self.patient(enc.institution, enc.person).patient_no}-AL1-{n}"
        return f"{enc.encounter_id}-al{n}"

    # -- FHIR -----------------------------------------------------------------------------------------
    def _fhir_patient(self, sp: SourcePatient, inst: Institution, t: dt.datetime) -> dict:
        p = sp.person
        identifiers = [
            {
                "use": "usual",
                "type": {"coding": [{"system": V2_0203, "code": "MR"}]},
                "system": f"urn:healthlake:institution:{inst.institution_id}:mrn",
                "value": sp.patient_no,
            }
        ]
        if sp.national_id:
            identifiers.append(
                {
                    "use": "official",
                    "type": {"coding": [{"system": V2_0203, "code": "NI"}]},
                    "system": RESIDENT_ID_SYSTEM,
                    "value": sp.national_id,
                }
            )
        if p.insurance_no:
            identifiers.append(
                {
                    "type": {"coding": [{"system": V2_0203, "code": "SN"}]},
                    "system": INSURANCE_SYSTEM,
                    "value": p.insurance_no,
                }
            )
        county = self.county_of[p.county_code]
        city = self.county_of[county.parent]
        res: dict = {
            "resourceType": "Patient",
            "id": sp.patient_no,
            "meta": {"versionId": "1", "lastUpdated": fhir_time(t)},
            "identifier": identifiers,
            "active": True,
            "name": [{"use": "official", "text": sp.name, "family": sp.family, "given": [sp.given]}],
            "gender": "male" if p.sex == "M" else "female",
            "birthDate": p.birth_date.isoformat(),
            "address": [
                {
                    "use": "home",
                    "text": p.address,
                    "district": county.name,
                    "city": city.name,
                    "state": PROVINCE_NAME,
                    "country": "CN",
                    "extension": [{"url": AREA_EXTENSION, "valueString": p.township_code}],
                }
            ],
        }
        if sp.phone:
            res["telecom"] = [{"system": "phone", "value": sp.phone, "use": "mobile"}]
        return res

    def _icd(self, code: str) -> str:
        """An ICD-10 code as the clerk wrote it (sometimes without the dot, sometimes in lower case)."""
        for defect in ("icd_no_dot", "icd_lower"):
            self.eligible[defect] += 1
        if self.rng.random() < self.rates.icd_no_dot:
            self.defects["icd_no_dot"] += 1
            code = code.replace(".", "")
        if self.rng.random() < self.rates.icd_lower:
            self.defects["icd_lower"] += 1
            code = code.lower()
        return code

    def _measure(self, inst: Institution, obs: Observation) -> tuple[str, str, str, float, str]:
        """(code system, code, display, value, unit) as this site reports a result."""
        test = LAB_TESTS[obs.test]
        value, unit, loinc = obs.value, test.unit, test.loinc
        if inst.glucose_mgdl and test.alt_unit:
            value, unit = round(obs.value * test.alt_factor, 1), test.alt_unit
            loinc = test.alt_loinc or test.loinc
        if inst.local_lab_codes:
            return (
                f"urn:healthlake:institution:{inst.institution_id}:lab",
                test.local_code,
                test.display,
                value,
                unit,
            )
        return LOINC_SYSTEM, loinc, test.display, value, unit

    def _encounter_versions(self, enc: Encounter) -> list[tuple[dt.datetime, str]]:
        """The encounter's messages in time order: (time, what happened)."""
        steps = [(enc.start, "start")]
        steps += [(t, f"transfer:{i}") for i, (t, _) in enumerate(enc.transfers)]
        if enc.cls == "IMP" and enc.end is not None:
            steps.append((enc.end, "end"))
        if enc.update_time is not None:
            steps.append((enc.update_time, "update"))
        if enc.cancel_time is not None:
            steps.append((enc.cancel_time, "cancel"))
        return sorted(s for s in steps if s[0] < self.t_end)

    def _fhir_encounter(
        self,
        enc: Encounter,
        sp: SourcePatient,
        upto: str,
        version: int,
        t: dt.datetime,
        patient_ref: str,
        condition_refs: list[str],
    ) -> dict:
        done = {"start"}
        steps = self._encounter_versions(enc)
        for _, what in steps:
            done.add(what)
            if what == upto:
                break
        finished = enc.cls != "IMP" or "end" in done
        status = "entered-in-error" if "cancel" in done else "finished" if finished else "in-progress"
        dept = enc.updated_department if "update" in done else enc.department
        period = {"start": fhir_time(enc.start)}
        if finished and enc.end is not None:
            period["end"] = fhir_time(enc.end)
        res: dict = {
            "resourceType": "Encounter",
            "id": enc.encounter_id,
            "meta": {"versionId": str(version), "lastUpdated": fhir_time(t)},
            "identifier": [
                {
                    "system": f"urn:healthlake:institution:{enc.institution.institution_id}:visit",
                    "value": enc.encounter_id,
                }
            ],
            "status": status,
            "class": {"system": ACT_CODE, "code": enc.cls, "display": CLASS_CN[enc.cls]},
            "type": [{"text": dept}],
            "subject": {"reference": patient_ref},
            "period": period,
            "serviceProvider": {
                "reference": f"Organization/{enc.institution.institution_id}",
                "display": enc.institution.name,
            },
            "diagnosis": [
                {"condition": {"reference": ref}, "rank": i + 1} for i, ref in enumerate(condition_refs)
            ],
        }
        if enc.ward:
            wards = [(enc.start, enc.ward)] + [
                w for i, w in enumerate(enc.transfers) if f"transfer:{i}" in done
            ]
            res["location"] = [
                {
                    "location": {"display": ward},
                    "status": "active" if i == len(wards) - 1 else "completed",
                    "period": {"start": fhir_time(since)},
                }
                for i, (since, ward) in enumerate(wards)
            ]
        if enc.cls == "IMP" and finished and enc.disposition:
            res["hospitalization"] = {
                "dischargeDisposition": {
                    "coding": [{"system": DISPOSITION_SYSTEM, "code": FHIR_DISPOSITION[enc.disposition]}]
                }
            }
        return res

    def _fhir_clinical(
        self, enc: Encounter, inst: Institution, patient_ref: str, enc_ref: str, condition_ids: list[str]
    ) -> list[dict]:
        out: list[dict] = []
        for cid, (code, display) in zip(condition_ids, enc.diagnoses, strict=True):
            out.append(
                {
                    "resourceType": "Condition",
                    "id": cid,
                    "meta": {"versionId": "1", "lastUpdated": fhir_time(enc.start)},
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                    "code": "encounter-diagnosis",
                                }
                            ]
                        }
                    ],
                    "code": {
                        "coding": [{"system": ICD10_SYSTEM, "code": self._icd(code), "display": display}],
                        "text": display,
                    },
                    "subject": {"reference": patient_ref},
                    "encounter": {"reference": enc_ref},
                    "recordedDate": fhir_time(enc.start),
                }
            )
        for i, obs in enumerate(enc.observations):
            system, code, display, value, unit = self._measure(inst, obs)
            out.append(
                {
                    "resourceType": "Observation",
                    "id": f"{enc.encounter_id}-obs{i + 1}",
                    "status": "final",
                    "meta": {"versionId": "1", "lastUpdated": fhir_time(obs.time)},
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                    "code": LAB_TESTS[obs.test].category,
                                }
                            ]
                        }
                    ],
                    "code": {
                        "coding": [{"system": system, "code": code, "display": display}],
                        "text": display,
                    },
                    "subject": {"reference": patient_ref},
                    "encounter": {"reference": enc_ref},
                    "effectiveDateTime": fhir_time(obs.time),
                    "valueQuantity": {"value": value, "unit": unit, "system": UCUM_SYSTEM, "code": unit},
                }
            )
        for i, proc in enumerate(enc.procedures, start=1):
            performed: dict = {"performedDateTime": fhir_time(proc.start)}
            if proc.end is not None:
                performed = {"performedPeriod": {"start": fhir_time(proc.start), "end": fhir_time(proc.end)}}
            out.append(
                {
                    "resourceType": "Procedure",
                    "id": self.procedure_record_id(enc, i),
                    "meta": {"versionId": "1", "lastUpdated": fhir_time(proc.end or proc.start)},
                    "status": "completed",
                    "code": {
                        "coding": [{"system": ICD9_SYSTEM, "code": proc.code, "display": proc.display}],
                        "text": proc.display,
                    },
                    "subject": {"reference": patient_ref},
                    "encounter": {"reference": enc_ref},
                    **performed,
                }
            )
        for i, allergy in enumerate(enc.allergies, start=1):
            out.append(self._fhir_allergy(enc, i, allergy, patient_ref, enc_ref))
        for i, (code, name, dose) in enumerate(enc.medications):
            out.append(
                {
                    "resourceType": "MedicationRequest",
                    "id": f"{enc.encounter_id}-rx{i + 1}",
                    "status": "active",
                    "meta": {"versionId": "1", "lastUpdated": fhir_time(enc.start)},
                    "intent": "order",
                    "medicationCodeableConcept": {
                        "coding": [{"system": DRUG_SYSTEM, "code": code, "display": name}],
                        "text": name,
                    },
                    "subject": {"reference": patient_ref},
                    "encounter": {"reference": enc_ref},
                    "authoredOn": fhir_time(enc.start),
                    "dosageInstruction": [{"text": dose}],
                }
            )
        return out

    def _fhir_allergy(self, enc: Encounter, n: int, allergy: Allergy, patient_ref: str, enc_ref: str) -> dict:
        a = allergy.allergen
        return {
            "resourceType": "AllergyIntolerance",
            "id": self.allergy_record_id(enc, n),
            "meta": {"versionId": "1", "lastUpdated": fhir_time(allergy.recorded)},
            "clinicalStatus": {"coding": [{"system": ALLERGY_CLINICAL, "code": allergy.status}]},
            "verificationStatus": {"coding": [{"system": ALLERGY_VERIFICATION, "code": "confirmed"}]},
            "type": "allergy",
            "category": [a.category],
            # A drug allergy is critical whatever its last reaction: the drug must not be given again.
            "criticality": "high" if a.category == "medication" or a.severity == "severe" else "low",
            "code": {
                "coding": [{"system": SNOMED_SYSTEM, "code": a.code, "display": a.display}],
                "text": a.display,
            },
            "patient": {"reference": patient_ref},
            "encounter": {"reference": enc_ref},
            "recordedDate": fhir_time(allergy.recorded),
            "reaction": [{"manifestation": [{"text": a.reaction}], "severity": a.severity}],
        }

    def _emit_fhir(self, enc: Encounter) -> None:
        inst = enc.institution
        sp = self.patient(inst, enc.person)
        steps = self._encounter_versions(enc)
        condition_ids = [f"{enc.encounter_id}-dx{i + 1}" for i in range(len(enc.diagnoses))]
        first_contact = (inst.institution_id, enc.person.index) not in self.patients_sent
        self.patients_sent.add((inst.institution_id, enc.person.index))
        if inst.fhir_style == "bundle":
            ids = {
                (
                    "Patient",
                    sp.patient_no,
                ): f"urn:uuid:{uuid.uuid5(UUID_NAMESPACE, inst.institution_id + sp.patient_no)}"
            }
            for version, (t, what) in enumerate(steps, start=1):
                day = self._step_day(t)
                enc_url = f"urn:uuid:{uuid.uuid5(UUID_NAMESPACE, f'{enc.encounter_id}/{version}')}"
                cond_urls = [f"urn:uuid:{uuid.uuid5(UUID_NAMESPACE, cid)}" for cid in condition_ids]
                resources = [self._fhir_patient(sp, inst, t)]
                resources[0]["meta"]["lastUpdated"] = fhir_time(t)
                resources.append(
                    self._fhir_encounter(
                        enc,
                        sp,
                        what,
                        version,
                        t,
                        ids[("Patient", sp.patient_no)],
                        cond_urls if what == "start" else [],
                    )
                )
                urls = [ids[("Patient", sp.patient_no)], enc_url]
                if what == "start":
                    clinical = self._fhir_clinical(enc, inst, urls[0], enc_url, condition_ids)
                    resources += clinical
                    urls += [f"urn:uuid:{uuid.uuid5(UUID_NAMESPACE, r['id'])}" for r in clinical]
                bundle = {
                    "resourceType": "Bundle",
                    "id": str(uuid.uuid5(UUID_NAMESPACE, f"bundle/{enc.encounter_id}/{version}")),
                    "type": "transaction",
                    "timestamp": fhir_time(t),
                    "entry": [
                        {
                            "fullUrl": url,
                            "resource": r,
                            "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                        }
                        for url, r in zip(urls, resources, strict=True)
                    ],
                }
                b = FileBucket(
                    "fhir",
                    inst,
                    day,
                    f"bundle_{enc.encounter_id}_{version}.json",
                    whole=True,
                    whole_records=len(resources),
                )
                b.records.append(json.dumps(bundle, ensure_ascii=False))
                b.keys = [self._fhir_keys(inst, r) for r in resources]
                self.buckets[("fhir", inst.institution_id, day, b.name)] = b
            return
        patient_ref = f"Patient/{sp.patient_no}"
        enc_ref = f"Encounter/{enc.encounter_id}"
        for version, (t, what) in enumerate(steps, start=1):
            day = self._step_day(t)
            if what == "start":
                if first_contact:
                    self._ndjson(inst, day, self._fhir_patient(sp, inst, t))
                refs = [f"Condition/{cid}" for cid in condition_ids]
                self._ndjson(inst, day, self._fhir_encounter(enc, sp, what, version, t, patient_ref, refs))
                for res in self._fhir_clinical(enc, inst, patient_ref, enc_ref, condition_ids):
                    # A result or a procedure goes out on its own day (none after the window).
                    when = res.get("effectiveDateTime") or res.get("performedDateTime")
                    when = when or res.get("performedPeriod", {}).get("start")
                    rday = (
                        day
                        if when is None
                        else self._day(dt.datetime.strptime(when[:19], "%Y-%m-%dT%H:%M:%S"))
                    )
                    if rday is not None:
                        self._ndjson(inst, rday, res)
            else:
                refs = [f"Condition/{cid}" for cid in condition_ids]
                self._ndjson(inst, day, self._fhir_encounter(enc, sp, what, version, t, patient_ref, refs))

    @staticmethod
    def _fhir_keys(inst: Institution, resource: dict) -> tuple[Key, ...]:
        entity = _FHIR_ENTITY.get(resource["resourceType"])
        return ((entity, inst.institution_id, resource["id"]),) if entity else ()

    def _ndjson(self, inst: Institution, day: int, resource: dict) -> None:
        b = self._bucket("fhir", inst, day, resource["resourceType"], "ndjson")
        b.records.append(json.dumps(resource, ensure_ascii=False, separators=(",", ":")))
        b.keys.append(self._fhir_keys(inst, resource))

    # -- HL7 v2 ---------------------------------------------------------------------------------------
    def _msh(self, inst: Institution, t: dt.datetime, msg_type: str) -> str:
        self.hl7_serial += 1
        control = f"{self.start:%y%m%d}{self.shard_id:04d}{self.hl7_serial:08d}"
        return (
            f"MSH|^~\\&|HIS|{inst.institution_id}|HEALTHLAKE|REGION|{hl7_time(t)}||{msg_type}|{control}"
            f"|P|2.5|||AL|NE|CHN|{HL7_CHARSET[inst.encoding]}"
        )

    def _pid(self, sp: SourcePatient, inst: Institution) -> str:
        p = sp.person
        ids = [f"{sp.patient_no}^^^{inst.institution_id}^MR"]
        if sp.national_id:
            ids.append(f"{sp.national_id}^^^CHN^NI")
        if p.insurance_no:
            ids.append(f"{p.insurance_no}^^^CHNMI^SN")
        county = self.county_of[p.county_code]
        city = self.county_of[county.parent]
        address = (
            f"{hl7_escape(p.address)}^^{hl7_escape(city.name)}^{PROVINCE_NAME}^^CHN^H^^{p.township_code}"
        )
        phone = f"{sp.phone}^PRN^CP" if sp.phone else ""
        return (
            f"PID|1||{'~'.join(ids)}||{hl7_escape(sp.family)}^{hl7_escape(sp.given)}||{p.birth_date:%Y%m%d}"
            f"|{p.sex}|||{address}||{phone}"
        )

    def _pv1(
        self, enc: Encounter, ward: str | None, dept: str, discharged: bool, prior: str | None = None
    ) -> str:
        f = [""] * 46
        f[1], f[2] = "1", HL7_CLASS[enc.cls]
        f[3] = f"{hl7_escape(ward)}^^^{enc.institution.institution_id}" if ward else ""
        f[6] = f"{hl7_escape(prior)}^^^{enc.institution.institution_id}" if prior else ""
        f[10] = hl7_escape(dept)
        f[19] = enc.encounter_id
        f[44] = hl7_time(enc.start)
        if discharged and enc.end is not None:
            f[45] = hl7_time(enc.end)
            if enc.cls == "IMP" and enc.disposition:
                f[36] = HL7_DISPOSITION[enc.disposition]
        return "PV1|" + "|".join(f[1:]).rstrip("|")

    def _emit_hl7(self, enc: Encounter) -> None:
        inst = enc.institution
        sp = self.patient(inst, enc.person)
        ward, dept, discharged = enc.ward, enc.department, enc.cls != "IMP"
        first_event = {"AMB": "A04", "EMER": "A04", "IMP": "A01"}[enc.cls]
        for t, what in self._encounter_versions(enc):
            prior = None
            if what == "start":
                event = first_event
            elif what.startswith("transfer"):
                event, prior = "A02", ward
                ward = enc.transfers[int(what.split(":")[1])][1]
            elif what == "end":
                event, discharged = "A03", True
            elif what == "update":
                event, dept = "A08", enc.updated_department or dept
            else:
                event = "A11"
            segs = [
                self._msh(inst, t, f"ADT^{event}^{HL7_STRUCTURE[event]}"),
                f"EVN|{event}|{hl7_time(t)}",
                self._pid(sp, inst),
                self._pv1(enc, ward, dept, discharged, prior),
            ]
            keys = [self._patient_key(sp), ("encounter", inst.institution_id, enc.encounter_id)]
            iid = inst.institution_id
            if event in ("A01", "A04"):  # the allergy history is taken when the patient arrives
                for i, allergy in enumerate(enc.allergies, start=1):
                    segs.append(self._al1(i, allergy))
                    keys.append(("allergy", iid, self.allergy_record_id(enc, i)))
            if event in ("A01", "A03", "A04"):
                for i, (code, display) in enumerate(enc.diagnoses, start=1):
                    kind = "A" if event == "A01" else "F" if event == "A03" else "W"
                    segs.append(f"DG1|{i}||{self._icd(code)}^{hl7_escape(display)}^I10||{hl7_time(t)}|{kind}")
                    keys.append(("diagnosis", iid, f"{enc.encounter_id}-DG1-{i}"))
            # A visit's procedures go out with its record (A04); a stay's with its discharge (A03).
            if event == ("A03" if enc.cls == "IMP" else "A04"):
                for i, proc in enumerate(enc.procedures, start=1):
                    segs.append(
                        f"PR1|{i}||{proc.code}^{hl7_escape(proc.display)}^I9CP||{hl7_time(proc.start)}"
                    )
                    keys.append(("procedure", iid, self.procedure_record_id(enc, i)))
            self._hl7(inst, t, segs, tuple(keys))
        if enc.observations:
            t = max(o.time for o in enc.observations)
            segs = [
                self._msh(inst, t, "ORU^R01^ORU_R01"),
                self._pid(sp, inst),
                self._pv1(enc, enc.ward, enc.department, enc.cls != "IMP"),
                f"OBR|1|{enc.encounter_id}-L||LAB^检验^L|||{hl7_time(enc.observations[0].time)}",
            ]
            obx_keys = []
            for i, obs in enumerate(enc.observations, start=1):
                system, code, display, value, unit = self._measure(inst, obs)
                cs = "LN" if system == LOINC_SYSTEM else "99LOC"
                segs.append(
                    f"OBX|{i}|NM|{code}^{hl7_escape(display)}^{cs}||{value}|{unit}|||||F|||{hl7_time(obs.time)}"
                )
                obx_keys.append(("observation", inst.institution_id, f"{enc.encounter_id}-L-OBX-{i}"))
            self._hl7(inst, t, segs, tuple(obx_keys))

    @staticmethod
    def _al1(n: int, allergy: Allergy) -> str:
        a = allergy.allergen
        return (
            f"AL1|{n}|{HL7_ALLERGEN_TYPE[a.category]}|{a.code}^{hl7_escape(a.display)}^SCT"
            f"|{HL7_SEVERITY[a.severity]}|{hl7_escape(a.reaction)}"
        )

    def _hl7(self, inst: Institution, t: dt.datetime, segments: list[str], keys: tuple[Key, ...]) -> None:
        day = self._day(t)
        if day is not None:
            b = self._bucket("hl7v2", inst, day, "messages", "hl7")
            b.records.append("\r".join(segments))
            b.keys.append(keys)

    # -- CSV extracts ---------------------------------------------------------------------------------
    def _glucose(self, inst: Institution, mmol: float | None) -> tuple[object, str | None]:
        if mmol is None:
            return None, None
        if inst.glucose_mgdl:
            return round(mmol * LAB_TESTS["glucose"].alt_factor), "mg/dL"
        return mmol, "mmol/L"

    def _emit_csv_visit(self, enc: Encounter) -> None:
        inst = enc.institution
        sp = self.patient(inst, enc.person)
        vals = {o.test: o.value for o in enc.observations}
        glucose, unit = self._glucose(inst, vals.get("glucose"))
        secondary = ";".join(self._icd(c) for c, _ in enc.diagnoses[1:])
        base = [
            enc.encounter_id,
            inst.institution_id,
            sp.patient_no,
            sp.name,
            sp.national_id,
            csv_time(enc.start),
            CLASS_CN[enc.cls],
            enc.department,
            self._icd(enc.diagnoses[0][0]),
            enc.diagnoses[0][1],
            secondary,
            vals.get("sbp"),
            vals.get("dbp"),
            glucose,
            unit,
        ]
        iid, visit = inst.institution_id, enc.encounter_id
        keys = (
            self._patient_key(sp),
            ("encounter", iid, visit),
            *(("diagnosis", iid, f"{visit}-dx{n}") for n in range(1, len(enc.diagnoses) + 1)),
            *self._measure_keys(
                inst, visit, {"sbp": vals.get("sbp"), "dbp": vals.get("dbp"), "glucose": glucose}
            ),
        )
        self._csv(inst, enc.start, "visits", [*base, "new", csv_time(enc.start)], keys)
        for t, what in self._encounter_versions(enc):
            if what == "update":
                row = list(base)
                row[7] = enc.updated_department
                self._csv(inst, t, "visits", [*row, "updated", csv_time(t)], keys)
            elif what == "cancel":
                self._csv(inst, t, "visits", [*base, "cancelled", csv_time(t)], keys)

    def emit_health_records(self, persons: list[Person]) -> None:
        """Day-0 extract of the resident health records each township health centre keeps."""
        thc = {i.area_code: i for i in self.region.institutions if i.kind == "township_health_centre"}
        t0 = dt.datetime.combine(self.start, dt.time(1, 0))
        for p in persons:
            # One resident in ten has no record, but never one under chronic-disease management: a
            # township health centre manages only residents it keeps a record for (建档 comes first).
            if stable_fraction(self.s.seed, p.index, "health-record") >= 0.9 and not under_management(
                self.s.seed, p
            ):
                continue
            inst = thc[p.township_code]
            sp = self.patient(inst, p)
            created = p.birth_date + dt.timedelta(
                days=int(365 * stable_fraction(self.s.seed, p.index, "c") * 3)
            )
            created = max(created, dt.date(2010, 1, 1))
            conditions = ";".join(DISEASE_CN[c] for c in p.conditions)
            self._csv(
                inst,
                t0,
                "health_records",
                [
                    f"DA{sp.patient_no}",
                    inst.institution_id,
                    sp.patient_no,
                    sp.name,
                    "男" if p.sex == "M" else "女",
                    p.birth_date.isoformat(),
                    sp.national_id,
                    sp.phone,
                    p.address,
                    p.township_code,
                    f"JT{p.household_id[2:]}",
                    conditions,
                    f"{created.isoformat()} 09:00:00",
                    csv_time(t0),
                ],
                (self._patient_key(sp),),
            )

    def emit_registry(self, persons: list[Person]) -> None:
        """Day-0 extract of the population registry (clean, authoritative identities)."""
        reg = next(i for i in self.region.institutions if i.kind == "population_registry")
        t0 = dt.datetime.combine(self.start, dt.time(0, 30))
        for p in persons:
            sp = self.patient(reg, p)
            ethnicity = "汉族" if stable_fraction(self.s.seed, p.index, "eth") < 0.91 else "少数民族"
            self._csv(
                reg,
                t0,
                "population_registry",
                [
                    sp.patient_no,
                    p.name,
                    "男" if p.sex == "M" else "女",
                    p.birth_date.isoformat(),
                    p.national_id,
                    p.phone,
                    p.address,
                    p.township_code,
                    p.household_id,
                    ethnicity,
                    "在籍",
                ],
                (self._patient_key(sp),),
            )

    def emit_followup(self, f: FollowUp) -> None:
        """One chronic-disease follow-up row."""
        sp = self.patient(f.institution, f.person)
        glucose, unit = self._glucose(f.institution, f.glucose)
        nxt = (f.time + dt.timedelta(days=90)).date().isoformat()
        # History from before the first day arrives with the first day's extract (the go-live backfill).
        self._csv(
            f.institution,
            max(f.time, dt.datetime.combine(self.start, dt.time())),
            "followups",
            [
                f.followup_id,
                f.institution.institution_id,
                sp.patient_no,
                sp.name,
                sp.national_id,
                csv_time(f.time),
                DISEASE_CN[f.disease],
                f.sbp,
                f.dbp,
                glucose,
                unit,
                nxt,
            ],
            (
                self._patient_key(sp),
                ("chronic_followup", f.institution.institution_id, f.followup_id),
                *self._measure_keys(
                    f.institution, f.followup_id, {"sbp": f.sbp, "dbp": f.dbp, "fasting_glucose": glucose}
                ),
            ),
        )

    def emit_nat_test(self, n: NatTest) -> None:
        """One nucleic-acid test row: on its report day, or on its sampling day for a pooled member."""
        sp = self.patient(n.institution, n.person)
        if self._day(n.report_time or n.sample_time) is None:
            return  # reported after the window: not sent yet
        iid = n.institution.institution_id
        keys: tuple[Key, ...] = (self._patient_key(sp), ("nat_test", iid, n.test_id))
        person_no: str | None = sp.patient_no
        self.eligible["test_no_person"] += 1
        if self.rng.random() < self.rates.test_no_person:
            # The sampling point lost the person number: the row names no patient record.
            self.defects["test_no_person"] += 1
            person_no, keys = None, keys[1:]
        result = None if n.positive is None else "阳性" if n.positive else "阴性"
        self._csv(
            n.institution,
            n.report_time or n.sample_time,
            "nat_tests",
            [
                n.test_id,
                iid,
                person_no,
                sp.name,
                sp.national_id,
                sp.phone,
                "咽拭子",
                csv_time(n.sample_time),
                None if n.report_time is None else csv_time(n.report_time),
                result,
                n.ct_value,
                n.mode,
                n.pool_id,
            ],
            keys,
        )

    def emit_pool(self, lab: Institution, pool: Pool) -> None:
        """One pooled tube's result (``nat_pools``), on its report day."""
        if self._day(pool.report_time) is None:
            return  # reported after the window
        size = len(pool.members)
        self.eligible["pool_size_zero"] += 1
        if self.rng.random() < self.rates.pool_size_zero:
            self.defects["pool_size_zero"] += 1
            size = 0  # the lab system lost the count
        self._csv(
            lab,
            pool.report_time,
            "nat_pools",
            [
                pool.pool_id,
                csv_time(pool.sample_time),
                csv_time(pool.report_time),
                size,
                "阳性" if pool.positive else "阴性",
                pool.ct_value,
            ],
            (("nat_pool", lab.institution_id, pool.pool_id),),
        )

    def emit_isolation_order(self, cdc: Institution, person: Person, order: IsolationOrder) -> None:
        """An isolation order on its first day, and again with ``released_at`` on the day it is released."""
        sp = self.patient(cdc, person)
        row = [
            order.order_id,
            sp.patient_no,
            sp.name,
            sp.national_id,
            sp.phone,
            ISOLATION_CATEGORY_CN[order.category],
            PLACE_TYPE_CN[order.place_type],
            csv_time(order.start),
            csv_time(order.planned_end),
        ]
        keys = (self._patient_key(sp), ("isolation_order", cdc.institution_id, order.order_id))
        self._csv(cdc, order.start, "isolation_orders", [*row, None], keys)
        if order.released_at is not None:
            self._csv(cdc, order.released_at, "isolation_orders", [*row, csv_time(order.released_at)], keys)

    def emit_vaccination(self, v: Vaccination) -> None:
        """One vaccination row."""
        sp = self.patient(v.institution, v.person)
        self._csv(
            v.institution,
            v.time,
            "vaccinations",
            [
                v.vaccination_id,
                v.institution.institution_id,
                sp.patient_no,
                sp.name,
                sp.national_id,
                v.person.birth_date.isoformat(),
                v.vaccine_code,
                v.vaccine_name,
                v.dose_number,
                v.lot,
                csv_time(v.time),
            ],
            (self._patient_key(sp), ("immunization", v.institution.institution_id, v.vaccination_id)),
        )

    def emit_pings(self, telecom: Institution, pings: Pings) -> None:
        """One phone's location pings as rows of the operator's daily files (formatted in bulk: many)."""
        import pandas as pd

        n = len(pings.seconds)
        self.eligible["ping_no_phone"] += n
        self.defects["ping_no_phone"] += int(pings.no_phone.sum())
        t0 = np.datetime64(dt.datetime.combine(self.start, dt.time()), "s")
        stamps = np.datetime_as_string(t0 + pings.seconds.astype("timedelta64[s]"), unit="s")
        rows = pd.DataFrame(
            {
                "phone": np.where(pings.no_phone, "", pings.phone),
                "ts": np.char.replace(stamps, "T", " "),
                "lat": pings.lat,
                "lon": pings.lon,
                "accuracy_m": pings.accuracy_m,
            }
        )
        lines = rows.to_csv(header=False, index=False, lineterminator="\n").split("\n")
        day_of = (pings.seconds // 86400).tolist()
        for day in sorted(set(day_of)):
            if day >= self.s.days:
                continue
            b = self._bucket(telecom.feed, telecom, day, "pings", "csv")
            tail = "," if b.header is not None and b.header.endswith("," + DRIFT_COLUMN) else ""
            picked = [line + tail for line, d in zip(lines, day_of, strict=False) if d == day]
            b.records.extend(picked)
            b.keys.extend([()] * len(picked))

    def emit_encounter(self, enc: Encounter) -> None:
        """An encounter in its institution's feed format."""
        feed = enc.institution.feed
        if feed == "fhir":
            self._emit_fhir(enc)
        elif feed == "hl7v2":
            self._emit_hl7(enc)
        else:
            self._emit_csv_visit(enc)

    # -- defects and writing --------------------------------------------------------------------------
    def _corrupt(self, bucket: FileBucket, record: str) -> bytes | str:
        """A deliberately malformed version of a record: truncated, wrong shape, or undecodable bytes."""
        rng = self.rng
        if rng.random() < 0.5:
            raw = record.encode(bucket.institution.encoding)
            cut = rng.randrange(1, max(2, len(raw) - 1))
            return raw[:cut] + BAD_BYTES + raw[cut:]
        if bucket.feed == "hl7v2":
            return record[: rng.randint(8, 40)]  # cut inside MSH: no message type, no version
        if bucket.name.endswith(".ndjson"):
            return record[: rng.randrange(5, len(record) - 2)]  # truncated JSON
        cells = record.split(",")
        return ",".join(cells[:-2]) if rng.random() < 0.5 else record + ",,"  # wrong column count

    def _apply_record_defects(
        self, b: FileBucket
    ) -> tuple[list[tuple[str | bytes, tuple[Key, ...], bool]], list[tuple[int, str, tuple[Key, ...]]]]:
        """The file's records after defects, each with its keys and whether it is malformed, and the
        re-sends that go to another file: ``(days later, record, keys)``, 0 days being a later file of
        the same day.

        A re-sent record is an exact copy of an intact one: half of them later in the same file, a
        quarter in a later file of the same day, a quarter in a file one or two days later.
        """
        out: list[tuple[str | bytes, tuple[Key, ...], bool]] = []
        resent: list[tuple[int, str, tuple[Key, ...]]] = []
        elsewhere: list[tuple[int, str, tuple[Key, ...]]] = []
        n = len(b.records)
        for rec, keys in zip(b.records, b.keys, strict=True):
            self.eligible["malformed"] += 1
            if self.rng.random() < self.rates.malformed:
                out.append((self._corrupt(b, rec), keys, True))
                continue
            out.append((rec, keys, False))
            self.eligible["duplicate"] += 1
            if self.rng.random() < self.rates.duplicate:
                where = self.rng.random()
                if where < 0.5:
                    resent.append((self.rng.randint(len(out), n), rec, keys))  # after the original
                else:
                    elsewhere.append((0 if where < 0.75 else self.rng.randint(1, 2), rec, keys))
        # Insert from the back so that earlier target positions stay valid.
        for pos, rec, keys in sorted(resent, key=lambda x: x[0], reverse=True):
            out.insert(pos, (rec, keys, False))
        self.defects["malformed"] += sum(bad for _, _, bad in out)
        self.defects["duplicate"] += len(resent) + len(elsewhere)
        return out, elsewhere

    def _encode(self, b: FileBucket, records: list[str | bytes]) -> bytes:
        enc = b.institution.encoding
        if b.feed == "hl7v2":
            sep = b.institution.segment_separator.encode()
            parts = []
            for rec in records:
                raw = rec if isinstance(rec, bytes) else rec.encode(enc)
                raw = raw.replace(b"\r", sep) + sep
                parts.append(MLLP_START + raw + MLLP_END if b.institution.mllp else raw)
            return b"".join(parts)
        lines = [] if b.header is None else [b.header.encode(enc)]
        lines += [rec if isinstance(rec, bytes) else rec.encode(enc) for rec in records]
        return b"\n".join(lines) + b"\n"

    def _write_file(
        self,
        landing: str,
        b: FileBucket,
        day: int,
        name: str,
        records: Sequence[tuple[str | bytes, tuple[Key, ...], bool]],
        copies: list[int],
    ) -> None:
        """Write one landing file and record where each true record went (``deliveries``)."""
        date = (self.start + dt.timedelta(days=day)).isoformat()
        relative = "/".join((b.feed, b.institution.institution_id, date, name))
        os.makedirs(os.path.join(landing, os.path.dirname(relative)), exist_ok=True)
        if b.whole:
            data = b.records[0].encode("utf-8")
            # A Bundle's entries are its records (offset = entry index); a document has no defects.
            entries = [(entry_keys, i) for i, entry_keys in enumerate(b.keys)]
        else:
            data = self._encode(b, [rec for rec, _, _ in records])
            first = 0 if b.header is None else 1  # the CSV header line is offset 0
            entries = [(keys, first + i) for i, (_, keys, _) in enumerate(records)]
        with open(os.path.join(landing, relative), "wb") as fh:
            fh.write(data)
        for (keys, offset), copy, bad in zip(
            entries, copies, [False] * len(entries) if b.whole else [r[2] for r in records], strict=True
        ):
            self.deliveries += [Delivery(key, relative, offset, copy, bad) for key in keys]

    def write(self, landing: str) -> list[FileCounts]:
        """Apply defects, write every file under ``landing``, and return per-file counts."""
        files: list[FileCounts] = []
        # Stable sort: the files of the kinds added later go last, after every draw the others made.
        for b in sorted(self.buckets.values(), key=lambda b: b.name.startswith(LATER_KINDS)):
            elsewhere: list[tuple[int, str, tuple[Key, ...]]] = []
            if b.whole:
                records: list[tuple[str | bytes, tuple[Key, ...], bool]] = []
                n_records, malformed, duplicates = b.whole_records, 0, 0
                copies = [0] * len(b.keys)
            else:
                records, elsewhere = self._apply_record_defects(b)
                n_records, malformed = len(records), sum(bad for _, _, bad in records)
                duplicates = len(records) - len(b.records)
                # A record's copies after the first in this file are re-sends.
                seen: set[str | bytes] = set()
                copies = []
                for rec, _, bad in records:
                    copies.append(int(not bad and rec in seen))
                    seen.add(rec)
            day = b.day
            self.eligible["late_file"] += 1
            if self.rng.random() < self.rates.late_file:
                self.defects["late_file"] += 1
                day += self.rng.randint(1, 3)
            self._write_file(landing, b, day, b.name, records, copies)
            files.append(
                {
                    "feed": b.feed,
                    "records": n_records,
                    "malformed": malformed,
                    "duplicates": duplicates,
                    "late": day != b.day,
                }
            )
            # Re-sends in later files: one file per day they go out, named after the original.
            stem, ext = os.path.splitext(b.name)
            for later in sorted({d for d, _, _ in elsewhere}):
                again = [(rec, keys, False) for d, rec, keys in elsewhere if d == later]
                name = f"{stem}_resent{ext}"
                self._write_file(landing, b, day + later, name, again, [1] * len(again))
                files.append(
                    {
                        "feed": b.feed,
                        "records": len(again),
                        "malformed": 0,
                        "duplicates": len(again),
                        "late": False,
                    }
                )
        return files
