"""Gold on a generated region, graded against the generator's truth (pandas, not the gold code path).

The truth's times are naive Beijing wall clocks; gold's days are Beijing days (``region.timezone``), so the
expected days here are the truth's own dates, never taken through the library's helper."""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from healthlake import catalog, io
from healthlake.gold.exchange import GRAIN
from healthlake.gold.utilization import ADDITIVE_MEASURES
from healthlake.pipelines import link, publish
from healthlake.synth.catalog import LAB_TESTS
from tests.conftest import Conformed, Published, assert_gold_equals_a_full_rebuild

CLASSES = {"AMB": "outpatient", "EMER": "emergency", "IMP": "inpatient"}
PATIENT_KEY = ["institution_id", "source_patient_id"]
ZONE = "Asia/Shanghai"  # the region's zone: the truth's naive times are its wall clocks


def _local_dates(times: pd.Series) -> pd.Series:
    """The Beijing dates of the truth's naive Beijing wall clocks (NaT stays missing)."""
    return times.dt.tz_localize(ZONE).dt.date


@pytest.fixture(scope="module")
def published(published_region: Published) -> Published:
    return published_region


def _truth_encounters(p: Published, spark: SparkSession) -> pd.DataFrame:
    """Truth encounters that reached gold (malformed messages never do), with local dates and silver
    classes."""
    truth = p.truth_table("encounters")
    truth = truth[~truth.cancelled]
    kept = p.gold(spark, catalog.GOLD_ENCOUNTER_FACTS)[["institution_id", "source_record_id", "person_id"]]
    truth = truth.merge(
        kept,
        left_on=["institution_id", "source_encounter_id"],
        right_on=["institution_id", "source_record_id"],
        suffixes=("", "_gold"),
    )
    truth["cls"] = truth.encounter_class.map(CLASSES)
    truth["date"] = _local_dates(truth.start_time)
    truth["end_date"] = _local_dates(truth.end_time)
    return truth


def _institution_day(truth: pd.DataFrame) -> pd.DataFrame:
    starts = pd.crosstab([truth.institution_id, truth.date], truth.cls)
    for cls in ("outpatient", "emergency", "inpatient"):
        if cls not in starts:
            starts[cls] = 0
    starts = starts.rename(
        columns={
            "outpatient": "outpatient_visits",
            "emergency": "emergency_visits",
            "inpatient": "admissions",
        }
    )[["outpatient_visits", "emergency_visits", "admissions"]]
    stays = truth[(truth.cls == "inpatient") & truth.end_time.notna()].copy()
    stays["bed_days"] = [max(1, (e - s).days) for s, e in zip(stays.date, stays.end_date, strict=True)]
    ended = stays.groupby(["institution_id", "end_date"]).agg(
        discharges=("bed_days", "size"), discharged_bed_days=("bed_days", "sum")
    )
    ended.index = ended.index.set_names(["institution_id", "date"])
    out = starts.join(ended, how="outer").fillna(0).astype("int64").reset_index()
    return out


def test_utilization_per_institution_and_area_matches_the_truth(
    spark: SparkSession, published: Published
) -> None:
    truth = _truth_encounters(published, spark)
    assert len(truth) >= 10
    expected = _institution_day(truth)
    gold = published.gold(spark, catalog.GOLD_UTILIZATION_DAILY)
    measures = ["outpatient_visits", "emergency_visits", "admissions", "discharges", "discharged_bed_days"]
    got = gold[gold.level == "institution"].rename(columns={"unit_code": "institution_id"})
    got = got[got[measures].sum(axis=1) > 0][["institution_id", "date", *measures]]
    pd.testing.assert_frame_equal(
        got.sort_values(["institution_id", "date"]).reset_index(drop=True),
        expected.sort_values(["institution_id", "date"]).reset_index(drop=True)[
            ["institution_id", "date", *measures]
        ],
        check_dtype=False,
    )
    # Every area level from the register the institutions were generated with (the reference CSV).
    register = pd.read_csv(published.reference / "institutions.csv", dtype=str)
    areas = pd.read_csv(published.reference / "areas.csv", dtype=str).set_index("area_code")
    placed = expected.merge(register, on="institution_id")
    placed["township"] = placed.area_code.where(placed.area_code.str.len() == 9)
    placed["county"] = placed.county_code
    placed["city"] = placed.city_code
    placed["province"] = placed.city_code.map(areas.parent_code)
    for level in ("township", "county", "city", "province"):
        want = placed.dropna(subset=[level]).groupby([level, "date"])[measures].sum().reset_index()
        have = gold[gold.level == level].rename(columns={"unit_code": level})
        have = have[have[measures].sum(axis=1) > 0][[level, "date", *measures]]
        pd.testing.assert_frame_equal(
            have.sort_values([level, "date"]).reset_index(drop=True),
            want.sort_values([level, "date"]).reset_index(drop=True),
            check_dtype=False,
            obj=level,
        )


