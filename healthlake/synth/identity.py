"""Identity helpers for synthetic residents: GB 11643 resident ID numbers, names, phones, defects."""

from __future__ import annotations

import datetime as dt
import hashlib
import random

from healthlake.synth.catalog import HOMOPHONES

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def resident_id_check_digit(first17: str) -> str:
    """Return the GB 11643-1999 check character for the first 17 digits of a resident ID number."""
    total = sum(int(ch) * w for ch, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def make_resident_id(area_code: str, birth_date: dt.date, sequence: int) -> str:
    """Build an 18-character resident ID: area (6), birth date (8), sequence (3, odd = male), check (1)."""
    first17 = f"{area_code}{birth_date:%Y%m%d}{sequence:03d}"
    return first17 + resident_id_check_digit(first17)


def resident_id_is_valid(value: str) -> bool:
    """True when an 18-character resident ID has the right shape and a valid check character."""
    if len(value) != 18 or not value[:17].isdigit():
        return False
    return resident_id_check_digit(value[:17]) == value[17].upper()


def transpose_digits(value: str, rng: random.Random) -> str:
    """Swap two adjacent, different characters of an ID number (the commonest keying error)."""
    positions = [i for i in range(len(value) - 1) if value[i] != value[i + 1]]
    if not positions:
        return value
    i = rng.choice(positions)
    return value[:i] + value[i + 1] + value[i] + value[i + 2 :]


def homophone_variant(name: str, rng: random.Random) -> str:
    """Replace one character of a name by a homophone (e.g. 张伟 → 章伟); unchanged if none is known."""
    positions = [i for i, ch in enumerate(name) if ch in HOMOPHONES]
    if not positions:
        return name
    i = rng.choice(positions)
    return name[:i] + rng.choice(HOMOPHONES[name[i]]) + name[i + 1 :]


def typo_variant(surname: str, given: str, rng: random.Random, pool: str) -> str:
    """A keying error in a name: a wrong given-name character, or given name typed before the surname."""
    if rng.random() < 0.3 and given:
        return given + surname
    i = rng.randrange(len(given)) if given else 0
    wrong = rng.choice(pool)
    while wrong == given[i : i + 1]:
        wrong = rng.choice(pool)
    return surname + given[:i] + wrong + given[i + 1 :]


def make_phone(rng: random.Random) -> str:
    """An 11-digit mainland mobile number (13x, 15x, 17x, 18x, 19x prefixes)."""
    return f"1{rng.choice('35789')}{rng.randrange(10**9):09d}"


def stable_fraction(*parts: object) -> float:
    """A uniform number in [0, 1) fixed by ``parts`` (unlike ``hash()``, the same in every process)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
