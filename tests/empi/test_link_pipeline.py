"""``healthlake link`` on silver tables of known truth: deterministic and probabilistic links, stable ids
across re-runs and incremental days, merges, and review decisions."""

from __future__ import annotations

import datetime as dt
import random
import shutil
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from healthlake import catalog, faults, io
from healthlake.config import Config, load_config
from healthlake.pipelines import link
from healthlake.synth.identity import make_phone
from healthlake.synth.patients import patient_records as _records
from healthlake.synth.patients import synthetic_people as _people
from healthlake.synth.patients import write_patient_silver as _write_silver


def _truth(spark: SparkSession, rows: list[dict]) -> DataFrame:
    return spark.createDataFrame(
        [(r["institution_id"], r["source_patient_id"], r["person"], r["defect"]) for r in rows],
        "institution_id string, source_patient_id string, person string, defect string",
    )


def _pairs(df: DataFrame, by: str) -> DataFrame:
    keyed = df.select(F.concat_ws("|", "institution_id", "source_patient_id").alias("id"), by)
    left, right = keyed.alias("l"), keyed.alias("r")
    return left.join(right, (F.col(f"l.{by}") == F.col(f"r.{by}")) & (F.col("l.id") < F.col("r.id"))).select(
        F.col("l.id").alias("id_l"), F.col("r.id").alias("id_r")
    )


def _xref(spark: SparkSession, cfg: Config) -> DataFrame:
    return io.read_table(spark, cfg.lake_root, catalog.SILVER_PERSON_XREF)


def _config(lake: Path, **empi: float) -> Config:
    return load_config(overrides={"lake_root": str(lake), "empi": {"max_u_pairs": 100_000, **empi}})


DAY1, DAY2 = dt.date(2026, 3, 2), dt.date(2026, 3, 3)
CARD = "3301020000012345"


def _extras(people: list[dict]) -> list[dict]:
    """Day-1 records that set up a merge and two review pairs."""
    who, a, b = people[0], people[1], people[2]
    at = dt.datetime(2026, 3, 2, 9)
    # Two different residents each under the commonest names, with only sex and county in common: a
    # common name is weak evidence (term frequency), so these pairs land in review.
    lone = dict(resident_id=None, phone=None, address=None, birth_date=None, insurance_no=None, event_time=at)
    common = [
        dict(
            lone,
            person=f"c{i}",
            institution_id=inst,
            source_patient_id=f"{inst}-c{i}",
            name=name,
            sex=sex,
            area_code=area,
            defect="common_name",
        )
        for i, (inst, name, sex, area) in enumerate(
            [
                ("C03", "王伟", "M", "330102"),
                ("C04", "王伟", "M", "330102"),
                ("C03", "李娜", "F", "330106"),
                ("C05", "李娜", "F", "330106"),
            ]
        )
    ]
    return common + [
        # Known to H01 under a former name by insurance card only (the others know the resident ID).
        dict(
            who,
            institution_id="H01",
            source_patient_id="H01-old",
            name="李春花",
            resident_id=None,
            phone=None,
            address=None,
            birth_date=None,
            area_code="330199",
            insurance_no=CARD,
            defect="former_name",
            event_time=at,
        ),
        # Seen once more without ID or birth date, with a new phone and one character of the name
        # changed: some evidence, not enough to link.
        dict(
            a,
            institution_id="C03",
            source_patient_id="C03-x",
            resident_id=None,
            phone=make_phone(random.Random(1)),
            name=a["name"][0] + "某" + a["name"][2:],
            address=None,
            birth_date=None,
            defect="review",
            event_time=at,
        ),
        dict(
            b,
            institution_id="C04",
            source_patient_id="C04-y",
            resident_id=None,
            phone=make_phone(random.Random(2)),
            name=b["name"][0] + "某" + b["name"][2:],
            address=None,
            birth_date=None,
            defect="review",
            event_time=at,
        ),
    ]


def _version(spark: SparkSession, cfg: Config, table: str) -> DataFrame:
    # By version, not cached: Delta's MERGE refreshes a cached read of the same table.
    return io.read_table(spark, cfg.lake_root, table, version=io.latest_version(spark, cfg.lake_root, table))


