"""link_persons on a Chinese person table with the keying errors clerks make, graded against its truth."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from faker import Faker
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from healthlake.empi import link_persons, standardize_person_columns
from healthlake.synth.identity import homophone_variant, make_phone, make_resident_id, transpose_digits

COLUMNS = {
    "record_id": "record_no",
    "full_name": "name",
    "birth_date": "birth_date",
    "sex": "sex",
    "id_number": "id_no",
    "phone": "phone",
    "area": "county",
}
COUNTIES = ("330102", "330105", "330106", "330108")


def _records(n_people: int, seed: int) -> list[dict]:
    """People keyed 1–3 times each; later copies carry one defect (the truth is ``person``)."""
    rng, fake = random.Random(seed), Faker("zh_CN")
    fake.seed_instance(seed)
    rows = []
    for p in range(n_people):
        sex = rng.choice("MF")
        name = fake.name_male() if sex == "M" else fake.name_female()
        birth = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(365 * 65))
        county = rng.choice(COUNTIES)
        seq = rng.randrange(50, 999)
        seq += (seq % 2 == 0) == (sex == "M")  # odd sequence = male
        person = {
            "name": name,
            "birth_date": birth,
            "sex": sex,
            "id_no": make_resident_id(county, birth, seq % 1000),
            "phone": make_phone(rng),
            "county": county,
        }
        for copy in range(rng.choice((1, 2, 2, 3))):
            row = dict(person, person=f"p{p}", record_no=f"r{p}-{copy}", defect="none")
            if copy:
                defect = rng.choice(
                    ("homophone", "swapped", "id_transposed", "id_missing", "phone_new", "none")
                )
                row["defect"] = defect
                if defect == "homophone":
                    row["name"] = homophone_variant(name, rng)
                elif defect == "swapped":
                    row["name"] = name[1:] + name[0]
                elif defect == "id_transposed":
                    row["id_no"] = transpose_digits(row["id_no"], rng)
                elif defect == "id_missing":
                    row["id_no"] = None
                elif defect == "phone_new":
                    row["phone"] = make_phone(rng)
            rows.append(row)
    return rows


def _pairs(df: DataFrame, key: str) -> DataFrame:
    left, right = df.alias("l"), df.alias("r")
    return left.join(
        right, (F.col(f"l.{key}") == F.col(f"r.{key}")) & (F.col("l.id") < F.col("r.id"))
    ).select(F.col("l.id").alias("id_l"), F.col("r.id").alias("id_r"))


@pytest.fixture(scope="module")
def linked(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory):
    records = spark.createDataFrame(_records(1500, seed=11)).cache()
    result = link_persons(
        records, COLUMNS, checkpoint_dir=str(tmp_path_factory.mktemp("empi-ckpt")), max_u_pairs=1e5
    )
    clusters = result.clusters.select(F.col("unique_id").alias("id"), "cluster_id").cache()
    truth = records.select(F.col("record_no").alias("id"), "person", "defect")
    return records, truth, clusters, result


def test_pairwise_precision_and_recall(linked) -> None:
    records, truth, clusters, _ = linked
    true_pairs, found = _pairs(truth, "person"), _pairs(clusters, "cluster_id")
    tp = found.join(true_pairs, ["id_l", "id_r"]).count()
    precision, recall = tp / found.count(), tp / true_pairs.count()
    assert precision >= 0.99, precision
    assert recall >= 0.97, recall
    assert clusters.count() == records.count()  # one cluster id per record


@pytest.mark.parametrize("defect", ["homophone", "swapped", "id_transposed", "id_missing"])
def test_each_keying_error_still_links(linked, defect: str) -> None:
    _, truth, clusters, _ = linked
    with_cluster = truth.join(clusters, "id")
    originals = with_cluster.where(F.col("id").endswith("-0")).select(
        "person", F.col("cluster_id").alias("first")
    )
    defective = with_cluster.where(F.col("defect") == defect).join(originals, "person")
    total = defective.count()
    linked_ok = defective.where(F.col("cluster_id") == F.col("first")).count()
    assert total >= 20, total
    assert linked_ok / total >= 0.95, (defect, linked_ok, total)


def test_model_has_trained_name_levels(linked) -> None:
    *_, result = linked
    name = next(c for c in result.model["comparisons"] if c["output_column_name"] == "name")
    labels = {level.get("label_for_charts") for level in name["comparison_levels"]}
    assert {"same pinyin (homophone)", "surname and given name in the other order"} <= labels
    # EM found both Chinese-specific levels to be evidence for a match (m above u).
    for level in name["comparison_levels"]:
        if level.get("label_for_charts") in {
            "same pinyin (homophone)",
            "surname and given name in the other order",
        }:
            assert level["m_probability"] > level["u_probability"], level


def test_names_are_split_and_read_in_pinyin(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("1", "欧阳娜娜", "+86 138-0013-8000"), ("2", "张伟", "13800138000"), ("3", "John  Smith", None)],
        "rid string, name string, tel string",
    )
    out = standardize_person_columns(df, {"record_id": "rid", "full_name": "name", "phone": "tel"})
    rows = {r["unique_id"]: r for r in out.collect()}
    assert (rows["1"]["family_name"], rows["1"]["given_name"], rows["1"]["name_pinyin"]) == (
        "欧阳",
        "娜娜",
        "ouyangnana",
    )
    assert (rows["2"]["family_name"], rows["2"]["name_pinyin"], rows["2"]["phone"]) == (
        "张",
        "zhangwei",
        "13800138000",
    )
    assert rows["1"]["phone"] == "13800138000"
    assert (rows["3"]["given_name"], rows["3"]["family_name"], rows["3"]["name_key"]) == (
        "john",
        "smith",
        "johnsmith",
    )


def test_an_unknown_role_is_a_clear_error(spark: SparkSession) -> None:
    df = spark.createDataFrame([("1", "x")], "rid string, n string")
    with pytest.raises(ValueError, match="unknown person column roles"):
        standardize_person_columns(df, {"record_id": "rid", "nickname": "n"})
