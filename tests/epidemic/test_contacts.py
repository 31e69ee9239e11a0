"""Close contacts (时空伴随) on small hand-made trajectories, against values worked out by hand.

Positions are written in metres east (x) and north (y) of the equirectangular projection about 30°N that the
parameters pin (``reference_lat=30``), and turned into latitude and longitude here; times are UTC instants
on 2022-03-01. With the ``close`` preset the distance-match cells are (30 + 100) × 1.1 = 143 m wide.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.testing import assertDataFrameEqual

from healthlake.epidemic.contacts import (
    CLOSE_CONTACT_COLUMNS,
    ContactParameters,
    close_contacts,
    grid_points,
    phone_owners,
)
from healthlake.errors import ConfigError

R = 6_371_008.8
REF = 30.0
CLOSE = ContactParameters(reference_lat=REF)
GAP_30 = ContactParameters(reference_lat=REF, max_gap_minutes=30)
CELL = 143.0  # (30 + 100) * 1.1
X0 = 11_561_000.0  # about 120.0°E at 30°N
Y0 = 3_336_000.0  # about 30.0°N
UTC = dt.UTC

EVENTS = "phone_token string, event_time timestamp, lat double, lon double, accuracy_m double"
CASES = "case_person_id string, window_start timestamp, window_end timestamp"
OWNERS = "phone_token string, person_id string"
Frames = Callable[..., tuple[DataFrame, DataFrame, DataFrame]]
"""Builds (events, cases, owners) from rows; the cases default to A over the whole day."""
SHOWN = (
    "case_person_id",
    "contact_person_id",
    "contact_phone_token",
    "first_contact_at",
    "last_contact_at",
    "exposure_minutes",
    "co_located_events",
    "degree",
)
SHOWN_SCHEMA = (
    "case_person_id string, contact_person_id string, contact_phone_token string, "
    "first_contact_at timestamp, last_contact_at timestamp, exposure_minutes int, co_located_events long, "
    "degree int"
)


def T(h: int, m: int, s: int = 0) -> dt.datetime:
    return dt.datetime(2022, 3, 1, h, m, s, tzinfo=UTC)


def lat_lon(x: float, y: float) -> tuple[float, float]:
    """The latitude and longitude of projected metres (x east, y north) about ``REF``."""
    return math.degrees(y / R), math.degrees(x / (R * math.cos(math.radians(REF))))


def ping(phone: str, at: dt.datetime, x: float, y: float, accuracy: float | None = 10.0) -> tuple:
    return (phone, at, *lat_lon(x, y), None if accuracy is None else float(accuracy))


def stay(phone: str, x: float, y: float, start: dt.datetime, end: dt.datetime, every: int = 5) -> list[tuple]:
    """Pings every ``every`` minutes from ``start`` to ``end`` (inclusive) at one place."""
    n = int((end - start).total_seconds() // 60 // every)
    return [ping(phone, start + dt.timedelta(minutes=every * i), x, y) for i in range(n + 1)]


@pytest.fixture(scope="module")
def frames(spark: SparkSession) -> Frames:
    def make(events: list[tuple], owners: list[tuple], cases: list[tuple] | None = None) -> tuple:
        cases = cases if cases is not None else [("A", T(0, 0), T(23, 59))]
        return (
            spark.createDataFrame(events, EVENTS),
            spark.createDataFrame(cases, CASES),
            spark.createDataFrame(owners, OWNERS),
        )

    return make


def expect(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, SHOWN_SCHEMA)


def shown(df: DataFrame) -> DataFrame:
    return df.select(*SHOWN)


# -- parameters ---------------------------------------------------------------------------------------------


def test_presets_and_overrides() -> None:
    assert ContactParameters.preset("close") == ContactParameters()
    companion = ContactParameters.preset("companion")
    assert (companion.match, companion.cell_m, companion.min_minutes, companion.window_days_before) == (
        "cell",
        800.0,
        11,
        14,
    )
    assert (
        companion.step_minutes,
        companion.max_gap_minutes,
        companion.interpolate_minutes,
        companion.max_accuracy_m,
        companion.depth,
    ) == (5, 60, 10, 1000.0, 1)
    assert companion.grid_cell_m == 800.0
    assert CLOSE.grid_cell_m == pytest.approx(CELL)
    assert ContactParameters.preset("close", depth=2, distance_m=10).distance_m == 10


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("nearby", {}, "unknown preset 'nearby'"),
        ("close", {"distance": 5}, "unknown parameter 'distance'"),
        ("close", {"match": "area"}, "match must be one of distance, cell"),
        ("close", {"depth": 3}, "depth must be 1 or 2"),
        ("close", {"step_minutes": 0}, "step_minutes must be 1 or more"),
        ("close", {"min_minutes": 2.5}, "min_minutes must be a whole number"),
        ("close", {"distance_m": -1}, "distance_m and cell_m must be above 0"),
        ("close", {"reference_lat": 95}, "reference_lat must be a latitude"),
    ],
)
def test_bad_parameters_are_one_line_errors(name: str, overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        ContactParameters.preset(name, **overrides)
    assert "\n" not in str(err.value)


# -- phones and the grid ------------------------------------------------------------------------------------


def test_phone_owners_a_shared_phone_belongs_to_no_one(spark: SparkSession) -> None:
    records = spark.createDataFrame(
        [
            ("H1", "p1", "t1"),
            ("H2", "q7", "t1"),  # the same person's phone at a second hospital
            ("H1", "p1b", "t2"),  # P1's second phone
            ("H1", "p2", "t3"),  # a family phone: P2 and P3 both gave it
            ("H2", "p3", "t3"),
            ("H1", "p4", None),  # no phone
            ("H1", "x9", "t9"),  # a record the EMPI has not linked
        ],
        "institution_id string, source_patient_id string, phone_token string",
    )
    xref = spark.createDataFrame(
        [("H1", "p1", "P1"), ("H2", "q7", "P1"), ("H1", "p1b", "P1"), ("H1", "p2", "P2"), ("H2", "p3", "P3")]
        + [("H1", "p4", "P4")],
        "institution_id string, source_patient_id string, person_id string",
    )
    assertDataFrameEqual(
        phone_owners(records, xref), spark.createDataFrame([("t1", "P1"), ("t2", "P1")], OWNERS)
    )


def test_grid_points_interpolate_within_a_track_and_round_lone_pings(frames: Frames) -> None:
    # Tracks of at most 30 minutes between pings (the preset's 60 would join all five pings).
    events, _, owners = frames(
        [
            ping("q", T(12, 2), X0, Y0, 5),
            ping("q", T(12, 12), X0 + 600, Y0, 8),  # 60 m a minute east
            ping("q", T(13, 3), X0, Y0, 5),  # alone: 51 minutes from either neighbour
            ping("q", T(14, 0), X0, Y0, 5),
            ping("q", T(14, 40), X0, Y0 + 400, 5),  # 40 minutes later: too far apart to interpolate
        ],
        [("q", "Q")],
    )
    got = [
        (
            r.grid_time.replace(tzinfo=UTC),
            r.person_id,
            round(r.x_m - X0, 3),
            round(r.y_m - Y0, 3),
            r.accuracy_m,
        )
        for r in grid_points(events, owners, GAP_30).orderBy("grid_time").collect()
    ]
    assert got == [
        (T(12, 0), "Q", 0.0, 0.0, 5.0),  # nearest grid time of the first ping, at its place: its accuracy
        (T(12, 5), "Q", 180.0, 0.0, 8.0),  # 3 of the 10 minutes: 180 m
        (T(12, 10), "Q", 480.0, 0.0, 8.0),  # 8 of 10: 480 m (12:12 rounds to 12:10, already there)
        (T(13, 5), "Q", 0.0, 0.0, 5.0),  # 13:03 → 13:05
        (T(14, 0), "Q", 0.0, 0.0, 5.0),
        (T(14, 40), "Q", 0.0, 400.0, 5.0),
    ]
    assert {r.cell_x for r in grid_points(events, owners, GAP_30).collect()} == {
        math.floor(X0 / CELL),
        math.floor((X0 + 180) / CELL),
        math.floor((X0 + 480) / CELL),
    }


def test_between_pings_more_than_interpolate_minutes_apart_the_nearer_ping_holds(frames: Frames) -> None:
    # On the way in at 12:00, at the venue 600 m east at 12:20 (20 minutes: beyond interpolate_minutes, 10,
    # within max_gap_minutes, 60): no straight line between them, each grid time takes the nearer ping.
    events, _, owners = frames(
        [ping("q", T(12, 0), X0, Y0, 5), ping("q", T(12, 20), X0 + 600, Y0, 8)], [("q", "Q")]
    )
    got = [
        (r.grid_time.replace(tzinfo=UTC), round(r.x_m - X0, 3), r.accuracy_m)
        for r in grid_points(events, owners, CLOSE).orderBy("grid_time").collect()
    ]
    assert got == [
        (T(12, 0), 0.0, 5.0),
        (T(12, 5), 0.0, 5.0),  # 5 minutes from the first ping, 15 from the second
        (T(12, 10), 0.0, 5.0),  # a tie: the earlier ping
        (T(12, 15), 600.0, 8.0),
        (T(12, 20), 600.0, 8.0),
    ]
    linear = ContactParameters(reference_lat=REF, interpolate_minutes=20)
    assert [
        round(r.x_m - X0) for r in grid_points(events, owners, linear).orderBy("grid_time").collect()
    ] == [
        0,
        150,
        300,
        450,
        600,
    ]


def test_travel_then_stay_arrives_early_and_leaves_late(frames: Frames) -> None:
    # Walking east at 60 m a minute (11:50, 12:00), at a venue 120 m on at 12:08, 12:20 and 12:30, then off
    # east again (12:38, 12:48). From the moving ping at 12:00 the phone goes on at its pace (580 m in
    # 10 minutes, less both accuracies) and waits at the venue from about 12:02; from the venue it leaves
    # at the next ping's pace just in time to reach it at 12:38.
    venue = X0 + 120
    events, _, owners = frames(
        [
            ping("q", T(11, 50), X0 - 600, Y0),
            ping("q", T(12, 0), X0, Y0),
            ping("q", T(12, 8), venue, Y0, 8),
            ping("q", T(12, 20), venue, Y0, 8),
            ping("q", T(12, 30), venue, Y0, 8),
            ping("q", T(12, 38), venue + 120, Y0),
            ping("q", T(12, 48), venue + 720, Y0),
        ],
        [("q", "Q")],
    )

    def track(params: ContactParameters) -> dict[dt.datetime, tuple[float, float]]:
        return {
            r.grid_time.replace(tzinfo=UTC): (round(r.x_m - X0, 1), r.accuracy_m)
            for r in grid_points(events, owners, params).collect()
        }

    got = track(CLOSE)
    assert got[T(12, 0)] == (0.0, 10.0)
    assert got[T(12, 5)] == (120.0, 8.0)  # at the venue (a straight line: 75 m, on the way)
    assert got[T(12, 35)] == (120.0, 8.0)  # still there (a straight line: 195 m, on the way out)
    assert got[T(12, 40)][0] == pytest.approx(120 + 120 + 120, abs=1)  # on the move: straight lines
    off = track(ContactParameters(reference_lat=REF, still_speed_m_s=0))
    assert off[T(12, 5)][0] == pytest.approx(75, abs=0.5) and off[T(12, 35)][0] == pytest.approx(195, abs=0.5)


def test_two_sparse_pingers_meeting_at_a_venue_are_companions(spark: SparkSession, frames: Frames) -> None:
    # A and B meet at a venue from 12:02 to 12:22, each walking in and out at 60 m a minute, each with one
    # or two pings there. Travel, then stay puts both at the venue at 12:05 … 12:20 (20 minutes); the
    # nearer-ping and straight-line rules alone only at 12:10 and 12:15 (10 minutes: no contact).
    venue = X0 + 120
    a = [
        ping("a", T(11, 50), X0 - 600, Y0),
        ping("a", T(12, 0), X0, Y0),
        ping("a", T(12, 12), venue, Y0),
        ping("a", T(12, 24), venue + 120, Y0),
        ping("a", T(12, 34), venue + 720, Y0),
    ]
    b = [
        ping("b", T(11, 52), venue, Y0 + 600),
        ping("b", T(12, 1), venue, Y0 + 60),
        ping("b", T(12, 17), venue, Y0),
        ping("b", T(12, 25), venue, Y0 + 180),
        ping("b", T(12, 35), venue, Y0 + 780),
    ]
    events, cases, owners = frames(a + b, [("a", "A"), ("b", "B")])
    got = close_contacts(events, cases, owners, CLOSE)
    assertDataFrameEqual(shown(got), expect(spark, [("A", "B", None, T(12, 5), T(12, 20), 20, 4, 1)]))
    off = ContactParameters(reference_lat=REF, still_speed_m_s=0)
    assert close_contacts(events, cases, owners, off).count() == 0


# -- close contacts -----------------------------------------------------------------------------------------


def test_walking_together_with_pings_minutes_apart(spark: SparkSession, frames: Frames) -> None:
    # A pings on the grid (12:00, 12:05 … 12:30); B walks beside A, 5 m to the north, and pings at other
    # minutes. Both walk east at 60 m a minute, so B's interpolated positions are exact: 5 m from A at
    # 12:05 … 12:30. At 12:00 B is placed where it first pinged (12:02, 120 m ahead): no match.
    a = [ping("a", T(12, 5 * i), X0 + 300 * i, Y0) for i in range(7)]
    minutes = [2, 8, 13, 17, 22, 28, 33]
    b = [ping("b", T(12, m), X0 + 60 * m, Y0 + 5) for m in minutes]
    events, cases, owners = frames(a + b, [("a", "A"), ("b", "B")])
    got = close_contacts(events, cases, owners, CLOSE)
    assert got.columns == list(CLOSE_CONTACT_COLUMNS)
    assertDataFrameEqual(shown(got), expect(spark, [("A", "B", None, T(12, 5), T(12, 30), 30, 6, 1)]))


def test_across_a_cell_border_within_d(spark: SparkSession, frames: Frames) -> None:
    border = (math.floor(X0 / CELL) + 1) * CELL
    events, cases, owners = frames(
        stay("a", border - 4, Y0, T(12, 0), T(12, 30))
        + stay("b", border + 6, Y0, T(12, 0), T(12, 30))  # 10 m away, in the next cell
        + stay("c", border - 64, Y0, T(12, 0), T(12, 30)),  # 60 m: beyond 30 + √(10² + 10²) ≈ 44 m
        [("a", "A"), ("b", "B"), ("c", "C")],
    )
    cells = {r.phone_token: r.cell_x for r in grid_points(events, owners, CLOSE).collect()}
    assert cells["a"] != cells["b"]
    areas = spark.createDataFrame(
        [("330100001", *lat_lon(border + 900, Y0)), ("330100002", *lat_lon(border - 300, Y0 + 200))],
        "area_code string, lat double, lon double",
    )
    got = close_contacts(events, cases, owners, CLOSE, areas=areas)
    assertDataFrameEqual(shown(got), expect(spark, [("A", "B", None, T(12, 0), T(12, 30), 35, 7, 1)]))
    row = got.collect()[0]
    assert row.place_cell == f"143m:{cells['a']}:{math.floor(Y0 / CELL)}"  # the case's cell
    assert row.place_area_code == "330100002"  # 300 m west of the border, not 900 m east


def test_the_same_place_an_hour_later_is_no_contact(frames: Frames) -> None:
    events, cases, owners = frames(
        stay("a", X0, Y0, T(12, 0), T(12, 30)) + stay("b", X0, Y0, T(13, 30), T(14, 0)),
        [("a", "A"), ("b", "B")],
    )
    assert close_contacts(events, cases, owners, CLOSE).count() == 0


def test_a_person_with_two_phones_is_one_contact(spark: SparkSession, frames: Frames) -> None:
    # P's second phone pings a minute after each grid time: its track still covers 12:00 … 12:30
    # (12:01 rounds to 12:00; 12:31 ends the track after 12:30).
    events, cases, owners = frames(
        stay("a", X0, Y0, T(12, 0), T(12, 30))
        + stay("p1", X0 + 3, Y0, T(12, 0), T(12, 30))
        + stay("p2", X0, Y0 + 3, T(12, 1), T(12, 31)),
        [("a", "A"), ("p1", "P"), ("p2", "P")],
    )
    assertDataFrameEqual(
        shown(close_contacts(events, cases, owners, CLOSE)),
        expect(spark, [("A", "P", None, T(12, 0), T(12, 30), 35, 14, 1)]),
    )


def test_the_cases_own_second_phone_is_not_a_contact(spark: SparkSession, frames: Frames) -> None:
    events, cases, owners = frames(
        stay("a1", X0, Y0, T(12, 0), T(12, 30))
        + stay("a2", X0 + 1, Y0, T(12, 0), T(12, 30))
        + stay("b", X0 + 8, Y0, T(12, 10), T(12, 30)),
        [("a1", "A"), ("a2", "A"), ("b", "B")],
    )
    # B meets both of A's phones at each of 5 grid times (12:10 … 12:30): 10 events, 25 minutes.
    assertDataFrameEqual(
        shown(close_contacts(events, cases, owners, CLOSE)),
        expect(spark, [("A", "B", None, T(12, 10), T(12, 30), 25, 10, 1)]),
    )


def test_a_contact_below_min_minutes_is_not_one(spark: SparkSession, frames: Frames) -> None:
    # B is at A's place at 12:00 and 12:05, then 35 minutes later 2 km away (beyond 30-minute tracks): two
    # shared grid times, 10 minutes, under the 15.
    events, cases, owners = frames(
        stay("a", X0, Y0, T(12, 0), T(12, 30))
        + stay("b", X0 + 5, Y0, T(12, 0), T(12, 5))
        + [ping("b", T(12, 40), X0 + 2000, Y0)],
        [("a", "A"), ("b", "B")],
    )
    assert close_contacts(events, cases, owners, GAP_30).count() == 0
    ten = ContactParameters.preset("close", reference_lat=REF, min_minutes=10, max_gap_minutes=30)
    assertDataFrameEqual(
        shown(close_contacts(events, cases, owners, ten)),
        expect(spark, [("A", "B", None, T(12, 0), T(12, 5), 10, 2, 1)]),
    )


def test_companion_preset_same_800_m_cell_more_than_10_minutes(spark: SparkSession, frames: Frames) -> None:
    x, y = (math.floor(X0 / 800) * 800) + 100, (math.floor(Y0 / 800) * 800) + 100  # 100 m into a cell
    far = [ping("b", T(12, 50), x + 5000, y)]
    vague = [(*p[:4], 1500.0) for p in stay("e", x + 10, y, T(12, 0), T(12, 30))]
    events, cases, owners = frames(
        stay("a", x, y, T(12, 0), T(12, 30))
        + stay("b", x + 500, y + 500, T(12, 0), T(12, 10))  # 707 m away, same cell, 3 grid times: 15 min
        + far
        + stay("c", x + 300, y, T(12, 0), T(12, 5))  # same cell, 2 grid times: 10 minutes, not more
        + stay("d", x - 150, y, T(12, 0), T(12, 30))  # 150 m away but in the next cell west
        + vague,  # same cell, but a 1,500 m accuracy places it in no 800 m cell
        [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D"), ("e", "E")],
    )
    # Tracks of at most 30 minutes: B's ping 5 km away 40 minutes on starts another.
    companion = ContactParameters.preset("companion", reference_lat=REF, max_gap_minutes=30)
    got = close_contacts(events, cases, owners, companion)
    assertDataFrameEqual(shown(got), expect(spark, [("A", "B", None, T(12, 0), T(12, 10), 15, 3, 1)]))
    assert got.collect()[0].place_cell == f"800m:{math.floor(x / 800)}:{math.floor(y / 800)}"


def test_pings_outside_the_case_window_are_ignored(spark: SparkSession, frames: Frames) -> None:
    events, cases, owners = frames(
        stay("a", X0, Y0, T(10, 0), T(12, 45))
        + stay("b", X0 + 5, Y0, T(12, 0), T(12, 45))  # together until 12:45, the window ends at 12:20
        + stay("c", X0 + 5, Y0 + 5, T(10, 0), T(10, 40)),  # together only before the window
        [("a", "A"), ("b", "B"), ("c", "C")],
        [("A", T(11, 0), T(12, 20))],
    )
    assertDataFrameEqual(
        shown(close_contacts(events, cases, owners, CLOSE)),
        expect(spark, [("A", "B", None, T(12, 0), T(12, 20), 25, 5, 1)]),
    )


def test_an_unowned_phone_is_reported_by_its_token(spark: SparkSession, frames: Frames) -> None:
    events, cases, owners = frames(
        stay("a", X0, Y0, T(12, 0), T(12, 30)) + stay("u", X0 + 5, Y0, T(12, 0), T(12, 30)),
        [("a", "A")],
    )
    assertDataFrameEqual(
        shown(close_contacts(events, cases, owners, CLOSE)),
        expect(spark, [("A", None, "u", T(12, 0), T(12, 30), 35, 7, 1)]),
    )


def test_depth_2_adds_the_contacts_of_contacts_after_their_first_contact(
    spark: SparkSession,
    frames: Frames,
) -> None:
    far_x = X0 + 3000
    events, cases, owners = frames(
        stay("a", X0, Y0, T(12, 0), T(12, 30))
        + stay("b", far_x, Y0, T(11, 0), T(11, 30))  # B meets D before it meets A: D is no contact
        + stay("d", far_x + 5, Y0, T(11, 0), T(11, 30))
        + stay("b", X0 + 5, Y0, T(12, 0), T(12, 30))
        + stay("b", far_x, Y0 + 2000, T(13, 0), T(13, 30))  # … and C after: C is a contact of degree 2
        + stay("c", far_x + 5, Y0 + 2000, T(13, 0), T(13, 30)),
        [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")],
    )
    deep = ContactParameters.preset("close", reference_lat=REF, depth=2)
    assertDataFrameEqual(
        shown(close_contacts(events, cases, owners, deep)),
        expect(
            spark,
            [
                ("A", "B", None, T(12, 0), T(12, 30), 35, 7, 1),
                ("A", "C", None, T(13, 0), T(13, 30), 35, 7, 2),
            ],
        ),
    )
    assert close_contacts(events, cases, owners, CLOSE).count() == 1  # depth 1: B only


def test_defaults_project_about_the_pings_latitude_and_an_open_window_has_no_end(
    spark: SparkSession, frames: Frames
) -> None:
    events, cases, owners = frames(
        stay("a", X0, Y0, T(12, 0), T(12, 30)) + stay("b", X0 + 5, Y0, T(12, 10), T(12, 30)),
        [("a", "A"), ("b", "B")],
        [("A", T(11, 0), None)],
    )
    got = close_contacts(events, cases, owners)  # the close preset, reference_lat from the pings
    assertDataFrameEqual(shown(got), expect(spark, [("A", "B", None, T(12, 10), T(12, 30), 25, 5, 1)]))