def _person_of(xref: DataFrame, keys: list[tuple[str, str]]) -> set[str]:
    wanted = xref.sparkSession.createDataFrame(keys, "institution_id string, source_patient_id string")
    return {r["person_id"] for r in xref.join(wanted, list(link.KEY)).collect()}


@pytest.fixture(scope="module")
def day1(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory):
    """Day 1 linked from scratch (the model trained), then linked again over the same input."""
    cfg = _config(tmp_path_factory.mktemp("link") / "lake", review_probability=0.01)
    people = _people(500, seed=3, prefix="p")
    rows = _records(people, seed=4, day=DAY1, copies=(1, 2, 2, 3)) + _extras(people)
    _write_silver(spark, cfg.lake_root, rows)
    first = link.run(spark, cfg)
    xref, persons = (
        _version(spark, cfg, catalog.SILVER_PERSON_XREF),
        _version(spark, cfg, catalog.SILVER_PERSON),
    )
    review = _version(spark, cfg, catalog.SILVER_EMPI_REVIEW)
    again = link.run(spark, cfg)
    return {
        "cfg": cfg,
        "people": people,
        "rows": rows,
        "first": first,
        "again": again,
        "xref": xref,
        "persons": persons,
        "review": review,
    }


@pytest.fixture(scope="module")
def day2(spark: SparkSession, day1, tmp_path_factory: pytest.TempPathFactory):
    """Day 2, linked incrementally: 150 known residents again, 100 new ones, and a bridge record.

    ``lake_copy`` is a copy of the lake as this run left it (its review pairs all pending).
    """
    cfg, people = day1["cfg"], day1["people"]
    newcomers = _people(100, seed=9, prefix="n")
    rows = _records(people[:150], seed=5, day=DAY2, copies=(1, 2)) + _records(
        newcomers, seed=6, day=DAY2, copies=(1, 2)
    )
    # A clinic records both the card and the ID (birth date agreeing): the former name joins the rest.
    rows.append(
        dict(
            people[0],
            institution_id="C05",
            source_patient_id="C05-bridge",
            insurance_no=CARD,
            defect="none",
            event_time=dt.datetime(2026, 3, 3, 9),
        )
    )
    _write_silver(spark, cfg.lake_root, rows)
    result = link.run(spark, cfg)
    lake_copy = tmp_path_factory.mktemp("link_day2") / "lake"
    shutil.copytree(cfg.lake_root, lake_copy)
    return {
        "rows": rows,
        "result": result,
        "lake_copy": lake_copy,
        "xref": _version(spark, cfg, catalog.SILVER_PERSON_XREF),
        "persons": _version(spark, cfg, catalog.SILVER_PERSON),
    }


@pytest.fixture(scope="module")
def decided(spark: SparkSession, day1, day2):
    """The two review pairs decided, one accepted and one rejected, then a full re-link."""
    cfg = day1["cfg"]
    # Accept the likeliest pending pair and reject the likeliest one apart from it (others stay pending).
    review = _version(spark, cfg, catalog.SILVER_EMPI_REVIEW).where(F.col("status") == "pending")
    pending = review.orderBy(F.desc("match_probability"), "review_id").collect()
    accept = pending[0]
    ends = {(accept[f"institution_id_{s}"], accept[f"source_patient_id_{s}"]) for s in "lr"}
    reject = next(
        p
        for p in pending[1:]
        if not ends & {(p[f"institution_id_{s}"], p[f"source_patient_id_{s}"]) for s in "lr"}
    )
    # As in a lake linked before features were kept: this run prepares every record again and keeps
    # them all.
    shutil.rmtree(io.table_path(cfg.lake_root, catalog.VAULT_LINK_FEATURES))
    result = link.run(spark, cfg, accept=[accept["review_id"]], reject=[reject["review_id"]])
    xref, review = (
        _version(spark, cfg, catalog.SILVER_PERSON_XREF),
        _version(spark, cfg, catalog.SILVER_EMPI_REVIEW),
    )
    features = _version(spark, cfg, catalog.VAULT_LINK_FEATURES)
    full = link.run(spark, cfg, full=True)
    return {
        "accept": accept,
        "reject": reject,
        "result": result,
        "xref": xref,
        "review": review,
        "features": features,
        "full": full,
        "full_xref": _version(spark, cfg, catalog.SILVER_PERSON_XREF),
    }


