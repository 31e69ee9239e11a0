"""What happens to residents over the window: visits, stays, labs, procedures, allergies, follow-ups,
vaccines, tests, pings.

The simulation is per person and draws from seeded ``random.Random`` streams per shard, so a shard always
produces the same events whatever machine or partitioning runs it.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
import random
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np

from healthlake.holidays import is_public_holiday
from healthlake.synth.catalog import (
    ACUTE_DIAGNOSES,
    ALLERGEN_WEIGHTS,
    ALLERGENS,
    CONDITION_BY_NAME,
    DEPARTMENTS,
    DRUGS,
    ECG,
    EMERGENCY_DIAGNOSES,
    EMERGENCY_PROCEDURES,
    FEVER_CLINIC,
    FEVER_CLINIC_PROCEDURE,
    INPATIENT_DIAGNOSES,
    INPATIENT_PROCEDURES,
    OUTBREAK_DIAGNOSIS,
    OUTPATIENT_PROCEDURES,
    RESPIRATORY_DIAGNOSIS,
    SURGICAL_DIAGNOSES,
    VACCINES,
    WARDS,
    Allergen,
    Code,
)
from healthlake.synth.identity import stable_fraction
from healthlake.synth.mobility import Confinement, Excursion, Pings, Place, Segment, path, sample_pings
from healthlake.synth.population import Person
from healthlake.synth.region import Institution, Region

if TYPE_CHECKING:
    from healthlake.config import SynthSettings

YEAR = 365.0
HOSPITALS = ("tertiary_hospital", "secondary_hospital")
"""Institution kinds that perform procedures and record allergies (clinics send neither)."""


@dataclass(slots=True)
class Observation:
    """A lab result or vital sign, value in the test's canonical unit."""

    test: str  # key of catalog.LAB_TESTS
    value: float
    time: dt.datetime


MANAGED_CONDITIONS = ("hypertension", "diabetes")
"""Conditions under the basic public health service's chronic-disease management (follow-ups)."""


WEEKDAY_VISITS = (1.3, 1.15, 1.1, 1.05, 1.0, 0.65, 0.5)
"""Relative outpatient volume Monday … Sunday: clinics are busiest after the weekend."""
HOLIDAY_VISITS = 0.3
"""Relative outpatient volume on a public holiday (``healthlake.holidays``)."""
WINTER_PEAK = 0.25
"""Seasonal swing of visits: 1 ± this, highest around 20 January (respiratory season)."""


