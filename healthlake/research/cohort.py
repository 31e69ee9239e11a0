"""A cohort builder over silver: persons with qualifying events, their research keys and a Table 1.

Semantics (also in ``docs/research.md``):

* An event counts when it is not cancelled, has a time, and (with ``between``) falls in the window by
  date, both ends inclusive. An event's date is its local date in the region's time zone
  (``region.timezone``): a diagnosis at 00:30 on 1 January Beijing time is dated 1 January. The window
  applies to the events of every criterion, include and exclude alike.
* A person qualifies when they have at least one event for **every** include criterion (AND) and none
  for any exclude criterion. Within one criterion the codes are alternatives (OR).
* Events belong to persons through the EMPI: an event's source patient (``institution_id``,
  ``source_patient_id``) maps to ``person_id`` by ``silver.person_xref``; demographics come from
  ``silver.person`` rows with ``status = 'active'``. Events of unlinked patients are left out.
* ``index_date`` is the date on which the person first met all include criteria: the latest of the
  criteria's first event dates (with one criterion, the date of its first event).
* ``age_between`` compares the age in completed years at ``index_date``, both bounds inclusive; with an
  age bound, persons without a birth date are left out.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from healthlake import io
from healthlake.catalog import (
    SILVER_DIAGNOSIS,
    SILVER_ENCOUNTER,
    SILVER_OBSERVATION,
    SILVER_PERSON,
    SILVER_PERSON_XREF,
)
from healthlake.config import check_zone, load_config
from healthlake.localtime import age_at, local_date
from healthlake.privacy.tokens import extract_kind
from healthlake.research.deidentify import age_band, county_of, retokenize
from healthlake.research.disclosure import DEFAULT_THRESHOLD

logger = logging.getLogger(__name__)

TABLE_ONE_CONDITIONS: dict[str, tuple[str, ...]] = {
    "hypertension": ("I10-I15",),
    "diabetes": ("E10-E14",),
    "coronary_heart_disease": ("I20-I25",),
    "stroke": ("I60-I64",),
    "copd": ("J44",),
    "chronic_kidney_disease": ("N18",),
}
"""Conditions Table 1 reports by default: ICD-10 category ranges or prefixes (``diagnosis_match``)."""

MEMBER_COLUMNS = ("research_id", "index_date", "sex", "age_at_index", "age_band", "county")
"""The columns of ``Cohort.build()``."""

_RANGE = re.compile(r"([A-Z][0-9]{2})-([A-Z][0-9]{2})")
_SOURCES = {
    # kind → (silver table, event time column)
    "diagnosis": (SILVER_DIAGNOSIS, "diagnosis_time"),
    "observation": (SILVER_OBSERVATION, "observation_time"),
    "encounter": (SILVER_ENCOUNTER, "admit_time"),
}


def diagnosis_match(codes: Sequence[str]) -> Column:
    """True for ``silver.diagnosis`` rows matching any of ``codes`` (case-insensitive).

    A code ``X00-Y99`` is a range of ICD-10 categories (``icd10_category`` between them, inclusive);
    any other code is a prefix of ``icd10_category`` or ``icd10_code`` (``I10``, ``I1``, ``E11.9``).

    Raises:
        ValueError: When no code or a blank code is given.
    """
    if not codes:
        raise ValueError("give at least one ICD-10 code")
    category = F.upper(F.col("icd10_category"))
    code = F.upper(F.col("icd10_code"))
    tests = []
    for raw in codes:
        spec = str(raw).strip().upper()
        if not spec:
            raise ValueError("blank ICD-10 code")
        found = _RANGE.fullmatch(spec)
        if found:
            tests.append(category.between(found.group(1), found.group(2)))
        else:
            tests.append(category.startswith(spec) | code.startswith(spec))
    return F.coalesce(reduce(lambda a, b: a | b, tests), F.lit(False))


@dataclass(frozen=True)
class Criterion:
    """One include or exclude criterion: events of one kind matching codes (and value bounds)."""

    kind: str
    include: bool
    codes: tuple[str, ...]
    min_value: float | None = None
    max_value: float | None = None

    def describe(self) -> str:
        """A one-line description for logs (codes and bounds only, no data)."""
        bounds = ""
        if self.min_value is not None or self.max_value is not None:
            bounds = f" value in [{self.min_value}, {self.max_value}]"
        return f"{'include' if self.include else 'exclude'} {self.kind} {'|'.join(self.codes)}{bounds}"


def _date(value: str | dt.date | None, what: str) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{what}: not an ISO date (YYYY-MM-DD): {value!r}") from None


class Cohort:
    """A cohort definition over the silver tables of one lake; each method returns a new ``Cohort``.

    Example:
        >>> cohort = (Cohort(spark, lake_root, name="htn_2026")
        ...           .include_diagnosis("I10", "I15")
        ...           .include_observation("8480-6", min_value=140)
        ...           .exclude_diagnosis("E11")
        ...           .between("2026-01-01", "2026-12-31")
        ...           .age_between(18, None))
        >>> members = cohort.build()
    """

    def __init__(
        self,
        spark: SparkSession,
        lake_root: str,
        name: str,
        *,
        key: bytes | None = None,
        zone: str | None = None,
    ) -> None:
        """Start an empty cohort definition.

        Args:
            spark: Session.
            lake_root: Lake root folder or URI.
            name: The cohort's name; also the extract its research keys are specific to (1-64 letters,
                digits, ``_``, ``.``, ``-``).
            key: The tokenisation key; ``None`` reads it with ``load_key()`` when the cohort is built.
            zone: The region's time zone, whose calendar dates events; ``None`` takes the configured
                ``region.timezone`` (``load_config()``).

        Raises:
            ValueError: For a bad name or an unknown time zone.
            ConfigError: When ``zone`` is None and the configuration cannot be loaded.
        """
        extract_kind(name)  # validates the name now rather than at build time
        self.spark = spark
        self.lake_root = lake_root
        self.name = name
        self._key = key
        self.zone = check_zone(zone) if zone is not None else load_config().region.timezone
        self.criteria: tuple[Criterion, ...] = ()
        self.start: dt.date | None = None
        self.end: dt.date | None = None
        self.min_age: int | None = None
        self.max_age: int | None = None

    def __repr__(self) -> str:
        parts = [c.describe() for c in self.criteria]
        if self.start or self.end:
            parts.append(f"between {self.start} and {self.end}")
        if self.min_age is not None or self.max_age is not None:
            parts.append(f"age {self.min_age}-{self.max_age}")
        return f"Cohort({self.name!r}: {'; '.join(parts) or 'no criteria'})"

    def _with(self, **changes: Any) -> Cohort:
        new = copy.copy(self)
        for attr, value in changes.items():
            setattr(new, attr, value)
        return new

    def _criterion(self, criterion: Criterion) -> Cohort:
        return self._with(criteria=(*self.criteria, criterion))

    # Criteria -----------------------------------------------------------------------------------------

    def include_diagnosis(self, *codes: str) -> Cohort:
        """Require a diagnosis with any of these ICD-10 prefixes or category ranges (``diagnosis_match``)."""
        diagnosis_match(codes)  # validates
        return self._criterion(Criterion("diagnosis", True, tuple(codes)))

    def exclude_diagnosis(self, *codes: str) -> Cohort:
        """Leave out persons with a diagnosis with any of these ICD-10 prefixes or ranges."""
        diagnosis_match(codes)
        return self._criterion(Criterion("diagnosis", False, tuple(codes)))

    def include_observation(
        self, *loinc: str, min_value: float | None = None, max_value: float | None = None
    ) -> Cohort:
        """Require an observation with any of these LOINC codes, its value within the bounds.

        Values are compared in the code's canonical unit (``value``), bounds inclusive. With a bound,
        observations without a value or with an implausible one (``value_in_range`` false) do not count.
        """
        return self._criterion(Criterion("observation", True, _codes(loinc), min_value, max_value))

    def exclude_observation(
        self, *loinc: str, min_value: float | None = None, max_value: float | None = None
    ) -> Cohort:
        """Leave out persons with an observation with any of these LOINC codes within the bounds."""
        return self._criterion(Criterion("observation", False, _codes(loinc), min_value, max_value))

    def include_encounter(self, *encounter_classes: str) -> Cohort:
        """Require an encounter of any of these classes (``inpatient``, ``outpatient``, ...)."""
        return self._criterion(Criterion("encounter", True, _codes(encounter_classes)))

    def exclude_encounter(self, *encounter_classes: str) -> Cohort:
        """Leave out persons with an encounter of any of these classes."""
        return self._criterion(Criterion("encounter", False, _codes(encounter_classes)))

    def between(self, start: str | dt.date | None, end: str | dt.date | None) -> Cohort:
        """Count only events dated ``start`` … ``end`` (local dates of the cohort's zone, inclusive;
        ``None``: open)."""
        first, last = _date(start, "between start"), _date(end, "between end")
        if first and last and first > last:
            raise ValueError(f"between: start {first} is after end {last}")
        return self._with(start=first, end=last)

    def age_between(self, min_age: int | None, max_age: int | None) -> Cohort:
        """Keep persons aged ``min_age`` … ``max_age`` completed years at the index date (inclusive)."""
        if min_age is not None and max_age is not None and min_age > max_age:
            raise ValueError(f"age_between: {min_age} is above {max_age}")
        if any(a is not None and a < 0 for a in (min_age, max_age)):
            raise ValueError("age_between: ages cannot be negative")
        return self._with(min_age=min_age, max_age=max_age)

    # Building -----------------------------------------------------------------------------------------

    def _reader(self) -> Callable[[str], DataFrame]:
        """A reader loading each table once: one snapshot per table, the same for every criterion."""
        tables: dict[str, DataFrame] = {}

        def read(name: str) -> DataFrame:
            if name not in tables:
                tables[name] = io.read_table(self.spark, self.lake_root, name)
            return tables[name]

        return read

    def _in_window(self, day: Column) -> Column:
        test = day.isNotNull()
        if self.start is not None:
            test = test & (day >= F.lit(self.start))
        if self.end is not None:
            test = test & (day <= F.lit(self.end))
        return test

    def _events(self, criterion: Criterion, read: Callable[[str], DataFrame]) -> DataFrame:
        """``person_id``, ``event_date`` of the criterion's events (linked persons only)."""
        table, time_column = _SOURCES[criterion.kind]
        events = read(table).where(~F.coalesce(F.col("is_cancelled"), F.lit(False)))
        if criterion.kind == "diagnosis":
            events = events.where(diagnosis_match(criterion.codes))
        elif criterion.kind == "observation":
            events = events.where(F.col("loinc").isin(*criterion.codes))
            if criterion.min_value is not None or criterion.max_value is not None:
                # An implausible value (a unit slip, a typo) must not qualify anyone.
                events = events.where(F.coalesce(F.col("value_in_range"), F.lit(True)))
                if criterion.min_value is not None:
                    events = events.where(F.col("value") >= F.lit(float(criterion.min_value)))
                if criterion.max_value is not None:
                    events = events.where(F.col("value") <= F.lit(float(criterion.max_value)))
        else:
            events = events.where(F.col("encounter_class").isin(*criterion.codes))
        day = local_date(F.col(time_column), self.zone)
        dated = events.select("institution_id", "source_patient_id", day.alias("event_date")).where(
            self._in_window(F.col("event_date"))
        )
        return dated.join(_xref(read), ["institution_id", "source_patient_id"]).select(
            "person_id", "event_date"
        )

    def members(self) -> DataFrame:
        """The qualifying persons with the lake's ``person_id``: for the lake's own jobs, never for release.

        Returns:
            ``person_id``, ``index_date``, ``sex``, ``age_at_index``, ``age_band``, ``county``.

        Raises:
            ValueError: When the cohort has no include criterion.
        """
        return self._members(self._reader())

    def _members(self, read: Callable[[str], DataFrame]) -> DataFrame:
        includes = [c for c in self.criteria if c.include]
        excludes = [c for c in self.criteria if not c.include]
        if not includes:
            raise ValueError(f"cohort {self.name!r} has no include criterion")
        logger.info("building %r", self)
        # One union and two aggregations rather than a join per criterion.
        firsts = (
            reduce(
                DataFrame.unionByName,
                [self._events(c, read).withColumn("criterion", F.lit(i)) for i, c in enumerate(includes)],
            )
            .groupBy("person_id", "criterion")
            .agg(F.min("event_date").alias("first_date"))
        )
        qualified = (
            firsts.groupBy("person_id")
            .agg(F.count(F.lit(1)).alias("met"), F.max("first_date").alias("index_date"))
            .where(F.col("met") == len(includes))
            .drop("met")
        )
        if excludes:
            excluded = reduce(DataFrame.unionByName, [self._events(c, read) for c in excludes])
            qualified = qualified.join(excluded.select("person_id"), "person_id", "left_anti")
        age = age_at(F.col("birth_date"), F.col("index_date"))
        out = qualified.join(_active_persons(read), "person_id").withColumn("age_at_index", age)
        if self.min_age is not None:
            out = out.where(F.col("age_at_index") >= self.min_age)
        if self.max_age is not None:
            out = out.where(F.col("age_at_index") <= self.max_age)
        return out.select(
            "person_id",
            "index_date",
            "sex",
            "age_at_index",
            age_band(F.col("age_at_index")).alias("age_band"),
            county_of(F.col("area_code")).alias("county"),
        )

    def build(self) -> DataFrame:
        """The cohort for release: one row per person, keyed by a research key specific to this cohort.

        Returns:
            ``research_id`` (the person's ``person_id`` re-tokenised for the extract ``name``),
            ``index_date``, ``sex``, ``age_at_index``, ``age_band``, ``county`` (``county_of``).
        """
        members = self.members()
        return retokenize(members, "person_id", self.name, self._key, alias="research_id").select(
            *MEMBER_COLUMNS
        )

    def table_one(
        self,
        conditions: Mapping[str, Sequence[str]] | None = None,
        threshold: int = DEFAULT_THRESHOLD,
    ) -> pd.DataFrame:
        """Table 1 of the cohort: size, age, sex and conditions at the index date, small cells suppressed.

        Aggregated in Spark in one action; only the one-row aggregate reaches the driver. A condition is
        present when the person has a non-cancelled diagnosis matching it (``diagnosis_match``) dated on
        or before their index date, at any earlier time (the window does not apply).

        Suppression: a count ``n`` with ``0 < n < threshold`` is suppressed; so is a condition count
        whose complement ``N - n`` is small (it would reveal the few without it); when exactly one sex
        count is suppressed the next smallest positive one is too (they add up to N); age statistics are
        suppressed when fewer than ``threshold`` persons have an age; a cohort of 1-4 persons shows
        nothing but the suppressed N.

        Args:
            conditions: Condition name → ICD-10 codes (default ``TABLE_ONE_CONDITIONS``).
            threshold: Smallest count shown.

        Returns:
            pandas rows ``characteristic``, ``level``, ``n`` (Int64; NA when suppressed), ``percent`` (of
            N), ``mean``, ``sd``, ``median``, ``q1``, ``q3`` (age rows), ``summary`` (the printed cell)
            and ``suppressed``.
        """
        conditions = dict(TABLE_ONE_CONDITIONS if conditions is None else conditions)
        read = self._reader()
        members = self._members(read).select("person_id", "index_date", "sex", "age_at_index")
        flags = _condition_flags(members, conditions, read, self.zone)
        age = F.col("age_at_index")
        sex = F.coalesce(F.col("sex"), F.lit("U"))
        aggregates = [
            F.count(F.lit(1)).alias("N"),
            F.count(age).alias("n_age"),
            F.avg(age).alias("age_mean"),
            F.stddev_samp(age).alias("age_sd"),
            F.percentile(age, [0.25, 0.5, 0.75]).alias("age_quartiles"),
            F.sum((sex == "F").cast("long")).alias("sex_F"),
            F.sum((sex == "M").cast("long")).alias("sex_M"),
            F.sum((~sex.isin("F", "M")).cast("long")).alias("sex_unknown"),
        ]
        aggregates += [F.sum(F.col(f"_c{i}")).alias(f"_c{i}") for i in range(len(conditions))]
        row = flags.agg(*aggregates).first()  # a global aggregate: always exactly one row
        if row is None:
            raise RuntimeError("Table 1 aggregate returned no row")
        return _table_one_frame(row.asDict(), list(conditions), conditions, threshold)