def test_first_run_links_records_to_persons_against_the_truth(spark: SparkSession, day1) -> None:
    rows, first, xref = day1["rows"], day1["first"], day1["xref"]
    assert (first.mode, first.linked, first.records) == ("full", len(rows), len(rows))
    assert xref.count() == len(rows) == xref.select(*link.KEY).distinct().count()
    # Created with a change feed, which publish follows from one run to the next.
    for table in (catalog.SILVER_PERSON_XREF, catalog.SILVER_PERSON):
        assert io.has_change_feed(spark, day1["cfg"].lake_root, table), table
    truth = _truth(spark, rows)
    true_pairs, found = _pairs(truth, "person"), _pairs(xref, "person_id")
    tp = found.join(true_pairs, ["id_l", "id_r"]).count()
    assert tp / found.count() >= 0.99 and tp / true_pairs.count() >= 0.97, (
        tp,
        found.count(),
        true_pairs.count(),
    )
    # Each keying error still links, deterministically when a valid ID agrees, by probability otherwise.
    joined = xref.join(truth, list(link.KEY))
    first_seen = (
        joined.where(F.col("defect") == "none").groupBy("person").agg(F.min("person_id").alias("first"))
    )
    per_defect = joined.where(F.col("defect") != "none").join(first_seen, "person")
    for defect in ("homophone", "swapped", "id_transposed", "id_missing"):
        found_d = per_defect.where(F.col("defect") == defect)
        assert found_d.where(F.col("person_id") == F.col("first")).count() >= 0.95 * found_d.count() > 0, (
            defect
        )
    rules = {r["link_rule"] for r in joined.where(F.col("defect") == "id_transposed").collect()}
    assert "probabilistic" in rules  # the transposed ID is invalid: no deterministic link
    assert joined.where((F.col("defect") == "none") & (F.col("link_rule") == "resident_id")).count() > 0
    # The former name (card only) stands apart from the resident's other records, until day 2.
    old = _person_of(xref, [("H01", "H01-old")])
    assert old and not old & set(
        joined.where(F.col("person") == "p0")
        .where(F.col("defect") != "former_name")
        .select("person_id")
        .toPandas()["person_id"]
    )


def test_person_holds_golden_records_of_tokens_only(spark: SparkSession, day1) -> None:
    persons, xref = day1["persons"], day1["xref"]
    assert persons.count() == xref.select("person_id").distinct().count() == day1["first"].persons
    assert persons.where(F.col("status") != "active").isEmpty()
    # Every identifier column is a 64-hex token; no clear name or ID number appears anywhere.
    clear = {p["name"] for p in day1["people"]} | {p["resident_id"] for p in day1["people"]}
    for column in ("resident_id_token", "name_token", "phone_token", "address_token"):
        values = {r[0] for r in persons.select(column).distinct().collect()}
        assert not values & clear and all(v is None or len(v) == 64 for v in values), column
    counts = xref.groupBy("person_id").count().withColumnRenamed("count", "record_count")
    assertDataFrameEqual(persons.select("person_id", F.col("record_count").cast("long")), counts)
    audit = io.read_table(spark, day1["cfg"].lake_root, catalog.SILVER_EMPI_AUDIT, version=1)
    assert audit.where(F.col("event") == "created").count() == persons.count()


def test_the_review_sheet_shows_both_records_clear_values(spark: SparkSession, day1) -> None:
    lake = day1["cfg"].lake_root
    sheet = link.review_sheet(spark, lake).collect()
    pending = io.read_table(spark, lake, catalog.SILVER_EMPI_REVIEW).where(F.col("status") == "pending")
    assert len(sheet) == pending.count() > 0
    keyed = {(r["institution_id"], r["source_patient_id"]): r for r in day1["rows"]}
    for row in sheet:
        for side in ("l", "r"):
            record = keyed[(row[f"institution_id_{side}"], row[f"source_patient_id_{side}"])]
            # The name and ID number as the institution keyed them (the vault's values, not tokens).
            assert row[f"full_name_{side}"] == record["name"]
            assert row[f"id_number_{side}"] == record["resident_id"]
    assert link.review_sheet(spark, lake, status="accepted").isEmpty()


def test_a_rerun_over_the_same_input_changes_nothing(day1) -> None:
    assert (day1["again"].mode, day1["again"].records) == ("nothing", len(day1["rows"]))


