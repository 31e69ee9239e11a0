"""``gold.encounter_facts``: length of stay and 30-day readmission across institutions, against values
worked out by hand for each stay below; and local days near local midnight, against pandas."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from healthlake.gold.encounters import encounter_facts, recompute_bounds, recompute_scope, replaced_scope

ENCOUNTERS = (
    "institution_id string, source_record_id string, source_patient_id string, encounter_class string, "
    "is_cancelled boolean, admit_time timestamp, discharge_time timestamp"
)


KEYS = ["institution_id", "source_record_id"]
ZONE = "Asia/Shanghai"


def _t(day: str, hour: int = 9) -> dt.datetime:
    """``hour`` o'clock on ``day`` of 2026, Beijing time."""
    return dt.datetime.fromisoformat(f"2026-{day}T{hour:02d}:00:00+08:00")


def test_readmission_counts_across_hospitals_and_not_for_transfers(spark: SparkSession) -> None:
    encounters = spark.createDataFrame(
        [
            # Person A: discharged from H1 on 03-05, admitted to H2 (another patient number) on 03-20.
            ("H1", "a1", "H1-A", "inpatient", False, _t("03-01"), _t("03-05", 11)),
            ("H2", "a2", "H2-77", "inpatient", False, _t("03-20"), _t("03-22")),
            ("C9", "a3", "C9-A", "outpatient", False, _t("03-10"), None),
            # Person B: moved H1 → H2 on the discharge day (a transfer), a clinic visit, back 36 days later.
            ("H1", "b1", "H1-B", "inpatient", False, _t("03-01"), _t("03-03", 10)),
            ("H2", "b2", "H2-B", "inpatient", False, _t("03-03", 15), _t("03-10")),
            ("C9", "b3", "C9-B", "outpatient", False, _t("03-12"), _t("03-12", 10)),
            ("H1", "b4", "H1-B", "inpatient", False, _t("04-15"), _t("04-15", 18)),
            # Person C: a cancelled stay (dropped), then a stay still in progress (no discharge).
            ("H1", "c1", "H1-C", "inpatient", True, _t("03-02"), _t("03-04")),
            ("H1", "c2", "H1-C", "inpatient", False, _t("03-25"), None),
            # A record the EMPI has not linked: its readmission is unknown.
            ("H3", "x1", "H3-X", "inpatient", False, _t("03-01"), _t("03-02")),
        ],
        ENCOUNTERS,
    )
    xref = spark.createDataFrame(
        [
            ("H1", "H1-A", "PA"),
            ("H2", "H2-77", "PA"),
            ("C9", "C9-A", "PA"),
            ("H1", "H1-B", "PB"),
            ("H2", "H2-B", "PB"),
            ("C9", "C9-B", "PB"),
            ("H1", "H1-C", "PC"),
        ],
        "institution_id string, source_patient_id string, person_id string",
    )
    got = encounter_facts(encounters, xref, zone=ZONE).select(
        "source_record_id",
        "person_id",
        "length_of_stay_days",
        "is_index_stay",
        "readmitted_30d",
        "is_readmission_30d",
        "days_to_next_admission",
    )
    expected = spark.createDataFrame(
        [
            ("a1", "PA", 4, True, True, False, 15),
            ("a2", "PA", 2, True, False, True, None),
            ("a3", "PA", None, False, None, None, None),
            ("b1", "PB", 2, True, False, False, 0),
            ("b2", "PB", 7, True, False, False, 36),
            ("b3", "PB", None, False, None, None, None),
            ("b4", "PB", 0, True, False, False, None),
            ("c2", "PC", None, False, None, False, None),
            ("x1", None, 1, False, None, None, None),
        ],
        got.schema,
    )
    assertDataFrameEqual(got, expected)


