"""Benchmark ``healthlake.epidemic.contacts.close_contacts`` on synthetic trajectories with a known truth.

A synthetic city is generated in Spark (``spark.range``, no Python per record) and written to Parquet
first, so generation is not timed:

* persons in households of 1–4 on a 200 m lattice (homes jittered ±30 m); each person's true path, a pure
  function of (person, minute): at home (personal offset ±4 m) or, in a daytime hour (25 %), on an outing
  to one of the 9 venues around the home (venues on every third lattice cell centre, ≥ ~100 m from any
  home): leave at a random minute, ride there at 5 m/s (bicycle, car), stay until 45–48 past the hour
  (personal offset ±8 m), ride back. Some outings (8 % of a household's daytime hours) are the whole
  household's: same venue and phases, a group moving together.
* phones: one per person, every 20th person a second one; 3 % of phones are in no person's records
  (unowned). A phone pings every 2–18 minutes (a ping each 10-minute block at a random minute), 3 % of
  pings lost, 1 % of phone-hours off; each ping is the true position plus Gaussian noise of its stated
  accuracy (5–20 m).
* cases: ``--cases`` persons spread over the population, each with a window of half the span.

The truth: pairs (case, person) whose *true* paths, sampled every minute of the case's window, were within
``D`` metres for at least ``T`` minutes (computed from the paths, never from pings; not timed); cases with
no phone in any record are left out (nothing can trace them). "recall (seen)" counts only the minutes when
both had a phone switched on: what any detector working from pings could see.

Timed, each reading the Parquet pings and writing its contacts to Parquet:

* ``close_contacts`` (``close`` preset, ``reference_lat`` pinned to the city's latitude);
* the naive baseline: every case ping joined with every ping within ``step_minutes`` by time only — a
  time-range join, which Spark runs as a nested loop — then the same distance filter, exposure = the
  5-minute buckets either ping of a close pair fell in; stopped after ``--baseline-limit`` seconds
  (reported as "> X");
* the same baseline written as an equi-join on 5-minute time buckets (the strongest join without a spatial
  index), with the same limit.

Printed: one table (records, seconds, pings/s, pings/s per core, speed-up, recall and precision against the
truth at D = 30 m, T = 15 min); with ``--sweep`` a second one of recall and precision as D and T vary.

    python benchmarks/epidemic.py --pings 1000000 --cases 1000
    python benchmarks/epidemic.py --pings 1000000 --cases 1000 --sweep
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyspark import InheritableThread  # noqa: E402
from pyspark.sql import Column, DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from healthlake.config import load_config  # noqa: E402
from healthlake.epidemic.contacts import EARTH_RADIUS_M, ContactParameters, close_contacts  # noqa: E402
from healthlake.spark import get_spark  # noqa: E402

LAT0, LON0 = 30.25, 120.15  # the city's south-west corner
START = dt.datetime(2022, 3, 1, 16, 0, tzinfo=dt.UTC)  # local midnight, 2022-03-02 in Asia/Shanghai
LATTICE_M = 200.0
PING_BLOCK_MIN = 10
PING_LOST, PHONE_OFF = 0.03, 0.01
OUT_P, GROUP_P = 0.25, 0.08
SECOND_PHONE_EVERY, UNOWNED = 20, 0.03
SWEEP_D, SWEEP_T = (15.0, 30.0, 50.0), (10, 15, 30)


@dataclass(frozen=True)
class City:
    """The synthetic city's sizes."""

    persons: int
    phones: int
    side: int  # households per lattice row
    span_min: int
    cases: int


def _u(*cols: Column | str | int, salt: int) -> Column:
    """A uniform draw in [0, 1) from a hash of the columns: reproducible and the same in every plan."""
    # Every input as a long: a hash of an int and of a long of one value differ.
    args = [
        (c if isinstance(c, Column) else F.col(c) if isinstance(c, str) else F.lit(c)).cast("long")
        for c in cols
    ]
    return F.pmod(F.xxhash64(*args, F.lit(salt)), F.lit(2**31)).cast("double") / 2**31