def _poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw of mean ``lam`` (Knuth's; ``lam`` is small here)."""
    n, p, limit = 0, rng.random(), math.exp(-lam)
    while p > limit:
        n += 1
        p *= rng.random()
    return n


def visit_weight(day: dt.date, weekly: bool = True) -> float:
    """How many visits a day draws, relative to the year's mean: the season, and (``weekly``, planned
    outpatient visits) the weekday and public holidays. Emergency visits keep the season only."""
    weight = 1 + WINTER_PEAK * math.cos(2 * math.pi * (day.timetuple().tm_yday - 20) / 365.25)
    if weekly:
        weight *= HOLIDAY_VISITS if is_public_holiday(day) else WEEKDAY_VISITS[day.weekday()]
    return weight


WAVE_PEAK = (1, 15)
"""(month, day) the winter's respiratory wave peaks around; each city's own peak is within
``WAVE_SPREAD_DAYS`` of it, drawn per city and year."""
WAVE_SPREAD_DAYS = 20
WAVE_SD_DAYS = 10.0
"""The wave's width: a normal curve with this standard deviation in days."""
WAVE_SURGE = 0.8
"""Ordinary outpatient and emergency visits at the wave's peak: 1 + this times the calendar's."""
WAVE_LEAD_DAYS = 7
"""Fever clinics fill this many days before the ordinary visits peak (the first ill come early; the worried
and the complications follow): the lead a demand model reading fever-clinic visits can learn."""
WAVE_FEVER_VISITS = 0.12
"""Fever-clinic visits per resident over one whole wave."""


def wave_peak(seed: int, city_code: str, year: int) -> dt.date:
    """The day ``city_code``'s respiratory wave of the ``year``'s winter peaks (ordinary visits)."""
    offset = random.Random(f"wave:{seed}:{city_code}:{year}").randint(-WAVE_SPREAD_DAYS, WAVE_SPREAD_DAYS)
    return dt.date(year, *WAVE_PEAK) + dt.timedelta(days=offset)


def wave_level(seed: int, city_code: str, day: dt.date, lead_days: int = 0) -> float:
    """How far into its respiratory wave ``city_code`` is on ``day``: 1 at the peak, 0 far from it (the
    curve of ordinary visits; ``lead_days`` earlier for fever clinics)."""
    level = 0.0
    for year in (day.year, day.year + 1):  # this winter's peak, and next January's for a December day
        gap = (day - wave_peak(seed, city_code, year) + dt.timedelta(days=lead_days)).days
        level += math.exp(-0.5 * (gap / WAVE_SD_DAYS) ** 2)
    return level


CONTROL_LOGIT = {
    "intercept": -1.0,
    "per_year_over_60": 0.03,
    "per_other_condition": 0.4,
    "medicated": -1.0,
    "regular_followups": -0.6,
    "uncontrolled_last_time": 1.2,
    "person_sd": 0.7,
}
"""The planted risk that a managed patient's follow-up reading is over target: a logistic model of age,
the patient's other chronic conditions, whether the condition is treated (prescriptions at encounters),
whether they come on schedule, whether the last reading was over target, and a stable personal tendency
(normal, sd ``person_sd``). The generator keeps each follow-up's risk in the truth."""


def medicated(seed: int, p: Person, disease: str) -> bool:
    """Whether a managed patient's condition is treated: seven in ten (their encounters prescribe for it)."""
    return stable_fraction(seed, p.index, "medicated", disease) < 0.7


def control_risk(
    age: int, other_conditions: int, treated: bool, regular: bool, uncontrolled_last: bool, person: float
) -> float:
    """The probability a follow-up reading is over target (``CONTROL_LOGIT``)."""
    c = CONTROL_LOGIT
    logit = (
        c["intercept"]
        + c["per_year_over_60"] * (age - 60)
        + c["per_other_condition"] * other_conditions
        + c["medicated"] * treated
        + c["regular_followups"] * regular
        + c["uncontrolled_last_time"] * uncontrolled_last
        + c["person_sd"] * person
    )
    return 1 / (1 + math.exp(-logit))


def under_management(seed: int, p: Person) -> bool:
    """Whether a resident is registered for chronic-disease management (three in four of those eligible)."""
    eligible = any(c in MANAGED_CONDITIONS for c in p.conditions)
    return eligible and stable_fraction(seed, p.index, "registered") < 0.75


@dataclass(slots=True)
class Procedure:
    """A procedure performed during an encounter (ICD-9-CM-3 code)."""

    code: str
    display: str
    start: dt.datetime
    end: dt.datetime | None = None  # an operation's end; None for a point-in-time procedure


@dataclass(slots=True)
class Allergy:
    """An allergy a hospital recorded for its patient at an encounter."""

    allergen: Allergen
    status: str  # FHIR clinical status: active | resolved
    recorded: dt.datetime


def allergies_of(seed: int, p: Person, share: float) -> tuple[tuple[Allergen, str], ...]:
    """A resident's allergies with their clinical status (``active`` or ``resolved``), fixed per person.

    Drawn from ``stable_fraction``, not a shard's stream: a person has the same allergies in every window
    and whichever hospital records them, and the simulation's other draws stay as they were.

    Args:
        seed: The region's seed.
        p: The resident.
        share: Share of residents with an allergy (``synth.allergy_share``).

    Returns:
        One or two (allergen, clinical status) pairs; none for most residents.
    """
    if stable_fraction(seed, p.index, "allergy") >= share:
        return ()
    picks = [_weighted_allergen(stable_fraction(seed, p.index, "allergen"))]
    if stable_fraction(seed, p.index, "allergy-2") < 0.2:
        second = _weighted_allergen(stable_fraction(seed, p.index, "allergen-2"))
        if second != picks[0]:
            picks.append(second)
    # Food allergies of childhood are often outgrown; drug allergy labels stay on the record.
    return tuple(
        (
            a,
            "resolved"
            if a.category == "food" and stable_fraction(seed, p.index, "resolved", a.code) < 0.3
            else "active",
        )
        for a in picks
    )


def _weighted_allergen(u: float) -> Allergen:
    total, acc = sum(ALLERGEN_WEIGHTS), 0.0
    for allergen, weight in zip(ALLERGENS, ALLERGEN_WEIGHTS, strict=True):
        acc += weight / total
        if u < acc:
            return allergen
    return ALLERGENS[-1]


@dataclass(slots=True)
class Encounter:
    """An outpatient, emergency or inpatient encounter at one institution."""

    encounter_id: str
    institution: Institution
    person: Person
    cls: str  # AMB | EMER | IMP
    start: dt.datetime
    end: dt.datetime | None  # None: still admitted at the end of the window
    department: str
    diagnoses: list[tuple[str, str]]  # (ICD-10 code, display); the first is primary
    observations: list[Observation] = field(default_factory=list)
    medications: list[tuple[str, str, str]] = field(default_factory=list)
    ward: str | None = None
    transfers: list[tuple[dt.datetime, str]] = field(default_factory=list)
    disposition: str | None = None  # home | transfer | died | against-advice
    true_risk: float | None = None  # inpatient: true 30-day readmission risk
    readmitted: bool = False
    readmission_of: str | None = None
    update_time: dt.datetime | None = None  # a correction sent later (defect "update")
    updated_department: str | None = None
    cancel_time: dt.datetime | None = None  # sent later as entered-in-error / A11 (defect "cancel")
    procedures: list[Procedure] = field(default_factory=list)
    allergies: list[Allergy] = field(default_factory=list)  # recorded at this encounter


@dataclass(slots=True)
class FollowUp:
    """A chronic-disease follow-up at a township health centre (blood pressure, fasting glucose)."""

    followup_id: str
    institution: Institution
    person: Person
    time: dt.datetime
    disease: str
    sbp: int | None
    dbp: int | None
    glucose: float | None  # mmol/L
    true_risk: float | None = None  # the probability the reading was drawn uncontrolled with
    uncontrolled: bool | None = None  # the reading is over target (BP >= 140/90, fasting glucose >= 7.0)


@dataclass(slots=True)
class NatTest:
    """A nucleic-acid test reported by a CDC lab: single (单管), or one member of a pooled tube (混管)."""

    test_id: str
    institution: Institution
    person: Person
    sample_time: dt.datetime
    report_time: dt.datetime | None  # a pooled member's row has none: the lab reports the tube
    positive: bool | None  # None: pooled, the result is the pool's
    ct_value: float | None
    pool_id: str | None = None
    mode: str = ""  # 单管 | 混管 | "" (background screening rows say nothing)


@dataclass(slots=True)
class Vaccination:
    """A vaccine dose given at a vaccination site."""

    vaccination_id: str
    institution: Institution
    person: Person
    time: dt.datetime
    vaccine_code: str
    vaccine_name: str
    dose_number: int
    lot: str


@dataclass
class ShardEvents:
    """Everything one shard's residents did."""

    encounters: list[Encounter] = field(default_factory=list)
    followups: list[FollowUp] = field(default_factory=list)
    nat_tests: list[NatTest] = field(default_factory=list)
    vaccinations: list[Vaccination] = field(default_factory=list)
    pings: list[Pings] = field(default_factory=list)
    paths: dict[int, list[Segment]] = field(default_factory=dict)  # tracked person index → true path


@dataclass(frozen=True, slots=True)
class PlannedTest:
    """A test the outbreak plan makes someone take (as a contact, in screening, as a re-test)."""

    sample_time: dt.datetime
    report_time: dt.datetime | None
    positive: bool | None  # None: a pooled member (the pool has the result)
    mode: str  # single | pooled
    pool_id: str | None = None


@dataclass(frozen=True, slots=True)
class Pool:
    """A pooled tube (混管, up to 10 swabs) the lab reports once."""

    pool_id: str
    lab_id: str
    sample_time: dt.datetime  # when the tube was sealed (its last swab)
    report_time: dt.datetime
    members: tuple[int, ...]  # person indexes
    positive: bool
    ct_value: float | None


@dataclass(frozen=True, slots=True)
class IsolationOrder:
    """An isolation order of the CDC: for a case, a close or secondary contact, or a risk area."""

    order_id: str
    cdc_id: str
    person: int
    category: str  # case | close_contact | secondary_contact | risk_area
    place_type: str  # centralized | home
    place: Place
    start: dt.datetime
    planned_end: dt.datetime
    released_at: dt.datetime | None  # None: not released within the window


@dataclass(frozen=True)
class OutbreakPlan:
    """The outbreak, planned on the driver: per person, venue visits, tests and isolation to emit."""

    excursions: dict[int, tuple[Excursion, ...]]  # person index → venue visits
    tests: dict[int, tuple[PlannedTest, ...]]  # person index → tests
    fever_visits: dict[int, dt.datetime]  # cases seen at a fever clinic (their symptom onset)
    pools: tuple[Pool, ...] = ()
    isolation: dict[int, tuple[IsolationOrder, ...]] = field(default_factory=dict)
    shard_id: int | None = None  # the shard whose residents the outbreak is among


class Simulator:
    """Simulate one shard's residents over the window."""

    def __init__(
        self,
        region: Region,
        settings: SynthSettings,
        shard_id: int,
        outbreak: OutbreakPlan,
    ) -> None:
        self.region = region
        self.s = settings
        self.rates = settings.rates
        self.start = settings.start
        self.days = settings.days
        self.t0 = dt.datetime.combine(settings.start, dt.time())
        self.t_end = self.t0 + dt.timedelta(days=settings.days)
        self.rng = random.Random(f"events:{settings.seed}:{shard_id}")
        # Procedures draw from a stream of their own, so adding them left every other event as it was.
        self.procedure_rng = random.Random(f"procedures:{settings.seed}:{shard_id}")
        # The inpatient history draws from its own stream too: a region without history is as it was.
        self.history_rng = random.Random(f"inpatient-history:{settings.seed}:{shard_id}")
        # Follow-up readings too: drawing them from the planted control risk left every other event as it was.
        self.followup_rng = random.Random(f"followup-readings:{settings.seed}:{shard_id}")
        # A visit's day is re-drawn from the calendar's weights with a stream of its own: the window's
        # other draws stay as they were, only outpatient and emergency visits move between days.
        self.visit_rng = random.Random(f"visit-days:{settings.seed}:{shard_id}")
        self.visit_history_rng = random.Random(f"visit-history:{settings.seed}:{shard_id}")
        self.wave_rng = random.Random(f"respiratory-wave:{settings.seed}:{shard_id}")
        self._calendars: dict[tuple[object, ...], list[float]] = {}
        self._wave_means: dict[tuple[str, dt.datetime, int], float] = {}
        self.shard_id = shard_id
        self.outbreak = outbreak
        self.events = ShardEvents()
        self._serial = 0
        inst = region.institutions
        self.tertiary: dict[str, list[Institution]] = {}
        for i in inst:
            if i.kind == "tertiary_hospital":
                self.tertiary.setdefault(i.city_code, []).append(i)
        self.secondary = {i.county_code: i for i in inst if i.kind == "secondary_hospital"}
        self.thc = {i.area_code: i for i in inst if i.kind == "township_health_centre"}
        self.village = {i.area_code: i for i in inst if i.kind == "village_clinic"}
        self.lab = {i.city_code: i for i in inst if i.kind == "cdc_lab"}
        self.vacc_site = {i.county_code: i for i in inst if i.kind == "vaccination_site"}
        self.city_of = {a.code: a.parent for a in region.areas if a.level == "county"}

    # -- helpers -------------------------------------------------------------------------------------
    def _id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}{self.start:%y%m%d}{self.shard_id:04d}{self._serial:07d}"

    def _poisson_times(
        self,
        rate_per_year: float,
        hours: tuple[int, int] = (8, 17),
        *,
        first: dt.datetime | None = None,
        days: int | None = None,
    ) -> list[dt.datetime]:
        """Event times of a Poisson process over the window (or ``days`` from ``first``), within ``hours``."""
        first = self.t0 if first is None else first
        days = self.days if days is None else days
        lam = rate_per_year * days / YEAR
        n, p, limit = 0, self.rng.random(), math.exp(-lam)
        while p > limit:
            n += 1
            p *= self.rng.random()
        return sorted(
            first
            + dt.timedelta(
                days=self.rng.randrange(days),
                hours=self.rng.randint(*hours),
                minutes=self.rng.randrange(60),
                seconds=self.rng.randrange(60),
            )
            for _ in range(n)
        )

    def _on_calendar(
        self,
        t: dt.datetime,
        weekly: bool = True,
        first: dt.datetime | None = None,
        days: int | None = None,
        wave_city: str | None = None,
    ) -> dt.datetime:
        """``t`` moved to a day of the window (or of ``days`` from ``first``) drawn by ``visit_weight``
        (times the respiratory wave of ``wave_city``, when given), at the same time of day."""
        first = self.t0 if first is None else first
        days = self.days if days is None else days
        key = (first, days, weekly, wave_city)
        cumulative = self._calendars.get(key)
        if cumulative is None:
            weights = [
                self._day_weight((first + dt.timedelta(days=k)).date(), weekly, wave_city)
                for k in range(days)
            ]
            cumulative = list(itertools.accumulate(weights))
            self._calendars[key] = cumulative
        k = min(bisect.bisect_right(cumulative, self.visit_rng.random() * cumulative[-1]), days - 1)
        return first + dt.timedelta(days=k) + (t - t.replace(hour=0, minute=0, second=0, microsecond=0))

    def _day_weight(self, day: dt.date, weekly: bool, wave_city: str | None) -> float:
        weight = visit_weight(day, weekly)
        if wave_city is not None:
            weight *= 1 + WAVE_SURGE * wave_level(self.s.seed, wave_city, day)
        return weight

    def _wave_mean(self, city: str, first: dt.datetime, days: int) -> float:
        """The mean surge factor (1 + ``WAVE_SURGE`` × the wave's level) over ``days`` from ``first``: visit
        rates are scaled by it, so that the wave adds visits rather than only moving them between days."""
        key = (city, first, days)
        if key not in self._wave_means:
            levels = [
                wave_level(self.s.seed, city, (first + dt.timedelta(days=k)).date()) for k in range(days)
            ]
            self._wave_means[key] = 1 + WAVE_SURGE * sum(levels) / max(days, 1)
        return self._wave_means[key]

    def _hospital(self, person: Person, p_county: float) -> Institution:
        city = self.city_of[person.county_code]
        if self.rng.random() < p_county:
            return self.secondary[person.county_code]
        return self.rng.choice(self.tertiary[city])

    def _diagnoses(self, person: Person, pool: tuple, p_chronic: float) -> list[tuple[str, str]]:
        dx = []
        if person.conditions and self.rng.random() < p_chronic:
            c = CONDITION_BY_NAME[self.rng.choice(person.conditions)]
            dx.append((c.icd10, c.display))
        acute = self.rng.choice(pool)
        if not dx or self.rng.random() < 0.4:
            dx.append((acute.code, acute.display))
        for name in person.conditions:
            c = CONDITION_BY_NAME[name]
            if (c.icd10, c.display) not in dx and self.rng.random() < 0.3:
                dx.append((c.icd10, c.display))
        return dx

    def _vitals(self, person: Person, t: dt.datetime, fever: bool = False) -> list[Observation]:
        hyper = "hypertension" in person.conditions
        controlled = (
            stable_fraction(self.s.seed, person.index, "bp") < 0.55
        )  # stable per person, independent of draw order
        sbp = self.rng.gauss(150 if hyper and not controlled else 128, 12)
        dbp = sbp * 0.62 + self.rng.gauss(0, 5)
        temp = self.rng.gauss(38.6, 0.4) if fever else self.rng.gauss(36.6, 0.25)
        return [
            Observation("sbp", round(sbp), t),
            Observation("dbp", round(dbp), t),
            Observation("heart_rate", round(self.rng.gauss(78, 10)), t),
            Observation("temperature", round(temp, 1), t),
        ]

    def _labs(self, person: Person, t: dt.datetime) -> list[Observation]:
        diabetic = "diabetes" in person.conditions
        lab_t = t + dt.timedelta(minutes=self.rng.randint(30, 180))
        obs = [
            Observation("glucose", round(max(3.0, self.rng.gauss(8.4 if diabetic else 5.2, 1.2)), 1), lab_t)
        ]
        if diabetic:
            obs.append(Observation("hba1c", round(self.rng.gauss(7.6, 1.0), 1), lab_t))
        if self.rng.random() < 0.5:
            obs.append(Observation("creatinine", round(self.rng.gauss(80, 18)), lab_t))
            obs.append(Observation("cholesterol", round(self.rng.gauss(4.9, 0.9), 2), lab_t))
        if self.rng.random() < 0.5:
            obs.append(Observation("wbc", round(self.rng.gauss(6.5, 1.8), 1), lab_t))
        return obs

    def _meds(self, person: Person, dx: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
        meds = []
        managed = under_management(self.s.seed, person)
        for name in person.conditions:
            if CONDITION_BY_NAME[name].icd10 not in {c for c, _ in dx}:
                continue
            # The window's draws are made as they always were; a managed condition is prescribed for when it
            # is treated (``medicated``), the others four times in five.
            drawn = self.rng.random() < 0.8
            drug = self.rng.choice(DRUGS[name]) if drawn else None
            if managed and name in MANAGED_CONDITIONS:
                if medicated(self.s.seed, person, name):
                    meds.append(drug or DRUGS[name][0])
            elif drug is not None:
                meds.append(drug)
        if self.rng.random() < 0.5:
            meds.append(self.rng.choice(DRUGS["infection" if self.rng.random() < 0.5 else "symptomatic"]))
        return meds

    def _maybe_correct(self, enc: Encounter) -> None:
        """Draw the later-arriving correction and cancellation defects for an encounter."""
        base = enc.end or enc.start
        if self.rng.random() < self.rates.update:
            enc.update_time = base + dt.timedelta(hours=self.rng.randint(6, 60))
            enc.updated_department = self.rng.choice(DEPARTMENTS[enc.cls])
        if self.rng.random() < self.rates.cancel:
            enc.cancel_time = base + dt.timedelta(hours=self.rng.randint(2, 48))

    def _add_procedure(self, enc: Encounter, code: Code, start: dt.datetime, minutes: int = 0) -> None:
        """Add a procedure to ``enc`` when it is performed inside the window (``minutes``: its duration)."""
        if start < self.t_end:
            end = start + dt.timedelta(minutes=minutes) if minutes else None
            enc.procedures.append(Procedure(code.code, code.display, start, end))

    def _procedures(self, enc: Encounter, pool: tuple[Code, ...], share: float) -> None:
        """A hospital visit's procedure (an ECG, an X-ray …) with probability ``share``, during the visit."""
        if enc.institution.kind not in HOSPITALS or self.procedure_rng.random() >= share:
            return
        code = self.procedure_rng.choice(pool)
        span = ((enc.end or enc.start) - enc.start).total_seconds()
        self._add_procedure(
            enc, code, enc.start + dt.timedelta(seconds=round(span * self.procedure_rng.random()))
        )

    def _inpatient_procedures(self, enc: Encounter) -> None:
        """A stay's operation (surgical diagnoses) or imaging (most others), and an ECG for half of them.

        Both within the first day, so they come before the earliest possible discharge (20 hours).
        """
        rng = self.procedure_rng
        dx = next((code for code, _ in enc.diagnoses if code in INPATIENT_PROCEDURES), None)
        if dx is not None and (dx in SURGICAL_DIAGNOSES or rng.random() < 0.7):
            code = rng.choice(INPATIENT_PROCEDURES[dx])
            if dx in SURGICAL_DIAGNOSES:
                start = enc.start + dt.timedelta(hours=rng.randint(2, 14), minutes=rng.randrange(60))
                self._add_procedure(enc, code, start, minutes=rng.randint(40, 180))
            else:
                self._add_procedure(enc, code, enc.start + dt.timedelta(hours=rng.randint(1, 6)))
        if rng.random() < 0.5:
            self._add_procedure(enc, ECG, enc.start + dt.timedelta(minutes=rng.randint(20, 120)))

    def _record_allergies(self, p: Person, encounters: list[Encounter]) -> None:
        """Each hospital the resident visits records their allergies at their first encounter there.

        HL7 v2's AL1 segment has no clinical status, so an HL7 hospital's list holds the current
        allergies only: a resolved one is recorded by FHIR hospitals alone.
        """
        allergies = allergies_of(self.s.seed, p, self.s.allergy_share)
        if not allergies:
            return
        first: dict[str, Encounter] = {}
        for enc in sorted(encounters, key=lambda e: (e.start, e.encounter_id)):
            if enc.institution.kind in HOSPITALS:
                first.setdefault(enc.institution.institution_id, enc)
        for enc in first.values():
            for allergen, status in allergies:
                if status == "active" or enc.institution.feed == "fhir":
                    enc.allergies.append(Allergy(allergen, status, enc.start))

    # -- the simulation ------------------------------------------------------------------------------
    def run(self, persons: list[Person]) -> ShardEvents:
        """Simulate every resident of the shard."""
        for person in persons:
            self._person(person)
        return self.events

    def _person(self, p: Person) -> None:
        first_encounter = len(self.events.encounters)
        age = p.age_on(self.start)
        n_chronic = len(p.conditions)
        frailty = (1.5 if age >= 60 else 1.0) * (2.0 if age < 5 else 1.0) * (1 + 0.5 * n_chronic)
        self._visits(p, frailty)
        admit_factor = (2.5 if age >= 65 else 1.3 if age >= 45 else 1.0) * (1 + 0.6 * n_chronic)
        for t in self._poisson_times(0.12 * admit_factor, hours=(0, 23)):
            self._inpatient(p, t, self._hospital(p, 0.5), age)
        if self.s.inpatient_history_days:
            self._inpatient_history(p, 0.12 * admit_factor)
        if self.s.visit_history_days:
            self._visit_history(p, frailty)
        self._followups(p)
        self._vaccinations(p, age)
        self._nat_tests(p)
        self._pings(p)
        self._record_allergies(p, self.events.encounters[first_encounter:])

    def _visits(
        self,
        p: Person,
        frailty: float,
        first: dt.datetime | None = None,
        days: int | None = None,
        wave_city: str | None = None,
    ) -> None:
        """Outpatient visits at hospitals and clinics and emergency visits, over the window (or ``days``
        from ``first``), each on a day drawn by the calendar (``visit_weight``) and, for ``wave_city``,
        its respiratory wave (more visits, most of them near the peak)."""
        surge = 1.0 if wave_city is None else self._wave_mean(wave_city, first or self.t0, days or self.days)

        def times(rate: float, hours: tuple[int, int] = (8, 17)) -> list[dt.datetime]:
            return self._poisson_times(rate * surge, hours, first=first, days=days)

        def day_of(t: dt.datetime, weekly: bool) -> dt.datetime:
            return self._on_calendar(t, weekly, first, days, wave_city)

        for t in times(4.0 * frailty):
            self._outpatient(p, day_of(t, True), self._hospital(p, 0.55), "AMB")
        for t in times(0.3 * frailty, hours=(0, 23)):
            self._outpatient(p, day_of(t, False), self._hospital(p, 0.7), "EMER")
        for t in times(3.0 * frailty):
            clinic = self.village if self.rng.random() < 0.5 else self.thc
            self._outpatient(p, day_of(t, True), clinic[p.township_code], "AMB")

    def _visit_history(self, p: Person, frailty: float) -> None:
        """The resident's outpatient and emergency visits of ``synth.visit_history_days`` before the window,
        from a stream of their own (``visit_history_rng``); sent with the first day's feeds.

        The history holds the winters' respiratory waves (``wave_level``): fever-clinic visits first, then
        ``WAVE_LEAD_DAYS`` later a surge of ordinary visits. The window's own visits keep the calendar
        alone, so a region's window is the same with or without history.
        """
        days = self.s.visit_history_days
        first = self.t0 - dt.timedelta(days=days)
        city = self.city_of[p.county_code]
        window_rng, self.rng = self.rng, self.visit_history_rng
        try:
            self._visits(p, frailty, first, days, wave_city=city)
            self.rng = self.wave_rng
            self._wave_fever_visits(p, city, first, days)
        finally:
            self.rng = window_rng

    def _wave_fever_visits(self, p: Person, city: str, first: dt.datetime, days: int) -> None:
        """Fever-clinic visits (an upper respiratory infection, a fever) of the respiratory waves within
        ``days`` from ``first``: ``WAVE_FEVER_VISITS`` per resident and whole wave, on days drawn by the
        wave's curve ``WAVE_LEAD_DAYS`` ahead of the ordinary visits'."""
        key = ("fever", city, first, days)
        cumulative = self._calendars.get(key)
        if cumulative is None:
            levels = [
                wave_level(self.s.seed, city, (first + dt.timedelta(days=k)).date(), WAVE_LEAD_DAYS)
                for k in range(days)
            ]
            cumulative = list(itertools.accumulate(levels))
            self._calendars[key] = cumulative
        waves = cumulative[-1] / (WAVE_SD_DAYS * math.sqrt(2 * math.pi))  # the curve's area is one wave
        for _ in range(_poisson(self.rng, WAVE_FEVER_VISITS * waves)):
            k = min(bisect.bisect_right(cumulative, self.rng.random() * cumulative[-1]), days - 1)
            t = first + dt.timedelta(days=k, hours=self.rng.randint(8, 20), minutes=self.rng.randrange(60))
            self.events.encounters.append(self._fever_clinic_visit(p, t, 30, RESPIRATORY_DIAGNOSIS))

    def _fever_clinic_visit(self, p: Person, t: dt.datetime, minutes: int, diagnosis: Code) -> Encounter:
        """A visit at ``t`` to a hospital's fever clinic (``FEVER_CLINIC``), with fever vitals, sent home."""
        enc = Encounter(
            self._id("E"),
            self._hospital(p, 0.7),
            p,
            "AMB",
            t,
            t + dt.timedelta(minutes=minutes),
            FEVER_CLINIC,
            [(diagnosis.code, diagnosis.display)],
        )
        enc.observations = self._vitals(p, t + dt.timedelta(minutes=5), fever=True)
        enc.disposition = "home"
        return enc

    def _inpatient_history(self, p: Person, rate_per_year: float) -> None:
        """The resident's inpatient stays of ``synth.inpatient_history_days`` before the window.

        Drawn from a stream of their own (``history_rng``), so the window's events are the same with or
        without history. A stay's readmission may fall inside the window; every record of a stay before
        the window is sent with the first day's feeds (``Feeds._day``).
        """
        days = self.s.inpatient_history_days
        window_rng, self.rng = self.rng, self.history_rng
        try:
            first = self.t0 - dt.timedelta(days=days)
            for t in self._poisson_times(rate_per_year, hours=(0, 23), first=first, days=days):
                if t.date() < p.birth_date:
                    continue
                self._inpatient(p, t, self._hospital(p, 0.5), p.age_on(t.date()))
        finally:
            self.rng = window_rng

    def _outpatient(self, p: Person, t: dt.datetime, inst: Institution, cls: str) -> Encounter:
        pool = EMERGENCY_DIAGNOSES if cls == "EMER" else ACUTE_DIAGNOSES
        dx = self._diagnoses(p, pool, 0.6)
        end = t + dt.timedelta(minutes=self.rng.randint(10, 240 if cls == "EMER" else 60))
        enc = Encounter(self._id("E"), inst, p, cls, t, end, self.rng.choice(DEPARTMENTS[cls]), dx)
        if self.rng.random() < 0.6:
            enc.observations += self._vitals(p, t + dt.timedelta(minutes=5))
        if self.rng.random() < 0.4:
            enc.observations += self._labs(p, t)
        enc.medications = self._meds(p, dx)
        enc.disposition = "home"
        self._maybe_correct(enc)
        if cls == "EMER":
            self._procedures(enc, EMERGENCY_PROCEDURES, 0.7)
        else:
            self._procedures(enc, OUTPATIENT_PROCEDURES, 0.4)
        self.events.encounters.append(enc)
        return enc

    def _inpatient(
        self, p: Person, t: dt.datetime, inst: Institution, age: int, readmission_of: str | None = None
    ) -> None:
        n_chronic = len(p.conditions)
        los_days = max(1, round(self.rng.gammavariate(2.0, 2.5 + 0.05 * max(0, age - 50) + 0.8 * n_chronic)))
        end = t + dt.timedelta(days=los_days, hours=self.rng.randint(-4, 4))
        dx = self._diagnoses(p, INPATIENT_DIAGNOSES, 0.3)
        enc = Encounter(
            self._id("I"),
            inst,
            p,
            "IMP",
            t,
            end if end < self.t_end else None,
            self.rng.choice(DEPARTMENTS["IMP"]),
            dx,
            ward=self.rng.choice(WARDS),
            readmission_of=readmission_of,
        )
        enc.observations = self._vitals(p, t + dt.timedelta(hours=1)) + self._labs(p, t)
        enc.medications = self._meds(p, dx)
        if los_days >= 3 and self.rng.random() < 0.25:
            when = t + dt.timedelta(days=self.rng.randint(1, los_days - 1))
            if when < self.t_end:
                enc.transfers.append((when, self.rng.choice(WARDS)))
        enc.disposition = self.rng.choices(("home", "transfer", "died", "against-advice"), (90, 5, 1, 4))[0]
        logit = (
            -2.6
            + 0.025 * (age - 60)
            + 0.45 * n_chronic
            + 0.06 * min(los_days, 30)
            + 0.5 * ("copd" in p.conditions)
            + 0.5 * (enc.disposition == "against-advice")
        )
        enc.true_risk = round(1 / (1 + math.exp(-logit)), 4) if enc.disposition != "died" else 0.0
        self._maybe_correct(enc)
        self._inpatient_procedures(enc)
        self.events.encounters.append(enc)
        if enc.end is None or enc.disposition == "died" or enc.cancel_time is not None:
            return
        if self.rng.random() < enc.true_risk:
            again = enc.end + dt.timedelta(days=self.rng.uniform(1, 30))
            if again < self.t_end:
                enc.readmitted = True
                where = inst if self.rng.random() < 0.7 else self._hospital(p, 0.5)
                self._inpatient(p, again, where, age, readmission_of=enc.encounter_id)

    def _followups(self, p: Person) -> None:
        if not under_management(self.s.seed, p):
            return
        managed = [c for c in p.conditions if c in MANAGED_CONDITIONS]
        # Regularly managed patients are seen every ~90 days, the others every 120-200 days.
        regular = stable_fraction(self.s.seed, p.index, "regular") < 0.65
        interval = 90 if regular else 120 + 80 * stable_fraction(self.s.seed, p.index, "interval")
        phase = self.rng.uniform(0, interval)
        inst = self.thc[p.township_code]
        # A region joins the platform with its follow-up history (synth.followup_history_days before the
        # first day), so the 12-month management indicators mean something from the first month.
        history = self.s.followup_history_days
        first = self.t0 - dt.timedelta(days=history)
        person = NormalDist().inv_cdf(
            min(max(stable_fraction(self.s.seed, p.index, "control"), 1e-6), 1 - 1e-6)
        )
        uncontrolled_last = dict.fromkeys(managed, False)
        k = 0
        while phase + k * interval < history + self.days:
            day = first + dt.timedelta(days=phase + k * interval)
            t = day.replace(
                hour=self.rng.randint(8, 16), minute=self.rng.randrange(60), second=0, microsecond=0
            )
            for disease in managed:
                hyper = disease == "hypertension"
                # Drawn as before, so that the window's other events stay where they were; the reading
                # sent is drawn from the planted control risk instead (``followup_rng``).
                self._vitals(p, t)
                if not hyper:
                    self.rng.gauss(7.6, 1.6)
                risk = control_risk(
                    p.age_on(t.date()),
                    len(p.conditions) - 1,
                    medicated(self.s.seed, p, disease),
                    regular,
                    uncontrolled_last[disease],
                    person,
                )
                over = self.followup_rng.random() < risk
                sbp, dbp, glucose = self._reading(disease, over)
                uncontrolled_last[disease] = over
                self.events.followups.append(
                    FollowUp(self._id("F"), inst, p, t, disease, sbp, dbp, glucose, round(risk, 4), over)
                )
            k += 1

    def _reading(self, disease: str, over: bool) -> tuple[int | None, int | None, float | None]:
        """A follow-up reading over target (``over``) or under it: blood pressure (mmHg) for hypertension,
        fasting glucose (mmol/L) for diabetes."""
        rng = self.followup_rng
        if disease == "hypertension":
            if over:
                sbp = 140 + round(abs(rng.gauss(0, 12)))
                return sbp, round(sbp * 0.62 + rng.gauss(0, 5)), None
            sbp = 139 - round(abs(rng.gauss(0, 10)))
            return sbp, min(89, round(sbp * 0.62 + rng.gauss(0, 4))), None
        # A tenth of a mmol/L off the target either side: a site sending mg/dL rounds to whole units.
        if over:
            return None, None, round(7.1 + abs(rng.gauss(0, 1.4)), 1)
        return None, None, round(max(3.9, 6.8 - abs(rng.gauss(0, 0.9))), 1)

    def _vaccinations(self, p: Person, age: int) -> None:
        site = self.vacc_site[p.county_code]
        rate = 10.0 if age < 7 else 0.4 if age >= 60 else 0.1
        for t in self._poisson_times(rate):
            fit = [v for v in VACCINES if v[2] <= age <= v[3]] or [VACCINES[-1]]
            code, name, _, _ = self.rng.choice(fit)
            self.events.vaccinations.append(
                Vaccination(
                    self._id("VAC"),
                    site,
                    p,
                    t,
                    code,
                    name,
                    self.rng.randint(1, 3),
                    f"{self.rng.randrange(2025, 2027)}{self.rng.randrange(10**6):06d}",
                )
            )

    def _nat_tests(self, p: Person) -> None:
        lab = self.lab[self.city_of[p.county_code]]
        for t in self._poisson_times(1.5, hours=(7, 20)):
            report = t + dt.timedelta(hours=self.rng.randint(4, 24))
            self.events.nat_tests.append(NatTest(self._id("NAT"), lab, p, t, report, False, None))
        for test in self.outbreak.tests.get(p.index, ()):
            ct = round(self.rng.uniform(18, 34), 1) if test.positive else None
            mode = "混管" if test.mode == "pooled" else "单管"
            self.events.nat_tests.append(
                NatTest(
                    self._id("NAT"),
                    lab,
                    p,
                    test.sample_time,
                    test.report_time,
                    test.positive,
                    ct,
                    test.pool_id,
                    mode,
                )
            )
        if p.index in self.outbreak.fever_visits:
            enc = self._fever_clinic_visit(p, self.outbreak.fever_visits[p.index], 40, OUTBREAK_DIAGNOSIS)
            self._procedures(enc, (FEVER_CLINIC_PROCEDURE,), 0.9)
            self.events.encounters.append(enc)

    def _pings(self, p: Person) -> None:
        """The true path of a tracked resident and what each of their phones reports of it."""
        excursions = self.outbreak.excursions.get(p.index, ())
        tracked = excursions or stable_fraction(self.s.seed, p.index, "ping") < self.s.ping_share
        if p.phone is None or not tracked:
            return
        confinements = tuple(
            Confinement(o.place, o.start, o.released_at) for o in self.outbreak.isolation.get(p.index, ())
        )
        township = self.region.area(p.township_code)
        segs = path(self.s.seed, p, township, self.t0, self.days, excursions, confinements)
        if not segs:
            return
        self.events.paths[p.index] = segs
        for k, phone in enumerate(x for x in (p.phone, p.phone2) if x is not None):
            rng = np.random.default_rng([self.s.seed, p.index, k])
            self.events.pings.append(
                sample_pings(
                    phone, segs, self.t0, rng, self.s.ping_interval_minutes, self.rates.ping_no_phone
                )
            )
