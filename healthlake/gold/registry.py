"""The gold tables ``healthlake publish`` keeps, in the order it runs them (each after what it reads).

Adding a table is adding its module (its transformation and its ``DerivedTable``) and one line here
(``docs/gold.md``, "Adding a derived table").
"""

from __future__ import annotations

from healthlake.derived import DerivedTable
from healthlake.gold.chronic import CHRONIC_INDICATORS, CHRONIC_MONTHLY, CHRONIC_REGISTRY
from healthlake.gold.encounters import ENCOUNTER_FACTS
from healthlake.gold.exchange import EXCHANGE_VOLUME, RECORD_CONTENTS
from healthlake.gold.patients import PATIENT_360
from healthlake.gold.utilization import UTILIZATION_DAILY

GOLD: tuple[DerivedTable, ...] = (
    ENCOUNTER_FACTS,
    UTILIZATION_DAILY,
    PATIENT_360,
    CHRONIC_REGISTRY,
    CHRONIC_MONTHLY,
    CHRONIC_INDICATORS,
    RECORD_CONTENTS,
    EXCHANGE_VOLUME,
)
