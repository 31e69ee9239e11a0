"""``gold.readmission_features``: point in time (no leakage), local days, and every true stay present."""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from healthlake import io
from healthlake.catalog import (
    GOLD_CHRONIC_CONTROL_FEATURES,
    GOLD_DEMAND_FEATURES,
    GOLD_ENCOUNTER_FACTS,
    GOLD_READMISSION_FEATURES,
    SILVER_AREA,
    SILVER_CHRONIC_FOLLOWUP,
    SILVER_DIAGNOSIS,
    SILVER_ENCOUNTER,
    SILVER_INSTITUTION,
    SILVER_MEDICATION,
    SILVER_OBSERVATION,
    SILVER_PERSON,
    SILVER_PERSON_XREF,
)
from healthlake.gold.areas import institution_paths
from healthlake.gold.encounters import encounter_facts, with_institution_area
from healthlake.ml.chronic_control import chronic_control_features, load_treatments
from healthlake.ml.demand import demand_features
from healthlake.ml.readmission import disposition_of, index_stays, readmission_features, readmission_label
from healthlake.pipelines import features
from tests.ml.conftest import MODEL_REGION_SEED, ModelRegion

ZONE = "Asia/Shanghai"


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_disposition_codes_of_both_standards_mean_the_same(spark: SparkSession) -> None:
    sent = ["home", "01", "aadvice", "07", "exp", "20", "other-hcf", "02", "XYZ", None]
    expected = ["home", "home", "against_advice", "against_advice", "died", "died", "transfer", "transfer"]
    expected += ["other", None]
    df = spark.createDataFrame([(s,) for s in sent], "code string")
    assert [r[0] for r in df.select(disposition_of(F.col("code"))).collect()] == expected


def test_the_label_is_known_once_30_local_days_have_passed(spark: SparkSession) -> None:
    rows = [
        (dt.date(2026, 1, 1), True, True),  # readmitted: known at once
        (dt.date(2026, 1, 1), False, None),  # 30 days not over on 2026-01-30
        (dt.date(2025, 12, 31), False, False),  # 2025-12-31 + 30 = 2026-01-30: over
    ]
    df = spark.createDataFrame(rows, "discharge_date date, _readmitted boolean, expected boolean")
    got = df.select(readmission_label(F.lit(dt.date(2026, 1, 30))).alias("label"), "expected").collect()
    assert [r["label"] for r in got] == [r["expected"] for r in got]


def test_age_date_and_month_of_a_discharge_are_local(spark: SparkSession) -> None:
    # Discharged at 16:30 UTC on 2026-02-28: 00:30 on 2026-03-01 in Beijing, the patient's 66th birthday.
    facts = spark.createDataFrame(
        [
            (
                "H1",
                "S1",
                "P1",
                "inpatient",
                utc("2026-02-20T02:00:00"),
                utc("2026-02-28T16:30:00"),
                9,
                True,
                False,
                False,
                "C1",
                None,
            )
        ],
        "institution_id string, source_record_id string, person_id string, encounter_class string, "
        "admit_time timestamp, discharge_time timestamp, length_of_stay_days int, is_index_stay boolean, "
        "readmitted_30d boolean, is_readmission_30d boolean, city_code string, county_code string",
    )
    encounters = spark.createDataFrame(
        [("H1", "S1", "01")], "institution_id string, source_record_id string, discharge_disposition string"
    )
    persons = spark.createDataFrame(
        [("P1", dt.date(1960, 3, 1), "F")], "person_id string, birth_date date, sex string"
    )
    row = index_stays(facts, encounters, persons, zone=ZONE).collect()[0]
    expected_day = utc("2026-02-28T16:30:00+00:00").astimezone(ZoneInfo(ZONE)).date()
    assert row["discharge_date"] == expected_day == dt.date(2026, 3, 1)
    assert row["discharge_month"] == dt.date(2026, 3, 1)
    assert row["age"] == 66  # 65 on the UTC date
    assert row["discharge_disposition"] == "home"


def _cut(df, column: str, moment: dt.datetime):
    return df.where(F.col(column) <= F.lit(moment))


