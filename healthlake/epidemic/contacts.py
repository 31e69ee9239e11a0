"""``gold.close_contacts``: the spatiotemporal companions (时空伴随) of cases, from location pings.

Grain: one row per (case person, contact) — a contact is a person (``contact_person_id``) or, for a phone no
person holds, that phone (``contact_phone_token``, with ``contact_person_id`` NULL).

Method (``docs/epidemic.md``): no pairwise comparison of all pings. Each phone's pings are put on a common
grid of ``step_minutes`` (``grid_points``), mapped to persons, projected to metres and binned into square
cells; a case's grid points in its window are joined only with the points of the same grid time in the same
cell (``match = "cell"``) or in the same and the 8 neighbouring cells (``match = "distance"``, then kept
when the two are within ``distance_m`` plus an accuracy allowance). Work grows with the pings and the cases'
points, not with their product. Exposure is the number of shared grid times × ``step_minutes``.

The functions are ``DataFrame -> DataFrame`` transformations: no I/O, no actions, Spark built-ins only.
Every instant is a UTC timestamp; the grid is aligned to the epoch in whole ``step_minutes``, which is also
aligned to the local clock of any zone whose offset is a multiple of the step (``Asia/Shanghai``'s is).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from healthlake.catalog import (
    GOLD_CLOSE_CONTACTS,
    GOLD_EPIDEMIC_CASES,
    GOLD_ISOLATION,
    SILVER_AREA,
    SILVER_LOCATION_EVENT,
    SILVER_PATIENT_RECORD,
    SILVER_PERSON_XREF,
)
from healthlake.derived import DerivedTable, Inputs, Write, merge
from healthlake.epidemic.cases import case_windows
from healthlake.errors import ConfigError

__all__ = [
    "CLOSE_CONTACT_COLUMNS",
    "PRESETS",
    "ContactParameters",
    "close_contacts",
    "grid_points",
    "phone_owners",
]

EARTH_RADIUS_M = 6_371_008.8
"""Mean Earth radius (IUGG), for the equirectangular projection and local distances."""

CELL_MARGIN = 1.1
"""A distance-match cell is this much wider than the farthest match (``distance_m + max_accuracy_m``).

