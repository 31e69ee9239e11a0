"""Resident ID numbers, name variants and stable randomness."""

from __future__ import annotations

import datetime as dt
import random
import subprocess
import sys

import pytest

from healthlake.synth.identity import (
    homophone_variant,
    make_resident_id,
    resident_id_check_digit,
    resident_id_is_valid,
    stable_fraction,
    transpose_digits,
)


@pytest.mark.parametrize(
    ("first17", "check"),
    [("11010519491231002", "X"), ("44052418800101001", "4"), ("36010219820320115", "X")],
)
def test_check_digit_matches_gb11643(first17: str, check: str) -> None:
    assert resident_id_check_digit(first17) == check


def test_make_resident_id_encodes_area_birth_and_sex() -> None:
    rid = make_resident_id("360102", dt.date(1982, 3, 20), 115)
    assert rid == "36010219820320115X"
    assert resident_id_is_valid(rid)
    assert int(rid[16]) % 2 == 1  # odd sequence digit: male


def test_transposed_digits_usually_break_the_check_digit() -> None:
    rng = random.Random(1)
    ids = [
        make_resident_id("360102", dt.date(1950, 1, 1) + dt.timedelta(days=i), 2 * i % 998)
        for i in range(500)
    ]
    transposed = [transpose_digits(i, rng) for i in ids]
    assert all(t != i and sorted(t) == sorted(i) for t, i in zip(transposed, ids, strict=True))
    invalid = sum(not resident_id_is_valid(t) for t in transposed)
    assert invalid / len(ids) > 0.8


def test_homophone_variant_keeps_length_and_changes_one_character() -> None:
    rng = random.Random(3)
    variant = homophone_variant("张伟", rng)
    assert len(variant) == 2 and variant != "张伟"
    assert sum(a != b for a, b in zip(variant, "张伟", strict=True)) == 1
    assert homophone_variant("龘", rng) == "龘"  # no known homophone: unchanged


def test_stable_fraction_is_the_same_in_another_process() -> None:
    here = stable_fraction(42, 7, "bp")
    code = "from healthlake.synth.identity import stable_fraction; print(repr(stable_fraction(42, 7, 'bp')))"
    there = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
    ).stdout.strip()
    assert float(there) == here
    assert 0.0 <= here < 1.0
