"""Generate a synthetic region: landing-zone files per institution and day, plus the ground truth.

The driver plans the region (areas, institutions, shards, outbreak: all small) and Spark runs one task per
shard; each task simulates its residents and writes its own landing files and truth parts, so generation
scales with the cluster. Tasks write with plain file I/O, so ``landing`` and ``truth`` must be paths that
every executor can reach (a local folder in local mode, a shared mount on a cluster).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from healthlake.synth.events import OutbreakPlan, ShardEvents, Simulator
from healthlake.synth.feeds import FeedEmitter
from healthlake.synth.outbreak import plan_outbreak
from healthlake.synth.population import Person, generate_persons
from healthlake.synth.region import Region, Shard, build_region

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession

    from healthlake.config import SynthSettings

log = logging.getLogger(__name__)

FEEDS = ("fhir", "hl7v2", "csv", "public_health", "location")
DEFECTS = (
    "duplicate",
    "update",
    "cancel",
    "name_typo",
    "homophone",
    "id_transposed",
    "id_missing",
    "icd_no_dot",
    "icd_lower",
    "late_file",
    "malformed",
    "ping_no_phone",
    "test_no_person",
    "pool_size_zero",
)
# Residents are generated relative to a fixed day, so that later windows (another --start) meet the
# same people: the region is one population observed over successive windows.
POPULATION_REFERENCE_DAY = dt.date(2026, 1, 1)


def _truth_schemas() -> dict[str, Any]:
    import pyarrow as pa

    return {
        "persons": pa.schema(
            [
                ("person_id", pa.string()),
                ("national_id", pa.string()),
                ("name", pa.string()),
                ("sex", pa.string()),
                ("birth_date", pa.date32()),
                ("phone", pa.string()),
                ("area_code", pa.string()),
                ("township_code", pa.string()),
                ("household_id", pa.string()),
                ("address", pa.string()),
                ("insurance_no", pa.string()),
                ("conditions", pa.list_(pa.string())),
            ]
        ),
        "patient_records": pa.schema(
            [
                ("institution_id", pa.string()),
                ("source_patient_id", pa.string()),
                ("person_id", pa.string()),
                ("keyed_name", pa.string()),
                ("keyed_national_id", pa.string()),
                ("defects", pa.list_(pa.string())),
            ]
        ),
        "encounters": pa.schema(
            [
                ("institution_id", pa.string()),
                ("source_encounter_id", pa.string()),
                ("person_id", pa.string()),
                ("encounter_class", pa.string()),
                ("start_time", pa.timestamp("us")),
                ("end_time", pa.timestamp("us")),
                ("department", pa.string()),
                ("primary_diagnosis", pa.string()),
                ("cancelled", pa.bool_()),
                ("readmission_of", pa.string()),
            ]
        ),
        "readmissions": pa.schema(
            [
                ("institution_id", pa.string()),
                ("source_encounter_id", pa.string()),
                ("person_id", pa.string()),
                ("readmitted_30d", pa.bool_()),
                ("true_risk", pa.float64()),
                ("censored", pa.bool_()),
            ]
        ),
        "followups": pa.schema(
            [
                ("institution_id", pa.string()),
                ("followup_id", pa.string()),
                ("person_id", pa.string()),
                ("disease", pa.string()),
                ("followup_time", pa.timestamp("us")),
                ("sbp", pa.int32()),
                ("dbp", pa.int32()),
                ("fasting_glucose", pa.float64()),
                ("true_risk_uncontrolled", pa.float64()),
                ("uncontrolled", pa.bool_()),
            ]
        ),
        "procedures": pa.schema(
            [
                ("institution_id", pa.string()),
                ("source_record_id", pa.string()),
                ("person_id", pa.string()),
                ("source_encounter_id", pa.string()),
                ("code", pa.string()),
                ("display", pa.string()),
                ("time", pa.timestamp("us")),
                ("end_time", pa.timestamp("us")),
            ]
        ),
        "allergies": pa.schema(
            [
                ("institution_id", pa.string()),
                ("source_record_id", pa.string()),
                ("person_id", pa.string()),
                ("source_encounter_id", pa.string()),
                ("code", pa.string()),
                ("display", pa.string()),
                ("category", pa.string()),
                ("status", pa.string()),
                ("time", pa.timestamp("us")),
            ]
        ),
        "deliveries": pa.schema(
            [
                ("entity", pa.string()),
                ("institution_id", pa.string()),
                ("source_record_id", pa.string()),
                ("source_file", pa.string()),
                ("record_offset", pa.int32()),
                ("copy", pa.int32()),
                ("malformed", pa.bool_()),
            ]
        ),
        "contacts": pa.schema(
            [
                ("case_person_id", pa.string()),
                ("contact_person_id", pa.string()),
                ("via", pa.string()),
                ("exposure_time", pa.timestamp("us")),
            ]
        ),
        "trajectories": pa.schema(
            [
                ("person_id", pa.string()),
                ("start", pa.timestamp("us")),
                ("end", pa.timestamp("us")),
                ("lat_start", pa.float64()),
                ("lon_start", pa.float64()),
                ("lat_end", pa.float64()),
                ("lon_end", pa.float64()),
                ("place_kind", pa.string()),
                ("place_id", pa.string()),
            ]
        ),
        "phones": pa.schema([("person_id", pa.string()), ("phone", pa.string()), ("pings", pa.bool_())]),
        "cases": pa.schema(
            [
                ("person_id", pa.string()),
                ("infected_at", pa.timestamp("us")),
                ("onset_time", pa.timestamp("us")),
                ("first_positive_sample_time", pa.timestamp("us")),
                ("reported_at", pa.timestamp("us")),
                ("isolation_start", pa.timestamp("us")),
            ]
        ),
        "nat_pools": pa.schema(
            [
                ("institution_id", pa.string()),
                ("pool_id", pa.string()),
                ("person_id", pa.string()),
                ("pool_positive", pa.bool_()),
                ("retest_sample_time", pa.timestamp("us")),
            ]
        ),
        "isolation": pa.schema(
            [
                ("institution_id", pa.string()),
                ("order_id", pa.string()),
                ("person_id", pa.string()),
                ("category", pa.string()),
                ("place_type", pa.string()),
                ("start_time", pa.timestamp("us")),
                ("planned_end_time", pa.timestamp("us")),
                ("released_at", pa.timestamp("us")),
            ]
        ),
    }


def _write_part(truth: str, table: str, part: str, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = os.path.join(truth, f"{table}.parquet")
    os.makedirs(folder, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=_truth_schemas()[table]), os.path.join(folder, part))


def _truth_rows(persons: list[Person], events: ShardEvents, emitter: FeedEmitter, t_end: dt.datetime) -> dict:
    persons_rows = [
        {
            "person_id": p.person_id,
            "national_id": p.national_id,
            "name": p.name,
            "sex": p.sex,
            "birth_date": p.birth_date,
            "phone": p.phone,
            "area_code": p.county_code,
            "township_code": p.township_code,
            "household_id": p.household_id,
            "address": p.address,
            "insurance_no": p.insurance_no,
            "conditions": list(p.conditions),
        }
        for p in persons
    ]
    records = [
        {
            "institution_id": sp.institution_id,
            "source_patient_id": sp.patient_no,
            "person_id": sp.person.person_id,
            "keyed_name": sp.name,
            "keyed_national_id": sp.national_id,
            "defects": list(sp.defects),
        }
        for sp in emitter.patients.values()
    ]
    encounters, readmissions = [], []
    for e in events.encounters:
        encounters.append(
            {
                "institution_id": e.institution.institution_id,
                "source_encounter_id": e.encounter_id,
                "person_id": e.person.person_id,
                "encounter_class": e.cls,
                "start_time": e.start,
                "end_time": e.end,
                "department": e.updated_department or e.department,
                "primary_diagnosis": e.diagnoses[0][0],
                "cancelled": e.cancel_time is not None and e.cancel_time < t_end,
                "readmission_of": e.readmission_of,
            }
        )
        if e.cls == "IMP" and e.true_risk is not None:
            readmissions.append(
                {
                    "institution_id": e.institution.institution_id,
                    "source_encounter_id": e.encounter_id,
                    "person_id": e.person.person_id,
                    "readmitted_30d": e.readmitted,
                    "true_risk": e.true_risk,
                    "censored": e.end is None or e.end + dt.timedelta(days=30) > t_end,
                }
            )
    followups = [
        {
            "institution_id": f.institution.institution_id,
            "followup_id": f.followup_id,
            "person_id": f.person.person_id,
            "disease": f.disease,
            "followup_time": f.time,
            "sbp": f.sbp,
            "dbp": f.dbp,
            "fasting_glucose": f.glucose,
            "true_risk_uncontrolled": f.true_risk,
            "uncontrolled": f.uncontrolled,
        }
        for f in events.followups
    ]
    # Keyed as the feeds carry them (emitter.*_record_id); times are China local time.
    procedures = [
        {
            "institution_id": e.institution.institution_id,
            "source_record_id": emitter.procedure_record_id(e, n),
            "person_id": e.person.person_id,
            "source_encounter_id": e.encounter_id,
            "code": proc.code,
            "display": proc.display,
            "time": proc.start,
            "end_time": proc.end,
        }
        for e in events.encounters
        for n, proc in enumerate(e.procedures, start=1)
    ]
    allergies = [
        {
            "institution_id": e.institution.institution_id,
            "source_record_id": emitter.allergy_record_id(e, n),
            "person_id": e.person.person_id,
            "source_encounter_id": e.encounter_id,
            "code": a.allergen.code,
            "display": a.allergen.display,
            "category": a.allergen.category,
            "status": a.status,
            "time": a.recorded,
        }
        for e in events.encounters
        for n, a in enumerate(e.allergies, start=1)
    ]
    deliveries = [
        {
            "entity": d.key[0],
            "institution_id": d.key[1],
            "source_record_id": d.key[2],
            "source_file": d.source_file,
            "record_offset": d.record_offset,
            "copy": d.copy,
            "malformed": d.malformed,
        }
        for d in emitter.deliveries
    ]
    by_index = {p.index: p for p in persons}
    trajectories = [
        {
            "person_id": by_index[idx].person_id,
            "start": start,
            "end": end,
            "lat_start": lat0,
            "lon_start": lon0,
            "lat_end": lat1,
            "lon_end": lon1,
            "place_kind": kind,
            "place_id": place_id,
        }
        for idx, segs in events.paths.items()
        for start, end, lat0, lon0, lat1, lon1, kind, place_id in segs
    ]
    phones = [
        {"person_id": p.person_id, "phone": phone, "pings": p.index in events.paths}
        for p in persons
        for phone in (p.phone, p.phone2)
        if phone is not None
    ]
    return {
        "persons": persons_rows,
        "trajectories": trajectories,
        "phones": phones,
        "patient_records": records,
        "encounters": encounters,
        "readmissions": readmissions,
        "followups": followups,
        "procedures": procedures,
        "allergies": allergies,
        "deliveries": deliveries,
    }


def run_shard(
    region: Region, settings: SynthSettings, shard: Shard, outbreak: OutbreakPlan, landing: str, truth: str
) -> dict[str, Any]:
    """Simulate one shard, write its landing files and truth parts, and return its counts."""
    persons = generate_persons(
        region, shard, settings.seed, POPULATION_REFERENCE_DAY, settings.second_phone_share
    )
    events = Simulator(region, settings, shard.shard_id, outbreak).run(persons)
    emitter = FeedEmitter(region, settings, shard.shard_id)
    emitter.emit_registry(persons)
    emitter.emit_health_records(persons)
    for enc in events.encounters:
        emitter.emit_encounter(enc)
    for f in events.followups:
        emitter.emit_followup(f)
    for n in events.nat_tests:
        emitter.emit_nat_test(n)
    for v in events.vaccinations:
        emitter.emit_vaccination(v)
    if shard.shard_id == outbreak.shard_id:
        by_index = {p.index: p for p in persons}
        labs = {i.institution_id: i for i in region.institutions if i.kind == "cdc_lab"}
        for pool in outbreak.pools:
            emitter.emit_pool(labs[pool.lab_id], pool)
        for idx, orders in sorted(outbreak.isolation.items()):
            for order in orders:
                emitter.emit_isolation_order(labs[order.cdc_id], by_index[idx], order)
    telecom = next(i for i in region.institutions if i.kind == "telecom")
    for pings in events.pings:
        emitter.emit_pings(telecom, pings)
    files = emitter.write(landing)
    # Encounter-level defects are drawn by the simulator; count those whose message went out.
    for e in events.encounters:
        emitter.eligible["update"] += 1
        emitter.eligible["cancel"] += 1
        emitter.defects["update"] += e.update_time is not None and e.update_time < emitter.t_end
        emitter.defects["cancel"] += e.cancel_time is not None and e.cancel_time < emitter.t_end
    window = f"{settings.start:%Y%m%d}"
    for table, rows in _truth_rows(persons, events, emitter, emitter.t_end).items():
        part = (
            f"part-{shard.shard_id:05d}.parquet"
            if table == "persons"
            else f"part-{window}-{shard.shard_id:05d}.parquet"
        )
        _write_part(truth, table, part, rows)
    feeds: dict[str, Counter[str]] = {f: Counter() for f in FEEDS}
    for file in files:
        c = feeds[file["feed"]]
        c["files"] += 1
        c["records"] += file["records"]
        c["malformed"] += file["malformed"]
        c["duplicates"] += file["duplicates"]
        c["late_files"] += file["late"]
    return {
        "feeds": {k: dict(v) for k, v in feeds.items()},
        "defects": dict(emitter.defects),
        "eligible": dict(emitter.eligible),
        "persons": len(persons),
    }


def _write_reference(region: Region, landing: str, start: dt.date) -> dict[str, int]:
    """Master data the platform keeps: the area hierarchy and the institution register (UTF-8 CSV)."""
    folder = os.path.join(landing, "reference", "R" + region.areas[0].code[:2], start.isoformat())
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "areas.csv"), "w", encoding="utf-8") as fh:
        fh.write("area_code,name,level,parent_code,lat,lon\n")
        for a in region.areas:
            fh.write(f"{a.code},{a.name},{a.level},{a.parent_code or ''},{a.lat:.6f},{a.lon:.6f}\n")
    with open(os.path.join(folder, "institutions.csv"), "w", encoding="utf-8") as fh:
        fh.write("institution_id,name,kind,level,area_code,county_code,city_code,feed\n")
        for i in region.institutions:
            fh.write(
                f"{i.institution_id},{i.name},{i.kind},{i.level},{i.area_code},{i.county_code or ''},"
                f"{i.city_code},{i.feed}\n"
            )
    return {
        "files": 2,
        "records": len(region.areas) + len(region.institutions),
        "malformed": 0,
        "duplicates": 0,
    }


def check_paths(landing: str, truth: str) -> None:
    """Raise a one-line UsageError unless landing and truth are two separate folders (or can be)."""
    from healthlake.config import is_uri
    from healthlake.errors import UsageError

    for path in (landing, truth):
        if is_uri(path):
            raise UsageError(f"{path}: generate writes with file I/O, give a local or mounted folder path")
    land, tru = os.path.abspath(landing), os.path.abspath(truth)
    if tru == land or tru.startswith(land + os.sep):
        raise UsageError(
            f"--truth ({truth}) must not be inside --landing ({landing}): the pipeline reads landing"
        )
    if land.startswith(tru + os.sep):
        raise UsageError(f"--landing ({landing}) must not be inside --truth ({truth})")
    for path in (landing, truth):
        if os.path.exists(path) and not os.path.isdir(path):
            raise UsageError(f"{path} is not a folder: give a folder path")


def generate_region(spark: SparkSession, settings: SynthSettings, landing: str, truth: str) -> dict[str, Any]:
    """Generate a synthetic province into ``landing`` and its ground truth into ``truth``.

    Args:
        spark: The session whose executors run the shards.
        settings: ``SynthSettings`` (people, days, start, seed, persons_per_shard, pings, rates).
        landing: Landing-zone root; files go to ``<landing>/<feed>/<institution_id>/<yyyy-mm-dd>/``.
        truth: Folder for ``manifest.json`` and the truth Parquet tables; never inside ``landing``.

    Returns:
        The manifest (also written to ``<truth>/manifest.json``).
    """
    check_paths(landing, truth)
    started = time.monotonic()
    os.makedirs(landing, exist_ok=True)
    os.makedirs(truth, exist_ok=True)
    landing, truth = os.path.abspath(landing), os.path.abspath(truth)
    region = build_region(settings.people, settings.seed, settings.persons_per_shard, settings.rates)
    outbreak, outbreak_truth = plan_outbreak(region, settings, POPULATION_REFERENCE_DAY)
    contacts = outbreak_truth.contacts
    log.info(
        "generate: %d people, %d days from %s, %d institutions, %d shards, %d outbreak cases, %d contacts",
        settings.people,
        settings.days,
        settings.start,
        len(region.institutions),
        len(region.shards),
        len(outbreak_truth.cases),
        len(contacts),
    )
    for table in ("contacts", "cases", "nat_pools", "isolation"):
        _write_part(truth, table, f"part-{settings.start:%Y%m%d}.parquet", getattr(outbreak_truth, table))
    reference = _write_reference(region, landing, settings.start)

    # Largest shards first, so that the last tasks to run are short ones (less idle time at the end).
    order = sorted(range(len(region.shards)), key=lambda i: (-region.shards[i].n_persons, i))

    def run_partition(batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        for batch in batches:
            out = [
                json.dumps(run_shard(region, settings, region.shards[order[i]], outbreak, landing, truth))
                for i in batch["id"].tolist()
            ]
            yield pd.DataFrame({"summary": out})

    # One task per shard in a single job; only the small per-shard summaries (a few counters each) come
    # back to the driver. A side thread reports progress from Spark's status tracker meanwhile.
    n = len(region.shards)
    with _progress(spark, "generate", n, started):
        rows = spark.range(0, n, 1, n).mapInPandas(run_partition, "summary string").collect()
    summaries = [json.loads(r.summary) for r in rows]
    manifest = _manifest(settings, region, summaries, reference, len(contacts))
    with open(os.path.join(truth, "manifest.json"), "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, ensure_ascii=False, indent=2, sort_keys=True)
    log.info("generate: done in %.1f s", time.monotonic() - started)
    return manifest


@contextlib.contextmanager
def _progress(
    spark: SparkSession, what: str, total: int, started: float, every: float = 10.0
) -> Iterator[None]:
    """Log the running job's completed tasks every ``every`` seconds until the block ends."""
    tracker = spark.sparkContext.statusTracker()
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(every):
            stages = [tracker.getStageInfo(i) for i in tracker.getActiveStageIds()]
            done = sum(s.numCompletedTasks for s in stages if s is not None)
            log.info("%s: %d/%d shards done, %.0f s", what, done, total, time.monotonic() - started)

    thread = threading.Thread(target=report, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _manifest(
    settings: SynthSettings,
    region: Region,
    summaries: list[dict[str, Any]],
    reference: dict[str, int],
    n_contacts: int,
) -> dict[str, Any]:
    feeds: dict[str, Counter[str]] = {f: Counter() for f in FEEDS}
    defects: Counter[str] = Counter()
    eligible: Counter[str] = Counter()
    for s in summaries:
        for feed, counts in s["feeds"].items():
            feeds[feed].update(counts)
        defects.update(s["defects"])
        eligible.update(s["eligible"])
    rates = (
        settings.rates.model_dump() if hasattr(settings.rates, "model_dump") else dict(vars(settings.rates))
    )
    return {
        "seed": settings.seed,
        "people": settings.people,
        "days": settings.days,
        "start": settings.start.isoformat(),
        "rates": rates,
        "feeds": {
            f: {
                k: int(feeds[f].get(k, 0))
                for k in ("files", "records", "malformed", "duplicates", "late_files")
            }
            for f in FEEDS
        },
        "reference": reference,
        "defects": {
            d: {"count": int(defects.get(d, 0)), "eligible": int(eligible.get(d, 0))} for d in DEFECTS
        },
        "institutions": len(region.institutions),
        "areas": {
            lvl: sum(a.level == lvl for a in region.areas)
            for lvl in ("province", "city", "county", "township")
        },
        "shards": len(region.shards),
        "outbreak_contacts": n_contacts,
    }