Cells are squares of the equirectangular projection about ``reference_lat``, whose east-west scale is off
by ``cos(reference_lat) / cos(lat)`` elsewhere: 10 % covers data within about ±5° of latitude of the
reference (a province), so two points that match are always in the same or neighbouring cells."""

_MICROS_PER_MINUTE = 60_000_000
_OPEN_END = 2**62
"""Grid index standing for "no end": a case window without an end runs to the last ping."""

MATCHES = ("distance", "cell")

CLOSE_CONTACT_COLUMNS = (
    "case_person_id",
    "contact_person_id",
    "contact_phone_token",
    "first_contact_at",
    "last_contact_at",
    "exposure_minutes",
    "co_located_events",
    "place_cell",
    "place_area_code",
    "degree",
)
"""The columns of ``gold.close_contacts``, in order."""


@dataclass(frozen=True)
class ContactParameters:
    """What counts as a close contact (``epidemic.contacts``); ``preset(name)`` gives the named sets.

    Attributes:
        match: ``distance`` (within ``distance_m`` plus the accuracy allowance) or ``cell`` (same square
            cell of ``cell_m``, the 2021 800 m × 800 m companion rule).
        distance_m: ``D`` of a distance match, in metres.
        cell_m: Cell side of a cell match, in metres.
        min_minutes: Least exposure (shared grid times × ``step_minutes``) to be a contact.
        window_days_before: Days before the earlier of first positive sample and symptom onset that a
            case's infectious window opens (used by the stage that builds ``cases``; not read here).
        step_minutes: Grid step: phones are compared at these instants.
        max_gap_minutes: Pings at most this far apart belong to one track (the phone is placed at every grid
            time between them); farther ones do not.
        interpolate_minutes: Between two pings of a track at most this far apart the position moves in a
            straight line; farther apart, each grid time takes the nearer ping's position (people mostly
            stay put: a line from a ping on the way to one at a venue minutes later puts them nowhere).
        still_speed_m_s: Travel, then stay. Across a gap between two pings of a track the phone travels at
            the faster of its pace into the gap's first ping (from the ping before) and out of its last
            (to the ping after), and spends the rest of the gap at one end: at the later ping's place when
            the pace in is the faster (it arrived early), at the earlier one's when the pace out is (it
            left late). Pace: the distance between two pings less both stated accuracies, over the time
            between them. Applies when that pace is above this (the phone was moving); a steady pace gives
            the straight line. A phone riding at 5 m/s that pinged at 12:00 600 m short of a venue and at
            the venue at 12:20 was there from 12:02. 0 turns the rule off.
        max_accuracy_m: Distance match: the accuracy allowance is at most this. Cell match: a ping whose
            stated accuracy is worse than this cannot be placed in a cell and is not used.
        depth: 1, or 2 to add the contacts of contacts (``degree`` 2).
        reference_lat: Latitude (degrees) the projection to metres is taken about; None takes the mean
            latitude of the pings (pin it in a derived table, so that ``place_cell`` is stable).
    """

    match: str = "distance"
    distance_m: float = 30.0
    cell_m: float = 800.0
    min_minutes: int = 15
    window_days_before: int = 4
    step_minutes: int = 5
    max_gap_minutes: int = 60
    interpolate_minutes: int = 10
    still_speed_m_s: float = 0.5
    max_accuracy_m: float = 100.0
    depth: int = 1
    reference_lat: float | None = None

    def __post_init__(self) -> None:
        if self.match not in MATCHES:
            raise ConfigError(f"contacts: match must be one of {', '.join(MATCHES)}, not {self.match!r}")
        for name in (
            "min_minutes",
            "window_days_before",
            "step_minutes",
            "max_gap_minutes",
            "interpolate_minutes",
            "depth",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"contacts: {name} must be a whole number, not {value!r}")
        for name in ("distance_m", "cell_m", "max_accuracy_m", "still_speed_m_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                unit = "metres per second" if name == "still_speed_m_s" else "metres"
                raise ConfigError(f"contacts: {name} must be a number of {unit}, not {value!r}")
        if self.still_speed_m_s < 0:
            raise ConfigError("contacts: still_speed_m_s must be 0 or more")
        if self.distance_m <= 0 or self.cell_m <= 0:
            raise ConfigError("contacts: distance_m and cell_m must be above 0")
        if self.max_accuracy_m < 0 or self.min_minutes < 0 or self.window_days_before < 0:
            raise ConfigError(
                "contacts: max_accuracy_m, min_minutes and window_days_before must be 0 or more"
            )
        if self.step_minutes < 1 or self.max_gap_minutes < 0 or self.interpolate_minutes < 0:
            raise ConfigError(
                "contacts: step_minutes must be 1 or more, max_gap_minutes and interpolate_minutes 0 or more"
            )
        if self.depth not in (1, 2):
            raise ConfigError(f"contacts: depth must be 1 or 2, not {self.depth}")
        ref = self.reference_lat
        if ref is not None and (
            isinstance(ref, bool) or not isinstance(ref, int | float) or not -80 <= ref <= 80
        ):
            raise ConfigError(f"contacts: reference_lat must be a latitude within ±80°, not {ref!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ContactParameters:
        """The named parameter set (``close`` or ``companion``, ``docs/epidemic.md``), with overrides.

        Raises:
            ConfigError: For an unknown preset or field, or a value out of range.
        """
        if name not in PRESETS:
            raise ConfigError(f"contacts: unknown preset {name!r} (known: {', '.join(PRESETS)})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"contacts: unknown parameter {unknown[0]!r} (known: {', '.join(sorted(known))})"
            )
        return cls(**{**PRESETS[name], **overrides})

    @property
    def grid_cell_m(self) -> float:
        """Side of the cells points are binned into: ``cell_m``, or for a distance match wide enough that
        every match is in the same or a neighbouring cell (see ``CELL_MARGIN``)."""
        if self.match == "cell":
            return float(self.cell_m)
        return (self.distance_m + self.max_accuracy_m) * CELL_MARGIN


PRESETS: dict[str, dict[str, Any]] = {
    "close": {
        "match": "distance",
        "distance_m": 30.0,
        "min_minutes": 15,
        "window_days_before": 4,
        "step_minutes": 5,
        "max_gap_minutes": 60,
        "interpolate_minutes": 10,
        "still_speed_m_s": 0.5,
        "max_accuracy_m": 100.0,
        "depth": 1,
    },
    # 时空伴随 as announced in 2021: the same 800 m × 800 m cell for more than 10 minutes in 14 days.
    "companion": {
        "match": "cell",
        "cell_m": 800.0,
        "min_minutes": 11,
        "window_days_before": 14,
        "step_minutes": 5,
        "max_gap_minutes": 60,
        "interpolate_minutes": 10,
        "still_speed_m_s": 0.5,
        "max_accuracy_m": 1000.0,
        "depth": 1,
    },
}
"""The presets of ``docs/epidemic.md``: ``close`` (the default) and ``companion``."""


def phone_owners(patient_records: DataFrame, person_xref: DataFrame) -> DataFrame:
    """The person each phone belongs to: the one whose linked patient records hold it.

    Grain: one row per phone token that exactly one person holds. A token in the records of several
    persons (a shared family phone, a child registered with a parent's number) belongs to none of them:
    who carried it at a given moment is unknown, so its co-locations are reported against the phone
    (``contact_phone_token``) for an investigator to resolve, and it does not stand for a case's
    movements. A person may hold several phones (two tokens, one person).

    Args:
        patient_records: ``silver.patient_record`` (``institution_id``, ``source_patient_id``,
            ``phone_token``).
        person_xref: ``silver.person_xref`` (``institution_id``, ``source_patient_id`` → ``person_id``).

    Returns:
        ``phone_token, person_id``. Records without a phone or without a person are left out.
    """
    keys = ["institution_id", "source_patient_id"]
    held = (
        patient_records.where(F.col("phone_token").isNotNull())
        .select(*keys, "phone_token")
        .join(person_xref.where(F.col("person_id").isNotNull()).select(*keys, "person_id"), keys)
        .groupBy("phone_token")
        .agg(F.min("person_id").alias("person_id"), F.max("person_id").alias("_other"))
    )
    return held.where(F.col("person_id") == F.col("_other")).select("phone_token", "person_id")


def grid_points(
    location_events: DataFrame, owners: DataFrame, params: ContactParameters | None = None
) -> DataFrame:
    """Each phone's positions on the common time grid, with its person, metres and cell.

    Grain: one row per (phone, grid time) the phone's pings cover. Rules:

    * Pings of a phone at most ``max_gap_minutes`` apart form a track; a track covers the grid times from
      the one nearest its first ping to the one nearest its last (a lone ping: its nearest grid time), so
      phones pinging at 12:00 and 12:02 both have a point at 12:00.
    * Between two pings of a track at most ``interpolate_minutes`` apart the position is interpolated
      linearly in time and the point's accuracy is the worse of the two pings' (a NULL accuracy counts
      as 0; at a ping's own place, its own); between pings farther apart a grid time takes the nearer
      ping's position and accuracy (the earlier on a tie). Before the first ping of a track and after
      the last it is that ping's (at most half a step away).
    * Travel, then stay (``still_speed_m_s`` above 0), which takes precedence over both: across a gap the
      phone travels at the faster of its measured paces just before and just after the gap and waits the
      rest of it at the end on the slower side (``ContactParameters``).
    * A phone belongs to its owner (``phone_owners``); a phone without one keeps only its token.
    * ``x_m``/``y_m``: equirectangular projection about ``reference_lat`` (or the pings' mean latitude);
      ``cell_x``/``cell_y``: the square cell of ``params.grid_cell_m`` the point lies in.
    * A cell match leaves out pings whose accuracy is worse than ``max_accuracy_m``.

    Args:
        location_events: ``silver.location_event`` (``phone_token``, ``event_time`` (UTC), ``lat``,
            ``lon``, ``accuracy_m``); rows without phone, time or coordinates are ignored.
        owners: ``phone_token, person_id`` (``phone_owners``), one row per phone.
        params: Parameters; None for the ``close`` defaults.

    Returns:
        ``phone_token, person_id, grid_index, grid_time, lat, lon, accuracy_m, x_m, y_m, cell_x, cell_y``;
        ``grid_index`` is the grid time in steps since the epoch.
    """
    p = params or ContactParameters()
    return _grid_points(location_events, owners, p, _reference(location_events, p))


def _reference(location_events: DataFrame, p: ContactParameters) -> DataFrame | None:
    """The pings' mean latitude as a one-row frame (``_ref_lat``), or None when the parameters pin it."""
    return None if p.reference_lat is not None else location_events.agg(F.avg("lat").alias("_ref_lat"))


def _grid_points(
    location_events: DataFrame, owners: DataFrame, p: ContactParameters, reference: DataFrame | None
) -> DataFrame:
    """``grid_points`` projected about ``reference`` (or ``p.reference_lat`` when None)."""
    step = p.step_minutes * _MICROS_PER_MINUTE
    pings = location_events.where(
        F.col("phone_token").isNotNull()
        & F.col("event_time").isNotNull()
        & F.col("lat").isNotNull()
        & F.col("lon").isNotNull()
    ).select(
        "phone_token",
        F.unix_micros("event_time").alias("_t"),
        F.col("lat").cast("double").alias("lat"),
        F.col("lon").cast("double").alias("lon"),
        F.coalesce(F.col("accuracy_m").cast("double"), F.lit(0.0)).alias("accuracy_m"),
    )
    if p.match == "cell":
        pings = pings.where(F.col("accuracy_m") <= p.max_accuracy_m)
    # Owners before the window: a join on phone_token leaves the rows partitioned as the window needs them.
    pings = pings.join(owners.select("phone_token", "person_id"), "phone_token", "left")

    by_time = Window.partitionBy("phone_token").orderBy("_t")
    seq = pings.select(
        "*",
        F.lag("_t").over(by_time).alias("_prev_t"),
        F.lag("lat").over(by_time).alias("_prev_lat"),
        F.lag("lon").over(by_time).alias("_prev_lon"),
        F.lag("accuracy_m").over(by_time).alias("_prev_acc"),
        F.lead("_t").over(by_time).alias("_next_t"),
        F.lead("lat").over(by_time).alias("_next_lat"),
        F.lead("lon").over(by_time).alias("_next_lon"),
        F.lead("accuracy_m").over(by_time).alias("_next_acc"),
        F.lead("_t", 2).over(by_time).alias("_next2_t"),
        F.lead("lat", 2).over(by_time).alias("_next2_lat"),
        F.lead("lon", 2).over(by_time).alias("_next2_lon"),
        F.lead("accuracy_m", 2).over(by_time).alias("_next2_acc"),
    )
    gap = p.max_gap_minutes * _MICROS_PER_MINUTE
    t, prev_t, next_t = F.col("_t"), F.col("_prev_t"), F.col("_next_t")
    has_prev = F.coalesce(t - prev_t <= gap, F.lit(False))
    has_next = F.coalesce(next_t - t <= gap, F.lit(False))
    has_next2 = has_next & F.coalesce(F.col("_next2_t") - next_t <= gap, F.lit(False))
    nearest = F.floor(t / step + 0.5)
    # Each ping row emits the grid times [lo, hi): from its own time (or, starting a track, the nearest
    # grid time) up to the next ping's time (or, ending a track, through the nearest grid time). The rows
    # of a track thus tile its grid times without overlap.
    lo = F.when(has_prev, F.ceil(t / step)).otherwise(nearest)
    hi = F.when(has_next, F.ceil(next_t / step)).otherwise(nearest + 1)
    spans = seq.select(
        "*",
        has_prev.alias("_has_prev"),
        has_next.alias("_has_next"),
        has_next2.alias("_has_next2"),
        lo.alias("_lo"),
        hi.alias("_hi"),
    ).where(F.col("_hi") > F.col("_lo"))
    # Per ping (before a row per grid time): what travel, then stay needs, and only the columns used after.
    travel = (
        _travel_then_stay(p.still_speed_m_s)
        if p.still_speed_m_s > 0
        else {"_way": F.lit(None).cast("double"), "_arrive_early": F.lit(None).cast("boolean")}
    )
    spans = spans.select(
        "phone_token",
        "person_id",
        "_t",
        "lat",
        "lon",
        "accuracy_m",
        "_next_t",
        "_next_lat",
        "_next_lon",
        "_next_acc",
        "_has_next",
        "_lo",
        "_hi",
        *[column.alias(name) for name, column in travel.items()],
    )
    exploded = spans.select("*", F.explode(F.sequence("_lo", F.col("_hi") - 1)).alias("grid_index"))

    span = next_t - t
    linear = span <= p.interpolate_minutes * _MICROS_PER_MINUTE
    at = F.col("grid_index") * step
    # Past interpolate_minutes a grid time holds the nearer ping: 0 (this one) or 1 (the next).
    held = F.when(at - t <= next_t - at, F.lit(0.0)).otherwise(F.lit(1.0))
    way = F.col("_way")
    frac = (
        F.when(
            way.isNull(),
            F.when(linear, F.least(F.greatest((at - t) / span, F.lit(0.0)), F.lit(1.0))).otherwise(held),
        )
        .when(way <= 0, F.lit(0.0))  # the same place: nowhere to go
        .when(F.col("_arrive_early"), F.least((at - t) / way, F.lit(1.0)))
        .otherwise(F.greatest(1 - (next_t - at) / way, F.lit(0.0)))
    )
    # The share of the way in a column of its own: position and accuracy read it (computed once).
    placed = exploded.select(
        "phone_token",
        "person_id",
        "grid_index",
        "lat",
        "lon",
        "accuracy_m",
        "_next_lat",
        "_next_lon",
        "_next_acc",
        "_has_next",
        F.when(F.col("_has_next") & (span > 0), frac).otherwise(F.lit(0.0)).alias("_frac"),
    )
    share = F.col("_frac")
    lat = F.col("lat") + share * F.coalesce(F.col("_next_lat") - F.col("lat"), F.lit(0.0))
    lon = F.col("lon") + share * F.coalesce(F.col("_next_lon") - F.col("lon"), F.lit(0.0))
    # At a ping's place, its accuracy; on the way between two, the worse of theirs.
    accuracy = (
        F.when(~F.col("_has_next") | (share == 0.0), F.col("accuracy_m"))
        .when(share == 1.0, F.col("_next_acc"))
        .otherwise(F.greatest("accuracy_m", "_next_acc"))
    )
    points = placed.select(
        "phone_token",
        "person_id",
        "grid_index",
        F.timestamp_micros(F.col("grid_index") * step).alias("grid_time"),
        lat.alias("lat"),
        lon.alias("lon"),
        accuracy.alias("accuracy_m"),
    )
    if reference is None:
        points = points.withColumn("_ref_lat", F.lit(float(p.reference_lat or 0.0)))
    else:
        # One row, joined without an action: the transformation stays lazy.
        points = points.crossJoin(F.broadcast(reference))
    x = F.lit(EARTH_RADIUS_M) * F.radians("lon") * F.cos(F.radians("_ref_lat"))
    y = F.lit(EARTH_RADIUS_M) * F.radians("lat")
    cell = p.grid_cell_m
    return points.select(
        "phone_token",
        "person_id",
        "grid_index",
        "grid_time",
        "lat",
        "lon",
        "accuracy_m",
        x.alias("x_m"),
        y.alias("y_m"),
        F.floor(x / cell).alias("cell_x"),
        F.floor(y / cell).alias("cell_y"),
    )


def _metres(lat1: Column, lon1: Column, lat2: Column, lon2: Column) -> Column:
    """Distance in metres between two positions (equirectangular about their mean latitude: exact to well
    under a metre at the tens to hundreds of metres compared here)."""
    mid = F.radians((lat1 + lat2) / 2)
    dx = F.radians(lon2 - lon1) * F.cos(mid)
    dy = F.radians(lat2 - lat1)
    return F.lit(EARTH_RADIUS_M) * F.sqrt(dx * dx + dy * dy)


def _pace(lat1: str, lon1: str, acc1: str, t1: str, lat2: str, lon2: str, acc2: str, t2: str) -> Column:
    """Metres per second from one ping to another, the distance less both accuracies (GPS noise at a
    standstill is not movement); NULL when either is missing or they share a time."""
    moved = F.greatest(
        _metres(F.col(lat1), F.col(lon1), F.col(lat2), F.col(lon2)) - F.col(acc1) - F.col(acc2),
        F.lit(0.0),
    )
    seconds = (F.col(t2) - F.col(t1)) / 1_000_000
    return F.when(seconds > 0, moved / seconds)


def _travel_then_stay(moving: float) -> dict[str, Column]:
    """Per ping, how travel, then stay places the phone between it and the next ping.

    Across the gap the phone travels at the faster of two measured paces, its pace into this ping (from
    the ping before) and out of the next (to the ping after), and spends the rest of the gap at one end:
    at the next ping's place when the pace in is the faster (it arrived early), here when the pace out is
    (it left late). A steady pace gives the straight line (the way takes the whole gap).

    Returns:
        ``_way``: microseconds the way takes at that pace (at most the gap), NULL when neither pace is above
        ``moving`` (none measured at a track's ends: the straight-line and nearer-ping rules hold);
        ``_arrive_early``: the pace in is the faster.
    """
    pace_in = F.coalesce(
        F.when(
            F.col("_has_prev"),
            _pace("_prev_lat", "_prev_lon", "_prev_acc", "_prev_t", "lat", "lon", "accuracy_m", "_t"),
        ),
        F.lit(0.0),
    )
    pace_out = F.coalesce(
        F.when(
            F.col("_has_next2"),
            _pace(
                "_next_lat",
                "_next_lon",
                "_next_acc",
                "_next_t",
                "_next2_lat",
                "_next2_lon",
                "_next2_acc",
                "_next2_t",
            ),
        ),
        F.lit(0.0),
    )
    pace = F.greatest(pace_in, pace_out)
    span = F.col("_next_t") - F.col("_t")
    metres = _metres(F.col("lat"), F.col("lon"), F.col("_next_lat"), F.col("_next_lon"))
    return {
        "_way": F.when(pace > moving, F.least(metres / pace * 1_000_000, span)),
        "_arrive_early": pace_in >= pace_out,
    }


def close_contacts(
    location_events: DataFrame,
    cases: DataFrame,
    owners: DataFrame,
    params: ContactParameters | None = None,
    *,
    areas: DataFrame | None = None,
) -> DataFrame:
    """``gold.close_contacts``: every person (or unowned phone) co-located with a case long enough.

    Grain: one row per (``case_person_id``, contact), contact = ``contact_person_id`` or, for a phone no
    person holds, ``contact_phone_token``. Rules:

    * A case's points are those of all its phones at grid times within ``[window_start, window_end]``
      (a NULL end leaves the window open); points outside it count for nothing.
    * A contact's point matches a case point of the same grid time in the same cell (cell match), or in
      the same or a neighbouring cell within ``distance_m + min(sqrt(acc_case² + acc_contact²),
      max_accuracy_m)`` metres (distance match; local equirectangular distance).
    * The case's own phones are not contacts; several phones of one contact person are one contact.
    * ``exposure_minutes`` = distinct matched grid times × ``step_minutes``; kept when >= ``min_minutes``.
      ``first_contact_at``/``last_contact_at``: the first and last matched grid time.
      ``co_located_events``: matched (case phone, contact phone, grid time) points — more than the grid
      times when either carried two phones.
    * ``place_cell``: the cell (``"<side>m:<cell_x>:<cell_y>"``, ``ContactParameters.grid_cell_m`` about
      ``reference_lat``) where the case was at most of the matched grid times (the earliest on a tie);
      ``place_area_code``: the area in ``areas`` whose centroid is nearest to the case's mean position in
      that cell, NULL without ``areas``.
    * ``depth`` 2 adds ``degree`` 2 rows: the contacts of each degree-1 contact in the window from its first
      contact with the case to the case's ``window_end``, with the same rules, other than the case and its
      degree-1 contacts. Rolled up per (case, contact): earliest first, latest last, the longest exposure to
      any one degree-1 contact, events summed, the place of that longest exposure.

    Args:
        location_events: ``silver.location_event`` (see ``grid_points``).
        cases: ``case_person_id, window_start, window_end`` (instants); several rows of one person are
            taken as one window from the earliest start to the latest end; a case without a start is
            skipped.
        owners: ``phone_token, person_id`` (``phone_owners``).
        params: Parameters; None for the ``close`` defaults.
        areas: Optional ``area_code, lat, lon`` (e.g. the townships of ``silver.area``).

    Returns:
        ``CLOSE_CONTACT_COLUMNS``.
    """
    p = params or ContactParameters()
    step = p.step_minutes * _MICROS_PER_MINUTE
    reference = _reference(location_events, p)
    points = _grid_points(location_events, owners, p, reference)
    windows = (
        cases.groupBy("case_person_id")
        .agg(
            F.min("window_start").alias("_start"),
            # An open end (NULL) wins over any instant: max ignores NULLs, so test for one first.
            F.when(F.count(F.lit(1)) == F.count("window_end"), F.max("window_end")).alias("_end"),
        )
        .select(
            "case_person_id",
            F.ceil(F.unix_micros("_start") / step).alias("_from"),
            F.coalesce(F.floor(F.unix_micros("_end") / step), F.lit(_OPEN_END)).alias("_to"),
        )
        .where(F.col("_from").isNotNull())
    )
    seeds = windows.select(
        "case_person_id",
        F.col("case_person_id").alias("_via_person_id"),
        F.lit(None).cast("string").alias("_via_phone_token"),
        "_from",
        "_to",
    )
    case_points = _grid_points(_events_of(location_events, owners, seeds), owners, p, reference)
    first = _summary(_matches(points, case_points, seeds, p, phone_seeds=False), p)
    contacts = first.drop("_via_person_id", "_via_phone_token").withColumn("degree", F.lit(1))
    if p.depth == 2:
        contacts = contacts.unionByName(
            _second_degree(location_events, owners, points, reference, first, windows, p)
        )
    return _with_area(contacts, areas).select(*CLOSE_CONTACT_COLUMNS)


def _events_of(location_events: DataFrame, owners: DataFrame, seeds: DataFrame) -> DataFrame:
    """The pings of the seeds' phones only: a phone's grid points depend on its own pings alone, so the
    seeds' side of the join is built from these few instead of being picked out of every phone's points."""
    persons = seeds.where(F.col("_via_person_id").isNotNull()).select(
        F.col("_via_person_id").alias("person_id")
    )
    phones = owners.join(F.broadcast(persons.distinct()), "person_id").select("phone_token")
    loose = seeds.where(F.col("_via_person_id").isNull() & F.col("_via_phone_token").isNotNull())
    phones = phones.unionByName(loose.select(F.col("_via_phone_token").alias("phone_token")))
    return location_events.join(F.broadcast(phones.distinct()), "phone_token", "left_semi")


def _matches(
    points: DataFrame, seed_points: DataFrame, seeds: DataFrame, p: ContactParameters, *, phone_seeds: bool
) -> DataFrame:
    """Every (seed point, other point) pair of one grid time that matches, with the seed's cell and place.

    ``seeds``: ``case_person_id, _via_person_id, _via_phone_token, _from, _to``; the via holder's points in
    ``[_from, _to]`` (from ``seed_points``, the grid points of the seeds' phones) are compared with every
    point (the case itself at degree 1, a degree-1 contact at degree 2).
    """
    own = seed_points.select(
        F.col("person_id").alias("_c_person"),
        F.col("phone_token").alias("_c_phone"),
        "grid_index",
        F.col("lat").alias("_c_lat"),
        F.col("lon").alias("_c_lon"),
        F.col("accuracy_m").alias("_c_acc"),
        F.col("cell_x").alias("_c_cell_x"),
        F.col("cell_y").alias("_c_cell_y"),
    )
    in_window = F.col("grid_index").between(F.col("_from"), F.col("_to"))
    # Seeds are few (cases, or their contacts): broadcast, so the points are filtered where they are.
    seed_side = own.join(
        F.broadcast(seeds.where(F.col("_via_person_id").isNotNull())),
        (F.col("_c_person") == F.col("_via_person_id")) & in_window,
    )
    if phone_seeds:
        by_phone = own.where(F.col("_c_person").isNull()).join(
            F.broadcast(seeds.where(F.col("_via_person_id").isNull())),
            (F.col("_c_phone") == F.col("_via_phone_token")) & in_window,
        )
        seed_side = seed_side.unionByName(by_phone)
    if p.match == "distance":
        # A match may lie across a cell border: look in the 8 neighbouring cells too.
        shifts = F.array(
            *[
                F.struct(F.lit(dx).alias("dx"), F.lit(dy).alias("dy"))
                for dx in (-1, 0, 1)
                for dy in (-1, 0, 1)
            ]
        )
        seed_side = (
            seed_side.select("*", F.explode(shifts).alias("_shift"))
            .select(
                "*",
                (F.col("_c_cell_x") + F.col("_shift.dx")).alias("cell_x"),
                (F.col("_c_cell_y") + F.col("_shift.dy")).alias("cell_y"),
            )
            .drop("_shift")
        )
    else:
        seed_side = seed_side.withColumn("cell_x", F.col("_c_cell_x")).withColumn(
            "cell_y", F.col("_c_cell_y")
        )
    other = points.select(
        F.col("person_id").alias("contact_person_id"),
        F.col("phone_token").alias("_o_phone"),
        "grid_index",
        "cell_x",
        "cell_y",
        F.col("lat").alias("_o_lat"),
        F.col("lon").alias("_o_lon"),
        F.col("accuracy_m").alias("_o_acc"),
    )
    pairs = seed_side.join(other, ["grid_index", "cell_x", "cell_y"])
    not_the_case = F.coalesce(F.col("contact_person_id") != F.col("case_person_id"), F.lit(True))
    not_the_via = ~F.coalesce(
        F.col("contact_person_id") == F.col("_via_person_id"), F.lit(False)
    ) & ~F.coalesce(F.col("_o_phone") == F.col("_via_phone_token"), F.lit(False))
    keep = not_the_case & not_the_via
    if p.match == "distance":
        keep = keep & (_metres_between() <= p.distance_m + _allowance(p))
    return pairs.where(keep).select(
        "case_person_id",
        "_via_person_id",
        "_via_phone_token",
        "contact_person_id",
        F.when(F.col("contact_person_id").isNull(), F.col("_o_phone")).alias("contact_phone_token"),
        "grid_index",
        "_c_cell_x",
        "_c_cell_y",
        "_c_lat",
        "_c_lon",
    )


def _metres_between() -> Column:
    """Distance in metres between the seed point and the other point (``_metres``)."""
    return _metres(F.col("_c_lat"), F.col("_c_lon"), F.col("_o_lat"), F.col("_o_lon"))


def _allowance(p: ContactParameters) -> Column:
    """The two points' combined accuracy (independent errors add in quadrature), at most max_accuracy_m."""
    return F.least(F.sqrt(F.col("_c_acc") ** 2 + F.col("_o_acc") ** 2), F.lit(float(p.max_accuracy_m)))


_PAIR = ["case_person_id", "_via_person_id", "_via_phone_token", "contact_person_id", "contact_phone_token"]


def _summary(matches: DataFrame, p: ContactParameters) -> DataFrame:
    """Matches summarised per (case, via holder, contact), kept when the exposure reaches ``min_minutes``."""
    step = p.step_minutes * _MICROS_PER_MINUTE
    # One row per shared grid time first (the seed's cell there: the lowest when its phones differ).
    per_time = matches.groupBy(*_PAIR, "grid_index").agg(
        F.count(F.lit(1)).alias("_events"),
        F.min(F.struct("_c_cell_x", "_c_cell_y", "_c_lat", "_c_lon")).alias("_at"),
    )
    per_cell = per_time.groupBy(
        *_PAIR, F.col("_at._c_cell_x").alias("_cx"), F.col("_at._c_cell_y").alias("_cy")
    ).agg(
        F.count(F.lit(1)).alias("_times"),
        F.sum("_events").alias("_events"),
        F.min("grid_index").alias("_first"),
        F.max("grid_index").alias("_last"),
        F.avg("_at._c_lat").alias("_lat"),
        F.avg("_at._c_lon").alias("_lon"),
    )
    side = f"{p.grid_cell_m:g}m"
    place = F.struct(
        F.format_string(f"{side}:%d:%d", F.col("_cx"), F.col("_cy")).alias("cell"),
        F.col("_lat").alias("lat"),
        F.col("_lon").alias("lon"),
    )
    per_pair = per_cell.groupBy(*_PAIR).agg(
        F.min("_first").alias("_first"),
        F.max("_last").alias("_last"),
        (F.sum("_times") * p.step_minutes).cast("int").alias("exposure_minutes"),
        F.sum("_events").alias("co_located_events"),
        # The cell of most grid times, the earliest on a tie.
        F.max_by(place, F.struct(F.col("_times"), -F.col("_first"))).alias("_place"),
    )
    return per_pair.where(F.col("exposure_minutes") >= p.min_minutes).select(
        *_PAIR,
        F.timestamp_micros(F.col("_first") * step).alias("first_contact_at"),
        F.timestamp_micros(F.col("_last") * step).alias("last_contact_at"),
        "exposure_minutes",
        "co_located_events",
        F.col("_place.cell").alias("place_cell"),
        F.col("_place.lat").alias("_place_lat"),
        F.col("_place.lon").alias("_place_lon"),
    )


def _second_degree(
    location_events: DataFrame,
    owners: DataFrame,
    points: DataFrame,
    reference: DataFrame | None,
    first: DataFrame,
    windows: DataFrame,
    p: ContactParameters,
) -> DataFrame:
    """Degree-2 rows: contacts of each degree-1 contact from its first contact with the case onwards."""
    step = p.step_minutes * _MICROS_PER_MINUTE
    seeds = first.join(F.broadcast(windows.select("case_person_id", "_to")), "case_person_id").select(
        "case_person_id",
        F.col("contact_person_id").alias("_via_person_id"),
        F.col("contact_phone_token").alias("_via_phone_token"),
        (F.unix_micros("first_contact_at") / step).cast("long").alias("_from"),
        "_to",
    )
    seed_points = _grid_points(_events_of(location_events, owners, seeds), owners, p, reference)
    via = _summary(_matches(points, seed_points, seeds, p, phone_seeds=True), p)
    known = first.select(
        "case_person_id",
        F.col("contact_person_id").alias("_k_person"),
        F.col("contact_phone_token").alias("_k_phone"),
    )
    fresh = via.join(
        known,
        (via["case_person_id"] == known["case_person_id"])
        & via["contact_person_id"].eqNullSafe(known["_k_person"])
        & via["contact_phone_token"].eqNullSafe(known["_k_phone"]),
        "left_anti",
    )
    place = F.struct("place_cell", "_place_lat", "_place_lon")
    return (
        fresh.groupBy("case_person_id", "contact_person_id", "contact_phone_token")
        .agg(
            F.min("first_contact_at").alias("first_contact_at"),
            F.max("last_contact_at").alias("last_contact_at"),
            F.max("exposure_minutes").alias("exposure_minutes"),
            F.sum("co_located_events").alias("co_located_events"),
            F.max_by(place, F.struct("exposure_minutes", F.unix_micros("first_contact_at") * -1)).alias("_p"),
        )
        .select(
            "case_person_id",
            "contact_person_id",
            "contact_phone_token",
            "first_contact_at",
            "last_contact_at",
            "exposure_minutes",
            "co_located_events",
            F.col("_p.place_cell").alias("place_cell"),
            F.col("_p._place_lat").alias("_place_lat"),
            F.col("_p._place_lon").alias("_place_lon"),
            F.lit(2).alias("degree"),
        )
    )


def _with_area(contacts: DataFrame, areas: DataFrame | None) -> DataFrame:
    """``place_area_code``: the area of ``areas`` whose centroid is nearest to the place (NULL without)."""
    if areas is None:
        return contacts.withColumn("place_area_code", F.lit(None).cast("string"))
    places = contacts.select("_place_lat", "_place_lon").distinct()
    centroids = areas.where(F.col("lat").isNotNull() & F.col("lon").isNotNull()).select(
        "area_code", F.col("lat").alias("_a_lat"), F.col("lon").alias("_a_lon")
    )
    mid = F.radians((F.col("_place_lat") + F.col("_a_lat")) / 2)
    dx = F.radians(F.col("_a_lon") - F.col("_place_lon")) * F.cos(mid)
    dy = F.radians(F.col("_a_lat") - F.col("_place_lat"))
    # Areas are few (townships: thousands) and so are contact places: every pair is compared.
    nearest = (
        places.crossJoin(F.broadcast(centroids))
        .groupBy("_place_lat", "_place_lon")
        .agg(F.min_by("area_code", F.struct(dx * dx + dy * dy, F.col("area_code"))).alias("place_area_code"))
    )
    return contacts.join(nearest, ["_place_lat", "_place_lon"], "left")


CONTACT_PARAMETERS = "epidemic.contacts"
"""The run setting (``Inputs.settings``): the ``ContactParameters`` of the run (reference latitude pinned)."""


def _townships(areas: DataFrame) -> DataFrame | None:
    """The township centroids of ``silver.area`` (``area_code, lat, lon``), None when it has no positions."""
    if not {"lat", "lon", "level"} <= set(areas.columns):
        return None
    return areas.where(F.col("level") == "township").select("area_code", "lat", "lon")


def _build(inputs: Inputs) -> DataFrame:
    params = inputs.settings.get(CONTACT_PARAMETERS) or ContactParameters.preset("close")
    windows = case_windows(
        inputs.read(GOLD_EPIDEMIC_CASES), inputs.read(GOLD_ISOLATION), days_before=params.window_days_before
    )
    owners = phone_owners(inputs.read(SILVER_PATIENT_RECORD), inputs.read(SILVER_PERSON_XREF))
    contacts = close_contacts(
        inputs.read(SILVER_LOCATION_EVENT),
        windows,
        owners,
        params,
        areas=_townships(inputs.read(SILVER_AREA)),
    )
    # The table's key: the contact person, or the phone no person holds.
    key = F.coalesce(F.col("contact_person_id"), F.concat(F.lit("phone:"), F.col("contact_phone_token")))
    return contacts.withColumn("contact_key", key)


def _update(inputs: Inputs) -> Write:
    """Every case's contacts recomputed, the rows that differ written.

    A case's window moves with its isolation, a late ping can fall in any open window, and a relink moves
    a phone to another person: v1 recomputes all windows (cases are few; the pings read are those of the
    lake) and MERGE writes only what changed. Bounding the pings read to the windows a day's changes touch
    is the next step (issue 33).
    """
    return merge(_build(inputs), inputs.stored(GOLD_CLOSE_CONTACTS))


CLOSE_CONTACTS = DerivedTable(
    name=GOLD_CLOSE_CONTACTS,
    key=("case_person_id", "contact_key"),
    reads=(
        SILVER_LOCATION_EVENT,
        GOLD_EPIDEMIC_CASES,
        GOLD_ISOLATION,
        SILVER_PATIENT_RECORD,
        SILVER_PERSON_XREF,
        SILVER_AREA,
    ),
    build=_build,
    update=_update,
)