def with_true_xy(df: DataFrame, city: City) -> DataFrame:
    """``df`` (person ``p``, minutes ``t``) with the true position ``x``, ``y`` (metres east and north of
    the city's corner), in steps: one expression of it all is too big for Spark's generated code."""
    p, t = F.col("p"), F.col("t")
    r = p % 10
    idx = F.when(r < 1, 0).when(r < 3, 1).when(r < 6, 2).otherwise(3)  # 4 households per 10 persons
    h = F.floor(p / 10) * 4 + idx
    slot = F.floor(t / 60)
    base = df.select("*", h.alias("_h"), (idx + 1).alias("_size"), slot.alias("_slot"))
    h, slot = F.col("_h"), F.col("_slot")
    hi, hj = h % city.side, F.floor(h / city.side)
    daytime = F.pmod(slot, 24).between(8, 21)
    group = (F.col("_size") > 1) & (_u(h, slot, salt=11) < GROUP_P) & daytime
    alone = (_u(p, slot, salt=12) < OUT_P) & daytime
    key = F.when(group, -1 - h).otherwise(p)  # a group draws its venue and phases together
    k = F.floor(_u(key, slot, salt=13) * 9)
    homes = base.select(
        "*",
        (hi * LATTICE_M + _u(h, salt=1) * 60 - 30 + _u(p, salt=3) * 8 - 4).alias("_hx"),
        (hj * LATTICE_M + _u(h, salt=2) * 60 - 30 + _u(p, salt=4) * 8 - 4).alias("_hy"),
        ((F.floor(hi / 3) * 3 + (k % 3 - 1) * 3 + 0.5) * LATTICE_M + _u(p, salt=5) * 16 - 8).alias("_vx"),
        ((F.floor(hj / 3) * 3 + (F.floor(k / 3) - 1) * 3 + 0.5) * LATTICE_M + _u(p, salt=6) * 16 - 8).alias(
            "_vy"
        ),
        (group | alone).alias("_out"),
        (_u(key, slot, salt=14) * 3).alias("_leave"),
        (45 + _u(key, slot, salt=16) * 3).alias("_depart"),
    )
    # Outings go by bicycle or car: 5 m/s and a minute to get going, whatever the distance.
    travel = F.sqrt((F.col("_vx") - F.col("_hx")) ** 2 + (F.col("_vy") - F.col("_hy")) ** 2) / 300 + 1
    legs = homes.select(
        "*", (F.col("_leave") + travel).alias("_arrive"), (F.col("_depart") + travel).alias("_back")
    )
    u = t - F.col("_slot") * 60
    leave, arrive, depart, back = (F.col(c) for c in ("_leave", "_arrive", "_depart", "_back"))
    frac = (
        F.when(~F.col("_out") | (u < leave), 0.0)
        .when(u < arrive, (u - leave) / (arrive - leave))
        .when(u < depart, 1.0)
        .when(u < back, 1 - (u - depart) / (back - depart))
        .otherwise(0.0)
    )
    moved = legs.select("*", frac.alias("_frac"))
    x = F.col("_hx") + F.col("_frac") * (F.col("_vx") - F.col("_hx"))
    y = F.col("_hy") + F.col("_frac") * (F.col("_vy") - F.col("_hy"))
    return moved.select(*df.columns, x.alias("x"), y.alias("y"))


def _lat_lon(x: Column, y: Column) -> tuple[Column, Column]:
    lat = F.lit(LAT0) + F.degrees(y / EARTH_RADIUS_M)
    lon = F.lit(LON0) + F.degrees(x / (EARTH_RADIUS_M * math.cos(math.radians(LAT0))))
    return lat, lon


def _owner(q: Column, city: City) -> Column:
    return F.when(q < city.persons, q).otherwise((q - city.persons) * SECOND_PHONE_EVERY)


def city_for(pings: int, cases: int, days: int) -> City:
    span = days * 1440
    per_phone = span / PING_BLOCK_MIN * (1 - PING_LOST) * (1 - PHONE_OFF)
    persons = max(10, math.ceil(pings / per_phone / (1 + 1 / SECOND_PHONE_EVERY) / 10) * 10)
    phones = persons + math.ceil(persons / SECOND_PHONE_EVERY)
    households = persons // 10 * 4
    return City(persons, phones, math.ceil(math.sqrt(households)), span, min(cases, persons))


