"""True paths of tracked residents, and the pings their phones send from them.

A path is a day plan of stays (home, work or school, a market, an outbreak venue, isolation) joined by
moves at walking or riding speed, as piecewise-linear segments in local wall-clock time. Plans the outbreak
makes (``Excursion``, ``Confinement``) are pinned into the day plans; people who go somewhere together
leave from one place at one moment, so their moves coincide. Phones then sample the path at their own
moments with GPS noise: the generator's truth is the path, the feed is the pings.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from healthlake.synth.identity import stable_fraction

if TYPE_CHECKING:
    from healthlake.synth.population import Person
    from healthlake.synth.region import Area

EARTH_RADIUS_M = 6_371_008.8
METRES_PER_DEGREE = EARTH_RADIUS_M * math.pi / 180
WALK_M_PER_S = 1.25  # 4.5 km/h
RIDE_M_PER_S = 7.0  # 25 km/h by bus or e-bike, after 5 minutes of waiting and walking
WALK_MAX_M = 1500
ACCURACY_TO_SIGMA = 1.515
"""``accuracy_m`` is the radius holding the true position with 68 % probability (as Android reports it);
for a 2-D normal error with per-axis sigma s that radius is s·sqrt(2·ln(1/0.32)) ≈ 1.515·s."""
MOVE = "move"


@dataclass(frozen=True, slots=True)
class Place:
    """Where a stay happens: kind (home, work, school, market, venue, meeting_point, hospital,
    isolation_hotel), id and position."""

    kind: str
    place_id: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Stay:
    """Being at a place from ``start`` to ``end``; pinned stays are planned and never cut."""

    place: Place
    start: dt.datetime
    end: dt.datetime
    pinned: bool = False


@dataclass(frozen=True, slots=True)
class Excursion:
    """An outbreak venue visit from ``start`` to ``end``.

    With an ``origin`` (company: a household member, a friend), the visitor is at the origin before, leaves
    it at the moment the company leaves, and walks back with them afterwards.
    """

    venue: Place
    start: dt.datetime
    end: dt.datetime
    origin: Place | None = None


@dataclass(frozen=True, slots=True)
class Confinement:
    """Isolation at a place from ``start`` until release (``end``; None: past the window)."""

    place: Place
    start: dt.datetime
    end: dt.datetime | None


def metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance in metres (exact enough within a county)."""
    dy = (lat2 - lat1) * METRES_PER_DEGREE
    dx = (lon2 - lon1) * METRES_PER_DEGREE * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(dx, dy)


def travel_time(a: Place, b: Place) -> dt.timedelta:
    """How long going from ``a`` to ``b`` takes: walking up to 1.5 km, riding further (at least a minute)."""
    d = metres(a.lat, a.lon, b.lat, b.lon)
    seconds = d / WALK_M_PER_S if d < WALK_MAX_M else 300 + d / RIDE_M_PER_S
    return dt.timedelta(seconds=max(60, round(seconds)))


def offset_place(
    kind: str, place_id: str, lat: float, lon: float, metres_north: float, metres_east: float
) -> Place:
    """A place the given metres north and east of a point."""
    return Place(
        kind,
        place_id,
        round(lat + metres_north / METRES_PER_DEGREE, 6),
        round(lon + metres_east / (METRES_PER_DEGREE * math.cos(math.radians(lat))), 6),
    )


def market(township: Area, k: int) -> Place:
    """One of a township's two markets (fixed by the township code): strangers of a township meet there."""
    north = (stable_fraction(township.code, k, "market-n") - 0.5) * 2000
    east = (stable_fraction(township.code, k, "market-e") - 0.5) * 2000
    return offset_place("market", f"M{township.code}{k}", township.lat, township.lon, north, east)


def goes_out_to(seed: int, p: Person, day: dt.date) -> str | None:
    """Where a resident goes on weekdays: ``work`` (18-64, three in four), ``school`` (6-17), else None."""
    age = p.age_on(day)
    if 6 <= age <= 17:
        return "school"
    if 18 <= age <= 64 and stable_fraction(seed, p.index, "works") < 0.75:
        return "work"
    return None


def _chain(
    home: Place, outings: list[tuple[Place, dt.datetime, dt.datetime]], start: dt.datetime, end: dt.datetime
) -> list[Stay]:
    """A day at home with outings (place, arrival, departure), each from home and back home."""
    stays = []
    since = start
    for place, arrive, depart in outings:
        stays.append(Stay(home, since, arrive - travel_time(home, place)))
        stays.append(Stay(place, arrive, depart))
        since = depart + travel_time(place, home)
    stays.append(Stay(home, since, end))
    return [s for s in stays if s.end > s.start]


