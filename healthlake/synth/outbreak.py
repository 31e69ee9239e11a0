"""A small infectious outbreak and the response to it, planned on the driver as a timeline of events.

The outbreak stays inside the largest shard, so the plan is small (tens of cases, a few hundred contacts)
and each task only looks up the people it generates. The index case was infected two days before the
window and falls ill in the small hours of its second day, so that even a two-day window sees its onset,
its report and the isolation that follows.

Events run in time order: an infection schedules the case's venue visits (30 minutes at one of 8 venues
with 3-8 others, some coming with a household member or meeting a friend on the way) and its symptom
onset (a fever-clinic visit, a positive single test). A report isolates the case and traces its contacts:
household members and the venue co-attendees who scanned the venue code (close contacts, 密接:
centralized isolation for 14 days, tested every two days), their household members (secondary contacts,
次密接: 7 days at home) and the neighbours within 250 m of the case's home (risk area, 风险区域: 7 days
at home). Co-attendees who did not scan are left for screening (and the companion search) to find.
Pooled screening (混管, 10 in 1) runs every third day for a share of the county's residents, and for
everyone on the first and third day after the first report; a positive tube's members are re-tested
singly.
"""

from __future__ import annotations

import datetime as dt
import heapq
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from healthlake.synth.events import IsolationOrder, OutbreakPlan, PlannedTest, Pool
from healthlake.synth.mobility import Excursion, Place, metres, offset_place
from healthlake.synth.population import Person, generate_persons
from healthlake.synth.region import Region

if TYPE_CHECKING:
    from healthlake.config import SynthSettings

INFECTIOUS_DAYS = 5
ATTACK_RATE = 0.3
GATHERING_ATTACK_RATE = 0.5
VISIT = dt.timedelta(minutes=30)
BUSY_MARGIN = dt.timedelta(hours=3)  # one person's venue visits are hours apart (no travel is cut short)
POOL_SIZE = 10
ROUTINE_SHARE = 0.3  # of residents in a routine screening round (every third day)
RISK_AREA_M = 250
SCAN_SHARE = 0.7  # of venue visitors who scanned the venue code, so that the CDC can trace them
CATEGORY_RANK = {"risk_area": 0, "secondary_contact": 1, "close_contact": 2, "case": 3}
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


@dataclass
class OutbreakTruth:
    """What really happened, for the truth files (rows as dicts)."""

    contacts: list[dict[str, Any]] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)
    nat_pools: list[dict[str, Any]] = field(default_factory=list)
    isolation: list[dict[str, Any]] = field(default_factory=list)


def plan_outbreak(
    region: Region, settings: SynthSettings, population_day: dt.date
) -> tuple[OutbreakPlan, OutbreakTruth]:
    """Plan cases, venue visits, tests, pools and isolation orders, with their truth."""
    shard = max(region.shards, key=lambda s: (s.n_persons, -s.shard_id))
    persons = generate_persons(region, shard, settings.seed, population_day, settings.second_phone_share)
    start = settings.start
    candidates = [p for p in persons if p.phone and 12 <= p.age_on(start) <= 80]
    if len(candidates) < 20 or settings.days < 2:
        return OutbreakPlan({}, {}, {}), OutbreakTruth()
    sim = _Outbreak(region, settings, shard.shard_id, shard.county_code, persons, candidates)
    sim.run()
    return sim.plan(), sim.truth()


def _hours(rng: random.Random, low: float, high: float) -> dt.timedelta:
    """A random duration between ``low`` and ``high`` hours, in whole seconds (as feeds write times)."""
    return dt.timedelta(seconds=round(rng.uniform(low, high) * 3600))