def generate(spark: SparkSession, city: City, work: Path) -> None:
    """Pings, owners, the phones' true persons and the cases, written to Parquet under ``work``."""
    blocks = city.span_min // PING_BLOCK_MIN
    ids = spark.range(city.phones * blocks)
    q, i = F.floor(F.col("id") / blocks), F.col("id") % blocks
    t = i * PING_BLOCK_MIN + 1 + _u(q, i, salt=21) * (PING_BLOCK_MIN - 2)
    sampled = ids.select(q.alias("q"), i.alias("i"), _owner(q, city).alias("p"), t.alias("t")).where(
        (_u("q", "i", salt=22) >= PING_LOST) & (_u("q", F.floor(F.col("t") / 60), salt=23) >= PHONE_OFF)
    )
    q, i = F.col("q"), F.col("i")
    accuracy = 5 + 15 * _u(q, i, salt=24)
    sigma = accuracy / 1.5  # a stated accuracy is about the 68 % radius
    r = F.sqrt(-2 * F.log(1 - _u(q, i, salt=25)))
    theta = 2 * math.pi * _u(q, i, salt=26)
    x, y = F.col("x") + sigma * r * F.cos(theta), F.col("y") + sigma * r * F.sin(theta)
    lat, lon = _lat_lon(x, y)
    start_us = int(START.timestamp() * 1_000_000)
    pings = with_true_xy(sampled, city).select(
        F.concat(F.lit("t"), q.cast("string")).alias("phone_token"),
        F.timestamp_micros(F.lit(start_us) + (F.col("t") * 60_000_000).cast("long")).alias("event_time"),
        lat.alias("lat"),
        lon.alias("lon"),
        accuracy.alias("accuracy_m"),
    )
    pings.write.mode("overwrite").parquet(str(work / "pings"))
    phones = spark.range(city.phones).select(
        F.concat(F.lit("t"), F.col("id").cast("string")).alias("phone_token"),
        F.concat(F.lit("p"), _owner(F.col("id"), city).cast("string")).alias("person_id"),
        (_u(F.col("id"), salt=31) < UNOWNED).alias("unowned"),
    )
    phones.write.mode("overwrite").parquet(str(work / "phones"))
    half = city.span_min // 2
    c = F.col("id")
    case_p = F.floor((c + 0.5) * city.persons / city.cases)
    ws = F.floor(_u(c, salt=41) * half)
    cases = spark.range(city.cases).select(
        F.concat(F.lit("p"), case_p.cast("string")).alias("case_person_id"),
        F.timestamp_micros(F.lit(start_us) + ws * 60_000_000).alias("window_start"),
        F.timestamp_micros(F.lit(start_us) + (ws + half) * 60_000_000).alias("window_end"),
    )
    cases.write.mode("overwrite").parquet(str(work / "cases"))


def truth_minutes(spark: SparkSession, city: City, cases: DataFrame, work: Path) -> DataFrame:
    """Per (case, other person): minutes of the case's window their true paths were within each sweep D
    (``min_<D>``), and within 30 m while both had a phone on (``seen_30``)."""
    start_us = int(START.timestamp() * 1_000_000)
    cell = max(SWEEP_D) * 1.01
    ids = spark.range(city.persons * city.span_min)
    p, m = F.floor(F.col("id") / city.span_min), F.col("id") % city.span_min
    minutes = ids.select(p.alias("p"), m.alias("m"), m.cast("double").alias("t"))
    slot = F.floor(F.col("m") / 60)
    second = F.lit(city.persons) + F.floor(F.col("p") / SECOND_PHONE_EVERY)
    on = (_u("p", slot, salt=23) >= PHONE_OFF) | (
        (F.col("p") % SECOND_PHONE_EVERY == 0) & (_u(second, slot, salt=23) >= PHONE_OFF)
    )
    positions = with_true_xy(minutes, city).select(
        F.concat(F.lit("p"), F.col("p").cast("string")).alias("person"),
        "m",
        "x",
        "y",
        on.alias("on"),
        F.floor(F.col("x") / cell).alias("cx"),
        F.floor(F.col("y") / cell).alias("cy"),
    )
    # Written once: the join below reads them twice, and one stage of both paths is too big to compile.
    positions.write.mode("overwrite").parquet(str(work / "true_positions"))
    where = spark.read.parquet(str(work / "true_positions"))
    windows = cases.select(
        "case_person_id",
        ((F.unix_micros("window_start") - start_us) / 60_000_000).alias("ws"),
        ((F.unix_micros("window_end") - start_us) / 60_000_000).alias("we"),
    )
    mine = where.join(
        F.broadcast(windows),
        (F.col("person") == F.col("case_person_id")) & F.col("m").between(F.col("ws"), F.col("we")),
    )
    shifts = F.array(
        *[F.struct(F.lit(a).alias("a"), F.lit(b).alias("b")) for a in (-1, 0, 1) for b in (-1, 0, 1)]
    )
    mine = mine.select(
        "case_person_id",
        "m",
        F.col("x").alias("cx_m"),
        F.col("y").alias("cy_m"),
        F.col("on").alias("c_on"),
        F.explode(shifts).alias("s"),
        "cx",
        "cy",
    ).select("*", (F.col("cx") + F.col("s.a")).alias("nx"), (F.col("cy") + F.col("s.b")).alias("ny"))
    others = where.select(
        F.col("person").alias("other"), "m", "x", "y", "on", F.col("cx").alias("nx"), F.col("cy").alias("ny")
    )
    dist = F.sqrt((F.col("x") - F.col("cx_m")) ** 2 + (F.col("y") - F.col("cy_m")) ** 2)
    pairs = mine.join(others, ["m", "nx", "ny"]).where(F.col("other") != F.col("case_person_id"))
    return (
        pairs.where(dist <= max(SWEEP_D))
        .groupBy("case_person_id", "other")
        .agg(
            *[F.sum(F.when(dist <= d, 1).otherwise(0)).alias(f"min_{int(d)}") for d in SWEEP_D],
            # Minutes a detector could see: both had a phone switched on.
            F.sum(F.when((dist <= 30) & F.col("on") & F.col("c_on"), 1).otherwise(0)).alias("seen_30"),
        )
    )