def test_encounter_dates_are_the_truth_s_local_days(spark: SparkSession, published: Published) -> None:
    """Every encounter's ``admit_date`` is the Beijing date of its true start; among them, encounters that
    started between 00:00 and 08:00 Beijing time, whose UTC date is the day before. (The region's two days
    end no stay: stay lengths near local midnight are graded in test_encounters and test_gold_tables.)"""
    truth = _truth_encounters(published, spark)
    facts = published.gold(spark, catalog.GOLD_ENCOUNTER_FACTS)
    joined = truth.merge(facts, on=["institution_id", "source_record_id"], suffixes=("_truth", ""))
    assert len(joined) == len(truth) >= 10
    early = joined[joined.start_time.dt.hour < 8]
    assert len(early) > 0  # the cases a UTC date gets wrong are there to be got right
    wrong = joined[joined.admit_date != joined.date]
    assert wrong.empty, wrong[["source_record_id", "start_time", "admit_date"]].head().to_string()


def test_area_rollups_are_consistent_for_every_additive_measure(
    spark: SparkSession, published: Published
) -> None:
    gold = published.gold(spark, catalog.GOLD_UTILIZATION_DAILY)
    areas = pd.read_csv(published.reference / "areas.csv", dtype=str).set_index("area_code")
    register = pd.read_csv(published.reference / "institutions.csv", dtype=str).set_index("institution_id")
    measures = list(ADDITIVE_MEASURES)

    def summed(rows: pd.DataFrame, parent: pd.Series) -> pd.DataFrame:
        return rows.assign(parent=parent.values).groupby(["parent", "date"])[measures].sum()

    def level(name: str) -> pd.DataFrame:
        return gold[gold.level == name]

    province = level("province").set_index(["unit_code", "date"])[measures].rename_axis(["parent", "date"])
    cities = level("city")
    pd.testing.assert_frame_equal(
        summed(cities, cities.unit_code.map(areas.parent_code)).sort_index(),
        province.sort_index(),
        check_dtype=False,
    )
    # A city: its counties plus the institutions directly under it (no county); a county likewise.
    institutions = level("institution")
    direct = institutions[institutions.unit_code.map(register.county_code).isna()]
    counties = level("county")
    parts = (
        pd.concat(
            [
                summed(counties, counties.unit_code.map(areas.parent_code)),
                summed(direct, direct.unit_code.map(register.city_code)),
            ]
        )
        .groupby(level=[0, 1])
        .sum()
    )
    city = cities.set_index(["unit_code", "date"])[measures].rename_axis(["parent", "date"])
    pd.testing.assert_frame_equal(parts.sort_index(), city.sort_index(), check_dtype=False)
    assert len(direct) > 0 and len(counties) > 0
    # Rates are recomputed from the sums, not averaged.
    p = level("province")
    with_stays = p[p.discharges > 0]
    assert (with_stays.average_length_of_stay == with_stays.discharged_bed_days / with_stays.discharges).all()


def _one_to_one(spark: SparkSession, p: Published) -> pd.DataFrame:
    """Gold person ↔ truth person where the EMPI and the truth agree one to one."""
    xref = io.read_table(spark, p.cfg.lake_root, catalog.SILVER_PERSON_XREF).toPandas()
    records = p.truth_table("patient_records")[["institution_id", "source_patient_id", "person_id"]]
    pairs = xref.merge(records, on=["institution_id", "source_patient_id"], suffixes=("", "_truth"))
    pairs = pairs[["person_id", "person_id_truth"]].drop_duplicates()
    single = pairs.groupby("person_id").person_id_truth.transform("size").eq(1) & pairs.groupby(
        "person_id_truth"
    ).person_id.transform("size").eq(1)
    return pairs[single]