def test_recompute_bounds_cover_every_fact_a_change_can_move(spark: SparkSession) -> None:
    """Bounds by hand; then the facts recomputed from each bound equal a full recomputation."""
    xref_schema = "institution_id string, source_patient_id string, person_id string"
    stays = [  # person P: five stays at two hospitals, a clinic visit; Q: one stay; R and S: see below
        ("H1", "p0", "H1-P", "inpatient", False, _t("01-01"), _t("01-05")),
        ("H1", "p1", "H1-P", "inpatient", False, _t("01-15"), _t("01-18")),
        ("H2", "p2", "H2-P", "inpatient", False, _t("02-01"), _t("02-03")),
        ("C9", "p3", "C9-P", "outpatient", False, _t("02-20"), None),
        ("H1", "p4", "H1-P", "inpatient", False, _t("03-01"), _t("03-02")),
        ("H2", "p5", "H2-P", "inpatient", False, _t("03-20"), _t("03-25")),
        ("H1", "q1", "H1-Q", "inpatient", False, _t("01-10"), _t("01-12")),
        ("H1", "r1", "H1-R", "inpatient", False, _t("01-10"), _t("01-12")),
        ("H2", "r2", "H2-R", "inpatient", False, _t("01-10"), _t("01-11")),  # ties r1's admission
        ("H1", "s1", "H1-S", "inpatient", False, _t("01-10"), _t("01-12")),
    ]
    xref = spark.createDataFrame(
        [
            ("H1", "H1-P", "P"),
            ("H2", "H2-P", "P"),
            ("C9", "C9-P", "P"),
            ("H1", "H1-Q", "Q"),
            ("H1", "H1-R", "R"),
            ("H2", "H2-R", "R"),
            ("H1", "H1-S", "S"),
        ],
        xref_schema,
    )
    before = spark.createDataFrame(stays, ENCOUNTERS)
    stored = encounter_facts(before, xref, zone=ZONE)
    # The day: P cancels p4 and has a new stay on 03-10; Q a new visit; R a stay after its tie; S's
    # changed record has no admission time. T is a person whose links moved.
    changes = [
        ("H1", "p4", "H1-P", "inpatient", True, _t("03-01"), _t("03-02")),
        ("H1", "p6", "H1-P", "inpatient", False, _t("03-10"), _t("03-12")),
        ("H1", "q2", "H1-Q", "outpatient", False, _t("02-01"), None),
        ("H1", "r3", "H1-R", "inpatient", False, _t("02-01"), _t("02-02")),
        ("H1", "s2", "H1-S", "outpatient", False, None, None),
    ]
    changed = spark.createDataFrame(changes, ENCOUNTERS)
    whole = spark.createDataFrame([("T",)], "person_id string")
    got = recompute_bounds(changed, xref, stored, whole)
    none = None
    expected = spark.createDataFrame(
        [
            ("P", _t("01-15"), _t("02-01"), _t("03-01")),  # the last two stays before 03-01: B = p1, A = p2
            ("Q", _t("01-10"), _t("01-10"), _t("02-01")),  # one stay before: from it
            ("R", none, none, none),  # the two stays before tie: everything
            ("S", none, none, none),  # a changed record without admission time: everything
            ("T", none, none, none),
        ],
        "person_id string, recompute_from timestamp, keep_from timestamp, changed_from timestamp",
    )
    assertDataFrameEqual(got, expected)

    after = spark.createDataFrame(
        [s for s in stays if s[1] != "p4"] + [c for c in changes if c[1] != "p4"], ENCOUNTERS
    )
    full = encounter_facts(after, xref, zone=ZONE)
    fed = after.join(xref, ["institution_id", "source_patient_id"]).join(got, "person_id")
    # P's clinic visit on 02-20 lies after B but before the change: it is not read again.
    assert fed.where(recompute_scope()).where(F.col("source_record_id") == "p3").count() == 0
    windowed = (
        encounter_facts(fed.where(recompute_scope()).select(*before.columns), xref, zone=ZONE)
        .join(got, "person_id")
        .where(replaced_scope())
        .select(*full.columns)
    )
    kept = full.join(got, "person_id").where(replaced_scope())
    assertDataFrameEqual(windowed, kept.select(*full.columns))
    # And every stored fact outside the replaced scope did not move.
    unmoved = stored.join(got, "person_id").where(~replaced_scope())
    assert unmoved.count() > 0
    assertDataFrameEqual(
        unmoved.select(*stored.columns), full.join(unmoved.select(*KEYS), KEYS).select(*stored.columns)
    )


