"""The generator's epidemic truth: true paths, pings sampled from them, cases, pooled tests, isolation."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from healthlake.synth.companions import true_companions
from tests.synth.conftest import Generated


@pytest.fixture(scope="module")
def paths(region: Generated) -> pd.DataFrame:
    return region.truth_table("trajectories").sort_values(["person_id", "start"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def pings(region: Generated) -> pd.DataFrame:
    rows = pd.concat(
        pd.DataFrame([r for r in f.parsed if r is not None]) for f in region.files if f.feed == "location"
    ).drop_duplicates()
    rows["ts"] = pd.to_datetime(rows["ts"])
    for c in ("lat", "lon", "accuracy_m"):
        rows[c] = rows[c].astype(float)
    return rows


def _csv_rows(region: Generated, stem: str) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {**r, "institution_id": f.institution_id}
            for f in region.files
            if f.path.name.startswith(stem + "_2")
            for r in f.parsed
            if r is not None
        ]
    )


def _metres(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    k = 6_371_008.8 * math.pi / 180
    return np.hypot((lat2 - lat1) * k, (lon2 - lon1) * k * np.cos(np.radians(lat1)))


def test_paths_are_continuous_over_the_window(region: Generated, paths: pd.DataFrame) -> None:
    t0 = pd.Timestamp(region.settings.start)
    t_end = t0 + pd.Timedelta(days=region.settings.days)
    same = paths["person_id"].eq(paths["person_id"].shift())
    nxt = paths[same]
    prev = paths.shift()[same]
    assert (nxt["start"] == prev["end"]).all()
    assert np.allclose(nxt["lat_start"], prev["lat_end"]) and np.allclose(nxt["lon_start"], prev["lon_end"])
    bounds = paths.groupby("person_id").agg(first=("start", "min"), last=("end", "max"))
    assert (bounds["first"] == t0).all() and (bounds["last"] == t_end).all()
    stays = paths[paths["place_kind"] != "move"]
    assert (stays["lat_start"] == stays["lat_end"]).all() and stays["place_id"].notna().all()
    moves = paths[paths["place_kind"] == "move"]
    speed = _metres(*(moves[c].to_numpy() for c in ("lat_start", "lon_start", "lat_end", "lon_end"))) / (
        (moves["end"] - moves["start"]).dt.total_seconds()
    )
    assert speed.max() < 15  # nobody rides faster than 54 km/h
    kinds = set(paths["place_kind"])
    assert {"home", "work", "school", "market", "venue", "move", "hospital", "isolation_hotel"} <= kinds
    # Households share a home, colleagues a workplace: one position per place id.
    positions = stays.groupby("place_id")[["lat_start", "lon_start"]].nunique()
    assert (positions == 1).all().all()
    homes = stays[stays["place_kind"] == "home"].groupby("place_id")["person_id"].nunique()
    works = stays[stays["place_kind"] == "work"].groupby("place_id")["person_id"].nunique()
    assert (homes > 1).any() and (works > 1).any()


def test_pings_are_sampled_from_the_true_paths(
    region: Generated, paths: pd.DataFrame, pings: pd.DataFrame
) -> None:
    phones = region.truth_table("phones")
    # Malformed copies aside, every ping without a phone is in the files.
    assert 0 < (pings["phone"] == "").sum() <= region.manifest["defects"]["ping_no_phone"]["count"]
    seen = pings[pings["phone"] != ""].merge(phones, on="phone")
    assert len(seen) == (pings["phone"] != "").sum()
    assert set(seen["person_id"]) == set(paths["person_id"])
    # The true position at each ping's moment, interpolated on its segment.
    seen["ts"] = seen["ts"].astype("datetime64[us]")
    seg = pd.merge_asof(
        seen.sort_values("ts"), paths.sort_values("start"), left_on="ts", right_on="start", by="person_id"
    )
    f = (seg["ts"] - seg["start"]) / (seg["end"] - seg["start"])
    lat = seg["lat_start"] + f * (seg["lat_end"] - seg["lat_start"])
    lon = seg["lon_start"] + f * (seg["lon_end"] - seg["lon_start"])
    error = _metres(lat.to_numpy(), lon.to_numpy(), seg["lat"].to_numpy(), seg["lon"].to_numpy())
    accuracy = seg["accuracy_m"].to_numpy()
    good = accuracy <= 30
    assert 0.8 <= good.mean() <= 0.95 and accuracy.min() >= 5 and accuracy.max() <= 500
    # accuracy_m is a 68 % radius: about two fixes in three lie within it, nearly all within twice it.
    within = error <= accuracy
    assert 0.63 <= within.mean() <= 0.73, within.mean()
    assert (error <= 2.5 * accuracy).mean() >= 0.97
    # Each phone has its own pace: minutes between pings on the move.
    moving = seg[seg["place_kind"] == "move"].sort_values(["phone", "ts"])
    gaps = moving.groupby("phone")["ts"].diff().dt.total_seconds().div(60).dropna()
    assert 2 <= gaps.median() <= 12


def test_some_persons_carry_two_phones_and_give_both_numbers(region: Generated, pings: pd.DataFrame) -> None:
    phones = region.truth_table("phones")
    assert phones["phone"].is_unique
    two = phones.groupby("person_id").filter(lambda g: len(g) == 2)
    assert two["person_id"].nunique() >= 10
    tracked = two[two["pings"]]
    assert tracked["person_id"].nunique() >= 2
    assert set(tracked["phone"]) <= set(pings["phone"])  # both phones of a tracked person ping
    persons = region.truth_table("persons").set_index("person_id")
    second = two[two["phone"] != two["person_id"].map(persons["phone"])]
    records = _csv_rows(region, "health_records")
    # The township health centre has the other one (unless that row was sent malformed).
    assert second["phone"].isin(records["phone"]).mean() >= 0.9


def test_companions_walk_together_but_their_phones_ping_apart(
    paths: pd.DataFrame, pings: pd.DataFrame, region: Generated
) -> None:
    moves = paths[paths["place_kind"] == "move"]
    key = ["start", "end", "lat_start", "lon_start", "lat_end", "lon_end"]
    shared = moves[moves.duplicated(key, keep=False)]
    assert shared["person_id"].nunique() >= 4
    phones = region.truth_table("phones")
    walk = shared.groupby(key)["person_id"].apply(list).iloc[0]
    ts = [
        set(pings.loc[pings["phone"].isin(phones.loc[phones["person_id"] == p, "phone"]), "ts"])
        for p in walk[:2]
    ]
    assert len(ts[0] & ts[1]) < 0.05 * min(len(ts[0]), len(ts[1]))


def test_venue_contacts_are_true_companions(region: Generated, paths: pd.DataFrame) -> None:
    cases = region.truth_table("cases")
    contacts = region.truth_table("contacts")
    t_end = pd.Timestamp(region.settings.start) + pd.Timedelta(days=region.settings.days)
    windows = cases.assign(
        start=cases["infected_at"].clip(lower=pd.Timestamp(region.settings.start)),
        end=cases["isolation_start"].fillna(t_end),
    )[["person_id", "start", "end"]]
    found = true_companions(paths, windows, distance_m=30, min_minutes=15)
    venue = contacts[contacts["via"] == "venue"].merge(
        windows, left_on="case_person_id", right_on="person_id"
    )
    venue = venue[(venue["exposure_time"] >= venue["start"]) & (venue["exposure_time"] < venue["end"])]
    assert len(venue) >= 5
    pairs = set(zip(found["case_person_id"], found["contact_person_id"], strict=True))
    assert set(zip(venue["case_person_id"], venue["contact_person_id"], strict=True)) <= pairs
    assert (found["exposure_minutes"] >= 15).all()


def test_onset_is_the_fever_clinic_visit_and_cases_are_reported(region: Generated) -> None:
    cases = region.truth_table("cases")
    assert len(cases) >= 5
    encounters = region.truth_table("encounters")
    fever = encounters[encounters["primary_diagnosis"] == "U07.100"].groupby("person_id")["start_time"].min()
    with_onset = cases.dropna(subset=["onset_time"]).set_index("person_id")
    assert len(with_onset) >= 3
    assert (fever.reindex(with_onset.index) == with_onset["onset_time"]).all()
    reported = cases.dropna(subset=["reported_at"])
    assert len(reported) >= 3
    assert (reported["first_positive_sample_time"] <= reported["reported_at"]).all()
    assert reported["isolation_start"].notna().all()


def test_pooled_screening_and_retests(region: Generated) -> None:
    truth = region.truth_table("nat_pools")
    sizes = truth.groupby("pool_id").size()
    assert len(sizes) >= 50 and sizes.max() == 10
    tests = _csv_rows(region, "nat_tests")
    pooled = tests[tests["sample_mode"] == "混管"]
    assert len(pooled) >= 0.9 * len(truth)
    assert (pooled["pool_id"] != "").all() and (pooled["result"] == "").all()
    assert set(pooled["pool_id"]) <= set(truth["pool_id"])
    pools = _csv_rows(region, "nat_pools")
    assert set(pools["pool_id"]) <= set(truth["pool_id"])
    defects = region.manifest["defects"]
    assert 0 < (pools.drop_duplicates()["pool_size"] == "0").sum() <= defects["pool_size_zero"]["count"]
    assert 0 < (tests.drop_duplicates()["person_no"] == "").sum() <= defects["test_no_person"]["count"]
    # A positive tube's members are re-tested singly within two days (unless the window ended first).
    positive = truth[truth["pool_positive"]].merge(
        pools[["pool_id", "report_time"]].drop_duplicates(), on="pool_id"
    )
    assert len(positive) > 0
    report = pd.to_datetime(positive["report_time"])
    retested = positive["retest_sample_time"].notna()
    assert retested.mean() >= 0.8
    wait = positive.loc[retested, "retest_sample_time"] - report[retested]
    assert (wait > pd.Timedelta(0)).all() and (wait <= pd.Timedelta(days=2)).all()
    singles = tests[tests["sample_mode"] == "单管"]
    assert (singles["result"] != "").all()


def test_isolation_orders_cover_cases_and_their_close_contacts(region: Generated) -> None:
    truth = region.truth_table("isolation")
    assert set(truth["category"]) == {"case", "close_contact", "secondary_contact", "risk_area"}
    days = (truth["planned_end_time"] - truth["start_time"]).dt.days
    assert (days[truth["category"].isin(["case", "close_contact"])] == 14).all()
    assert (days[truth["category"].isin(["secondary_contact", "risk_area"])] == 7).all()
    released = truth.dropna(subset=["released_at"])
    assert len(released) > 0 and (released["released_at"] > released["start_time"]).all()
    cases = region.truth_table("cases").dropna(subset=["reported_at"])
    t_end = pd.Timestamp(region.settings.start) + pd.Timedelta(days=region.settings.days)
    early = cases[cases["reported_at"] < t_end - pd.Timedelta(days=1)]
    ordered = set(zip(truth["person_id"], truth["category"], strict=True))
    assert {(p, "case") for p in early["person_id"]} <= ordered
    contacts = region.truth_table("contacts")
    traced = contacts[contacts["case_person_id"].isin(early["person_id"])]
    household = traced[traced["via"] == "household"]
    assert set(household["contact_person_id"]) <= set(truth["person_id"])
    # Venue co-attendees are traced when they scanned the venue's code (most do): the others are left
    # for screening and for the spatiotemporal companion search to find.
    venue = traced[traced["via"] == "venue"]
    assert 0.4 <= venue["contact_person_id"].isin(truth["person_id"]).mean() < 1
    rows = _csv_rows(region, "isolation_orders")
    assert set(rows["category"]) == {"确诊", "密接", "次密接", "风险区域"}
    assert set(rows["place_type"]) == {"集中隔离", "居家隔离"}
    assert set(rows["order_id"]) <= set(truth["order_id"])
    assert len(set(rows["order_id"])) >= 0.9 * len(truth)
    # Released orders are sent again with their release time.
    again = rows[rows["released_at"] != ""]
    assert set(again["order_id"]) <= set(released["order_id"]) and len(again) > 0
    assert dt.datetime.fromisoformat(again["released_at"].iloc[0])
