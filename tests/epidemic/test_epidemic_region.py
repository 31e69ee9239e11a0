"""The epidemic stage on the shared generated region, checked against the generator's truth.

The region (300 residents, 2 days, seed 5) sees its outbreak's index case fall ill, get reported and
isolated with its contacts, and a pooled screening round; the truth files say what really happened. Each
expectation is worked out here, in pandas with ``zoneinfo``, from the truth and from which of the true
records reached silver (a record lost to an injected defect is the defect's doing, not the stage's).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from healthlake import catalog, io
from healthlake.config import load_config
from healthlake.epidemic.exchange import LIST_COLUMNS, LIST_EXTRACT
from healthlake.errors import ConfigError, UsageError
from healthlake.pipelines import epidemic, exchange
from healthlake.privacy.tokens import load_key, token_of
from healthlake.synth.companions import true_companions
from tests.conftest import Published
from tests.gold.test_gold_region import _one_to_one

ZONE = "Asia/Shanghai"


def _local(times: pd.Series) -> pd.Series:
    """Spark's naive UTC instants (the tests' session is UTC) as naive local wall-clock times."""
    return pd.to_datetime(times).dt.tz_localize("UTC").dt.tz_convert(ZONE).dt.tz_localize(None)


@pytest.fixture(scope="module")
def region(
    spark: SparkSession, published_region: Published, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Published, epidemic.EpidemicResult]:
    """The published region, on a copy of its lake, after `healthlake epidemic`."""
    lake = tmp_path_factory.mktemp("epidemic_region") / "lake"
    shutil.copytree(published_region.cfg.lake_root, lake)
    cfg = published_region.cfg.model_copy(update={"lake_root": str(lake)})
    p = Published(cfg, published_region.truth, published_region.reference, published_region.result)
    result = epidemic.run(spark, cfg)
    again = epidemic.run(spark, cfg)  # nothing new: nothing written
    assert (again.mode, again.tables, again.as_of) == ("unchanged", result.tables, result.as_of)
    assert io.read_table(spark, str(lake), catalog.GOLD_EPIDEMIC_LOG).count() == 1
    return p, result


def _silver(spark: SparkSession, p: Published, table: str, *columns: str) -> pd.DataFrame:
    return io.read_table(spark, p.cfg.lake_root, table).select(*columns).toPandas()


def _truth_person(spark: SparkSession, p: Published, rows: pd.DataFrame) -> pd.Series:
    """The true person of silver rows keyed by (institution_id, source_patient_id)."""
    records = p.truth_table("patient_records")[["institution_id", "source_patient_id", "person_id"]]
    keys = rows[["institution_id", "source_patient_id"]]
    return keys.merge(records, on=["institution_id", "source_patient_id"], how="left")["person_id"].to_numpy()


def test_the_stage_runs_as_of_the_last_local_day_of_testing_or_vaccination(
    spark: SparkSession, region: tuple[Published, epidemic.EpidemicResult]
) -> None:
    p, result = region
    tests = _silver(spark, p, catalog.SILVER_NAT_TEST, "sample_time", "report_time")
    doses = _silver(spark, p, catalog.SILVER_IMMUNIZATION, "vaccinated_at")
    times = pd.concat([tests.sample_time, tests.report_time, doses.vaccinated_at]).dropna()
    assert result.mode == "full"
    assert result.as_of == _local(times).max().date()


def test_every_true_case_with_a_positive_in_silver_is_one_case_reported_that_day(
    spark: SparkSession, region: tuple[Published, epidemic.EpidemicResult]
) -> None:
    p, result = region
    truth = p.truth_table("cases")
    assert len(truth[truth.reported_at.notna()]) >= 1, "the region's outbreak reported no case"
    tests = _silver(
        spark,
        p,
        catalog.SILVER_NAT_TEST,
        "institution_id",
        "source_patient_id",
        "sample_time",
        "report_time",
        "result",
    )
    tests["truth_person"] = _truth_person(spark, p, tests)
    positives = tests[tests.result == "positive"].sort_values("sample_time")
    first = positives.groupby("truth_person", as_index=False).first()
    first["report_date"] = _local(first.report_time.fillna(first.sample_time)).dt.date
    expected = first[first.truth_person.isin(truth.person_id)]
    # Only true cases test positive in the region: no positive of a person who was never infected.
    assert set(first.truth_person) <= set(truth.person_id)
    assert not expected.empty
    pairs = _one_to_one(spark, p)
    gold = p.gold(spark, catalog.GOLD_EPIDEMIC_CASES).merge(pairs, on="person_id", how="left")
    assert gold.person_id_truth.notna().all(), "a case whose person the EMPI merged with another"
    got = dict(zip(gold.person_id_truth, gold.report_date, strict=True))
    assert got == dict(zip(expected.truth_person, expected.report_date, strict=True))
    # And the truth agrees: a case's report is never before its first true positive result.
    reported = truth.set_index("person_id").reported_at
    assert all(day >= reported[person].date() for person, day in got.items() if pd.notna(reported[person]))
    assert result.tables[catalog.GOLD_EPIDEMIC_CASES] == len(got)


def test_every_isolation_order_that_reached_silver_is_in_gold_with_its_true_course(
    spark: SparkSession, region: tuple[Published, epidemic.EpidemicResult]
) -> None:
    p, result = region
    truth = p.truth_table("isolation").rename(columns={"order_id": "source_record_id"})
    kept = _silver(spark, p, catalog.SILVER_ISOLATION_ORDER, "institution_id", "source_record_id")
    expected = truth.merge(kept, on=["institution_id", "source_record_id"])
    assert len(expected) >= 0.9 * len(truth) and len(expected) > 0
    assert set(expected.category) >= {"case", "close_contact"}
    gold = p.gold(spark, catalog.GOLD_ISOLATION)
    both = expected.merge(gold, on=["institution_id", "source_record_id"], suffixes=("_truth", ""))
    assert len(both) == len(expected) == len(gold)
    assert (both.category_truth == both.category).all()
    assert (both.place_type_truth == both.place_type).all()
    assert (both.start_time_truth.dt.date == both.start_date).all()
    assert (both.planned_end_time_truth.dt.date == both.planned_end_date).all()
    as_of = pd.Timestamp(result.as_of)
    released = both.released_at_truth.notna() & (both.released_at_truth.dt.normalize() <= as_of)
    assert (both.released_date[released] == both.released_at_truth[released].dt.date).all()
    status = released.map({True: "released", False: "in_isolation"}).where(
        released | (both.planned_end_time_truth.dt.normalize() >= as_of), "overdue"
    )
    assert (both.status == status).all()
    # The order's person is its true person wherever the EMPI matched that person one to one.
    pairs = _one_to_one(spark, p).set_index("person_id").person_id_truth
    matched = both[both.person_id.isin(pairs.index)]
    assert len(matched) >= 0.9 * len(both)
    assert (matched.person_id.map(pairs) == matched.person_id_truth).all()


def test_members_of_positive_pools_are_followed_to_their_true_retest(
    spark: SparkSession, region: tuple[Published, epidemic.EpidemicResult]
) -> None:
    p, _ = region
    truth = p.truth_table("nat_pools")
    pools = _silver(spark, p, catalog.SILVER_NAT_POOL, "institution_id", "pool_id", "result")
    assert len(pools) > 0 and set(truth.pool_id) >= set(pools.pool_id)
    # A pool's result is its truth (a sent result is never altered; malformed ones are quarantined).
    positive = set(truth.pool_id[truth.pool_positive])
    assert set(pools.pool_id[pools.result == "positive"]) == positive & set(pools.pool_id)
    gold = p.gold(spark, catalog.GOLD_NAT_POOL_FOLLOWUP)
    gold["truth_person"] = _truth_person(spark, p, gold)
    expected = truth[truth.pool_positive & truth.pool_id.isin(pools.pool_id)]
    # Every member followed is a true member of a positive pool; a member missing is one whose pooled
    # test row a defect kept out of silver.
    got = gold.merge(expected, left_on=["pool_id", "truth_person"], right_on=["pool_id", "person_id"])
    assert len(got) == len(gold) and len(gold) >= 0.8 * len(expected)
    retested = got.retest_sample_time_y.notna()
    assert (got.status[~retested] == "awaiting_retest").all()
    assert (_local(got.retest_sample_time_x[retested]) == got.retest_sample_time_y[retested]).all()


def test_daily_tests_per_local_day_match_silver_recounted_in_local_time(
    spark: SparkSession, region: tuple[Published, epidemic.EpidemicResult]
) -> None:
    p, result = region
    tests = _silver(spark, p, catalog.SILVER_NAT_TEST, "sample_time", "result", "sample_mode")
    tests["date"] = _local(tests.sample_time).dt.date
    expected = tests.groupby("date").size()
    expected = expected[expected.index <= result.as_of]
    gold = p.gold(spark, catalog.GOLD_EPIDEMIC_DAILY)
    province = gold[gold.level == "province"].groupby("date").tests.sum()
    assert province[province > 0].to_dict() == expected.to_dict()
    cases = p.gold(spark, catalog.GOLD_EPIDEMIC_CASES).groupby("report_date").size()
    new_cases = gold[gold.level == "province"].groupby("date").new_cases.sum()
    assert new_cases[new_cases > 0].to_dict() == cases.to_dict()


def _contacts_against_the_truth(
    spark: SparkSession, p: Published
) -> tuple[set[tuple[str, str]], set[tuple[str, str]], set[tuple[str, str]]]:
    """(found, true, findable) (case, contact) pairs of true persons, over the stage's case windows."""
    pairs = _one_to_one(spark, p).set_index("person_id").person_id_truth
    cases = p.gold(spark, catalog.GOLD_EPIDEMIC_CASES)
    isolated = p.gold(spark, catalog.GOLD_ISOLATION).groupby("person_id").start_time.min()
    # The stage's case windows, in the truth's local time: 4 days before the case was known until it
    # was isolated (else reported).
    windows = pd.DataFrame(
        {
            "person_id": cases.person_id.map(pairs),
            "start": _local(cases.first_known_at) - pd.Timedelta(days=4),
            "end": _local(cases.person_id.map(isolated).fillna(cases.first_positive_report_time)),
        }
    ).dropna()
    assert not windows.empty
    truth = true_companions(p.truth_table("trajectories"), windows, distance_m=30, min_minutes=15)
    true_pairs = set(zip(truth.case_person_id, truth.contact_person_id, strict=True))
    contacts = p.gold(spark, catalog.GOLD_CLOSE_CONTACTS)
    contacts = contacts[contacts.contact_person_id.notna() & (contacts.degree == 1)]
    found = set(zip(contacts.case_person_id.map(pairs), contacts.contact_person_id.map(pairs), strict=True))
    # Companions a detector working from pings can see: both sent a usable fix (a stated accuracy within
    # the stage's max_accuracy_m) while they were together, between the first and last minute they shared.
    # The truth says whose phone is whose; silver holds each phone's token.
    phones = p.truth_table("phones")
    key = load_key()
    pairs_of_phones = zip(phones.phone, phones.person_id, strict=True)
    person_of = {token_of(key, "phone", phone): person for phone, person in pairs_of_phones}
    usable = epidemic.contact_parameters(p.cfg, None).max_accuracy_m
    fixes = (
        io.read_table(spark, p.cfg.lake_root, catalog.SILVER_LOCATION_EVENT)
        .where(F.col("phone_token").isin(list(person_of)) & (F.col("accuracy_m") <= usable))
        .select("phone_token", "event_time")
        .toPandas()
    )
    assert not fixes.empty, "no ping of a truth phone in silver: the token of a phone changed"
    fixes["person_id"], fixes["at"] = fixes.phone_token.map(person_of), _local(fixes.event_time)
    at = fixes.groupby("person_id").at.apply(list)

    def seen(person: str, start: pd.Timestamp, end: pd.Timestamp) -> bool:
        return any(start <= t <= end for t in at.get(person, []))

    findable = {
        (row.case_person_id, row.contact_person_id)
        for row in truth.itertuples()
        if seen(row.case_person_id, row.first_contact_at, row.last_contact_at)
        and seen(row.contact_person_id, row.first_contact_at, row.last_contact_at)
    }
    assert findable, "the region's cases met no companion whose phones could be seen"
    return found, true_pairs, findable