def test_patient_360_counts_and_demographics_match_the_truth(
    spark: SparkSession, published: Published
) -> None:
    pairs = _one_to_one(spark, published)
    gold = published.gold(spark, catalog.GOLD_PATIENT_360).merge(pairs, on="person_id")
    assert len(gold) >= 0.95 * len(published.truth_table("persons"))
    truth = _truth_encounters(published, spark)
    truth = truth[truth.person_id_gold.notna()]  # a patient whose every record was malformed is no person
    counts = pd.crosstab(truth.person_id, truth.cls).reindex(columns=list(CLASSES.values()), fill_value=0)
    gold = gold.merge(counts, left_on="person_id_truth", right_index=True, how="left").fillna(
        {c: 0 for c in CLASSES.values()}
    )
    assert (gold.outpatient_visits == gold.outpatient).all()
    assert (gold.emergency_visits == gold.emergency).all()
    assert (gold.admissions == gold.inpatient).all()
    assert gold.outpatient_visits.sum() > 0
    persons = published.truth_table("persons").set_index("person_id")
    assert (gold.sex == gold.person_id_truth.map(persons.sex)).all()
    assert (gold.birth_year == gold.person_id_truth.map(persons.birth_date).map(lambda d: d.year)).all()
    # A condition gold records is one the resident has (diagnosed on a visit or managed by a clinic).
    truth_conditions = gold.person_id_truth.map(persons.conditions).map(set)
    has = gold.chronic_conditions.map(lambda cs: {c["condition"] for c in cs})
    named = {"coronary_heart_disease": "chd"}
    assert all({named.get(c, c) for c in g} <= t for g, t in zip(has, truth_conditions, strict=True))
    assert has.map(len).sum() > 0


def _truth_reaching_gold(spark: SparkSession, p: Published, name: str, table: str) -> pd.DataFrame:
    """Truth records of ``name`` that are in silver ``table`` and whose source patient the EMPI linked.

    A malformed record never reaches silver, and a patient whose record was malformed is unknown to the
    EMPI: those are the defects, not gold's doing.
    """
    kept = (
        io.read_table(spark, p.cfg.lake_root, table)
        .select("institution_id", "source_record_id")
        .distinct()
        .toPandas()
    )
    truth = p.truth_table(name).merge(kept, on=["institution_id", "source_record_id"])
    records = p.truth_table("patient_records")[["institution_id", "source_patient_id", "person_id"]]
    linked = io.read_table(spark, p.cfg.lake_root, catalog.SILVER_PERSON_XREF).select(*PATIENT_KEY).toPandas()
    return truth.merge(records.merge(linked, on=PATIENT_KEY), on=["institution_id", "person_id"])


def test_patient_360_procedures_and_allergies_match_the_truth(
    spark: SparkSession, published: Published
) -> None:
    """Procedure counts and last dates (the Beijing dates of the truth's wall clocks), active allergies and
    their substances, for every person the EMPI and the truth agree on, zeros included."""
    procedures = _truth_reaching_gold(spark, published, "procedures", catalog.SILVER_PROCEDURE)
    allergies = _truth_reaching_gold(spark, published, "allergies", catalog.SILVER_ALLERGY)
    # The region has both, from FHIR and HL7 hospitals. (Its few food allergies happen to be active: a
    # resolved one, which gold leaves out, is graded in tests/gold/test_gold_tables.py.)
    assert len(procedures) >= 3 and len(allergies) >= 3
    for kept in (procedures, allergies):
        hl7 = kept.source_record_id.str.contains(r"-(?:PR1|AL1)-")
        assert hl7.any() and not hl7.all()
    procedures["date"] = _local_dates(procedures.time)
    performed = procedures.groupby("person_id").agg(
        procedure_count=("source_record_id", "size"), last_procedure_date=("date", "max")
    )
    active = allergies[allergies.status == "active"]
    allergic = active.groupby("person_id").agg(
        allergy_count=("source_record_id", "size"), allergies=("code", lambda c: sorted(set(c)))
    )
    pairs = _one_to_one(spark, published)
    gold = published.gold(spark, catalog.GOLD_PATIENT_360).merge(pairs, on="person_id")
    expected = gold[["person_id", "person_id_truth"]].merge(
        performed.join(allergic, how="outer"), left_on="person_id_truth", right_index=True, how="left"
    )
    expected["procedure_count"] = expected.procedure_count.fillna(0).astype("int64")
    expected["allergy_count"] = expected.allergy_count.fillna(0).astype("int64")
    expected["allergies"] = expected.allergies.map(lambda a: a if isinstance(a, list) else [])
    got = gold.set_index("person_id").loc[expected.person_id]
    assert (got.procedure_count.to_numpy() == expected.procedure_count.to_numpy()).all()
    assert (got.allergy_count.to_numpy() == expected.allergy_count.to_numpy()).all()
    assert [list(a) for a in got.allergies] == list(expected.allergies)
    dates = [None if pd.isna(d) else d for d in expected.last_procedure_date]
    assert [None if pd.isna(d) else d for d in got.last_procedure_date] == dates
    assert got.procedure_count.sum() > 0 and got.allergy_count.sum() > 0


