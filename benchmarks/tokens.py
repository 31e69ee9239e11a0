"""Benchmark the HMAC token pandas UDF against its same-run baseline, the per-value ``hmac.new`` UDF.

Two inputs, each tokenised whole (a ``noop`` write, after a warm-up): distinct 18-character resident
ids (``--values``, no value repeats, so only the per-value cost counts) and, with ``--lake``, the phone
column of an ingested lake's ``bronze.location_pings`` in file order (a phone's pings come together, as in
an operator's daily file). The baseline is the tokenizer as it was before session 38: ``hmac.new`` for
every value. Both must give the same tokens (checked on 50,000 values of each input).

    HEALTHLAKE_HMAC_KEY=... python benchmarks/tokens.py --lake /tmp/pd1m/lake
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import sys
import time
from pathlib import Path

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from healthlake import io  # noqa: E402
from healthlake.catalog import BRONZE_LOCATION_PINGS  # noqa: E402
from healthlake.config import load_config  # noqa: E402
from healthlake.privacy.tokens import load_key, tokenizer  # noqa: E402
from healthlake.spark import get_spark  # noqa: E402


def per_value_hmac(key: bytes, kind: str):
    """The baseline: the tokenizer before session 38 (``hmac.new`` per value, repeats included)."""
    prefix = f"{kind}:".encode()

    def tokens(values: pd.Series) -> pd.Series:
        def one(v: object) -> str | None:
            if v is None or v != v or v == "":
                return None
            return hmac.new(key, prefix + str(v).encode("utf-8"), hashlib.sha256).hexdigest()

        return values.map(one)

    udf = F.pandas_udf(tokens, "string")  # type: ignore[call-overload]
    return lambda col: udf(col)


def _seconds(values: DataFrame, column: Column) -> float:
    values.select(column).write.format("noop").mode("overwrite").save()  # warm-up (Python workers)
    started = time.perf_counter()
    values.select(column).write.format("noop").mode("overwrite").save()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--values", type=int, default=2_000_000, help="distinct values of the first input")
    parser.add_argument("--lake", help="an ingested lake: its location pings' phones are the second input")
    args = parser.parse_args()
    os.environ.setdefault("HEALTHLAKE_HMAC_KEY", "benchmark-only-key-0123456789abcdef")
    spark = get_spark("bench-tokens", load_config(overrides={"spark": {"master": "local[2]"}}))
    spark.sparkContext.setLogLevel("ERROR")
    key = load_key()
    inputs = [
        (
            f"{args.values:,} distinct resident ids",
            spark.range(args.values).select(F.format_string("1101%014d", "id").alias("v")),
        )
    ]
    if args.lake:
        phones = io.read_table(spark, args.lake, BRONZE_LOCATION_PINGS).select(
            F.regexp_replace(F.trim("phone"), r"\D", "").alias("v")
        )
        inputs.append(("location pings' phones (file order)", phones))
    new, old = tokenizer(key, "resident_id"), per_value_hmac(key, "resident_id")
    for label, frame in inputs:  # the phones repeat within a batch: the one-hash-per-distinct-value path
        sample = frame.limit(50_000)
        differ = sample.where(~new(F.col("v")).eqNullSafe(old(F.col("v")))).count()
        if differ:
            raise SystemExit(f"the tokenizer and the baseline disagree on {differ} of {label}")
    print("| input | values | baseline s | tokenizer s | baseline values/s | tokenizer values/s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, frame in inputs:
        values = frame.cache()
        n = values.count()
        base, now = _seconds(values, old(F.col("v"))), _seconds(values, new(F.col("v")))
        rates = f"{n / base:,.0f} | {n / now:,.0f} | {base / now:.2f}×"
        print(f"| {label} | {n:,} | {base:.1f} | {now:.1f} | {rates} |")
        values.unpersist()
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
