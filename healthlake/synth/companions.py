"""True spatiotemporal companions (时空伴随), computed from the generator's true paths only.

The yardstick ``gold.close_contacts`` is graded against: it never looks at pings, so GPS noise, sampling
moments and gaps do not touch it. Time is taken at one-minute resolution: minute ``[m, m+1)`` of a window
counts as shared when the two true positions at its middle (``m`` + 30 s) are within ``distance_m`` (or in
the same cell). Independent of ``healthlake.epidemic`` on purpose: it is what that code is checked against.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from healthlake.synth.region import PROVINCE_CENTRE

EARTH_RADIUS_M = 6_371_008.8
METRES_PER_DEGREE = EARTH_RADIUS_M * math.pi / 180
GRID_REFERENCE_LAT = PROVINCE_CENTRE[0]
"""The latitude the synthetic region's cell grid is projected about (docs/epidemic.md)."""

COLUMNS = [
    "case_person_id",
    "window_start",
    "window_end",
    "contact_person_id",
    "exposure_minutes",
    "first_contact_at",
    "last_contact_at",
]


def cell_of(
    lat: np.ndarray, lon: np.ndarray, cell_m: float, reference_lat: float = GRID_REFERENCE_LAT
) -> tuple[np.ndarray, np.ndarray]:
    """The square cell of positions: ``floor(x / cell_m), floor(y / cell_m)`` in equirectangular metres.

    ``x = R·rad(lon)·cos(rad(lat₀))``, ``y = R·rad(lat)``, R = 6,371,008.8 m, lat₀ = ``reference_lat``: the
    grid ``healthlake.epidemic.contacts`` puts pings on (docs/epidemic.md), so a cell here is a cell there.
    """
    x = np.asarray(lon) * METRES_PER_DEGREE * math.cos(math.radians(reference_lat))
    y = np.asarray(lat) * METRES_PER_DEGREE
    return np.floor(x / cell_m), np.floor(y / cell_m)


def _positions(trajectories: pd.DataFrame, minutes: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Each person's true position at the middle of each minute (NaN where the path says nothing)."""
    mids = minutes + np.timedelta64(30, "s")
    people = sorted(trajectories["person_id"].unique())
    lat = np.full((len(people), len(minutes)), np.nan)
    lon = np.full((len(people), len(minutes)), np.nan)
    for row, (_, path) in enumerate(trajectories.sort_values("start").groupby("person_id", sort=True)):
        start = path["start"].to_numpy("datetime64[ns]")
        end = path["end"].to_numpy("datetime64[ns]")
        i = np.searchsorted(start, mids, side="right") - 1
        inside = (i >= 0) & (mids < end[np.clip(i, 0, None)])
        i = np.clip(i, 0, None)
        span = (end[i] - start[i]) / np.timedelta64(1, "s")
        f = ((mids - start[i]) / np.timedelta64(1, "s")) / np.where(span > 0, span, 1.0)
        for out, a, b in ((lat, "lat_start", "lat_end"), (lon, "lon_start", "lon_end")):
            v0, v1 = path[a].to_numpy(float)[i], path[b].to_numpy(float)[i]
            out[row] = np.where(inside, v0 + f * (v1 - v0), np.nan)
    return people, lat, lon


def true_companions(
    trajectories: pd.DataFrame,
    windows: pd.DataFrame,
    *,
    distance_m: float,
    min_minutes: float,
    match: str = "distance",
    cell_m: float = 800,
    reference_lat: float = GRID_REFERENCE_LAT,
) -> pd.DataFrame:
    """Everyone whose true position was near a case's for at least ``min_minutes`` (in total) in its window.

    Args:
        trajectories: ``truth/trajectories.parquet``: ``person_id, start, end, lat_start, lon_start,
            lat_end, lon_end`` (naive local times).
        windows: One row per case window: ``person_id`` (the case), ``start``, ``end``.
        distance_m: ``match="distance"``: the largest distance between the two (metres).
        min_minutes: The least shared time, in whole minutes of the window.
        match: ``distance``, or ``cell``: both in the same ``cell_m`` square cell (``cell_of``).
        cell_m: The cell side for ``match="cell"``.
        reference_lat: The latitude the cell grid is projected about (``cell_of``); the stage's
            ``contact_parameters`` pins it.

    Returns:
        ``case_person_id, window_start, window_end, contact_person_id, exposure_minutes, first_contact_at``
        (start of the first shared minute), ``last_contact_at`` (end of the last shared minute), one row
        per case window and companion, the case itself excluded.
    """
    if match not in ("distance", "cell"):
        raise ValueError(f"match is 'distance' or 'cell', not {match!r}")
    if windows.empty or trajectories.empty:
        return pd.DataFrame(columns=COLUMNS)
    # Whole minutes inside some window: [m, m+1) with start <= m and m + 1 <= end.
    starts = windows["start"].to_numpy("datetime64[ns]")
    ends = windows["end"].to_numpy("datetime64[ns]")
    first = starts.min().astype("datetime64[m]")
    grid = np.arange(first, ends.max().astype("datetime64[m]") + 1, dtype="datetime64[m]")
    people, lat, lon = _positions(trajectories, grid.astype("datetime64[ns]"))
    where = {p: i for i, p in enumerate(people)}
    cells = cell_of(lat, lon, cell_m, reference_lat) if match == "cell" else None
    grid_ns = grid.astype("datetime64[ns]")
    out = []
    for case, start, end in zip(windows["person_id"], starts, ends, strict=True):
        if case not in where:
            continue
        cols = np.flatnonzero((grid_ns >= start) & (grid_ns + np.timedelta64(1, "m") <= end))
        if len(cols) == 0:
            continue
        c = where[case]
        if cells is not None:
            cx, cy = cells[0][:, cols], cells[1][:, cols]
            near = (cx == cx[c]) & (cy == cy[c])
        else:
            dy = (lat[:, cols] - lat[c, cols]) * METRES_PER_DEGREE
            dx = (lon[:, cols] - lon[c, cols]) * METRES_PER_DEGREE * np.cos(np.radians(lat[c, cols]))
            near = np.hypot(dx, dy) <= distance_m
        near[c] = False
        minutes = near.sum(axis=1)
        for row in np.flatnonzero(minutes >= max(min_minutes, 1)):
            hits = cols[near[row]]
            out.append(
                (
                    case,
                    pd.Timestamp(start),
                    pd.Timestamp(end),
                    people[row],
                    int(minutes[row]),
                    pd.Timestamp(grid_ns[hits[0]]),
                    pd.Timestamp(grid_ns[hits[-1]] + np.timedelta64(1, "m")),
                )
            )
    return pd.DataFrame(out, columns=COLUMNS)
