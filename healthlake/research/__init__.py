"""Research zone: de-identified, reproducible extracts, disclosure control and a cohort builder.

See ``docs/research.md`` for the rules.
"""

from __future__ import annotations

from healthlake.research.cohort import (
    MEMBER_COLUMNS,
    TABLE_ONE_CONDITIONS,
    Cohort,
    Criterion,
    diagnosis_match,
)
from healthlake.research.deidentify import (
    IDENTIFIER_STEMS,
    LINKAGE_COLUMNS,
    NAME_COLUMNS,
    age_at,
    age_band,
    birth_year,
    county_of,
    drop_direct_identifiers,
    is_direct_identifier,
    retokenize,
)
from healthlake.research.disclosure import (
    DEFAULT_THRESHOLD,
    is_small,
    k_anonymity,
    k_anonymity_classes,
    suppress_small_cells,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "IDENTIFIER_STEMS",
    "LINKAGE_COLUMNS",
    "MEMBER_COLUMNS",
    "NAME_COLUMNS",
    "TABLE_ONE_CONDITIONS",
    "Cohort",
    "Criterion",
    "age_at",
    "age_band",
    "birth_year",
    "county_of",
    "diagnosis_match",
    "drop_direct_identifiers",
    "is_direct_identifier",
    "is_small",
    "k_anonymity",
    "k_anonymity_classes",
    "retokenize",
    "suppress_small_cells",
]