class _Outbreak:
    def __init__(
        self,
        region: Region,
        settings: SynthSettings,
        shard_id: int,
        county_code: str,
        persons: list[Person],
        candidates: list[Person],
    ) -> None:
        self.s = settings
        self.shard_id = shard_id
        self.t0 = dt.datetime.combine(settings.start, dt.time())
        self.t_end = self.t0 + dt.timedelta(days=settings.days)
        self.rng = random.Random(f"outbreak:{settings.seed}")
        rng = self.rng
        county = region.area(county_code)
        self.county = county
        self.venues = [
            Place(
                "venue",
                f"V{county.code}{k}",
                round(county.lat + rng.uniform(-0.03, 0.03), 6),
                round(county.lon + rng.uniform(-0.03, 0.03), 6),
            )
            for k in range(8)
        ]
        self.hospital = offset_place("hospital", f"DH{county.code}", county.lat, county.lon, 1500, 1500)
        self.hotel = offset_place("isolation_hotel", f"QH{county.code}", county.lat, county.lon, -1800, 1200)
        city = county.parent
        self.lab_id = next(
            i.institution_id for i in region.institutions if i.kind == "cdc_lab" and i.city_code == city
        )
        self.persons = persons
        self.by_index = {p.index: p for p in persons}
        self.candidates = candidates
        self.households: dict[str, list[Person]] = defaultdict(list)
        for p in persons:
            self.households[p.household_id].append(p)
        self.max_cases = max(5, len(persons) // 100)
        self.events: list[tuple[dt.datetime, int, str, tuple]] = []
        self.serial = 0
        self.infected: dict[int, dt.datetime] = {}
        self.onset: dict[int, dt.datetime] = {}
        self.reported: dict[int, dt.datetime] = {}
        self.excursions: dict[int, list[Excursion]] = defaultdict(list)
        self.busy: dict[int, list[tuple[dt.datetime, dt.datetime]]] = defaultdict(list)
        self.met: dict[int, list[tuple[dt.datetime, int, bool]]] = defaultdict(list)
        self.contacts: dict[tuple[int, int], tuple[str, dt.datetime]] = {}
        self.tests: dict[int, list[PlannedTest]] = defaultdict(list)
        self.fever_visits: dict[int, dt.datetime] = {}
        self.pools: list[Pool] = []
        self.orders: dict[int, list[IsolationOrder]] = defaultdict(list)
        self.screen_days: set[int] = set()
        self.index = -1

    # -- the timeline ---------------------------------------------------------------------------------
    def _push(self, when: dt.datetime, kind: str, *args: Any) -> None:
        self.serial += 1
        heapq.heappush(self.events, (when, self.serial, kind, args))

    def run(self) -> None:
        index = self.index = self.rng.choice(self.candidates).index
        # Infected two days before the window: the index case falls ill in the small hours of the second day
        # (fever clinics are open all night), so even a two-day window sees its report and the isolation.
        self._push(self.t0 - 2 * DAY + dt.timedelta(minutes=self.rng.randint(30, 360)), "infect", index)
        for day in range(0, self.s.days, 3):
            self._push(self.t0 + dt.timedelta(days=day, hours=7), "screen", day, False)
        handlers: dict[str, Callable[..., None]] = {
            "infect": self._infect,
            "visit": self._visit,
            "onset": self._onset,
            "report": self._report,
            "isolation_test": self._isolation_test,
            "screen": self._screen,
        }
        while self.events:
            when, _, kind, args = heapq.heappop(self.events)
            if when >= self.t_end:
                break
            handlers[kind](when, *args)

    def _id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.s.start:%y%m%d}{self.shard_id:03d}{self.serial:06d}"

    # -- state ----------------------------------------------------------------------------------------
    def _active_order(self, idx: int, t: dt.datetime) -> IsolationOrder | None:
        """The order a person is under at ``t``, or one issued already that starts later."""
        for o in self.orders.get(idx, ()):
            if o.released_at is None or t < o.released_at:
                return o
        return None

    def _isolated_by(self, idx: int, t: dt.datetime) -> bool:
        """Under an order starting before ``t`` (released or not: once isolated, no venue visits)."""
        return any(o.start <= t for o in self.orders.get(idx, ()))

    def _free(self, idx: int, start: dt.datetime, end: dt.datetime) -> bool:
        if self._isolated_by(idx, end + BUSY_MARGIN):
            return False
        return all(end + BUSY_MARGIN <= a or b <= start - BUSY_MARGIN for a, b in self.busy.get(idx, ()))

    def _detectable(self, idx: int, t: dt.datetime) -> bool:
        """A swab taken at ``t`` is positive: infected over a day ago and at most two days before onset."""
        infected = self.infected.get(idx)
        return infected is not None and t >= infected + DAY and t >= self.onset[idx] - 2 * DAY

    # -- events ---------------------------------------------------------------------------------------
    def _infect(self, t: dt.datetime, idx: int) -> None:
        if idx in self.infected:
            return
        first = not self.infected
        self.infected[idx] = t
        p = self.by_index[idx]
        for m in self.households[p.household_id]:
            if m.index != idx:
                self.contacts.setdefault((idx, m.index), ("household", t))
        # The index case falls ill after three days; the others after two to four.
        self.onset[idx] = t + (3 * DAY if first else _hours(self.rng, 48, 96))
        self._push(self.onset[idx], "onset", idx)
        if first:
            # The gathering, on the first morning of the window, before the index case falls ill.
            self._push(self.t0 + dt.timedelta(hours=9, minutes=self.rng.randrange(120)), "visit", idx)
        for k in range(1, INFECTIOUS_DAYS):
            if self.rng.random() < 0.6:
                day = (t + k * DAY).replace(hour=0, minute=0, second=0, microsecond=0)
                self._push(
                    day + dt.timedelta(hours=self.rng.randint(8, 19), minutes=self.rng.randrange(60)),
                    "visit",
                    idx,
                )

    def _visit(self, when: dt.datetime, case: int) -> None:
        end = when + VISIT
        if when < self.t0 or end + BUSY_MARGIN > self.t_end or not self._free(case, when, end):
            return
        rng = self.rng
        venue = rng.choice(self.venues)
        # The index case's first visit in the window is a gathering (聚集): the outbreak gets going.
        gathering = case == self.index and not self.excursions.get(case)
        drawn = rng.sample(self.candidates, min(len(self.candidates), 16 if gathering else 9))
        others = [c.index for c in drawn if c.index != case and self._free(c.index, when, end)]
        visitors = [case, *others[: rng.randint(8, 15) if gathering else rng.randint(3, 8)]]
        origins: dict[int, Place | None] = dict.fromkeys(visitors)
        if len(visitors) >= 3 and rng.random() < 0.5:
            # Two friends meet a few hundred metres away and walk in together.
            meet = offset_place(
                "meeting_point", f"{venue.place_id}-{self.serial}", venue.lat, venue.lon,
                rng.uniform(-500, 500), rng.uniform(-500, 500),
            )  # fmt: skip
            origins[visitors[1]] = origins[visitors[2]] = meet
        for v in list(visitors):
            if origins[v] is not None or rng.random() >= 0.3:
                continue
            p = self.by_index[v]
            mates = [
                m.index
                for m in self.households[p.household_id]
                if m.index not in origins and m.phone and 12 <= m.age_on(self.s.start) <= 80
                and self._free(m.index, when, end)
            ]  # fmt: skip
            if mates:
                # A household member comes along: they leave home together and walk back together.
                mate = rng.choice(mates)
                visitors.append(mate)
                origins[v] = origins[mate] = Place("home", p.household_id, *p.home)
        for v in visitors:
            self.excursions[v].append(Excursion(venue, when, end, origins[v]))
            self.busy[v].append((when, end))
        infectious = [v for v in visitors if v in self.infected and self.infected[v] + DAY <= when]
        # Who scanned the venue's code (场所码): only they can be traced from the venue.
        scanned = {v: rng.random() < SCAN_SHARE for v in visitors}
        for source in infectious:
            for o in visitors:
                if o != source:
                    self.contacts.setdefault((source, o), ("venue", when))
                    self.met[source].append((when, o, scanned[o]))
        for o in visitors:
            fresh = o not in self.infected and len(self.infected) < self.max_cases
            if fresh and infectious and rng.random() < (GATHERING_ATTACK_RATE if gathering else ATTACK_RATE):
                self._infect(when, o)

    def _onset(self, t: dt.datetime, idx: int) -> None:
        self.fever_visits[idx] = t
        if idx not in self.reported:
            self._test(idx, t + HOUR)

    def _test(self, idx: int, sample: dt.datetime) -> None:
        """A single-tube test; a positive result reports the case."""
        positive = self._detectable(idx, sample)
        report = sample + _hours(self.rng, 4, 12)
        self.tests[idx].append(PlannedTest(sample, report, positive, "single"))
        if positive:
            self._push(report, "report", idx)

    def _order(self, idx: int, category: str, start: dt.datetime, days: int, place: Place | None) -> None:
        """Isolate a person, unless an order of the same or a higher category is running already."""
        active = self._active_order(idx, start)
        if active is not None and CATEGORY_RANK[active.category] >= CATEGORY_RANK[category]:
            return
        if active is not None:  # upgraded (a contact found positive, a secondary contact now close)
            orders = self.orders[idx]
            if active.start >= start:
                orders.remove(active)  # not started yet: replaced
            else:
                released = start if start < self.t_end else None
                orders[orders.index(active)] = replace(active, released_at=released)
        p = self.by_index[idx]
        centralized = place is not None
        where = place if place is not None else Place("home", p.household_id, *p.home)
        planned = start + dt.timedelta(days=days)
        released = planned + _hours(self.rng, 0, 6)
        order = IsolationOrder(
            self._id("GL"),
            self.lab_id,
            idx,
            category,
            "centralized" if centralized else "home",
            where,
            start,
            planned,
            released if released < self.t_end else None,
        )
        self.orders[idx].append(order)
        if category in ("close_contact", "secondary_contact"):
            self._push(start + 2 * HOUR, "isolation_test", idx, order.order_id)

    def _report(self, t: dt.datetime, idx: int) -> None:
        if idx in self.reported:
            return
        first = not self.reported
        self.reported[idx] = t
        rng = self.rng
        self._order(idx, "case", t + _hours(rng, 1, 4), 14, self.hospital)
        p = self.by_index[idx]
        close = {m.index for m in self.households[p.household_id] if m.index != idx}
        close |= {o for when, o, scanned in self.met.get(idx, ()) if when <= t and scanned}
        for c in sorted(close):
            self._order(c, "close_contact", t + _hours(rng, 2, 12), 14, self.hotel)
        secondary = {
            m.index
            for c in close
            for m in self.households[self.by_index[c].household_id]
            if m.index not in close and m.index != idx
        }
        for c in sorted(secondary):
            self._order(c, "secondary_contact", t + _hours(rng, 6, 24), 7, None)
        near = [
            q.index
            for q in self.persons
            if q.household_id != p.household_id and metres(*q.home, *p.home) <= RISK_AREA_M
        ]
        for c in near:
            self._order(c, "risk_area", t + _hours(rng, 12, 30), 7, None)
        if first:
            # Everyone in the county is screened on the first and the third day after the first report.
            day = (t - self.t0).days
            for later in (day + 1, day + 3):
                if later < self.s.days:
                    self._push(self.t0 + dt.timedelta(days=later, hours=7), "screen", later, True)

    def _isolation_test(self, t: dt.datetime, idx: int, order_id: str) -> None:
        order = next((o for o in self.orders[idx] if o.order_id == order_id), None)
        if (
            order is None
            or idx in self.reported
            or (order.released_at is not None and t >= order.released_at)
        ):
            return  # replaced by a higher order, released, or a case already
        self._test(idx, t)
        self._push(t + 2 * DAY, "isolation_test", idx, order_id)

    def _screen(self, t: dt.datetime, day: int, everyone: bool) -> None:
        if day in self.screen_days:
            return  # a mass round replaces the routine round of its day (rounds run in time order)
        self.screen_days.add(day)
        rng = self.rng
        sampled = []
        for p in self.persons:
            if (everyone or rng.random() < ROUTINE_SHARE) and self._active_order(p.index, t) is None:
                sampled.append((p.township_code, t + _hours(rng, 0, 11), p.index))
        sampled.sort()
        # Each township's sampling point fills tubes of ten in the order people come.
        by_point: dict[str, list[tuple[dt.datetime, int]]] = defaultdict(list)
        for point, when, idx in sampled:
            by_point[point].append((when, idx))
        for point in sorted(by_point):
            queue = by_point[point]
            for k in range(0, len(queue), POOL_SIZE):
                tube = queue[k : k + POOL_SIZE]
                pool_id = self._id("HG")
                sealed = max(w for w, _ in tube)
                report = sealed + _hours(rng, 4, 10)
                positive = any(self._detectable(idx, w) for w, idx in tube)
                ct = round(rng.uniform(20, 35), 1) if positive else None
                self.pools.append(
                    Pool(pool_id, self.lab_id, sealed, report, tuple(i for _, i in tube), positive, ct)
                )
                for w, idx in tube:
                    self.tests[idx].append(PlannedTest(w, None, None, "pooled", pool_id))
                    if positive:
                        self._test(idx, report + _hours(rng, 2, 30))

    # -- results --------------------------------------------------------------------------------------
    def plan(self) -> OutbreakPlan:
        """What the shard's task emits."""
        return OutbreakPlan(
            {k: tuple(v) for k, v in self.excursions.items()},
            {k: tuple(t for t in v if t.sample_time < self.t_end) for k, v in self.tests.items()},
            {k: v for k, v in self.fever_visits.items() if v < self.t_end},
            tuple(self.pools),
            {k: tuple(o for o in v if o.start < self.t_end) for k, v in self.orders.items()},
            self.shard_id,
        )

    def truth(self) -> OutbreakTruth:
        """The truth files' rows."""
        pid = {p.index: p.person_id for p in self.persons}
        t_end = self.t_end
        contacts = [
            {"case_person_id": pid[c], "contact_person_id": pid[o], "via": via, "exposure_time": when}
            for (c, o), (via, when) in sorted(self.contacts.items())
        ]
        pools = {p.pool_id: p for p in self.pools}
        cases = []
        for idx, infected in sorted(self.infected.items()):
            positives = [
                t.sample_time
                for t in self.tests[idx]
                if t.positive and t.report_time and t.report_time < t_end
            ] + [
                t.sample_time
                for t in self.tests[idx]
                if t.pool_id and pools[t.pool_id].positive and pools[t.pool_id].report_time < t_end
            ]
            starts = [o.start for o in self.orders.get(idx, ()) if o.start < t_end]
            onset = self.onset[idx]
            cases.append(
                {
                    "person_id": pid[idx],
                    "infected_at": infected,
                    "onset_time": onset if onset < t_end else None,
                    "first_positive_sample_time": min(positives, default=None),
                    "reported_at": self.reported.get(idx),
                    "isolation_start": min(starts, default=None),
                }
            )
        nat_pools = []
        for pool in self.pools:
            for idx in pool.members:
                retests = [
                    t.sample_time
                    for t in self.tests[idx]
                    if t.mode == "single" and pool.positive and pool.report_time < t.sample_time < t_end
                ]
                nat_pools.append(
                    {
                        "institution_id": pool.lab_id,
                        "pool_id": pool.pool_id,
                        "person_id": pid[idx],
                        "pool_positive": pool.positive,
                        "retest_sample_time": min(retests, default=None),
                    }
                )
        isolation = [
            {
                "institution_id": o.cdc_id,
                "order_id": o.order_id,
                "person_id": pid[o.person],
                "category": o.category,
                "place_type": o.place_type,
                "start_time": o.start,
                "planned_end_time": o.planned_end,
                "released_at": o.released_at,
            }
            for orders in self.orders.values()
            for o in orders
            if o.start < t_end
        ]
        return OutbreakTruth(contacts, cases, nat_pools, sorted(isolation, key=lambda r: r["order_id"]))