def test_features_use_nothing_after_the_discharge(spark: SparkSession, model_region: ModelRegion) -> None:
    """Cut every input at a moment: the stays discharged by then keep every feature (only labels move)."""
    lake, zone = model_region.cfg.lake_root, model_region.cfg.region.timezone

    def read(name: str):
        return io.read_table(spark, lake, name)

    full = read(GOLD_READMISSION_FEATURES)
    moment = dt.datetime(2025, 6, 30, 12, 0)  # a UTC instant a year into the inpatient history
    encounters = read(SILVER_ENCOUNTER)
    # At the moment, a stay discharged later was still in progress.
    cut_encounters = _cut(encounters, "admit_time", moment).withColumn(
        "discharge_time", F.when(F.col("discharge_time") <= F.lit(moment), F.col("discharge_time"))
    )
    xref = read(SILVER_PERSON_XREF)
    places = institution_paths(read(SILVER_INSTITUTION), read(SILVER_AREA))
    cut_facts = encounter_facts(cut_encounters, xref, zone=zone).transform(
        lambda df: with_institution_area(df, places)
    )
    as_of = F.lit(dt.date(2025, 6, 30))
    cut = readmission_features(
        cut_facts,
        cut_encounters,
        _cut(read(SILVER_DIAGNOSIS), "diagnosis_time", moment),
        _cut(read(SILVER_OBSERVATION), "observation_time", moment),
        _cut(read(SILVER_CHRONIC_FOLLOWUP), "followup_time", moment),
        xref,
        read(SILVER_PERSON),
        zone=zone,
        as_of=as_of,
    ).drop("readmitted_30d")
    before = full.where(F.col("discharge_time") <= F.lit(moment)).drop("readmitted_30d")
    assert before.count() > 150  # most of the stays compared, not a handful
    assertDataFrameEqual(cut, before)
    # And the features table knows more than the cut world: the comparison could have failed.
    assert full.count() > before.count()


def test_every_true_discharge_that_reached_silver_is_a_feature_row(
    spark: SparkSession, model_region: ModelRegion
) -> None:
    lake = model_region.cfg.lake_root
    truth = model_region.truth_table("readmissions")
    encounters = model_region.truth_table("encounters")
    cancelled = set(encounters.loc[encounters["cancelled"], "source_encounter_id"])
    stays = truth[truth["true_risk"] > 0]  # an in-hospital death has risk 0: not in the cohort
    silver = io.read_table(spark, lake, SILVER_ENCOUNTER).where(
        F.col("discharge_time").isNotNull() & ~F.coalesce(F.col("is_cancelled"), F.lit(False))
    )
    reached = {(r[0], r[1]) for r in silver.select("institution_id", "source_record_id").collect()}
    linked = io.read_table(spark, lake, GOLD_ENCOUNTER_FACTS).where(F.col("is_index_stay"))
    linked_keys = {(r[0], r[1]) for r in linked.select("institution_id", "source_record_id").collect()}
    expected = {
        (r.institution_id, r.source_encounter_id)
        for r in stays.itertuples()
        if (r.institution_id, r.source_encounter_id) in reached & linked_keys
    }
    table = io.read_table(spark, lake, GOLD_READMISSION_FEATURES).toPandas()
    found = set(zip(table["institution_id"], table["source_record_id"], strict=True))
    assert len(expected) > 400
    assert expected <= found
    # A stay the generator readmitted (the readmission not cancelled) carries the label True.
    readmitted_of = set(
        encounters.loc[encounters["readmission_of"].notna() & ~encounters["cancelled"], "readmission_of"]
    )
    labels = table.set_index(["institution_id", "source_record_id"])["readmitted_30d"]
    true_ones = [k for k in expected if k[1] in readmitted_of and k[1] not in cancelled]
    assert len(true_ones) > 50
    assert all(bool(labels[k]) for k in true_ones)


def test_a_second_run_without_changes_leaves_the_tables(
    spark: SparkSession, model_region: ModelRegion
) -> None:
    again = features.run(spark, model_region.cfg)
    assert again.mode == "unchanged"
    assert again.tables == model_region.features.tables


@pytest.mark.parametrize("missing", ["publish"])
def test_features_before_publish_is_a_one_line_error(spark: SparkSession, lake: str, missing: str) -> None:
    from healthlake.config import load_config
    from healthlake.pipelines.features import FeaturesError

    with pytest.raises(FeaturesError, match=f"run `healthlake {missing}` first"):
        features.run(spark, load_config(overrides={"lake_root": lake}))


def test_the_feature_table_is_one_row_per_stay(spark: SparkSession, model_region: ModelRegion) -> None:
    table = io.read_table(spark, model_region.cfg.lake_root, GOLD_READMISSION_FEATURES)
    counts = table.groupBy("institution_id", "source_record_id").count()
    assert counts.where(F.col("count") > 1).count() == 0
    stats = table.agg(
        F.count_if(F.col("readmitted_30d")), F.count_if(F.col("readmitted_30d").isNull())
    ).first()
    assert stats[0] > 50 and stats[1] < table.count() / 5