def _truth_followups(spark: SparkSession, p: Published) -> pd.DataFrame:
    """Truth follow-ups that reached silver and whose patient the EMPI knows, in Beijing time, latest last.

    A malformed follow-up line never reaches silver, and a patient whose health record was malformed is
    unknown to the EMPI: those are the defects, not gold's doing.
    """
    truth = p.truth_table("followups")
    kept = (
        io.read_table(spark, p.cfg.lake_root, "silver.chronic_followup")
        .select("institution_id", F.col("source_record_id").alias("followup_id"))
        .distinct()
        .toPandas()
    )
    truth = truth.merge(kept, on=["institution_id", "followup_id"])
    records = p.truth_table("patient_records")[["institution_id", "source_patient_id", "person_id"]]
    linked = io.read_table(spark, p.cfg.lake_root, catalog.SILVER_PERSON_XREF).select(*PATIENT_KEY).toPandas()
    truth = truth.merge(records.merge(linked, on=PATIENT_KEY), on=["institution_id", "person_id"])
    truth["time"] = truth.followup_time.dt.tz_localize(ZONE)
    truth["month"] = truth.time.dt.tz_localize(None).dt.to_period("M")
    # Centres that report glucose in whole mg/dL send a rounded value: 7.0 mmol/L goes out as 126 mg/dL,
    # 6.99 mmol/L. Control is judged on what was sent.
    mgdl = (
        io.read_table(spark, p.cfg.lake_root, "silver.observation")
        .where(F.col("unit_original") == "mg/dL")
        .select("institution_id")
        .distinct()
        .toPandas()
        .institution_id
    )
    factor = LAB_TESTS["glucose"].alt_factor
    sent = truth.fasting_glucose.where(
        ~truth.institution_id.isin(mgdl), (truth.fasting_glucose * factor).round() / factor
    )
    truth["controlled"] = [
        (s < 140 and d < 90) if disease == "hypertension" else g < 7.0
        for disease, s, d, g in zip(truth.disease, truth.sbp, truth.dbp, sent, strict=True)
    ]
    return truth.sort_values(["time", "followup_id"])


def test_chronic_registry_matches_the_truth_followups(spark: SparkSession, published: Published) -> None:
    as_of = published.result.as_of
    truth = _truth_followups(spark, published)
    truth = truth[truth.time.dt.date <= as_of]
    year_ago = (pd.Timestamp(as_of) - pd.DateOffset(months=12)).date()
    truth["in_12m"] = truth.time.dt.date > year_ago
    expected = truth.groupby(["person_id", "disease"]).agg(
        registered_on=("time", lambda t: t.min().date()),
        followups_12m=("in_12m", "sum"),
        is_controlled=("controlled", "last"),
        managing_institution_id=("institution_id", "last"),
    )
    expected["is_standard_managed"] = expected.followups_12m >= 4
    # The region carries a year of follow-up history: both kinds of patient are there to be told apart.
    assert expected.is_standard_managed.any() and not expected.is_standard_managed.all()
    pairs = _one_to_one(spark, published)
    gold = published.gold(spark, catalog.GOLD_CHRONIC_REGISTRY).merge(pairs, on="person_id")
    gold = gold.set_index(["person_id_truth", "disease"]).rename_axis(["person_id", "disease"])
    # Every managed resident has a health record at their centre, so each one the EMPI linked one to one
    # is in the registry.
    linked = expected[expected.index.get_level_values("person_id").isin(pairs.person_id_truth)]
    assert len(linked) >= 0.95 * len(expected)
    cols = ["registered_on", "followups_12m", "is_standard_managed", "is_controlled"]
    pd.testing.assert_frame_equal(
        gold[[*cols, "managing_institution_id"]].sort_index(),
        linked[[*cols, "managing_institution_id"]].sort_index(),
        check_dtype=False,
    )