def naive_contacts(
    pings: DataFrame, cases: DataFrame, owners: DataFrame, p: ContactParameters, *, bucketed: bool
) -> DataFrame:
    """The baseline: case pings × every ping within ``step_minutes`` by time only, then distance."""
    tol = p.step_minutes * 60_000_000
    owned = pings.join(F.broadcast(owners), "phone_token", "left").select(
        "phone_token", "person_id", F.unix_micros("event_time").alias("t"), "lat", "lon", "accuracy_m"
    )
    mine = owned.join(
        F.broadcast(cases),
        (F.col("person_id") == F.col("case_person_id"))
        & F.col("t").between(F.unix_micros("window_start"), F.unix_micros("window_end")),
    ).select(
        "case_person_id",
        F.col("t").alias("ct"),
        F.col("lat").alias("clat"),
        F.col("lon").alias("clon"),
        F.col("accuracy_m").alias("cacc"),
    )
    others = owned.select(
        F.col("person_id").alias("contact_person_id"),
        F.when(F.col("person_id").isNull(), F.col("phone_token")).alias("contact_phone_token"),
        "t",
        "lat",
        "lon",
        "accuracy_m",
    )
    near_in_time = F.abs(F.col("t") - F.col("ct")) <= tol
    if bucketed:
        mine = mine.select(
            "*",
            F.explode(F.sequence(F.floor(F.col("ct") / tol) - 1, F.floor(F.col("ct") / tol) + 1)).alias("b"),
        )
        pairs = mine.join(others.withColumn("b", F.floor(F.col("t") / tol)), "b").where(near_in_time)
    else:
        pairs = mine.join(others, F.col("t").between(F.col("ct") - tol, F.col("ct") + tol))
    mid = F.radians((F.col("lat") + F.col("clat")) / 2)
    dx = F.radians(F.col("lon") - F.col("clon")) * F.cos(mid)
    dy = F.radians(F.col("lat") - F.col("clat"))
    dist = F.lit(EARTH_RADIUS_M) * F.sqrt(dx * dx + dy * dy)
    allowance = F.least(F.sqrt(F.col("cacc") ** 2 + F.col("accuracy_m") ** 2), F.lit(p.max_accuracy_m))
    close = pairs.where(
        F.coalesce(F.col("contact_person_id") != F.col("case_person_id"), F.lit(True))
        & (dist <= p.distance_m + allowance)
    )
    return (
        close
        # Exposure: the 5-minute buckets either ping of a close pair fell in.
        .select("*", F.explode(F.array(F.floor(F.col("ct") / tol), F.floor(F.col("t") / tol))).alias("_b"))
        .groupBy("case_person_id", "contact_person_id", "contact_phone_token")
        .agg((F.countDistinct("_b") * p.step_minutes).alias("exposure_minutes"))
        .where(F.col("exposure_minutes") >= p.min_minutes)
    )


def _timed_write(spark: SparkSession, df: DataFrame, path: Path, limit: float | None = None) -> float | None:
    """Seconds to write ``df`` as Parquet; None when it ran past ``limit`` seconds (its jobs cancelled)."""
    group = f"bench-{path.name}"
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        spark.sparkContext.setJobGroup(group, group, interruptOnCancel=True)
        try:
            df.write.mode("overwrite").parquet(str(path))
        except BaseException as err:  # noqa: BLE001  (reported below, or expected after a cancel)
            outcome["error"] = err

    started = time.perf_counter()
    worker = InheritableThread(target=run)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        spark.sparkContext.cancelJobGroup(group)
        worker.join()
        return None
    if "error" in outcome:
        raise outcome["error"]
    return time.perf_counter() - started