def test_an_incremental_day_links_new_records_without_renumbering(spark: SparkSession, day1, day2) -> None:
    before, result, xref = day1["xref"], day2["result"], day2["xref"]
    assert (result.mode, result.linked) == ("incremental", len(day2["rows"]))
    # Nobody renumbered: every day-1 record keeps its person, except the merged former name.
    kept = xref.join(before.select(*link.KEY), list(link.KEY), "semi").where(
        F.col("source_patient_id") != "H01-old"
    )
    assertDataFrameEqual(
        kept.select(*link.KEY, "person_id"),
        before.where(F.col("source_patient_id") != "H01-old").select(*link.KEY, "person_id"),
    )
    # Known residents join their day-1 person; newcomers get persons of their own.
    truth = _truth(spark, day1["rows"] + day2["rows"])
    persons_of = (
        xref.join(truth, list(link.KEY))
        .groupBy("person")
        .agg(F.countDistinct("person_id").alias("ids"), F.first("person_id").alias("person_id"))
    )
    assert persons_of.where(F.col("ids") > 1).count() <= 0.02 * persons_of.count()
    assert persons_of.groupBy("person_id").count().where(F.col("count") > 1).count() <= 2
    new_ids = persons_of.where(F.col("person").startswith("n")).select("person_id")
    assert new_ids.join(before, "person_id", "semi").count() <= 2
    assert result.created >= 95


def _features_match_xref(features: DataFrame, xref: DataFrame) -> None:
    """One kept feature row per linked record, for the identity the xref linked."""
    keyed = xref.select(F.concat_ws("|", *link.KEY).alias("unique_id"), "identity_hash")
    assertDataFrameEqual(features.select("unique_id", "identity_hash"), keyed)


def test_linkage_features_are_kept_in_the_vault_for_the_next_run(spark: SparkSession, day1, day2) -> None:
    features = _version(spark, day1["cfg"], catalog.VAULT_LINK_FEATURES)
    _features_match_xref(features, day2["xref"])
    # The day-2 run prepared only its own records: one MERGE after the first run's full write.
    history = (
        io.history(spark, day1["cfg"].lake_root, catalog.VAULT_LINK_FEATURES).orderBy("version").collect()
    )
    assert [h["operation"] for h in history][-1] == "MERGE"
    metrics = history[-1]["operationMetrics"]
    assert int(metrics["numTargetRowsInserted"]) + int(metrics["numTargetRowsUpdated"]) == len(day2["rows"])
    assert {"name_key", "name_pinyin", "trusted_id"} <= set(features.columns)


def test_a_record_carrying_both_strong_ids_merges_two_persons(spark: SparkSession, day1, day2) -> None:
    assert day2["result"].merged == 1
    xref = day2["xref"]
    p0 = _truth(spark, day1["rows"] + day2["rows"]).where(F.col("person") == "p0")
    ids = {r["person_id"] for r in xref.join(p0, list(link.KEY), "semi").collect()}
    assert len(ids) == 1
    (survivor,) = ids
    before = {r["person_id"] for r in day1["xref"].join(p0, list(link.KEY), "semi").collect()}
    (retired_id,) = before - {survivor}
    assert survivor in before  # the surviving person keeps its id
    persons = day2["persons"]
    retired = persons.where(F.col("person_id") == retired_id).first()
    assert (retired["status"], retired["merged_into"]) == ("retired", survivor)
    assert persons.where(F.col("person_id") == survivor).first()["status"] == "active"
    audit = io.read_table(spark, day1["cfg"].lake_root, catalog.SILVER_EMPI_AUDIT).where(
        F.col("event") == "merged"
    )
    assert (survivor, retired_id) in {(a["person_id"], a["other_person_id"]) for a in audit.collect()}
    bridge = xref.where(F.col("source_patient_id") == "C05-bridge").first()
    assert bridge["link_rule"] in {"resident_id", "insurance_no"} and bridge["person_id"] == survivor