def test_chronic_indicators_per_county_and_month_match_the_truth(
    spark: SparkSession, published: Published
) -> None:
    """Registered, standard-managed (4+ follow-ups in the 12 months to the month's end) and controlled."""
    truth = _truth_followups(spark, published)
    last_month = pd.Period(published.result.as_of, "M")
    rows = []
    for (_, disease), seen in truth.groupby(["person_id", "disease"]):
        for month in pd.period_range(seen.month.min(), last_month, freq="M"):
            upto = seen[seen.month <= month]
            latest = upto.iloc[-1]
            rows.append(
                {
                    "month": month.start_time.date(),
                    "disease": disease,
                    "institution_id": latest.institution_id,
                    "registered": 1,
                    "standard_managed": int((upto.month > month - 12).sum() >= 4),
                    "controlled": int(latest.controlled),
                }
            )
    monthly = pd.DataFrame(rows)
    assert monthly.month.nunique() >= 12 and 0 < monthly.standard_managed.sum() < len(monthly)
    register = pd.read_csv(published.reference / "institutions.csv", dtype=str)
    areas = pd.read_csv(published.reference / "areas.csv", dtype=str).set_index("area_code")
    monthly = monthly.merge(register[["institution_id", "county_code", "city_code"]], on="institution_id")
    monthly["province_code"] = monthly.city_code.map(areas.parent_code)
    measures = ["registered", "standard_managed", "controlled"]
    gold = published.gold(spark, catalog.GOLD_CHRONIC_INDICATORS)
    for level in ("county", "province"):
        want = monthly.groupby(["month", "disease", f"{level}_code"])[measures].sum().reset_index()
        have = gold[gold.level == level].rename(columns={"unit_code": f"{level}_code"})
        pd.testing.assert_frame_equal(
            have[want.columns].sort_values(list(want.columns[:3])).reset_index(drop=True),
            want.sort_values(list(want.columns[:3])).reset_index(drop=True),
            check_dtype=False,
            obj=level,
        )
    province = gold[gold.level == "province"]
    assert (province.standard_management_rate == province.standard_managed / province.registered).all()
    assert (province.control_rate == province.controlled / province.registered).all()


def test_exchange_volume_matches_the_manifest(
    spark: SparkSession, published: Published, conformed_region: Conformed
) -> None:
    import json

    manifest = json.loads((published.truth / "manifest.json").read_text(encoding="utf-8"))
    gold = published.gold(spark, catalog.GOLD_EXCHANGE_VOLUME)
    per_feed = gold.groupby("feed")[["files", "records_received", "duplicates"]].sum()
    bronze_rules = gold.quarantined_by_rule.map(
        lambda m: sum(n for r, n in dict(m).items() if r.startswith("bronze:"))
    )
    malformed = bronze_rules.groupby(gold.feed).sum()
    for feed, counts in manifest["feeds"].items():
        if not counts.get("files"):
            continue
        assert per_feed.loc[feed, "files"] == counts["files"], feed
        assert per_feed.loc[feed, "records_received"] == counts["records"], feed
        assert per_feed.loc[feed, "duplicates"] == counts["duplicates"], feed
        assert malformed.get(feed, 0) == counts["malformed"], feed
    assert per_feed.duplicates.sum() > 0 and malformed.sum() > 0
    assert gold.median_arrival_lag_days.notna().any()


def test_no_direct_identifier_or_lake_key_reaches_research_or_omop(
    spark: SparkSession, published: Published
) -> None:
    lake = published.cfg.lake_root
    persons = published.truth_table("persons")
    clear = {
        str(v) for c in ("national_id", "name", "phone", "address") for v in persons[c].dropna() if str(v)
    }
    # Keys that lead back to identified rows: lake tokens, EMPI person ids, source patient numbers.
    lake_keys = io.read_table(spark, lake, "silver.person").select(
        F.explode(F.array("person_id", "resident_id_token", "name_token", "phone_token")).alias("value")
    )
    patients = published.truth_table("patient_records").source_patient_id
    forbidden = (
        spark.createDataFrame([(v,) for v in sorted(clear | set(patients))], "value string")
        .unionByName(lake_keys)
        .where(F.col("value").isNotNull())
    )
    names = [
        f"{t.layer}.{t.name}"
        for t in io.list_tables(lake, spark)
        if t.layer in ("research", "omop") and t.name != "id_map"
    ]
    assert {"research.patients", "research.encounters", "omop.person"} <= set(names)
    for name in names:
        df = io.read_table(spark, lake, name)
        strings = [f.name for f in df.schema.fields if f.dataType.simpleString() == "string"]
        # (OMOP's person_id is the CDM's own integer id, not the EMPI's: checked by value below.)
        keys = ("source_patient_id",) if name.startswith("omop.") else ("person_id", "source_patient_id")
        assert not [c for c in df.columns if c.endswith("_token") or c in keys], name
        if not strings:
            continue
        values = df.select(F.explode(F.array(*[F.col(c) for c in strings])).alias("value"))
        leaks = values.join(forbidden, "value", "left_semi")
        assert leaks.isEmpty(), f"{name}: {leaks.limit(3).collect()}"


