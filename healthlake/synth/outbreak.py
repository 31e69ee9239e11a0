"""A small infectious outbreak spreading through co-location, planned on the driver.

The outbreak stays inside the largest shard, so the plan is small (tens of cases, a few hundred contacts)
and each task only looks up the people it generates. Close contacts are, by definition here, people who
spent 30 minutes at the same venue as an infectious case, or who live in a case's household.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from typing import TYPE_CHECKING

from healthlake.synth.events import OutbreakPlan
from healthlake.synth.population import generate_persons
from healthlake.synth.region import Region

if TYPE_CHECKING:
    from healthlake.config import SynthSettings

INFECTIOUS_DAYS = 5
ATTACK_RATE = 0.3


def plan_outbreak(
    region: Region, settings: SynthSettings, population_day: dt.date
) -> tuple[OutbreakPlan, list[dict[str, object]]]:
    """Plan cases, venue visits, tests and true close contacts.

    Returns:
        The plan each task consults, and the true contact pairs (case, contact, via, exposure time).
    """
    empty = OutbreakPlan({}, {}, {})
    shard = max(region.shards, key=lambda s: (s.n_persons, -s.shard_id))
    persons = generate_persons(region, shard, settings.seed, population_day)
    start = settings.start
    t0 = dt.datetime.combine(start, dt.time())
    t_end = t0 + dt.timedelta(days=settings.days)
    candidates = [p for p in persons if p.phone and 12 <= p.age_on(start) <= 80]
    if len(candidates) < 20 or settings.days < 3:
        return empty, []
    rng = random.Random(f"outbreak:{settings.seed}")
    county = region.area(shard.county_code)
    venues = [
        (round(county.lat + rng.uniform(-0.03, 0.03), 6), round(county.lon + rng.uniform(-0.03, 0.03), 6))
        for _ in range(8)
    ]
    households: dict[str, list[int]] = defaultdict(list)
    for p in persons:
        households[p.household_id].append(p.index)
    by_index = {p.index: p for p in persons}
    max_cases = max(5, len(persons) // 100)

    infected: dict[int, dt.datetime] = {
        rng.choice(candidates).index: t0 + dt.timedelta(hours=rng.randint(0, 12))
    }
    queue = list(infected)
    venue_visits: dict[int, list[tuple[dt.datetime, float, float]]] = defaultdict(list)
    tests: dict[int, list[tuple[dt.datetime, bool]]] = defaultdict(list)
    fever_visits: dict[int, dt.datetime] = {}
    onset: dict[int, dt.datetime] = {}
    contacts: dict[tuple[int, int], tuple[str, dt.datetime]] = {}
    traced: list[tuple[int, dt.datetime]] = []  # (contact, time the case was confirmed)

    while queue:
        case = queue.pop(0)
        # The index case falls ill on day 3, so that the outbreak always gets going within the window.
        onset[case] = infected[case] + dt.timedelta(days=3 if not onset else rng.uniform(2, 4))
        confirmed = onset[case] + dt.timedelta(hours=rng.randint(4, 24))
        if onset[case] < t_end:
            fever_visits[case] = onset[case]
        if confirmed < t_end:
            tests[case].append((confirmed - dt.timedelta(hours=6), True))
        last = min(infected[case] + dt.timedelta(days=INFECTIOUS_DAYS), confirmed, t_end)
        day = infected[case] + dt.timedelta(days=1)
        while day < last:
            if len(onset) == 1 or rng.random() < 0.6:
                when = day.replace(hour=rng.randint(8, 19), minute=rng.randrange(60), second=0, microsecond=0)
                if when < last:
                    lat, lon = rng.choice(venues)
                    venue_visits[case].append((when, lat, lon))
                    others = [c for c in rng.sample(candidates, min(len(candidates), 9)) if c.index != case]
                    for other in others[: rng.randint(3, 8)]:
                        venue_visits[other.index].append((when, lat, lon))
                        contacts.setdefault((case, other.index), ("venue", when))
                        traced.append((other.index, confirmed))
                        if (
                            other.index not in infected
                            and len(infected) < max_cases
                            and rng.random() < ATTACK_RATE
                        ):
                            infected[other.index] = when
                            queue.append(other.index)
            day += dt.timedelta(days=1)
        for member in households[by_index[case].household_id]:
            if member != case:
                contacts.setdefault((case, member), ("household", infected[case]))
                traced.append((member, confirmed))
    for contact, confirmed in traced:
        when = confirmed + dt.timedelta(hours=rng.randint(12, 36))
        if when < t_end and not any(abs((when - t).total_seconds()) < 86400 for t, _ in tests[contact]):
            positive = contact in onset and when >= onset[contact] - dt.timedelta(days=1)
            tests[contact].append((when, positive))
    pid = {p.index: p.person_id for p in persons}
    truth = [
        {"case_person_id": pid[c], "contact_person_id": pid[o], "via": via, "exposure_time": when}
        for (c, o), (via, when) in sorted(contacts.items())
    ]
    plan = OutbreakPlan(
        {k: tuple(v) for k, v in venue_visits.items()},
        {k: tuple(v) for k, v in tests.items()},
        fever_visits,
    )
    return plan, truth