def test_review_decisions_are_honoured_on_the_next_runs(spark: SparkSession, decided) -> None:
    accept, reject, xref = decided["accept"], decided["reject"], decided["xref"]

    def keys(pair) -> list[tuple[str, str]]:
        return [
            (pair["institution_id_l"], pair["source_patient_id_l"]),
            (pair["institution_id_r"], pair["source_patient_id_r"]),
        ]

    # The records of the two pairs are linked again: the accepted pair's two persons become one.
    records = set(keys(accept)) | set(keys(reject))
    assert (decided["result"].mode, decided["result"].linked, decided["result"].merged) == (
        "incremental",
        len(records),
        1,
    )
    assert len(_person_of(xref, keys(accept))) == 1 and len(_person_of(xref, keys(reject))) == 2
    statuses = {
        (r["review_id"], r["status"]) for r in decided["review"].where(F.col("status") != "pending").collect()
    }
    assert decided["review"].where(F.col("person_id_l") == F.col("person_id_r")).isEmpty()
    assert statuses == {(accept["review_id"], "accepted"), (reject["review_id"], "rejected")}
    assert (
        decided["review"].where((F.col("status") != "pending") & F.col("applied_version").isNull()).isEmpty()
    )
    # The features were gone before this run (a lake linked before they were kept): all written again.
    _features_match_xref(decided["features"], xref)


def test_a_full_relink_keeps_every_person_id(decided) -> None:
    full = decided["full"]
    assert (full.mode, full.created, full.merged, full.split) == ("full", 0, 0, 0)
    assertDataFrameEqual(
        decided["full_xref"].select(*link.KEY, "person_id"), decided["xref"].select(*link.KEY, "person_id")
    )


def _ends(pair) -> list[tuple[str, str]]:
    return [(pair[f"institution_id_{s}"], pair[f"source_patient_id_{s}"]) for s in "lr"]


def test_a_decision_recorded_during_a_run_waits_for_the_next_run(
    spark: SparkSession, day1, day2, tmp_path: Path
) -> None:
    # The lake of day 2, its review pairs pending (a copy: the other tests see it unchanged).
    cfg = day1["cfg"].model_copy(update={"lake_root": str(tmp_path / "lake")})
    shutil.copytree(day2["lake_copy"], cfg.lake_root)
    review = _version(spark, cfg, catalog.SILVER_EMPI_REVIEW).where(F.col("status") == "pending")
    pending = review.orderBy(F.desc("match_probability"), "review_id").collect()
    before = pending[0]
    during = next(p for p in pending[1:] if not set(_ends(before)) & set(_ends(p)))

    def reviewer() -> None:
        # Another session's decision, after the run read the decisions and before it marks them applied.
        link.record_decisions(spark, cfg.lake_root, accept=[during["review_id"]])

    # The run's commit point is its xref write; its last write marks the decisions it applied.
    with faults.on_write(catalog.SILVER_PERSON_XREF, reviewer):
        link.run(spark, cfg, accept=[before["review_id"]])
    applied = {
        r["review_id"]: r["applied_version"]
        for r in _version(spark, cfg, catalog.SILVER_EMPI_REVIEW).collect()
    }
    assert applied[before["review_id"]] == io.latest_version(spark, cfg.lake_root, catalog.SILVER_PERSON_XREF)
    assert applied[during["review_id"]] is None  # recorded, not applied: it waits
    assert len(_person_of(_xref(spark, cfg), _ends(before))) == 1
    assert len(_person_of(_xref(spark, cfg), _ends(during))) == 2

    result = link.run(spark, cfg)
    assert (result.mode, result.linked) == ("incremental", 2)
    assert len(_person_of(_xref(spark, cfg), _ends(during))) == 1
    review = (
        _version(spark, cfg, catalog.SILVER_EMPI_REVIEW)
        .where(F.col("review_id") == during["review_id"])
        .first()
    )
    assert (review["status"], review["applied_version"]) == (
        "accepted",
        io.latest_version(spark, cfg.lake_root, catalog.SILVER_PERSON_XREF),
    )


def test_unknown_review_ids_and_a_missing_silver_are_one_line_errors(
    spark: SparkSession, tmp_path: Path
) -> None:
    cfg = _config(tmp_path / "lake")
    with pytest.raises(link.LinkError, match="run `healthlake conform` first"):
        link.run(spark, cfg)
    _write_silver(spark, cfg.lake_root, _records(_people(20, 1, "e"), 1, DAY1, (1,)))
    with pytest.raises(link.LinkError, match="run `healthlake link` first"):
        link.run(spark, cfg, accept=["nope"])
    shutil.rmtree(tmp_path / "lake")