def day_plans(
    seed: int, p: Person, township: Area, t0: dt.datetime, days: int, rng: random.Random
) -> list[Stay]:
    """The resident's usual days: to work or school on weekdays, a market now and then, home at night."""
    home = Place("home", p.household_id, *p.home)
    kind = goes_out_to(seed, p, t0.date())
    work = Place(kind, p.workplace_id, *p.work) if kind else None
    shop = market(township, int(stable_fraction(seed, p.index, "market") * 2))
    stays: list[Stay] = []
    for d in range(days):
        day = t0 + dt.timedelta(days=d)
        outings: list[tuple[Place, dt.datetime, dt.datetime]] = []
        weekday = day.weekday() < 5
        if work is not None and weekday:
            leave = day + dt.timedelta(hours=7, minutes=rng.uniform(0, 90))
            arrive = leave + travel_time(home, work)
            off = day + dt.timedelta(hours=17, minutes=rng.uniform(0, 90))
            outings.append((work, arrive, off))
            back = off + travel_time(work, home)
            when = back + dt.timedelta(minutes=rng.uniform(30, 120)) + travel_time(home, shop)
            leave_shop = when + dt.timedelta(minutes=rng.uniform(20, 60))
            # Some go to the market after work, when they are back home well before midnight.
            if rng.random() < 0.15 and leave_shop + travel_time(shop, home) < day + dt.timedelta(hours=23):
                outings.append((shop, when, leave_shop))
        elif rng.random() < (0.6 if not weekday else 0.5):
            when = day + dt.timedelta(hours=9, minutes=rng.uniform(0, 480))
            outings.append((shop, when, when + dt.timedelta(minutes=rng.uniform(30, 90))))
        outings = [(pl, a.replace(microsecond=0), b.replace(microsecond=0)) for pl, a, b in outings]
        stays += _chain(home, outings, day, day + dt.timedelta(days=1))
    return stays


def pin(stays: list[Stay], block: list[Stay]) -> list[Stay]:
    """Insert a planned block of stays (their gaps are moves), cutting the plan around it.

    Stays overlapping the block are cut to it; the stays next to it end (start) exactly a journey before
    (after) the block, dropped when that leaves nothing of them. Pinned stays are never cut: the
    outbreak's planner keeps hours between one person's blocks, so that never costs travel time.
    """
    b0, b1 = block[0].start, block[-1].end
    before = [replace(s, end=min(s.end, b0)) for s in stays if s.start < b0]
    after = [replace(s, start=max(s.start, b1)) for s in stays if s.end > b1]
    while before:
        last = before[-1]
        need = b0 if last.place == block[0].place else b0 - travel_time(last.place, block[0].place)
        if last.pinned or last.end == need:
            break
        if need > last.start:  # cut, or stay longer: leave just in time
            before[-1] = replace(last, end=need)
            break
        before.pop()
    while after:
        first = after[0]
        need = b1 if first.place == block[-1].place else b1 + travel_time(block[-1].place, first.place)
        if first.pinned or first.start == need:
            break
        if need < first.end:  # arrive straight from the block
            after[0] = replace(first, start=need)
            break
        after.pop(0)
    return before + block + after


def excursion_block(e: Excursion) -> list[Stay]:
    """The pinned stays of a venue visit: (origin,) venue (, origin)."""
    at_venue = Stay(e.venue, e.start, e.end, pinned=True)
    if e.origin is None:
        return [at_venue]
    go, back = travel_time(e.origin, e.venue), travel_time(e.venue, e.origin)
    leave, home = e.start - go, e.end + back
    return [
        Stay(e.origin, leave - dt.timedelta(minutes=5), leave, pinned=True),
        at_venue,
        Stay(e.origin, home, home + dt.timedelta(minutes=5), pinned=True),
    ]


Segment = tuple[dt.datetime, dt.datetime, float, float, float, float, str, str | None]
"""(start, end, lat_start, lon_start, lat_end, lon_end, place_kind, place_id); a move has kind ``move``."""


def segments(stays: list[Stay], t0: dt.datetime, t_end: dt.datetime) -> list[Segment]:
    """The path of a plan: its stays and the moves between them, within ``[t0, t_end)``."""
    out: list[Segment] = []
    prev: Stay | None = None
    for s in stays:
        if s.end <= s.start:
            continue
        if prev is not None and prev.end < s.start and prev.place != s.place:
            a, b = prev.place, s.place
            out.append((prev.end, s.start, a.lat, a.lon, b.lat, b.lon, MOVE, None))
        pl = s.place
        last = out[-1] if out else None
        if last is not None and last[6] == pl.kind and last[7] == pl.place_id:
            out[-1] = (last[0], s.end, *last[2:])  # one stay, not two: home overnight, a pinned origin
        else:
            out.append((s.start, s.end, pl.lat, pl.lon, pl.lat, pl.lon, pl.kind, pl.place_id))
        prev = s
    return [c for c in (_clip(seg, t0, t_end) for seg in out) if c is not None]