def _local_facts(stays: pd.DataFrame) -> pd.DataFrame:
    """What encounter_facts should say of one linked person's stays, by pandas on Beijing wall clocks."""
    tz = zoneinfo.ZoneInfo(ZONE)
    out = stays.copy()
    out["admit_date"] = [pd.Timestamp(t, tz=tz).date() for t in out.admit]
    out["discharge_date"] = [None if t is None else pd.Timestamp(t, tz=tz).date() for t in out.discharge]
    inpatient = out[out.encounter_class == "inpatient"].sort_values("admit")
    next_admit = dict(zip(inpatient.source_record_id, inpatient.admit_date.shift(-1), strict=True))
    out["length_of_stay_days"] = [
        None if c != "inpatient" or d is None else (d - a).days
        for c, a, d in zip(out.encounter_class, out.admit_date, out.discharge_date, strict=True)
    ]
    out["days_to_next_admission"] = [
        None if c != "inpatient" or d is None or pd.isna(next_admit[r]) else (next_admit[r] - d).days
        for c, r, d in zip(out.encounter_class, out.source_record_id, out.discharge_date, strict=True)
    ]
    out["readmitted_30d"] = [
        None if c != "inpatient" or d is None else (n is not None and 1 <= n <= 30)
        for c, d, n in zip(out.encounter_class, out.discharge_date, out.days_to_next_admission, strict=True)
    ]
    return out


def _comparable(df: pd.DataFrame) -> pd.DataFrame:
    out = df.sort_values("source_record_id").reset_index(drop=True).astype(object)
    return out.where(out.notna(), None)


def test_days_are_local_near_midnight_and_at_a_month_s_end(spark: SparkSession) -> None:
    """Stays at 00:30 and 07:59 Beijing time (the UTC date is the day before) and on a month's last
    evening: dates, stay lengths and readmission gaps count Beijing days."""
    stays = pd.DataFrame(
        [  # record, class, admitted, discharged (Beijing wall clock)
            ("s1", "inpatient", "2026-01-30 07:59", "2026-01-31 23:30"),  # the month's last evening
            ("s2", "inpatient", "2026-02-01 00:30", "2026-02-01 09:00"),  # 1 day after s1's discharge
            ("s3", "inpatient", "2026-02-02 07:00", "2026-02-05 00:30"),  # out 09:00, back 07:00 next day
            ("s4", "inpatient", "2026-03-07 07:59", "2026-03-08 00:30"),  # 30 days after s3's discharge
            ("o1", "outpatient", "2026-03-01 00:30", None),
        ],
        columns=["source_record_id", "encounter_class", "admit", "discharge"],
    )
    tz = zoneinfo.ZoneInfo(ZONE)

    def instant(wall: str | None) -> dt.datetime | None:
        return None if wall is None else dt.datetime.fromisoformat(wall).replace(tzinfo=tz)

    encounters = spark.createDataFrame(
        [("H1", r, "H1-P", c, False, instant(a), instant(d)) for r, c, a, d in stays.itertuples(index=False)],
        ENCOUNTERS,
    )
    xref = spark.createDataFrame(
        [("H1", "H1-P", "P")], "institution_id string, source_patient_id string, person_id string"
    )
    columns = [
        "source_record_id",
        "admit_date",
        "length_of_stay_days",
        "readmitted_30d",
        "days_to_next_admission",
    ]
    got = encounter_facts(encounters, xref, zone=ZONE).select(*columns).toPandas()
    want = _local_facts(stays)[columns]
    pd.testing.assert_frame_equal(_comparable(got), _comparable(want), check_dtype=False)
    # Spelled out: the early-morning admissions keep their Beijing date, a readmission at 07:00 the day
    # after a 09:00 discharge is one (not a same-day transfer), and a stay over one midnight lasts a day.
    facts = got.set_index("source_record_id")
    assert facts.admit_date["s2"] == dt.date(2026, 2, 1) and facts.admit_date["o1"] == dt.date(2026, 3, 1)
    assert list(facts.days_to_next_admission[["s1", "s2", "s3"]]) == [1, 1, 30]
    assert facts.readmitted_30d["s2"] and facts.length_of_stay_days["s1"] == 1
