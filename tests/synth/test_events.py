"""The simulation gives models a real signal: readmissions follow age, conditions and length of stay."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from healthlake.config import load_config
from healthlake.synth.events import OutbreakPlan, Simulator, under_management
from healthlake.synth.feeds import FeedEmitter
from healthlake.synth.population import generate_persons
from healthlake.synth.region import Shard, build_region


def test_readmission_risk_depends_on_age_conditions_and_stay() -> None:
    settings = load_config(overrides={"synth": {"people": 10_000, "days": 180, "ping_share": 0.0}}).synth
    region = build_region(settings.people, settings.seed, settings.persons_per_shard, settings.rates)
    county = region.shards[0].county_code
    persons = generate_persons(region, Shard(0, county, 0, 1, 0, 10_000), settings.seed, settings.start)
    events = Simulator(region, settings, 0, OutbreakPlan({}, {}, {})).run(persons)
    stays = pd.DataFrame(
        {
            "age": e.person.age_on(settings.start),
            "chronic": len(e.person.conditions),
            "los": ((e.end - e.start).total_seconds() / 86400) if e.end else None,
            "risk": e.true_risk,
            "readmitted": e.readmitted,
            "observed": e.end is not None
            and e.end + dt.timedelta(days=30)
            <= dt.datetime.combine(settings.start, dt.time()) + dt.timedelta(days=settings.days),
        }
        for e in events.encounters
        if e.cls == "IMP" and e.true_risk
    )
    assert len(stays) > 300
    assert stays.loc[stays["age"] >= 70, "risk"].mean() > stays.loc[stays["age"] < 50, "risk"].mean()
    assert stays.loc[stays["chronic"] >= 2, "risk"].mean() > stays.loc[stays["chronic"] == 0, "risk"].mean()
    observed = stays[stays["observed"]]
    high = observed["risk"] >= observed["risk"].quantile(0.75)
    low = observed["risk"] <= observed["risk"].quantile(0.25)
    assert observed.loc[high, "readmitted"].mean() > 1.5 * observed.loc[low, "readmitted"].mean()
    assert 0.05 <= observed["readmitted"].mean() <= 0.35
    # Readmissions are real stays in the data, some at another hospital.
    readmissions = [e for e in events.encounters if e.readmission_of]
    assert readmissions and all(e.cls == "IMP" for e in readmissions)
    assert len({e.institution.institution_id for e in readmissions}) > 1


def test_chronic_followups_are_regular_for_most_registered_patients() -> None:
    settings = load_config(overrides={"synth": {"people": 4_000, "days": 365, "ping_share": 0.0}}).synth
    region = build_region(settings.people, settings.seed, settings.persons_per_shard, settings.rates)
    county = region.shards[0].county_code
    persons = generate_persons(region, Shard(0, county, 0, 1, 0, 4_000), settings.seed, settings.start)
    sim = Simulator(region, settings, 0, OutbreakPlan({}, {}, {}))
    sim.run(persons)
    counts = pd.Series(
        [f.person.index for f in sim.events.followups if f.disease == "hypertension"]
    ).value_counts()
    hypertensive = sum("hypertension" in p.conditions for p in persons)
    assert 0.5 * hypertensive <= len(counts) <= 0.9 * hypertensive  # ~75 % registered for follow-up
    standard = (counts >= 4).mean()  # 规范管理: at least four follow-ups a year
    assert 0.4 <= standard <= 0.9


def test_followup_history_comes_with_the_first_day_and_managed_residents_have_health_records() -> None:
    settings = load_config(
        overrides={"synth": {"people": 1_000, "days": 2, "ping_share": 0.0, "followup_history_days": 400}}
    ).synth
    region = build_region(settings.people, settings.seed, settings.persons_per_shard, settings.rates)
    county = region.shards[0].county_code
    persons = generate_persons(region, Shard(0, county, 0, 1, 0, 1_000), settings.seed, settings.start)
    sim = Simulator(region, settings, 0, OutbreakPlan({}, {}, {}))
    sim.run(persons)
    start = dt.datetime.combine(settings.start, dt.time())
    times = [f.time for f in sim.events.followups]
    assert min(times) >= start - dt.timedelta(days=400) and max(times) < start + dt.timedelta(days=2)
    # The history spans the 12 months the management indicators count: most patients have 4+ follow-ups.
    per_patient = pd.Series([(f.person.index, f.disease) for f in sim.events.followups]).value_counts()
    assert (per_patient >= 4).mean() >= 0.5
    emitter = FeedEmitter(region, settings, 0)
    emitter.emit_health_records(persons)
    # A centre manages only residents it keeps a health record for.
    thc = {i.area_code: i.institution_id for i in region.institutions if i.kind == "township_health_centre"}
    managed = [p for p in persons if under_management(settings.seed, p)]
    assert managed and all((thc[p.township_code], p.index) in emitter.patients for p in managed)
    assert len(emitter.patients) < len(persons)  # others may have none
    for f in sim.events.followups:
        emitter.emit_followup(f)
    days = {b.day for b in emitter.buckets.values() if b.name.startswith("followups_")}
    assert days <= {0, 1} and 0 in days  # the backfill goes out with the first day's extract
