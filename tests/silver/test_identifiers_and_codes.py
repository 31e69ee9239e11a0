"""Resident IDs, sex, phone numbers and ICD-10 codes: each input beside its expected outputs."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from pathlib import Path

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from healthlake.silver.codes import icd10_category, icd10_code
from healthlake.silver.identifiers import (
    area_code_from_resident_id,
    birth_date_from_resident_id,
    normalize_phone,
    normalize_resident_id,
    normalize_sex,
    resident_id_check_digit,
    resident_id_is_valid,
    resident_id_problem,
    sex_from_resident_id,
)
from healthlake.silver.observation import CodeMaps, standardize_observations

REPO = Path(__file__).resolve().parents[2]


def check_char(first17: str) -> str:
    """GB 11643-1999 check character, computed independently of the code under test."""
    weights = [2 ** (17 - i) % 11 for i in range(17)]  # 7, 9, 10, 5, 8, …
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


def with_check(first17: str) -> str:
    return first17 + check_char(first17)


def with_wrong_check(first17: str) -> str:
    chars = "0123456789X"
    return first17 + chars[(chars.index(check_char(first17)) + 1) % len(chars)]


def assert_outputs(
    spark: SparkSession, cases: list[tuple], schema: str, outputs: dict[str, Callable[[Column], Column]]
) -> None:
    """Each case is ``(value, *expected)``; ``outputs`` names the function behind each expected column."""
    expected = spark.createDataFrame(cases, schema)
    actual = expected.select("value", *[fn(F.col("value")).alias(name) for name, fn in outputs.items()])
    assertDataFrameEqual(actual, expected)


def test_check_character_helper_agrees_with_published_samples() -> None:
    assert check_char("11010519491231002") == "X"
    assert with_check("11010519491231002") == "11010519491231002X"


def test_check_digit_matches_python_on_random_ids(spark: SparkSession) -> None:
    rng = random.Random(11643)
    first17s = ["".join(rng.choice("0123456789") for _ in range(17)) for _ in range(60)]
    cases = [(v, check_char(v)) for v in first17s] + [("1101051949123100", None), ("1101051949123100A", None)]
    assert_outputs(spark, cases, "value string, check string", {"check": resident_id_check_digit})
    assert {check_char(v) for v in first17s} == set("0123456789X")  # every remainder exercised


def test_resident_id_normalised_and_validated(spark: SparkSession) -> None:
    born_next_year = with_check(f"110105{dt.date.today().year + 1}0101002")
    sample = "11010519491231002X"
    cases = [
        (sample, sample, None, True),
        (" 110105 19491231 002x\u3000", sample, None, True),
        ("110105491231002", sample, None, True),  # 15-digit legacy ID: century and check added
        (" 110105 491231 002 ", sample, None, True),
        (with_check("36010219910204021"), with_check("36010219910204021"), None, True),
        (with_check("44030620000229123"), with_check("44030620000229123"), None, True),  # leap day
        (with_wrong_check("11010519491231002"), with_wrong_check("11010519491231002"), "check_digit", False),
        ("11010519491231002", "11010519491231002", "format", False),  # 17 characters
        ("11010519491231002X1", "11010519491231002X1", "format", False),
        ("11010A19491231002X", "11010A19491231002X", "format", False),
        ("1101051949123100X2", "1101051949123100X2", "format", False),  # X only as check character
        ("ABCDEFGHIJKLMNOPQR", "ABCDEFGHIJKLMNOPQR", "format", False),
        (with_check("11010519491331002"), with_check("11010519491331002"), "birth_date", False),  # month 13
        (with_check("11010519490230002"), with_check("11010519490230002"), "birth_date", False),  # 30 Feb
        (with_check("11010518991231002"), with_check("11010518991231002"), "birth_date", False),
        (born_next_year, born_next_year, "birth_date", False),
        ("", None, "missing", False),
        ("   ", None, "missing", False),
        (None, None, "missing", False),
    ]
    assert_outputs(
        spark,
        cases,
        "value string, normalized string, problem string, valid boolean",
        {
            "normalized": normalize_resident_id,
            "problem": lambda c: resident_id_problem(normalize_resident_id(c)),
            "valid": lambda c: resident_id_is_valid(normalize_resident_id(c)),
        },
    )


def test_birth_date_sex_and_area_from_resident_id(spark: SparkSession) -> None:
    cases = [
        ("11010519491231002X", dt.date(1949, 12, 31), "F", "110105"),
        (with_check("36010219910204021"), dt.date(1991, 2, 4), "M", "360102"),
        (with_check("44030620000229123"), dt.date(2000, 2, 29), "M", "440306"),
        (with_check("11010519491331001"), None, "M", "110105"),  # month 13
        ("11010A19491231002X", dt.date(1949, 12, 31), "F", None),
        ("1101051949123100X2", dt.date(1949, 12, 31), None, "110105"),
        ("110105", None, None, "110105"),
        (None, None, None, None),
    ]
    assert_outputs(
        spark,
        cases,
        "value string, birth_date date, sex string, area_code string",
        {
            "birth_date": birth_date_from_resident_id,
            "sex": sex_from_resident_id,
            "area_code": area_code_from_resident_id,
        },
    )


def test_normalize_sex(spark: SparkSession) -> None:
    males = ["M", "m", " male ", "Male", "男", "男性", "1"]
    females = ["F", "f", "FEMALE", "女", "女性", " 2"]
    others = ["O", "other", "Unknown", "U", "未知", "0", "9", "x"]
    cases = [
        *[(v, "M") for v in males],
        *[(v, "F") for v in females],
        *[(v, "U") for v in others],
        ("", None),
        (" \u3000", None),
        (None, None),
    ]
    assert_outputs(spark, cases, "value string, sex string", {"sex": normalize_sex})


def test_normalize_phone(spark: SparkSession) -> None:
    cases = [
        ("13812345678", "13812345678"),
        ("+86 13812345678", "13812345678"),
        ("8613812345678", "13812345678"),
        ("0086-138-1234-5678", "13812345678"),
        ("138 1234 5678", "13812345678"),
        ("(010) 8888-6666", "01088886666"),
        ("+86 10 88886666", "861088886666"),  # not a mobile number: the country code stays
        ("86138123456789", "86138123456789"),  # 12 digits after 86: not a mobile number
        ("--", None),
        ("", None),
        (None, None),
    ]
    assert_outputs(spark, cases, "value string, phone string", {"phone": normalize_phone})


def test_icd10_code_and_category(spark: SparkSession) -> None:
    cases = [
        ("I10.x00", "I10.x00", "I10"),
        ("I10x00", "I10.x00", "I10"),
        ("i10.x00", "I10.x00", "I10"),
        ("I10.X00", "I10.x00", "I10"),
        ("J18900", "J18.900", "J18"),
        ("K29.700", "K29.700", "K29"),
        ("E11.9", "E11.9", "E11"),
        ("E119", "E11.9", "E11"),
        ("U07.100", "U07.100", "U07"),
        ("R10.400", "R10.400", "R10"),
        (" e11.900 ", "E11.900", "E11"),
        ("I10", "I10", "I10"),
        ("I10.", "I10", "I10"),
        ("C34.9001", "C34.9001", "C34"),
        ("C34.90010", None, None),  # 5 characters after the dot
        ("I10-x00", None, None),
        ("", None, None),
        ("123", None, None),
        ("I1", None, None),
        ("II0.1", None, None),
        (None, None, None),
    ]
    assert_outputs(
        spark,
        cases,
        "value string, code string, category string",
        {"code": icd10_code, "category": icd10_category},
    )


def test_lab_codes_move_to_the_loinc_of_the_canonical_unit(spark: SparkSession, tmp_path: Path) -> None:
    """LOINC codes the property: a value converted to mmol/L takes the moles/volume code."""
    maps = CodeMaps.load(REPO / "conf" / "code_maps")
    schema = (
        "institution_id string, code_system string, code string, value_original double, unit_original string"
    )
    # (as sent) → (loinc, value, unit, unit_known, value_in_range)
    cases = [
        (("H1", "LOINC", "2345-7", 126.0, "mg/dL"), ("14749-6", 6.99, "mmol/L", True, True)),
        (("H1", "LOINC", "2345-7", 7.0, "mmol/L"), ("14749-6", 7.0, "mmol/L", True, True)),  # a mislabel
        (("H1", "LOINC", "14749-6", 7.0, "mmol/L"), ("14749-6", 7.0, "mmol/L", True, True)),
        (("H1", "LOINC", "1558-6", 900.0, "mg/dL"), ("14771-0", 49.96, "mmol/L", True, True)),
        (("H1", "local", "fbg", 6.1, "mmol/L"), ("14771-0", 6.1, "mmol/L", True, True)),
        (("H1", "local", "CREA", 1.0, "mg/dL"), ("14682-9", 88.42, "umol/L", True, True)),
        (("H1", "LOINC", "2093-3", 200.0, "mg/dL"), ("14647-2", 5.17, "mmol/L", True, True)),
        (("H1", "LOINC", "2345-7", 7.0, "g/L"), ("2345-7", None, None, False, True)),  # unknown unit: kept
        (("H1", "LOINC", "8480-6", 150.0, "mmHg"), ("8480-6", 150.0, "mm[Hg]", True, True)),
        (("H1", "LOINC", "99999-9", 3.0, "x"), ("99999-9", 3.0, "x", True, True)),  # not in the map
    ]
    out = standardize_observations(
        spark.createDataFrame([sent for sent, _ in cases], schema).withColumn(
            "category", F.lit(None).cast("string")
        ),
        maps,
    ).select("code", "loinc", F.round("value", 2).alias("value"), "unit", "unit_known", "value_in_range")
    expected = spark.createDataFrame(
        [(sent[2], *want) for sent, want in cases],
        "code string, loinc string, value double, unit string, unit_known boolean, value_in_range boolean",
    )
    assertDataFrameEqual(out, expected)

    # A code map written before canonical_loinc existed keeps every code as sent.
    old = tmp_path / "old_maps"
    old.mkdir()
    for name in ("lab_codes.csv", "observation_ranges.csv"):
        (old / name).write_text((REPO / "conf" / "code_maps" / name).read_text(encoding="utf-8"))
    (old / "units.csv").write_text("loinc,unit,canonical_unit,factor\n2345-7,mg/dL,mmol/L,0.0555062\n")
    kept = standardize_observations(
        spark.createDataFrame([cases[0][0]], schema).withColumn("category", F.lit(None).cast("string")),
        CodeMaps.load(old),
    ).select("loinc", F.round("value", 2).alias("value"), "unit")
    assert [tuple(r) for r in kept.collect()] == [("2345-7", 6.99, "mmol/L")]
