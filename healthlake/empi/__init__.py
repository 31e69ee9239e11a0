"""Master patient index: link source patient records into persons (Splink on Spark, pinyin-aware)."""

from healthlake.empi.linkage import LinkResult, link_persons
from healthlake.empi.names import ROLES, standardize_person_columns

__all__ = ["ROLES", "LinkResult", "link_persons", "standardize_person_columns"]
