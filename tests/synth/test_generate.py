"""The generated region: manifest against files, defect rates, determinism, realistic distributions."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from healthlake.synth.identity import resident_id_is_valid
from tests.synth.conftest import ELEVATED_RATES, Generated, generate
from tests.synth.landing_reader import feed_counts

FEEDS = ("fhir", "hl7v2", "csv", "public_health", "location")


def test_manifest_counts_match_the_files(region: Generated) -> None:
    counts = feed_counts([f for f in region.files if f.feed != "reference"])
    for feed in FEEDS:
        declared = region.manifest["feeds"][feed]
        found = counts[feed]
        assert declared["files"] == found["files"], feed
        assert declared["records"] == found["records"], feed
        assert declared["malformed"] == found["malformed"], feed
        assert declared["duplicates"] == found["duplicates"], feed
        assert declared["records"] > 0
    assert json.loads((region.truth / "manifest.json").read_text()) == region.manifest


def test_landing_layout_is_feed_institution_day(region: Generated) -> None:
    for f in region.files:
        dt.date.fromisoformat(f.day)
        assert f.path.relative_to(region.landing).parts[:3] == (f.feed, f.institution_id, f.day)
    assert not list(region.truth.rglob("*.hl7"))
    assert not any(p.is_relative_to(region.truth) for p in region.landing.rglob("*"))


@pytest.mark.parametrize(
    "defect", sorted(ELEVATED_RATES.keys() - {"gbk_share", "mllp_share", "lf_separator_share"})
)
def test_every_defect_appears_at_its_configured_rate(region: Generated, defect: str) -> None:
    rate = ELEVATED_RATES[defect]
    stats = region.manifest["defects"][defect]
    n, k = stats["eligible"], stats["count"]
    assert n * rate >= 10, f"too few eligible records for {defect}: {n}"
    assert abs(k - n * rate) <= 4 * math.sqrt(n * rate * (1 - rate)) + 2, (defect, k, n, rate)


def test_identity_defects_are_in_the_records_as_declared(region: Generated) -> None:
    persons = region.truth_table("persons").set_index("person_id")
    records = region.truth_table("patient_records").join(persons, on="person_id")
    defects = region.manifest["defects"]
    assert records["keyed_national_id"].isna().sum() == defects["id_missing"]["count"]
    keyed = records.dropna(subset=["keyed_national_id"])
    assert (keyed["keyed_national_id"] != keyed["national_id"]).sum() == defects["id_transposed"]["count"]
    renamed = (records["keyed_name"] != records["name"]).sum()
    expected = defects["name_typo"]["count"] + defects["homophone"]["count"]
    assert 0.8 * expected <= renamed <= expected
    # Each record names its own defects, and they add up to the manifest's counts.
    per_record = records["defects"].explode().value_counts()
    identity = ("name_typo", "homophone", "id_transposed", "id_missing")
    assert {d: int(per_record.get(d, 0)) for d in identity} == {d: defects[d]["count"] for d in identity}
    flagged = records[records["defects"].map(lambda d: "id_missing" in d)]
    assert flagged["keyed_national_id"].isna().all()


def test_every_resident_id_is_valid_unless_corrupted(region: Generated) -> None:
    persons = region.truth_table("persons")
    assert persons["national_id"].map(resident_id_is_valid).all()
    assert persons["national_id"].is_unique
    # The ID encodes the county, the birth date and the sex.
    assert (persons["national_id"].str[:6] == persons["area_code"]).all()
    assert (
        persons["national_id"].str[6:14] == pd.to_datetime(persons["birth_date"]).dt.strftime("%Y%m%d")
    ).all()
    assert ((persons["national_id"].str[16].astype(int) % 2 == 1) == (persons["sex"] == "M")).all()
    records = region.truth_table("patient_records")
    invalid = ~records["keyed_national_id"].dropna().map(resident_id_is_valid)
    assert invalid.sum() <= region.manifest["defects"]["id_transposed"]["count"]


def test_feeds_carry_ids_as_the_truth_says(region: Generated) -> None:
    records = region.truth_table("patient_records")
    keyed = dict(
        zip(
            zip(records["institution_id"], records["source_patient_id"], strict=True),
            records["keyed_national_id"],
            strict=True,
        )
    )
    checked = 0
    for f in region.files:
        if f.feed == "csv" and f.path.name.startswith("health_records"):
            for row in f.parsed:
                if row is not None:
                    assert (keyed[(f.institution_id, row["patient_no"])] or "") == row["id_number"]
                    checked += 1
    assert checked > 1000


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _truth_frames(root: Path) -> dict[str, pd.DataFrame]:
    return {
        name: pd.read_parquet(root / f"{name}.parquet")
        .sort_values(list(pd.read_parquet(root / f"{name}.parquet").columns[:2]))
        .reset_index(drop=True)
        for name in (
            "persons",
            "patient_records",
            "encounters",
            "readmissions",
            "followups",
            "procedures",
            "allergies",
            "contacts",
            "trajectories",
            "phones",
            "cases",
            "nat_pools",
            "isolation",
        )
    }


def test_same_seed_same_records_and_truth(spark: SparkSession, tmp_path: Path) -> None:
    a = generate(spark, tmp_path / "a", people=400, days=4, seed=11, persons_per_shard=150)
    b = generate(spark, tmp_path / "b", people=400, days=4, seed=11, persons_per_shard=150)
    c = generate(spark, tmp_path / "c", people=400, days=4, seed=12, persons_per_shard=150)
    assert _digest(a.landing) == _digest(b.landing)
    assert a.manifest == b.manifest
    for name, frame in _truth_frames(a.truth).items():
        pd.testing.assert_frame_equal(frame, _truth_frames(b.truth)[name], check_like=True)
    assert _digest(a.landing) != _digest(c.landing)


def test_population_looks_like_a_chinese_province(region: Generated) -> None:
    persons = region.truth_table("persons")
    start = region.settings.start
    age = persons["birth_date"].map(lambda b: (start - b).days / 365.25)
    assert 30 <= age.median() <= 50
    assert 0.12 <= (age >= 60).mean() <= 0.35
    assert 0.08 <= (age < 15).mean() <= 0.25
    assert 0.45 <= (persons["sex"] == "M").mean() <= 0.55
    top = set(persons["name"].str[0].value_counts().index[:8])
    assert len(top & {"王", "李", "张", "刘", "陈", "杨"}) >= 3
    sizes = persons.groupby("household_id").size()
    assert 2.0 <= sizes.mean() <= 3.2
    conditions = persons["conditions"].map(set)
    adults, elderly, young = age >= 18, age >= 60, (age >= 18) & (age < 45)
    hypertension = conditions.map(lambda c: "hypertension" in c)
    diabetes = conditions.map(lambda c: "diabetes" in c)
    assert 0.15 <= hypertension[adults].mean() <= 0.40
    assert hypertension[elderly].mean() > hypertension[young].mean() * 2
    assert 0.03 <= diabetes[adults].mean() < hypertension[adults].mean()
    assert persons["area_code"].str.fullmatch(r"36\d{4}").all()
    assert persons["township_code"].str.fullmatch(r"36\d{7}").all()
    phones = persons["phone"].dropna()
    assert phones.str.fullmatch(r"1[3-9]\d{9}").all() and phones.is_unique


def test_areas_and_institutions_are_published_as_reference_data(region: Generated) -> None:
    folder = next((region.landing / "reference").glob("*/*"))
    areas = pd.read_csv(folder / "areas.csv", dtype=str)
    institutions = pd.read_csv(folder / "institutions.csv", dtype=str)
    assert set(areas["level"]) == {"province", "city", "county", "township"}
    by_code = areas.set_index("area_code")
    for _, a in areas[areas["level"] != "province"].iterrows():
        parent = by_code.loc[a["parent_code"]]
        assert a["area_code"].startswith(parent.name[: {"city": 2, "county": 4, "township": 6}[a["level"]]])
    kinds = set(institutions["kind"])
    assert {
        "tertiary_hospital",
        "secondary_hospital",
        "township_health_centre",
        "village_clinic",
        "cdc_lab",
        "vaccination_site",
    } <= kinds
    assert set(institutions["feed"]) == set(FEEDS)
    assert institutions["institution_id"].is_unique
    assert {f.institution_id for f in region.files if f.feed != "reference"} <= set(
        institutions["institution_id"]
    )


def test_outbreak_contacts_were_really_together(region: Generated) -> None:
    """Venue co-attendees were at the venue together in their true paths, and their phones say so."""
    contacts = region.truth_table("contacts")
    venue = contacts[contacts["via"] == "venue"]
    assert len(venue) >= 5 and (contacts["via"] == "household").any()
    paths = region.truth_table("trajectories")
    stays = paths[paths["place_kind"] == "venue"]
    phones = region.truth_table("phones")
    pings = pd.concat(
        pd.DataFrame([r for r in f.parsed if r is not None]) for f in region.files if f.feed == "location"
    )
    pings["ts"] = pd.to_datetime(pings["ts"])
    pings = pings.merge(phones, on="phone")
    for _, c in venue.iterrows():
        at = []
        for pid in (c["case_person_id"], c["contact_person_id"]):
            s = stays[
                (stays["person_id"] == pid)
                & (stays["start"] <= c["exposure_time"])
                & (stays["end"] >= c["exposure_time"] + pd.Timedelta("30min"))
            ]
            assert len(s) == 1, (pid, c)
            at.append(s.iloc[0]["place_id"])
        assert at[0] == at[1]
    # The phones of a sample of them pinged from the venue (within a poor fix's reach).
    for _, c in venue.head(10).iterrows():
        seen = pings[
            (pings["person_id"] == c["contact_person_id"])
            & (pings["ts"] >= c["exposure_time"])
            & (pings["ts"] <= c["exposure_time"] + pd.Timedelta("30min"))
        ]
        s = stays[
            (stays["person_id"] == c["contact_person_id"]) & (stays["start"] <= c["exposure_time"])
        ].iloc[-1]
        far = (
            (seen["lat"].astype(float) - s["lat_start"]) ** 2
            + (seen["lon"].astype(float) - s["lon_start"]) ** 2
        ) > 0.006**2
        assert not far.any()
    positives = [
        r
        for f in region.files
        if f.path.name.startswith("nat_tests")
        for r in f.parsed
        if r is not None and r["result"] == "阳性"
    ]
    assert positives


def test_procedures_and_allergies_are_sent_as_the_truth_says(region: Generated) -> None:
    """Hospitals perform procedures and record allergies (clinics neither); every true record goes out
    under its truth key, but an HL7 stay's procedures, which go with the discharge; nothing else does."""
    procedures, allergies = region.truth_table("procedures"), region.truth_table("allergies")
    encounters = region.truth_table("encounters").set_index(["institution_id", "source_encounter_id"])
    register = pd.read_csv(next((region.landing / "reference").glob("*/*")) / "institutions.csv", dtype=str)
    feed = register.set_index("institution_id").feed
    assert len(procedures) >= 50 and len(allergies) >= 30
    for truth in (procedures, allergies):
        assert truth.institution_id.map(feed).isin(["fhir", "hl7v2"]).all()
        assert truth.set_index(["institution_id", "source_record_id"]).index.is_unique
    end = pd.Timestamp(region.settings.start) + pd.Timedelta(days=region.settings.days)
    assert (procedures.time < end).all()
    # A procedure happens during its encounter.
    starts = encounters.start_time.reindex(
        list(zip(procedures.institution_id, procedures.source_encounter_id, strict=True))
    )
    assert (procedures.time.to_numpy() >= starts.to_numpy()).all()
    # Each hospital records a resident's allergies once; a resolved one (HL7 v2 cannot say so) at FHIR sites.
    assert not allergies.duplicated(["institution_id", "person_id", "code"]).any()
    resolved = allergies[allergies.status == "resolved"]
    assert len(resolved) > 0 and (resolved.institution_id.map(feed) == "fhir").all()
    assert (resolved.category == "food").all() and set(allergies.status) == {"active", "resolved"}
    residents = region.truth_table("persons").person_id.nunique()
    assert allergies.person_id.nunique() < region.settings.allergy_share * residents
    delivered = region.truth_table("deliveries")
    for entity, truth in (("procedure", procedures), ("allergy", allergies)):
        sent = delivered[delivered.entity == entity].set_index(["institution_id", "source_record_id"]).index
        keys = truth.set_index(["institution_id", "source_record_id"]).index
        assert set(sent) <= set(keys), entity  # nothing invented
        missing = truth[~keys.isin(sent)]
        if entity == "allergy":
            assert missing.empty
        else:  # an HL7 stay not discharged in the window has sent no PR1 yet
            stay = encounters.reindex(
                list(zip(missing.institution_id, missing.source_encounter_id, strict=True))
            )
            assert (missing.institution_id.map(feed) == "hl7v2").all()
            assert ((stay.encounter_class == "IMP") & stay.end_time.isna()).all()
