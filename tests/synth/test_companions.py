"""True companions from hand-made true paths: expected minutes worked out by hand in the comments."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from healthlake.synth.companions import METRES_PER_DEGREE, cell_of, true_companions

# A corner of the 800 m cell grid projected about 30° N, near 30° N 120° E: hand positions are metres from it.
REFERENCE_LAT = 30.0
ORIGIN = (
    round(30.0 * METRES_PER_DEGREE / 800) * 800 / METRES_PER_DEGREE,
    round(120.0 * METRES_PER_DEGREE * math.cos(math.radians(REFERENCE_LAT)) / 800)
    * 800
    / (METRES_PER_DEGREE * math.cos(math.radians(REFERENCE_LAT))),
)
DAY = "2026-01-05 "


def _at(x: float, y: float) -> tuple[float, float]:
    """The position x metres east and y metres north of the origin (the grid's own projection)."""
    lat0, lon0 = ORIGIN
    east = METRES_PER_DEGREE * math.cos(math.radians(REFERENCE_LAT))
    return lat0 + y / METRES_PER_DEGREE, lon0 + x / east


def _segment(person: str, start: str, end: str, a: tuple[float, float], b: tuple[float, float]) -> dict:
    (lat_a, lon_a), (lat_b, lon_b) = _at(*a), _at(*b)
    return {
        "person_id": person,
        "start": pd.Timestamp(DAY + start),
        "end": pd.Timestamp(DAY + end),
        "lat_start": lat_a,
        "lon_start": lon_a,
        "lat_end": lat_b,
        "lon_end": lon_b,
    }


P, Q, R, S = (100, 100), (100, 1300), (100, -2000), (5000, 1300)
TRAJECTORIES = pd.DataFrame(
    [
        # The case: at P, walks 1200 m north to Q in 20 minutes (1 m/s), stays at Q.
        _segment("A", "09:00", "10:00", P, P),
        _segment("A", "10:00", "10:20", P, Q),
        _segment("A", "10:20", "12:00", Q, Q),
        # Walks from R to P (105 m a minute: 52.5 m from P in the middle of 09:59), then with A to Q, stays
        # there until 10:30 and leaves east at 490 m a minute (245 m away in the middle of 10:30).
        _segment("B", "09:00", "09:40", R, R),
        _segment("B", "09:40", "10:00", R, P),
        _segment("B", "10:00", "10:20", P, Q),
        _segment("B", "10:20", "10:30", Q, Q),
        _segment("B", "10:30", "10:40", Q, S),
        _segment("B", "10:40", "12:00", S, S),
        # Passes by: at Q for 10 minutes only (no position otherwise).
        _segment("C", "11:00", "11:10", Q, Q),
        # 20 m east of Q from 10:20.
        _segment("D", "10:20", "12:00", (120, 1300), (120, 1300)),
        # E: 632 m from Q but in Q's 800 m cell (0, 1); F: 150 m from Q but across the border, cell (-1, 1).
        _segment("E", "10:20", "12:00", (700, 1500), (700, 1500)),
        _segment("F", "10:20", "12:00", (-50, 1300), (-50, 1300)),
    ]
)
WINDOW = pd.DataFrame(
    {"person_id": ["A"], "start": [pd.Timestamp(DAY + "09:00")], "end": [pd.Timestamp(DAY + "12:00")]}
)


def _found(result: pd.DataFrame) -> dict[str, tuple[int, str, str]]:
    return {
        r.contact_person_id: (r.exposure_minutes, f"{r.first_contact_at:%H:%M}", f"{r.last_contact_at:%H:%M}")
        for r in result.itertuples()
    }


def test_within_distance_for_long_enough() -> None:
    result = true_companions(TRAJECTORIES, WINDOW, distance_m=30, min_minutes=15, reference_lat=REFERENCE_LAT)
    # B: together on the walk (10:00-10:20) and at Q (10:20-10:30); D: from 10:20 to the window's end;
    # C's 10 minutes are too few; E and F are too far.
    assert _found(result) == {"B": (30, "10:00", "10:30"), "D": (100, "10:20", "12:00")}
    assert set(result.case_person_id) == {"A"}
    assert (result.window_start == pd.Timestamp(DAY + "09:00")).all()


def test_short_encounters_count_when_the_threshold_is_low() -> None:
    result = true_companions(TRAJECTORIES, WINDOW, distance_m=30, min_minutes=5, reference_lat=REFERENCE_LAT)
    assert _found(result)["C"] == (10, "11:00", "11:10")


def test_same_cell() -> None:
    result = true_companions(
        TRAJECTORIES,
        WINDOW,
        distance_m=0,
        min_minutes=11,
        match="cell",
        cell_m=800,
        reference_lat=REFERENCE_LAT,
    )
    # A enters cell (0, 1) at y = 800 m, 11 min 40 s into its walk: from minute 10:12 on. B shares A's cells
    # from minute 09:59 (y = 47.5 m: cell (0, 0), where A is) to 10:30 (x = 345 m; at 10:31:30 x = 835 m).
    assert _found(result) == {
        "B": (32, "09:59", "10:31"),
        "D": (100, "10:20", "12:00"),
        "E": (100, "10:20", "12:00"),
    }


def test_only_whole_minutes_inside_the_window_count() -> None:
    window = pd.DataFrame(
        {"person_id": ["A"], "start": [pd.Timestamp(DAY + "10:15:20")], "end": [pd.Timestamp(DAY + "10:25")]}
    )
    # Minutes 10:16 to 10:24: nine for B, five (from 10:20) for D.
    result = true_companions(TRAJECTORIES, window, distance_m=30, min_minutes=5, reference_lat=REFERENCE_LAT)
    assert _found(result) == {"B": (9, "10:16", "10:25"), "D": (5, "10:20", "10:25")}


def test_cells_are_floors_of_equirectangular_metres() -> None:
    lat, lon = zip(*[_at(100, 100), _at(799.9, 800.1), _at(-0.1, -1599.9)], strict=True)
    x, y = cell_of(pd.Series(lat).to_numpy(), pd.Series(lon).to_numpy(), 800, REFERENCE_LAT)
    x0, y0 = cell_of(*(pd.Series([v]).to_numpy() for v in _at(400, 400)), 800, REFERENCE_LAT)
    cells = [(cx - x0[0], cy - y0[0]) for cx, cy in zip(x.tolist(), y.tolist(), strict=True)]
    assert cells == [(0, 0), (0, 1), (-1, -2)]


def test_unknown_match_is_refused() -> None:
    with pytest.raises(ValueError, match="match"):
        true_companions(TRAJECTORIES, WINDOW, distance_m=30, min_minutes=15, match="area")