def _clip(seg: Segment, t0: dt.datetime, t_end: dt.datetime) -> Segment | None:
    """A segment cut to ``[t0, t_end)`` (None when outside), positions interpolated at the cuts."""
    start, end, lat0, lon0, lat1, lon1, kind, place_id = seg
    a, b = max(start, t0), min(end, t_end)
    if a >= b:
        return None
    span = (end - start).total_seconds()

    def at(t: dt.datetime) -> tuple[float, float]:
        f = (t - start).total_seconds() / span
        return lat0 + f * (lat1 - lat0), lon0 + f * (lon1 - lon0)

    return (a, b, *at(a), *at(b), kind, place_id) if (a, b) != (start, end) else seg


def path(
    seed: int,
    p: Person,
    township: Area,
    t0: dt.datetime,
    days: int,
    excursions: tuple[Excursion, ...] = (),
    confinements: tuple[Confinement, ...] = (),
) -> list[Segment]:
    """A tracked resident's true path over the window."""
    t_end = t0 + dt.timedelta(days=days)
    rng = random.Random(f"path:{seed}:{p.index}")
    stays = day_plans(seed, p, township, t0, days, rng)
    for e in sorted(excursions, key=lambda e: e.start):
        stays = pin(stays, excursion_block(e))
    for c in sorted(confinements, key=lambda c: c.start):
        # Isolation overrides every plan: the person stays put until released (or the window ends).
        end = c.end if c.end is not None and c.end < t_end else t_end + dt.timedelta(days=1)
        stays = [s for s in stays if s.end <= c.start or s.start >= end or not s.pinned]
        # Not pinned: a later order (a contact found positive, moved to hospital) cuts it for the transfer.
        stays = pin(stays, [Stay(c.place, c.start, end)])
    return segments(stays, t0, t_end)


@dataclass(frozen=True)
class Pings:
    """One phone's pings: seconds after the window's first midnight, position, reported accuracy."""

    phone: str
    seconds: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    accuracy_m: np.ndarray
    no_phone: np.ndarray  # the operator lost the number on these (defect ``ping_no_phone``)


def sample_pings(
    phone: str,
    segs: list[Segment],
    t0: dt.datetime,
    rng: np.random.Generator,
    interval_minutes: tuple[float, float],
    no_phone_rate: float = 0.0,
) -> Pings:
    """Sample a path as one phone sees it.

    The phone has its own usual interval (uniform in ``interval_minutes``) and phase; it reports at that
    pace on the move, a third as often while staying somewhere (fewer cell changes, fewer app fixes), a
    quarter of that from midnight to 6 am, and is silent for 20-90 minutes about once a day. Most fixes
    are good (accuracy 5-30 m), one in ten poor (100-500 m); the error is drawn to match the accuracy.
    """
    start = np.array([(s[0] - t0).total_seconds() for s in segs])
    end = np.array([(s[1] - t0).total_seconds() for s in segs])
    lat0, lon0, lat1, lon1 = (np.array([s[i] for s in segs]) for i in (2, 3, 4, 5))
    moving = np.array([s[6] == MOVE for s in segs])
    total = float(end[-1]) if len(end) else 0.0
    base = rng.uniform(*interval_minutes) * 60
    n = int(total / (base * 0.6)) + 2
    steps = base * rng.uniform(0.6, 1.4, n)
    times = np.floor(rng.uniform(0, base) + np.cumsum(steps) - steps[0])
    times = times[(times < total) & (times >= (start[0] if len(start) else 0))]
    i = np.clip(np.searchsorted(start, times, side="right") - 1, 0, max(len(start) - 1, 0))
    night = (times % 86400) < 6 * 3600
    keep_share = np.where(moving[i], 1.0, np.where(night, 1 / 12, 1 / 3))
    keep = rng.random(len(times)) < keep_share
    for gap in rng.uniform(0, total, rng.poisson(total / 86400)):
        keep &= (times < gap) | (times >= gap + rng.uniform(20, 90) * 60)
    times = times[keep]
    i = np.clip(np.searchsorted(start, times, side="right") - 1, 0, max(len(start) - 1, 0))
    span = np.maximum(end[i] - start[i], 1.0)
    f = np.clip((times - start[i]) / span, 0.0, 1.0)
    lat = lat0[i] + f * (lat1[i] - lat0[i])
    lon = lon0[i] + f * (lon1[i] - lon0[i])
    n = len(times)
    accuracy = np.round(np.where(rng.random(n) < 0.9, rng.uniform(5, 30, n), rng.uniform(100, 500, n)))
    sigma = accuracy / ACCURACY_TO_SIGMA
    lat_noisy = lat + rng.normal(0, 1, n) * sigma / METRES_PER_DEGREE
    lon_noisy = lon + rng.normal(0, 1, n) * sigma / (METRES_PER_DEGREE * np.cos(np.radians(lat)))
    return Pings(
        phone,
        times.astype(np.int64),
        np.round(lat_noisy, 6),
        np.round(lon_noisy, 6),
        accuracy.astype(np.int64),
        rng.random(n) < no_phone_rate,
    )
