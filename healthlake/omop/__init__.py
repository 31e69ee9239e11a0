"""OMOP CDM 5.4 export: the ``omop.*`` tables built from silver for OHDSI tools (``docs/omop.md``).

The transformations live in ``healthlake.omop.cdm``; ``healthlake.pipelines.omop.run`` reads silver, keeps
the id map and writes the tables.
"""

from __future__ import annotations

from healthlake.omop.cdm import (
    CDM_COLUMNS,
    condition_occurrence,
    drug_exposure,
    measurement,
    observation_period,
    person,
    source_keys,
    visit_occurrence,
)

__all__ = [
    "CDM_COLUMNS",
    "condition_occurrence",
    "drug_exposure",
    "measurement",
    "observation_period",
    "person",
    "source_keys",
    "visit_occurrence",
]
