"""Resident ID numbers, sex and phone numbers: normalise, validate and derive, as ``Column -> Column``.

A resident ID (居民身份证号码, GB 11643-1999) has 18 characters: a 6-digit area code, the birth date as
``yyyyMMdd``, a 3-digit sequence whose last digit is odd for men and even for women, and a check
character (``0``-``9`` or ``X``). Cards issued before 1999 carry a 15-digit ID (2-digit year, no check
character), which converts to the 18-character form without loss.

Every function is built from Spark built-ins only, so it runs in the JVM under whole-stage codegen and
never raises under ANSI mode: a value that cannot be parsed gives NULL, not an error.
"""

from __future__ import annotations

from functools import reduce
from operator import add

from pyspark.sql import Column
from pyspark.sql import functions as F

from healthlake.localtime import source_zone, today

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
"""GB 11643-1999 weights of the first 17 digits (2^(17-i) mod 11)."""
ID_CHECK_CHARS = "10X98765432"
"""Check character for each remainder 0..10 of the weighted sum mod 11."""
ID_PATTERN = r"^\d{17}[\dX]$"
"""Shape of a normalised 18-character resident ID."""
EARLIEST_BIRTH_DATE = "1900-01-01"
"""Birth dates before this are taken as data errors, not as residents."""

_WHITESPACE = r"[\s\u3000]+"  # \s is ASCII-only in Java; Chinese input methods also type U+3000
_EDGE_WHITESPACE = r"^[\s\u3000]+|[\s\u3000]+$"
_MOBILE_WITH_COUNTRY_CODE = r"^(?:00)?86(1[3-9]\d{9})$"  # "+86" is "86" once non-digits are gone

_MALE = ("m", "male", "男", "男性", "1")
_FEMALE = ("f", "female", "女", "女性", "2")


def normalize_resident_id(id_col: Column) -> Column:
    """Normalise a resident ID: no spaces, upper-case ``X``, 15-digit legacy IDs upgraded to 18.

    A legacy ID gains the century ``19`` before its 2-digit birth year and a GB 11643 check character.
    Any other text is returned normalised but otherwise as is, so ``resident_id_problem`` can say what
    is wrong with it.

    Args:
        id_col: The ID as typed, in any case, with any spaces.

    Returns:
        A string column; NULL when the input is NULL or blank.
    """
    text = F.upper(F.regexp_replace(id_col, _WHITESPACE, ""))
    legacy_first17 = F.concat(F.substring(text, 1, 6), F.lit("19"), F.substring(text, 7, 9))
    return (
        F.when(text == "", F.lit(None).cast("string"))
        .when(text.rlike(r"^\d{15}$"), F.concat(legacy_first17, resident_id_check_digit(legacy_first17)))
        .otherwise(text)
    )


def resident_id_check_digit(first17: Column) -> Column:
    """Compute the GB 11643-1999 check character of the first 17 digits of a resident ID.

    Args:
        first17: Exactly 17 digits.

    Returns:
        ``0``-``9`` or ``X``; NULL when the input is not 17 digits.
    """
    # Spelled out term by term (not F.aggregate over an array) so codegen sees plain arithmetic.
    total = reduce(
        add,
        [F.substring(first17, pos, 1).try_cast("int") * weight for pos, weight in enumerate(ID_WEIGHTS, 1)],
    )
    check = F.substring(F.lit(ID_CHECK_CHARS), total % 11 + 1, F.lit(1))
    return F.when(first17.rlike(r"^\d{17}$"), check)