def test_research_aggregates_suppress_small_cells_and_report_k_anonymity(
    spark: SparkSession, published: Published
) -> None:
    lake = published.cfg.lake_root
    monthly = published.gold(spark, catalog.RESEARCH_UTILIZATION)
    counts = monthly[list(ADDITIVE_MEASURES)]
    assert ((counts.isna()) | (counts == 0) | (counts >= 5)).all().all()
    assert monthly.suppressed.any() and (monthly.level == "county").any()
    # A suppressed count hides its rate too.
    hidden = monthly[monthly.discharges.isna()]
    assert hidden.average_length_of_stay.isna().all()
    report = published.gold(spark, catalog.RESEARCH_K_ANONYMITY)
    patients = io.read_table(spark, lake, catalog.RESEARCH_PATIENTS).count()
    assert set(report.quasi_identifiers) == {"sex, birth_year, county_code", "sex, age_band, county_code"}
    assert (report.records == patients).all() and (report.k == 5).all()
    assert (report.is_k_anonymous == (report.classes_below_k == 0)).all()


def test_a_day_of_re_sent_files_is_published_incrementally_as_a_full_rebuild_would(
    spark: SparkSession, published: Published, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A later delivery re-sends an HL7 file on a new landing day and a follow-up extract on its own day:
    every re-sent record counts as a duplicate, the other keys keep their rows, and the incremental run
    gives the gold of a full rebuild."""
    from healthlake.pipelines import conform, ingest

    # A landing zone of the new files only: ingest takes each file (path) once, so a copy of the old
    # landing zone would be a re-send of every file.
    old, landing, lake = Path(published.cfg.landing_root), tmp_path / "landing", tmp_path / "lake"
    shutil.copytree(published.cfg.lake_root, lake)
    cfg = published.cfg.model_copy(update={"landing_root": str(landing), "lake_root": str(lake)})
    hl7 = sorted(old.glob("hl7v2/*/*/*.hl7"))[0]
    later = landing / "hl7v2" / hl7.parent.parent.name / "2026-02-01" / hl7.name  # a new key
    extract = sorted(old.glob("csv/*/*/followups_*.csv"))[0]
    resent = landing / extract.relative_to(old).with_name(f"{extract.stem}_resent.csv")  # the first's key
    for source, copy in ((hl7, later), (extract, resent)):
        copy.parent.mkdir(parents=True)
        shutil.copy(source, copy)
    before = io.read_table(spark, str(lake), catalog.GOLD_EXCHANGE_VOLUME).toPandas()
    ingest.run(spark, cfg)
    conform.run(spark, cfg)
    link.run(spark, cfg)
    with caplog.at_level(logging.INFO, logger="healthlake"):
        result = publish.run(spark, cfg)
    assert result.mode == "incremental"
    recounted = int(re.search(r"exchange volumes of (\d+) \(day", caplog.text).group(1))
    assert 2 <= recounted < len(before)

    tables = assert_gold_equals_a_full_rebuild(spark, cfg, tmp_path / "rebuilt", result)
    after = tables[catalog.GOLD_EXCHANGE_VOLUME].toPandas().set_index(list(GRAIN))
    files = io.read_table(spark, str(lake), "bronze.ingest_log").toPandas()
    # Records bronze kept (the rest it quarantined) per file, by its local path.
    accepted = {
        p.split(":", 1)[1].lstrip("/"): n for p, n in zip(files._source_file, files.records, strict=True)
    }
    key = (dt.date(2026, 2, 1), hl7.parent.parent.name, "hl7v2")
    assert (
        after.loc[key, "files"] == 1 and after.loc[key, "duplicates"] == accepted[str(later).lstrip("/")] > 0
    )
    first = before.set_index(list(GRAIN)).loc[
        (dt.date.fromisoformat(extract.parent.name), extract.parent.parent.name, "csv")
    ]
    again = accepted[str(resent).lstrip("/")]
    assert after.loc[first.name, "duplicates"] == first.duplicates + again > first.duplicates
    assert after.loc[first.name, "files"] == first.files + 1
