"""Residents of one shard: households, names, ages, resident IDs, phones, addresses, chronic conditions."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
from dataclasses import dataclass

from faker.providers.person.zh_CN import Provider as _PersonProvider

from healthlake.synth.catalog import (
    AGE_BAND_WEIGHTS,
    CHRONIC_CONDITIONS,
    GIVEN_NAME_CHARS,
    HOUSEHOLD_SIZE_WEIGHTS,
)
from healthlake.synth.identity import make_phone, make_resident_id, stable_fraction
from healthlake.synth.region import Region, Shard

_SURNAMES = list(_PersonProvider.last_names.keys())
_SURNAME_WEIGHTS = list(itertools.accumulate(_PersonProvider.last_names.values()))
_GIVEN_MALE = list(_PersonProvider.first_names_male)
_GIVEN_FEMALE = list(_PersonProvider.first_names_female)
# Zipf-like weights: Faker lists given names from most to least common, so 伟 and 芳 recur as in life.
_GIVEN_MALE_CUM = list(itertools.accumulate(1 / (i + 1) for i in range(len(_GIVEN_MALE))))
_GIVEN_FEMALE_CUM = list(itertools.accumulate(1 / (i + 1) for i in range(len(_GIVEN_FEMALE))))
_AGE_CUM = list(itertools.accumulate(AGE_BAND_WEIGHTS))
_HOUSEHOLD_CUM = list(itertools.accumulate(HOUSEHOLD_SIZE_WEIGHTS))


@dataclass(slots=True)
class Person:
    """One synthetic resident: the clear truth about them."""

    index: int
    person_id: str
    household_id: str
    surname: str
    given: str
    sex: str  # M | F
    birth_date: dt.date
    national_id: str
    phone: str | None
    address: str
    township_code: str
    county_code: str
    home: tuple[float, float]
    work: tuple[float, float]
    conditions: tuple[str, ...]
    insurance_no: str | None
    workplace_id: str = ""  # colleagues (and schoolmates) share a workplace id and its position ``work``
    phone2: str | None = None  # a second phone carried (both send pings; a health record holds this one)

    @property
    def name(self) -> str:
        """Full name, surname first."""
        return self.surname + self.given

    def age_on(self, day: dt.date) -> int:
        """Age in completed years on a day."""
        b = self.birth_date
        return day.year - b.year - ((day.month, day.day) < (b.month, b.day))


def _draw_age(rng: random.Random, minimum: int = 0) -> int:
    while True:
        band = rng.choices(range(len(_AGE_CUM)), cum_weights=_AGE_CUM)[0]
        age = band * 5 + rng.randrange(5 if band < 17 else 15)
        if age >= minimum:
            return age


def _given_name(rng: random.Random, sex: str) -> str:
    if rng.random() < 0.6:
        names, cum = (_GIVEN_MALE, _GIVEN_MALE_CUM) if sex == "M" else (_GIVEN_FEMALE, _GIVEN_FEMALE_CUM)
        return rng.choices(names, cum_weights=cum)[0]
    return "".join(rng.sample(GIVEN_NAME_CHARS, rng.choice((1, 2, 2, 2))))


def _conditions(rng: random.Random, age: int) -> tuple[str, ...]:
    found = []
    for cond in CHRONIC_CONDITIONS:
        p = 0.0
        for min_age, prevalence in cond.prevalence:
            if age >= min_age:
                p = prevalence
        if rng.random() < p:
            found.append(cond.name)
    return tuple(found)


def _offset(lat: float, lon: float, rng: random.Random, km: float) -> tuple[float, float]:
    """A point up to ``km`` kilometres from (lat, lon)."""
    d = km * math.sqrt(rng.random())
    a = rng.uniform(0, 2 * math.pi)
    return (
        round(lat + d * math.cos(a) / 111.0, 6),
        round(lon + d * math.sin(a) / (111.0 * math.cos(math.radians(lat))), 6),
    )


WORKPLACE_DEG = 0.006
"""Side of a workplace block in degrees (about 600 m): everyone working in one block works at one address."""


def _workplace(
    county_code: str, lat0: float, lon0: float, drawn: tuple[float, float]
) -> tuple[str, tuple[float, float]]:
    """The workplace block a drawn point falls in: its id and centre (colleagues share a position)."""
    row = math.floor((drawn[0] - lat0) / WORKPLACE_DEG)
    col = math.floor((drawn[1] - lon0) / WORKPLACE_DEG)
    centre = (round(lat0 + (row + 0.5) * WORKPLACE_DEG, 6), round(lon0 + (col + 0.5) * WORKPLACE_DEG, 6))
    return f"W{county_code}{row + 500:03d}{col + 500:03d}", centre


def has_second_phone(seed: int, index: int, share: float) -> bool:
    """Whether a phone owner carries a second phone (only residents the health-record extract always holds,
    so that the second number reaches a patient record; see ``feeds.FeedEmitter.emit_health_records``)."""
    return (
        stable_fraction(seed, index, "health-record") < 0.9 and stable_fraction(seed, index, "phone2") < share
    )


def generate_persons(
    region: Region, shard: Shard, seed: int, start: dt.date, second_phone_share: float = 0.0
) -> list[Person]:
    """Generate the residents of one shard, grouped in households living in the county's townships.

    A phone owner carries a second phone with probability ``second_phone_share`` (drawn apart from the
    other draws, so the share changes no one else).
    """
    rng = random.Random(f"persons:{seed}:{shard.shard_id}")
    county = region.area(shard.county_code)
    townships = region.children(county.code)
    town_cum = list(itertools.accumulate(t.weight for t in townships))
    persons: list[Person] = []
    sequence: dict[tuple[dt.date, str], int] = {}
    base = region.county_sequence_base[county.code]
    household_no = 0
    while len(persons) < shard.n_persons:
        household_no += 1
        household_id = f"HH{county.code}{shard.chunk:03d}{household_no:06d}"
        town = rng.choices(townships, cum_weights=town_cum)[0]
        home = _offset(town.lat, town.lon, rng, 3.0)
        if town.name.endswith("街道"):
            address = (
                f"{town.name}{rng.choice('建设人民解放中山和平')}路{rng.randint(1, 300)}号"
                f"{rng.randint(1, 30)}栋{rng.randint(1, 6)}单元{rng.randint(1, 30)}0{rng.randint(1, 4)}室"
            )
        else:
            address = (
                f"{town.name}{rng.choice('东西南北新')}{rng.choice('风华塘岭湾桥')}村{rng.randint(1, 12)}组"
                f"{rng.randint(1, 120)}号"
            )
        size = rng.choices(range(1, 6), cum_weights=_HOUSEHOLD_CUM)[0]
        size = min(size, shard.n_persons - len(persons))
        head_age = _draw_age(rng, minimum=20)
        surname = rng.choices(_SURNAMES, cum_weights=_SURNAME_WEIGHTS)[0]
        for member in range(size):
            if member == 0:
                age, sex = head_age, rng.choice("MF")
            elif member == 1:
                age = max(20, head_age + rng.randint(-5, 5))
                sex = "F" if persons[-1].sex == "M" else "M"
            elif head_age >= 45 and rng.random() < 0.3:
                age, sex = min(100, head_age + rng.randint(22, 32)), rng.choice("MF")
            else:
                age, sex = max(0, head_age - rng.randint(22, 35)), rng.choice("MF")
            birth = start - dt.timedelta(days=age * 365 + rng.randrange(365))
            key = (birth, sex)
            k = sequence.get(key, 0)
            sequence[key] = k + 1
            v = (base + shard.chunk + k * shard.n_chunks) % 500
            national_id = make_resident_id(county.code, birth, 2 * v + (1 if sex == "M" else 0))
            phone = make_phone(rng) if 12 <= age <= 85 and rng.random() < 0.93 else None
            index = shard.person_offset + len(persons)
            person_surname = (
                surname
                if member == 0 or member >= 2
                else rng.choices(_SURNAMES, cum_weights=_SURNAME_WEIGHTS)[0]
            )
            given = _given_name(rng, sex)  # drawn in this order (given, work, …): same seed, same people
            workplace_id, work = _workplace(
                county.code, county.lat, county.lon, _offset(county.lat, county.lon, rng, 8.0)
            )
            phone2 = None
            if phone is not None and has_second_phone(seed, index, second_phone_share):
                phone2 = make_phone(random.Random(f"phone2:{seed}:{index}"))
            persons.append(
                Person(
                    index=index,
                    person_id=f"P{index:09d}",
                    household_id=household_id,
                    surname=person_surname,
                    given=given,
                    sex=sex,
                    birth_date=birth,
                    national_id=national_id,
                    phone=phone,
                    address=address,
                    township_code=town.code,
                    county_code=county.code,
                    home=home,
                    work=work,
                    conditions=_conditions(rng, age),
                    insurance_no=f"{county.code}{rng.randrange(10**10):010d}" if rng.random() < 0.7 else None,
                    workplace_id=workplace_id,
                    phone2=phone2,
                )
            )
    return persons
