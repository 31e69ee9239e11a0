"""Blocking reaches pairs whose name and birth date are both mistyped (issue 29 item 8, FEBRL4-like)."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from faker import Faker
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from healthlake.empi import link_persons

COLUMNS = {
    "record_id": "rid",
    "given_name": "given",
    "family_name": "family",
    "birth_date": "dob",
    "sex": "sex",
    "street_number": "number",
    "address_line": "street",
    "locality": "suburb",
    "postcode": "postcode",
}

# One person keyed twice: the name and the birth date both carry an error, and no other field is equal
# except sex and the street number (street, suburb and postcode mistyped), so no rule on an equal name,
# date, postcode, suburb or street matches; a clerk would still call them one person.
HARD_PAIRS = [
    (
        ("catherine", "mcdonald", "1984-03-12", "F", "14", "wattle street", "bondi", "2026"),
        ("cathrine", "macdonald", "1984-12-03", "F", "14", "wattle stret", "bondl", "2062"),
    ),
    (
        ("luke", "gazzola", "1942-09-29", "M", "10", "newman morris circuit", "lakemba", "3046"),
        ("gazzola", "luke", "1942-09-20", "M", "10", "newman morr is circuit", "lakebma", "3036"),
    ),
    (
        ("jonathan", "henderson", "1957-06-14", "M", "27", "kingsford smith drive", "ascot", "4007"),
        ("jonathon", "hendersen", "1975-06-14", "M", "27", "kingsford smit drive", "asoct", "4070"),
    ),
    (
        ("margaret", "wilson", "1990-11-05", "F", "3", "banksia crescent", "epping", "2121"),
        ("margret", "willson", "1990-11-06", "F", "3", "banksia cresent", "eping", "2112"),
    ),
    (
        ("stephanie", "obrien", "1968-02-07", "F", "88", "lachlan avenue", "hawthorn", "3122"),
        ("stefanie", "obrian", "1968-07-02", "F", "88", "lachlan avenu", "hawthron", "3212"),
    ),
]


def _typo(value: str, rng: random.Random) -> str:
    i = rng.randrange(len(value) - 1)
    return value[:i] + value[i + 1] + value[i] + value[i + 2 :]


def _background(persons: int, seed: int) -> list[tuple]:
    """Australian-style persons, two thirds keyed twice with one typo, so that EM sees matches."""
    rng, fake = random.Random(seed), Faker("en_AU")
    fake.seed_instance(seed)
    rows = []
    for p in range(persons):
        sex = rng.choice("MF")
        person = [
            (fake.first_name_male() if sex == "M" else fake.first_name_female()).lower(),
            fake.last_name().lower(),
            (dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(365 * 75))).isoformat(),
            sex,
            fake.building_number(),
            fake.street_name().lower(),
            fake.city().lower(),
            fake.postcode(),
        ]
        rows.append((f"b{p}-0", *person))
        if rng.random() < 2 / 3:
            copy = list(person)
            field = rng.choice((0, 1, 2, 5, 6, 7))
            copy[field] = _typo(copy[field], rng)
            rows.append((f"b{p}-1", *copy))
    return rows


@pytest.fixture(scope="module")
def linked(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory):
    hard = [
        (f"h{i}-{side}", *record) for i, pair in enumerate(HARD_PAIRS) for side, record in enumerate(pair)
    ]
    records = spark.createDataFrame(
        _background(150, seed=8) + hard,
        "rid string, given string, family string, dob string, sex string, number string, street string, "
        "suburb string, postcode string",
    )
    # Every scored pair is returned (min_pair_probability 0): a pair missing from them was never a
    # candidate of the blocking rules.
    result = link_persons(
        records,
        COLUMNS,
        min_pair_probability=0.0,
        checkpoint_dir=str(tmp_path_factory.mktemp("empi-blocking-ckpt")),
        max_u_pairs=1e5,
    )
    pairs = result.pairs.select(
        F.least("unique_id_l", "unique_id_r").alias("id_l"),
        F.greatest("unique_id_l", "unique_id_r").alias("id_r"),
        "match_probability",
    )
    return {(r["id_l"], r["id_r"]): r["match_probability"] for r in pairs.collect()}, result.clusters


@pytest.mark.parametrize("pair", range(len(HARD_PAIRS)))
def test_a_pair_with_name_and_date_both_mistyped_is_scored_and_linked(linked, pair: int) -> None:
    scored, clusters = linked
    key = (f"h{pair}-0", f"h{pair}-1")
    assert key in scored, f"{HARD_PAIRS[pair]} never became a candidate pair"
    cluster = {
        r["unique_id"]: r["cluster_id"] for r in clusters.where(F.col("unique_id").startswith("h")).collect()
    }
    assert cluster[key[0]] == cluster[key[1]], (HARD_PAIRS[pair], scored[key])


def test_soundex_keys_leave_chinese_names_as_they_are(spark: SparkSession) -> None:
    # The Soundex blocking keys add no pairs on Chinese names (common ones are held by thousands):
    # Spark returns a value that does not start with a Latin letter unchanged.
    df = spark.createDataFrame([("王伟",), ("müller",), ("mueller",), ("élodie",)], "name string")
    got = [r[0] for r in df.select(F.soundex("name")).collect()]
    assert got == ["王伟", "M460", "M460", "élodie"]