def _xref(read: Callable[[str], DataFrame]) -> DataFrame:
    return read(SILVER_PERSON_XREF).select("institution_id", "source_patient_id", "person_id")


def _active_persons(read: Callable[[str], DataFrame]) -> DataFrame:
    return (
        read(SILVER_PERSON)
        .where(F.col("status") == "active")
        .select("person_id", "sex", "birth_date", "area_code")
    )


def _condition_flags(
    members: DataFrame,
    conditions: Mapping[str, Sequence[str]],
    read: Callable[[str], DataFrame],
    zone: str,
) -> DataFrame:
    """``members`` with ``_c<i>`` = 1 when the person had condition ``i`` by the index date, else 0."""
    if not conditions:
        return members
    matches = [diagnosis_match(codes) for codes in conditions.values()]
    diagnoses = (
        read(SILVER_DIAGNOSIS)
        .where(~F.coalesce(F.col("is_cancelled"), F.lit(False)))
        .where(reduce(lambda a, b: a | b, matches))
        .select(
            "institution_id",
            "source_patient_id",
            local_date(F.col("diagnosis_time"), zone).alias("d"),
            *[m.cast("int").alias(f"_m{i}") for i, m in enumerate(matches)],
        )
        .join(_xref(read), ["institution_id", "source_patient_id"])
    )
    dated = diagnoses.join(members.select("person_id", "index_date"), "person_id").where(
        F.col("d") <= F.col("index_date")
    )
    per_person = dated.groupBy("person_id").agg(
        *[F.max(f"_m{i}").alias(f"_c{i}") for i in range(len(conditions))]
    )
    return members.join(per_person, "person_id", "left").fillna(
        0, subset=[f"_c{i}" for i in range(len(conditions))]
    )