def resident_id_problem(id_col: Column, zone: str | None = None) -> Column:
    """Say what is wrong with a normalised resident ID, or NULL when it is valid.

    Args:
        id_col: An ID already passed through ``normalize_resident_id``.
        zone: The region's time zone, whose today a birth date may not be after (default
            ``source_zone()``).

    Returns:
        NULL for a valid ID, else the first problem found: ``"missing"`` (NULL or empty), ``"format"``
        (not 17 digits and a digit or ``X``), ``"check_digit"`` (the last character does not match) or
        ``"birth_date"`` (not a real ``yyyyMMdd`` date, before 1900-01-01, or in the future).
    """
    birth = birth_date_from_resident_id(id_col)
    latest = today(zone or source_zone())
    impossible_birth = birth.isNull() | (birth < F.lit(EARLIEST_BIRTH_DATE).cast("date")) | (birth > latest)
    wrong_check = F.substring(id_col, 18, 1) != resident_id_check_digit(F.substring(id_col, 1, 17))
    return (
        F.when(id_col.isNull() | (id_col == ""), "missing")
        .when(~id_col.rlike(ID_PATTERN), "format")
        .when(wrong_check, "check_digit")
        .when(impossible_birth, "birth_date")
    )


def resident_id_is_valid(id_col: Column, zone: str | None = None) -> Column:
    """True when a normalised 18-character resident ID has a valid GB 11643 check digit and birth date.

    Args:
        id_col: An ID already passed through ``normalize_resident_id``.
        zone: The region's time zone (see ``resident_id_problem``).

    Returns:
        A boolean column that is never NULL: false for a NULL ID.
    """
    return resident_id_problem(id_col, zone).isNull()


def birth_date_from_resident_id(id_col: Column) -> Column:
    """Read the birth date in characters 7-14 of a normalised resident ID.

    Args:
        id_col: An 18-character ID; gate on ``resident_id_is_valid`` before trusting the result.

    Returns:
        A date column; NULL when those characters are not a real ``yyyyMMdd`` date.
    """
    digits = F.substring(id_col, 7, 8)
    # try_to_date: under ANSI mode to_date raises on "19491331" instead of returning NULL.
    return F.when(digits.rlike(r"^\d{8}$"), F.try_to_date(digits, "yyyyMMdd"))


def sex_from_resident_id(id_col: Column) -> Column:
    """Read the sex coded in the 17th character of a normalised resident ID (odd for men, even for women).

    Args:
        id_col: An 18-character ID; gate on ``resident_id_is_valid`` before trusting the result.

    Returns:
        ``"M"``, ``"F"``, or NULL when the 17th character is not a digit.
    """
    digit = F.substring(id_col, 17, 1)
    return F.when(digit.rlike(r"^[13579]$"), "M").when(digit.rlike(r"^[02468]$"), "F")


def area_code_from_resident_id(id_col: Column) -> Column:
    """Read the 6-digit administrative area code that starts a resident ID.

    Args:
        id_col: A normalised resident ID.

    Returns:
        The first 6 characters when they are digits, else NULL.
    """
    return F.when(id_col.rlike(r"^\d{6}"), F.substring(id_col, 1, 6))


def normalize_sex(col: Column) -> Column:
    """Map the sex codes feeds use (HL7, FHIR, GB/T 2261.1, Chinese text) to ``M``, ``F`` or ``U``.

    Args:
        col: Codes such as ``M``/``male``/``男``/``1`` or ``F``/``female``/``女``/``2``, in any case.

    Returns:
        ``"M"`` or ``"F"``; ``"U"`` for any other value (other, unknown, ``未知``, ``0``, ``9`` …);
        NULL when the input is NULL or blank.
    """
    value = F.lower(F.regexp_replace(col, _EDGE_WHITESPACE, ""))
    return (
        F.when(value.isin(*_MALE), "M")
        .when(value.isin(*_FEMALE), "F")
        # Unrecognised codes are kept as "U", not NULL: the source did record something.
        .when(value != "", "U")
    )


def normalize_phone(col: Column) -> Column:
    """Reduce a phone number to its digits, dropping the China country code from a mobile number.

    Args:
        col: A phone number as typed, e.g. ``+86 138 1234 5678`` or ``0086-13812345678``.

    Returns:
        The digits, e.g. ``13812345678``; NULL when there are none.
    """
    digits = F.regexp_replace(col, r"\D", "")
    # Only a mobile number is unambiguous without the country code; other numbers keep every digit.
    national = F.regexp_replace(digits, _MOBILE_WITH_COUNTRY_CODE, "$1")
    return F.when(national != "", national)