def _found_pairs(spark: SparkSession, path: Path, phones: DataFrame) -> DataFrame:
    """A method's contacts as (case, true person): an unowned phone counts as the person carrying it."""
    found = spark.read.parquet(str(path))
    carried = phones.select(
        F.col("phone_token").alias("contact_phone_token"), F.col("person_id").alias("_carrier")
    )
    return (
        found.join(carried, "contact_phone_token", "left")
        .select("case_person_id", F.coalesce("contact_person_id", "_carrier").alias("other"))
        .where(F.col("other") != F.col("case_person_id"))  # the case's own unowned phone: not a contact
        .distinct()
    )


def _scores(
    found: DataFrame, truth: DataFrame, d: float, t: int, column: str | None = None
) -> tuple[int, int, float, float]:
    """Contacts found, true pairs, recall and precision; truth: ``min_<d>`` (or ``column``) >= ``t``."""
    true = truth.where(F.col(column or f"min_{int(d)}") >= t).select("case_person_id", "other")
    n_found, n_true = found.count(), true.count()
    hit = found.join(true, ["case_person_id", "other"]).count()
    return n_found, n_true, hit / max(n_true, 1), hit / max(n_found, 1)


def _evaluate(found: DataFrame, truth: DataFrame | None, p: ContactParameters) -> dict[str, float | int]:
    """Scores of one method's contacts at ``p``'s D and T, and its recall of what the phones could see."""
    if truth is None:
        nan = float("nan")
        return {"found": found.count(), "true": 0, "recall": nan, "recall_seen": nan, "precision": nan}
    found = found.cache()
    got, true, recall, precision = _scores(found, truth, p.distance_m, p.min_minutes)
    _, _, recall_seen, _ = _scores(found, truth, p.distance_m, p.min_minutes, column="seen_30")
    found.unpersist()
    return {"found": got, "true": true, "recall": recall, "recall_seen": recall_seen, "precision": precision}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pings", type=int, nargs="+", default=[1_000_000], help="pings to generate (each size)"
    )
    parser.add_argument("--cases", type=int, default=1000, help="cases")
    parser.add_argument("--days", type=int, default=1, help="days the pings span")
    parser.add_argument(
        "--baseline-limit", type=float, default=600, help="seconds before a baseline is stopped"
    )
    parser.add_argument("--no-baseline", action="store_true", help="time the detector only")
    parser.add_argument("--sweep", action="store_true", help="also recall/precision as D and T vary")
    parser.add_argument(
        "--no-truth", action="store_true", help="skip the truth (minute paths of everyone: heavy at 50 M)"
    )
    parser.add_argument("--work", help="work folder (default: a temporary one, removed afterwards)")
    args = parser.parse_args()
    work_root = Path(args.work or tempfile.mkdtemp(prefix="healthlake-epidemic-bench-"))
    cfg = load_config(
        overrides={"lake_root": str(work_root / "lake"), "spark": {"conf": {"spark.driver.memory": "8g"}}}
    )
    spark = get_spark("epidemic-benchmark", cfg)
    cores = os.cpu_count() or 1
    params = ContactParameters.preset("close", reference_lat=LAT0)
    rows: list[dict] = []
    sweeps: list[tuple] = []
    for n in args.pings:
        work = work_root / f"n{n}"
        shutil.rmtree(work, ignore_errors=True)
        city = city_for(n, args.cases, args.days)
        started = time.perf_counter()
        generate(spark, city, work)
        pings = spark.read.parquet(str(work / "pings"))
        phones = spark.read.parquet(str(work / "phones"))
        owners = phones.where(~F.col("unowned")).select("phone_token", "person_id")
        cases = spark.read.parquet(str(work / "cases"))
        records = pings.count()
        print(
            f"\n{records:,} pings of {city.phones:,} phones ({city.persons:,} persons), "
            f"{city.cases:,} cases, {args.days} day(s); generated in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        # A case none of whose phones is in any record cannot be traced: its pairs are left out of the truth.
        traceable = cases.join(
            owners.select(F.col("person_id").alias("case_person_id")), "case_person_id", "semi"
        )
        truth = None if args.no_truth else truth_minutes(spark, city, traceable, work).cache()
        if truth is not None:
            print(
                f"truth: {truth.count():,} (case, person) pairs within {max(SWEEP_D):g} m at some minute; "
                f"{city.cases - traceable.count()} case(s) without a known phone",
                flush=True,
            )
        # Warm-up (JIT, planning paths): the detector on a tenth of the phones, not timed.
        sample = pings.where(F.substring("phone_token", -1, 1) == "7")
        close_contacts(sample, cases, owners, params).write.format("noop").mode("overwrite").save()

        seconds = _timed_write(spark, close_contacts(pings, cases, owners, params), work / "contacts")
        assert seconds is not None
        print(f"close_contacts: {seconds:.1f} s", flush=True)
        scored = _evaluate(_found_pairs(spark, work / "contacts", phones), truth, params)
        rows.append(
            {"method": "close_contacts", "pings": records, "cases": city.cases, "s": seconds, **scored}
        )
        if not args.no_baseline:
            for name, bucketed in (("naive time-range join", False), ("naive, 5-min time buckets", True)):
                path = work / ("naive_bucketed" if bucketed else "naive")
                naive = naive_contacts(pings, cases, owners, params, bucketed=bucketed)
                took = _timed_write(spark, naive, path, args.baseline_limit)
                row = {
                    "method": name,
                    "pings": records,
                    "cases": city.cases,
                    "s": took,
                    "detector_s": seconds,
                }
                if took is None:
                    print(f"{name}: stopped after {args.baseline_limit:.0f} s", flush=True)
                else:
                    print(f"{name}: {took:.1f} s", flush=True)
                    row.update(_evaluate(_found_pairs(spark, path, phones), truth, params))
                rows.append(row)
        if args.sweep and truth is not None:
            for d in SWEEP_D:
                for t in SWEEP_T:
                    swept = ContactParameters.preset("close", reference_lat=LAT0, distance_m=d, min_minutes=t)
                    path = work / f"sweep_{int(d)}_{t}"
                    took = _timed_write(spark, close_contacts(pings, cases, owners, swept), path)
                    got, true, recall, precision = _scores(_found_pairs(spark, path, phones), truth, d, t)
                    sweeps.append((records, d, t, got, true, recall, precision, took))
        if truth is not None:
            truth.unpersist()

    print(
        f"\nclose contacts benchmark (D = {params.distance_m:g} m, T = {params.min_minutes} min, "
        f"step {params.step_minutes} min); {cores} cores, Spark {spark.version}"
    )
    head = f"{'method':<27}{'pings':>11}{'cases':>6}{'contacts':>9}{'seconds':>9}{'pings/s':>9}{'/core':>8}"
    print(head + f"{'speed-up':>9}{'truth':>7}{'recall':>7}{'(seen)':>7}{'precision':>10}")
    for r in rows:
        line = f"{r['method']:<27}{r['pings']:>11,}{r['cases']:>6,}"
        if r["s"] is None:
            cap = f"> {args.baseline_limit:.0f}"
            speed = f"> {args.baseline_limit / r['detector_s']:.1f}"
            print(line + f"{'—':>9}{cap:>9}{'—':>9}{'—':>8}{speed:>9}{'—':>7}{'—':>7}{'—':>7}{'—':>10}")
            continue
        speed = f"{r['s'] / r['detector_s']:.1f}" if "detector_s" in r else ""
        rate = r["pings"] / r["s"]
        print(
            line + f"{r['found']:>9,}{r['s']:>9.1f}{rate:>9,.0f}{rate / cores:>8,.0f}"
            f"{speed:>9}{r['true']:>7,}{r['recall']:>7.3f}{r['recall_seen']:>7.3f}{r['precision']:>10.3f}"
        )
    print(
        "recall (seen): against the true pairs within D for T minutes while both had a phone on; "
        "speed-up: baseline s / close_contacts s"
    )
    if sweeps:
        print("\nsweep: close_contacts against the truth of the same D and T")
        print(
            f"{'pings':>12}{'D m':>6}{'T min':>7}{'contacts':>10}{'truth':>8}{'recall':>8}"
            f"{'precision':>10}{'seconds':>9}"
        )
        for records, d, t, got, true, recall, precision, took in sweeps:
            print(
                f"{records:>12,}{d:>6g}{t:>7}{got:>10,}{true:>8,}{recall:>8.3f}{precision:>10.3f}{took:>9.1f}"
            )
    if not args.work:
        shutil.rmtree(work_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
