"""The location pings' classification in conform, step by step, and what cheaper row hashes would cost.

Reads an ingested lake's ``bronze.location_pings`` change rows (cached), then times ``noop`` writes (after
a warm-up) of the frame conform builds, one step more each time: parse; the phone tokens; the key and the
rules; the row hash; the windows and the stored-key lookup (``_classify``, against an empty silver table in
a copy of the lake). Then the row hash alone on the checked rows, next to cheaper candidates. Nothing is
written to the given lake.

    HEALTHLAKE_HMAC_KEY=... python benchmarks/ping_steps.py --lake /tmp/pd1m/lake
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from healthlake import io  # noqa: E402
from healthlake.catalog import BRONZE_LOCATION_PINGS, SILVER_LOCATION_EVENT  # noqa: E402
from healthlake.config import load_config  # noqa: E402
from healthlake.pipelines import conform  # noqa: E402
from healthlake.privacy.tokens import load_key  # noqa: E402
from healthlake.silver.pseudonymise import tokenize_columns  # noqa: E402
from healthlake.silver.quality import with_failed_rules  # noqa: E402
from healthlake.spark import get_spark  # noqa: E402


def _seconds(frame: DataFrame) -> float:
    frame.write.format("noop").mode("overwrite").save()  # warm-up
    started = time.perf_counter()
    frame.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lake", required=True, help="an ingested lake (copied, not changed)")
    args = parser.parse_args()
    os.environ.setdefault("HEALTHLAKE_HMAC_KEY", "benchmark-only-key-0123456789abcdef")
    work = Path(tempfile.mkdtemp(prefix="hl-ping-steps-"))
    shutil.copytree(args.lake, work / "lake")
    cfg = load_config(overrides={"lake_root": str(work / "lake"), "spark": {"master": "local[2]"}})
    spark = get_spark("bench-ping-steps", cfg)
    spark.sparkContext.setLogLevel("ERROR")
    lake, key = cfg.lake_root, load_key()
    (entity,) = [e for e in conform.entities(cfg) if e.table == SILVER_LOCATION_EVENT]
    last = io.latest_version(spark, lake, BRONZE_LOCATION_PINGS)
    bronze = (
        io.read_changes(spark, lake, BRONZE_LOCATION_PINGS, 0, last)
        .where(F.col("_change_type") == "insert")
        .drop("_change_type", "_commit_timestamp")
        .persist()
    )
    pings = bronze.count()
    parsed = bronze.transform(entity.parsers[BRONZE_LOCATION_PINGS])
    tokenised = tokenize_columns(parsed, key, entity.identifiers)
    assert entity.after_tokens is not None  # the key is built from the token
    checked = with_failed_rules(tokenised.transform(entity.after_tokens), entity.rules())
    prepared = conform._prepare(parsed, entity, key).withColumn("_bronze_order", F.lit(0))
    io.create_table(spark, lake, entity.table, conform._silver_rows(prepared, entity).schema)
    span = conform.KeySpan("event_time", 0, 2**62)  # every stored row: the table is empty
    classified = conform._classify(spark, lake, entity.table, prepared, entity.precedence, span)
    print(f"{pings:,} pings, `local[2]`; seconds of a noop write of each step's frame (from cached bronze)")
    print("| step | seconds |\n|---|---:|")
    for label, frame in (
        ("parse", parsed),
        ("+ phone tokens", tokenised),
        ("+ key and rules", checked),
        ("+ row hash (conform's `_prepare`)", prepared),
        ("+ windows and stored-key lookup (`_classify`)", classified),
    ):
        print(f"| {label} | {_seconds(frame):.1f} |")
    rows = checked.persist()
    rows.count()
    content = [c for c in rows.columns if c not in conform.PROVENANCE and c not in entity.identifiers]
    as_text = [F.coalesce(F.col(c).cast("string"), F.lit("\x00")) for c in content]
    hashes: tuple[tuple[str, Column], ...] = (
        ("reading the cached rows", F.col("institution_id")),
        ("`sha2(to_json(struct(content)))` (conform's)", F.sha2(F.to_json(F.struct(*content)), 256)),
        ("`to_json(struct(content))` alone", F.to_json(F.struct(*content))),
        ("`sha2(concat_ws(columns as text))`", F.sha2(F.concat_ws("\x1f", *as_text), 256)),
        ("`xxhash64(content)` (64 bits: too weak for equal content)", F.xxhash64(*content)),
    )
    print("\n| row hash on the checked rows | seconds |\n|---|---:|")
    for label, column in hashes:
        print(f"| {label} | {_seconds(rows.select(column.alias('h'))):.1f} |")
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