def _codes(codes: Sequence[str]) -> tuple[str, ...]:
    cleaned = tuple(str(c).strip() for c in codes)
    if not cleaned or not all(cleaned):
        raise ValueError("give at least one non-blank code")
    return cleaned


def _table_one_frame(
    agg: dict[str, Any], names: list[str], conditions: Mapping[str, Sequence[str]], threshold: int
) -> pd.DataFrame:
    """Lay out and suppress the Table 1 aggregate (a dozen numbers; the data stayed in Spark)."""

    def small(n: int) -> bool:
        return 0 < n < threshold

    total = int(agg["N"])
    rows: list[dict[str, Any]] = []

    def count_row(characteristic: str, level: str, n: int, hide: bool) -> None:
        shown = not (hide or small(total))
        pct = 100.0 * n / total if total and shown else math.nan
        rows.append(
            {
                "characteristic": characteristic,
                "level": level,
                "n": n if shown else pd.NA,
                "percent": pct,
                "summary": ("suppressed" if not shown else f"{n} ({pct:.1f}%)" if total else str(n)),
                "suppressed": not shown,
            }
        )

    rows.append(
        {
            "characteristic": "N",
            "level": "",
            "n": pd.NA if small(total) else total,
            "percent": math.nan,
            "summary": "suppressed" if small(total) else str(total),
            "suppressed": small(total),
        }
    )
    n_age = int(agg["n_age"])
    hide_age = small(n_age) or small(total)
    mean, sd = agg["age_mean"], agg["age_sd"]
    q1, median, q3 = agg["age_quartiles"] or (None, None, None)
    mean_text = "-" if mean is None else f"{mean:.1f} ({'-' if sd is None else f'{sd:.1f}'})"
    median_text = "-" if median is None else f"{median:.1f} [{q1:.1f}-{q3:.1f}]"
    for label, stats, text in (
        ("Age (years), mean (SD)", {"mean": mean, "sd": sd}, mean_text),
        ("Age (years), median [IQR]", {"median": median, "q1": q1, "q3": q3}, median_text),
    ):
        rows.append(
            {
                "characteristic": label,
                "level": "",
                "n": pd.NA if hide_age else n_age,
                "percent": math.nan,
                **{k: (math.nan if hide_age or v is None else float(v)) for k, v in stats.items()},
                "summary": "suppressed" if hide_age else text,
                "suppressed": hide_age,
            }
        )

    sexes = {
        "F": int(agg["sex_F"] or 0),
        "M": int(agg["sex_M"] or 0),
        "unknown": int(agg["sex_unknown"] or 0),
    }
    hidden = {level for level, n in sexes.items() if small(n)}
    if len(hidden) == 1:
        # The sex counts add up to N: one suppressed cell is N minus the others, so hide one more.
        others = sorted((n, level) for level, n in sexes.items() if level not in hidden and n > 0)
        if others:
            hidden.add(others[0][1])
    for level, n in sexes.items():
        count_row("Sex, n (%)", level, n, level in hidden)

    for i, name in enumerate(names):
        n = int(agg[f"_c{i}"] or 0)
        # Also hide a count whose complement is small: N - n would name the few without the condition.
        count_row(f"Condition ({', '.join(conditions[name])}), n (%)", name, n, small(n) or small(total - n))

    frame = pd.DataFrame(
        rows,
        columns=[
            "characteristic",
            "level",
            "n",
            "percent",
            "mean",
            "sd",
            "median",
            "q1",
            "q3",
            "summary",
            "suppressed",
        ],
    )
    frame["n"] = frame["n"].astype("Int64")
    for column in ("percent", "mean", "sd", "median", "q1", "q3"):
        frame[column] = frame[column].astype("float64")
    return frame
