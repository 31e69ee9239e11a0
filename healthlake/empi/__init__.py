"""Master patient index: link source patient records into persons (Splink on Spark, pinyin-aware)."""

from healthlake.empi.identities import (
    IDENTITY_COLUMNS,
    patient_identities,
    patient_tokens,
    with_clear_values,
)
from healthlake.empi.linkage import PersonLinks, link_persons
from healthlake.empi.names import ROLES, standardize_person_columns

__all__ = [
    "IDENTITY_COLUMNS",
    "ROLES",
    "PersonLinks",
    "link_persons",
    "patient_identities",
    "patient_tokens",
    "standardize_person_columns",
    "with_clear_values",
]