def test_chronic_control_features_use_nothing_after_the_follow_up(
    spark: SparkSession, model_region: ModelRegion
) -> None:
    """Cut every input at a moment: the follow-ups by then keep every feature (only labels move)."""
    lake, zone = model_region.cfg.lake_root, model_region.cfg.region.timezone

    def read(name: str):
        return io.read_table(spark, lake, name)

    moment = dt.datetime(2025, 9, 30, 12, 0)
    places = institution_paths(read(SILVER_INSTITUTION), read(SILVER_AREA))
    cut = chronic_control_features(
        _cut(read(SILVER_CHRONIC_FOLLOWUP), "followup_time", moment),
        _cut(read(SILVER_OBSERVATION), "observation_time", moment),
        _cut(read(SILVER_DIAGNOSIS), "diagnosis_time", moment),
        _cut(read(SILVER_MEDICATION), "authored_at", moment),
        read(SILVER_PERSON_XREF),
        read(SILVER_PERSON),
        places,
        treatments=load_treatments(model_region.cfg.conform.code_maps_path()),
        zone=zone,
    ).drop("uncontrolled_next")
    full = read(GOLD_CHRONIC_CONTROL_FEATURES)
    before = full.where(F.col("followup_time") <= F.lit(moment)).drop("uncontrolled_next")
    assert before.count() > 300
    assertDataFrameEqual(cut, before)
    assert full.count() > before.count()


def test_every_true_follow_up_is_a_feature_row_with_the_next_ones_truth_as_label(
    spark: SparkSession, model_region: ModelRegion
) -> None:
    lake = model_region.cfg.lake_root
    truth = model_region.truth_table("followups").sort_values(["person_id", "disease", "followup_time"])
    truth["next_uncontrolled"] = truth.groupby(["person_id", "disease"])["uncontrolled"].shift(-1)
    table = io.read_table(spark, lake, GOLD_CHRONIC_CONTROL_FEATURES).toPandas()
    rows = table.set_index(["institution_id", "source_record_id"])
    silver = io.read_table(spark, lake, SILVER_CHRONIC_FOLLOWUP).select("institution_id", "source_record_id")
    reached = {(r[0], r[1]) for r in silver.collect()}
    linked = {tuple(k) for k in rows.index}
    expected = [r for r in truth.itertuples() if (r.institution_id, r.followup_id) in reached]
    assert len(expected) > 800
    # Every follow-up that reached silver with its reading is a row (linked persons: all of the region's).
    missing = [
        (r.institution_id, r.followup_id) for r in expected if (r.institution_id, r.followup_id) not in linked
    ]
    assert len(missing) <= len(expected) * 0.01, missing[:5]
    agree = [
        rows.loc[(r.institution_id, r.followup_id), "uncontrolled_now"] == r.uncontrolled
        for r in expected
        if (r.institution_id, r.followup_id) in linked
    ]
    assert all(agree)
    labelled = [
        (rows.loc[(r.institution_id, r.followup_id), "uncontrolled_next"], r.next_uncontrolled)
        for r in expected
        if (r.institution_id, r.followup_id) in linked and pd.notna(r.next_uncontrolled)
    ]
    assert len(labelled) > 500
    assert sum(bool(a) == bool(b) for a, b in labelled) >= 0.99 * len(labelled)


def test_demand_features_use_nothing_after_the_day(spark: SparkSession, model_region: ModelRegion) -> None:
    """Cut every input at the end of a local day: that day's rows and earlier keep every feature."""
    lake, zone = model_region.cfg.lake_root, model_region.cfg.region.timezone

    def read(name: str):
        return io.read_table(spark, lake, name)

    day = dt.date(2025, 10, 31)
    moment = dt.datetime(2025, 10, 31, 16, 0)  # the local midnight ending the day (+08:00), as UTC
    encounters = read(SILVER_ENCOUNTER)
    cut_encounters = _cut(encounters, "admit_time", moment - dt.timedelta(microseconds=1))
    xref = read(SILVER_PERSON_XREF)
    places = institution_paths(read(SILVER_INSTITUTION), read(SILVER_AREA))
    cut_facts = encounter_facts(cut_encounters, xref, zone=zone).transform(
        lambda df: with_institution_area(df, places)
    )
    cut = demand_features(
        cut_facts, cut_encounters, read(SILVER_INSTITUTION), places, zone=zone, as_of=F.lit(day)
    ).drop("value_ahead")
    full = read(GOLD_DEMAND_FEATURES)
    before = full.where(F.col("date") <= F.lit(day)).drop("value_ahead")
    assert before.count() > 3000
    assertDataFrameEqual(cut, before)
    assert full.count() > before.count()