def test_every_close_contact_found_is_a_true_companion(
    spark: SparkSession, region: tuple[Published, epidemic.EpidemicResult]
) -> None:
    found, true_pairs, _ = _contacts_against_the_truth(spark, region[0])
    assert found and found <= true_pairs


def test_close_contacts_find_the_true_companions_their_phones_saw(
    spark: SparkSession, region: tuple[Published, epidemic.EpidemicResult]
) -> None:
    # The recall target, 0.99, over the companions whose phones both sent a usable fix while
    # together (16 of the 18 with a phone on the generated region: 12 before travel, then stay and
    # 60-minute tracks; the other two sent no usable fix from the venue).
    found, true_pairs, findable = _contacts_against_the_truth(spark, region[0])
    assert len(findable & found) >= 0.99 * len(findable), (len(findable & found), len(findable))
    assert len(findable) >= 0.8 * len(true_pairs)


def test_risk_persons_list_every_case_and_contact_and_the_cases_true_townships_are_risk_areas(
    spark: SparkSession, region: tuple[Published, epidemic.EpidemicResult]
) -> None:
    p, result = region
    cases = p.gold(spark, catalog.GOLD_EPIDEMIC_CASES)
    contacts = p.gold(spark, catalog.GOLD_CLOSE_CONTACTS)
    risk = p.gold(spark, catalog.GOLD_RISK_PERSONS)
    listed = {(r.person_id, r.category): r for r in risk.itertuples()}
    assert len(listed) == len(risk)
    for case in cases.itertuples():
        assert listed[case.person_id, "case"].identified_date == case.report_date
    for contact in contacts[contacts.degree == 1].contact_person_id.dropna():
        assert (contact, "close_contact") in listed
    assert set(risk.state) <= {"in_isolation", "released", "tested", "to_test"}
    # Every case's true home township is a risk area on the day the case was reported, since that day.
    home = p.truth_table("persons").set_index("person_id").township_code
    truth_person = _one_to_one(spark, p).set_index("person_id").person_id_truth
    days = p.gold(spark, catalog.GOLD_RISK_AREA_DAILY).set_index(["area_code", "date"])
    assert len(days) == days.index.nunique() > 0
    for case in cases.itertuples():
        level = days.loc[(home[truth_person[case.person_id]], case.report_date)]
        assert level.risk_level in ("medium", "high") and level.level_since <= case.report_date
    assert days.index.get_level_values("date").max() == result.as_of
    # The tracing indicators count every case and each of its contacts once, at every level.
    tracing = p.gold(spark, catalog.GOLD_CONTACT_TRACING_DAILY)
    first = contacts[contacts.degree == 1]
    for _, level in tracing.groupby("level"):
        assert level.new_cases.sum() == len(cases)
        assert level.contacts.sum() == first.contact_person_id.notna().sum()


