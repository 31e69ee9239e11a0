"""Clinical code normalisation as ``Column -> Column``: ICD-10 diagnosis codes, code system names.

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


CODE_SYSTEMS = {
    # FHIR system URIs
    "http://snomed.info/sct": "SNOMED CT",
    "http://loinc.org": "LOINC",
    "http://hl7.org/fhir/sid/icd-10": "ICD-10",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://www.cms.gov/Medicare/Coding/ICD10": "ICD-10-PCS",
    "http://hl7.org/fhir/sid/icd-9-cm": "ICD-9-CM",
    "http://www.ama-assn.org/go/cpt": "CPT",
    "urn:oid:2.16.840.1.113883.6.285": "HCPCS",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://fdasis.nlm.nih.gov": "UNII",
    "http://hl7.org/fhir/ndfrt": "NDF-RT",
    # HL7 v2 coding-system ids (table 0396)
    "SCT": "SNOMED CT",
    "LN": "LOINC",
    "I10": "ICD-10",
    "I10P": "ICD-10-PCS",
    "I9C": "ICD-9-CM",
    "I9CP": "ICD-9-CM",
    "C4": "CPT",
    "C5": "CPT",
    "HCPCS": "HCPCS",
    "RXNORM": "RxNorm",
    "UNII": "UNII",
    "NDFRT": "NDF-RT",
}
"""Short names of code systems, by FHIR system URI and by HL7 v2 coding-system id (table 0396).

ICD-9-CM covers its procedure volume (the ICD-9-CM-3 of Chinese hospitals' operation coding: ``I9CP``).
"""


def code_system_name(system: Column) -> Column:
    """The short name (``CODE_SYSTEMS``) of a code system URI or HL7 coding-system id; others as sent.

    Examples: ``http://snomed.info/sct`` and ``SCT`` give ``SNOMED CT``; ``C4`` gives ``CPT``; a local
    ``99HIS`` stays ``99HIS``.
    """
    names = F.create_map(*[F.lit(x) for kv in CODE_SYSTEMS.items() for x in kv])
    return F.coalesce(names[system], system)
