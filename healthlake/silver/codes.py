"""Clinical code normalisation as ``Column -> Column``: ICD-10 diagnosis codes.

Feeds write the same ICD-10 code many ways: ``I10.x00``, ``I10x00``, ``i10.X00``, `` I10.x00 ``. Chinese
hospitals use the national clinical edition (国家临床版), which extends the WHO code with up to 4
characters after the dot and writes an ``x`` in that extension in lower case (``I10.x00``). All forms
normalise to that one spelling, using Spark built-ins only.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

ICD10_COMPACT_PATTERN = r"^[A-Z][0-9][0-9A-Z][0-9A-Z]{0,4}$"
"""An ICD-10 code without its dot: letter, digit, digit-or-letter category, then up to 4 characters."""

_SPACES_AND_DOTS = r"[\s\u3000.]+"  # \s is ASCII-only in Java; Chinese input methods also type U+3000


def icd10_code(col: Column) -> Column:
    """Normalise an ICD-10 code to ``<category>.<extension>`` with a lower-case ``x`` in the extension.

    Examples: ``I10x00`` and ``i10.X00`` give ``I10.x00``; ``E119`` gives ``E11.9``; ``I10`` stays ``I10``.

    Args:
        col: A code written with or without its dot, in any case, with any spaces.

    Returns:
        The normalised code; NULL when the input is NULL or not shaped like an ICD-10 code.
    """
    compact = F.upper(F.regexp_replace(col, _SPACES_AND_DOTS, ""))
    category = F.substring(compact, 1, 3)
    extension = F.translate(F.substring(compact, 4, 4), "X", "x")
    # concat_ws skips NULL, so a bare category gets no trailing dot.
    code = F.concat_ws(".", category, F.when(extension != "", extension))
    return F.when(compact.rlike(ICD10_COMPACT_PATTERN), code)


def icd10_category(col: Column) -> Column:
    """Return the 3-character ICD-10 category of a code, e.g. ``I10`` for ``i10.x00``.

    Args:
        col: A code in any form ``icd10_code`` accepts.

    Returns:
        The category; NULL when the code is NULL or invalid.
    """
    return F.substring(icd10_code(col), 1, 3)