def test_a_list_for_a_neighbouring_region_holds_whom_it_needs_and_lands_once_in_its_bronze(
    spark: SparkSession, region: tuple[Published, epidemic.EpidemicResult], tmp_path: Path
) -> None:
    p, _ = region
    risk = p.gold(spark, catalog.GOLD_RISK_PERSONS)
    seen = risk[risk.last_seen_area_code.notna() & (risk.state != "released")]
    assert not seen.empty, "no risk person was last seen anywhere"
    # The "neighbour" is the city the first of them was last seen in (the region has no real neighbour).
    city = seen.last_seen_area_code.iloc[0][:4] + "00"
    wanted = set(seen[seen.last_seen_area_code.str.startswith(city[:4])].person_id)
    out = tmp_path / "to-neighbour.csv"
    result = exchange.export_list(spark, p.cfg, to_region=city, out=str(out))
    listed = pd.read_csv(out, dtype=str)
    assert tuple(listed.columns) == LIST_COLUMNS
    assert result.persons == len(listed) == len(wanted)
    # Each row is one wanted person (by its list key) with the name and ID number one of their own
    # records carried: no other person's identity, no internal id.
    key = {hashlib.sha256(f"360000|{person}".encode()).hexdigest()[:16]: person for person in wanted}
    assert set(listed.list_row) == set(key)
    truth_person = _one_to_one(spark, p).set_index("person_id").person_id_truth
    records = p.truth_table("patient_records")
    for row in listed.itertuples():
        person = key[row.list_row]
        if person in truth_person.index:
            own = records[records.person_id == truth_person[person]]
            assert (row.full_name, row.id_number) in set(
                zip(own.keyed_name, own.keyed_national_id, strict=True)
            )
    assert not set(listed.columns) & {"person_id", "source_case_person_id", "reason"}
    log = io.read_table(spark, p.cfg.lake_root, catalog.VAULT_DISCLOSURE_LOG).toPandas()
    assert list(log.to_region) == [city] and list(log.persons) == [len(listed)]
    with pytest.raises(UsageError, match=r"exists: name a new file"):
        exchange.export_list(spark, p.cfg, to_region=city, out=str(out))
    with pytest.raises(ConfigError, match=r"^region code '36': give a GB/T 2260 area code"):
        exchange.export_list(spark, p.cfg, to_region="36", out=str(tmp_path / "x.csv"))

    # The neighbour imports it: into its landing zone's public_health feed, then its bronze, once.
    theirs = load_config(
        overrides={"landing_root": str(tmp_path / "their_landing"), "lake_root": str(tmp_path / "their_lake")}
    )
    landed = exchange.import_list(spark, theirs, str(out), from_region="360000")
    again = exchange.import_list(spark, theirs, str(out), from_region="360000")
    assert again == landed and landed.parts[-3:-1] == ("region-360000", landed.parent.name)
    bronze = io.read_table(spark, theirs.lake_root, catalog.BRONZE_CSV_RECORDS)
    rows = bronze.where(F.col("extract") == LIST_EXTRACT).toPandas()
    assert len(rows) == len(listed)
    assert set(rows._institution_id) == {"region-360000"} and rows._source_file.notna().all()
    assert {r["list_row"] for r in rows.record} == set(listed.list_row)
    bad = tmp_path / "bad.csv"
    bad.write_text("name,phone\nx,y\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"is not a risk-person list: its header lacks list_row"):
        exchange.import_list(spark, theirs, str(bad), from_region="360000")


def test_the_epidemic_notebook_draws_the_outbreak_day_without_spark(
    region: tuple[Published, epidemic.EpidemicResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_notebooks import execute

    monkeypatch.setenv("HEALTHLAKE_LAKE_ROOT", region[0].cfg.lake_root)
    outputs = execute("epidemic.ipynb", tmp_path)
    assert any("no Spark: True" in o.get("text", "") for o in outputs)
    # The curve, the clusters, the risk persons and the code mix.
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4