def test_daily_counts_are_the_true_visits_of_each_local_day(
    spark: SparkSession, model_region: ModelRegion
) -> None:
    """Each institution's outpatient visits per local day, against the generator's encounters (their times
    are local wall-clock times) that reached silver."""
    lake = model_region.cfg.lake_root
    truth = model_region.truth_table("encounters")
    reached = {
        (r[0], r[1])
        for r in io.read_table(spark, lake, GOLD_ENCOUNTER_FACTS)
        .select("institution_id", "source_record_id")
        .collect()
    }
    visits = truth[(truth["encounter_class"] == "AMB") & ~truth["cancelled"]]
    visits = visits[
        [
            (i, e) in reached
            for i, e in zip(visits["institution_id"], visits["source_encounter_id"], strict=True)
        ]
    ]
    expected = visits.groupby(["institution_id", visits["start_time"].dt.date]).size()
    table = io.read_table(spark, lake, GOLD_DEMAND_FEATURES).where(F.col("measure") == "outpatient_visits")
    got = (
        table.select("institution_id", "date", "value")
        .toPandas()
        .set_index(["institution_id", "date"])["value"]
    )
    assert len(expected) > 2000
    assert (got.reindex(expected.index) == expected).all()
    assert got.sum() == expected.sum()  # and no visit counted on another day
    # Fewer visits on Sundays than on Mondays: the calendar the generator planted shows.
    by_day = visits.groupby(visits["start_time"].dt.dayofweek).size()
    assert by_day[6] < 0.6 * by_day[0]


def test_the_respiratory_wave_fills_fever_clinics_a_week_before_ordinary_visits(
    spark: SparkSession, model_region: ModelRegion
) -> None:
    """The planted winter wave in the visit history: ordinary visits surge with the wave (beyond the
    calendar), fever-clinic visits follow the curve a week ahead, and ``city_fever_visits_7`` is the
    city's true fever-clinic visits of the 7 days ending on the row's day."""
    from healthlake.synth.events import WAVE_LEAD_DAYS, visit_weight, wave_level

    seed, start = MODEL_REGION_SEED, dt.date(2026, 1, 5)
    lake = model_region.cfg.lake_root
    table = (
        io.read_table(spark, lake, GOLD_DEMAND_FEATURES)
        .where(F.col("measure") == "outpatient_visits")
        .select("institution_id", "date", "city_code", "value", "city_fever_visits_7")
        .toPandas()
    )
    city_of = table.drop_duplicates("institution_id").set_index("institution_id")["city_code"]
    reached = {
        (r[0], r[1])
        for r in io.read_table(spark, lake, GOLD_ENCOUNTER_FACTS)
        .select("institution_id", "source_record_id")
        .collect()
    }
    truth = model_region.truth_table("encounters")
    truth = truth[
        np.array(
            [
                (i, e) in reached
                for i, e in zip(truth["institution_id"], truth["source_encounter_id"], strict=True)
            ]
        )
        & ~truth["cancelled"]
    ].assign(day=lambda t: t["start_time"].dt.date, city=lambda t: t["institution_id"].map(city_of))
    history = truth[truth["day"] < start]
    fever = history[history["department"] == "发热门诊"]
    ordinary = history[
        (history["department"] != "发热门诊") & history["encounter_class"].isin(["AMB", "EMER"])
    ]
    assert len(fever) > 50

    # Ordinary visits per city and day over the calendar's weight: higher deep in the wave than out of it.
    daily = ordinary.groupby(["city", "day"]).size().rename("n").reset_index()
    daily["level"] = [wave_level(seed, c, d) for c, d in zip(daily["city"], daily["day"], strict=True)]
    daily["per_weight"] = daily["n"] / [visit_weight(d) for d in daily["day"]]
    surge = (
        daily[daily["level"] > 0.6]["per_weight"].mean() / daily[daily["level"] < 0.05]["per_weight"].mean()
    )
    assert surge > 1.35, surge
    # Fever-clinic visits follow the curve a week ahead of the ordinary visits' one: of the curves with no
    # lead, a week's and two weeks', the week's explains their days best (the highest likelihood).
    history_days = [start - dt.timedelta(days=k) for k in range(1, 366)]

    def log_likelihood(lead: int) -> float:
        areas = {c: sum(wave_level(seed, c, d, lead) for d in history_days) for c in set(fever["city"])}
        return sum(
            math.log(wave_level(seed, c, d, lead) / areas[c])
            for c, d in zip(fever["city"], fever["day"], strict=True)
        )

    fits = {lead: log_likelihood(lead) for lead in (0, WAVE_LEAD_DAYS, 2 * WAVE_LEAD_DAYS)}
    assert max(fits, key=lambda k: fits[k]) == WAVE_LEAD_DAYS, fits

    # city_fever_visits_7 against the truth (the outbreak's fever-clinic visits of the window too).
    per_day = truth[truth["department"] == "发热门诊"].groupby(["city", "day"]).size()
    expected = [
        sum(per_day.get((c, d - dt.timedelta(days=k)), 0) for k in range(7))
        for c, d in zip(table["city_code"], table["date"], strict=True)
    ]
    assert (table["city_fever_visits_7"].to_numpy() == expected).all()
    assert table["city_fever_visits_7"].max() > 0
