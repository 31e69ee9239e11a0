"""The tables ``healthlake epidemic`` keeps, in the order it runs them (each after what it reads).

Adding a table is adding its module (its transformation and its ``DerivedTable``) and one line here.
"""

from __future__ import annotations

from healthlake.derived import DerivedTable
from healthlake.epidemic.cases import EPIDEMIC_CASES
from healthlake.epidemic.clusters import CASE_CLUSTERS
from healthlake.epidemic.contacts import CLOSE_CONTACTS
from healthlake.epidemic.daily import EPIDEMIC_DAILY
from healthlake.epidemic.health_code import HEALTH_CODE
from healthlake.epidemic.isolation import ISOLATION
from healthlake.epidemic.risk import RISK_AREA_DAILY, RISK_PERSONS
from healthlake.epidemic.screening import NAT_POOL_FOLLOWUP, NAT_SCREENING_DAILY
from healthlake.epidemic.tracing import CONTACT_TRACING_DAILY
from healthlake.epidemic.vaccination import VACCINATION_COVERAGE

EPIDEMIC: tuple[DerivedTable, ...] = (
    EPIDEMIC_CASES,
    EPIDEMIC_DAILY,
    VACCINATION_COVERAGE,
    NAT_POOL_FOLLOWUP,
    NAT_SCREENING_DAILY,
    ISOLATION,
    CLOSE_CONTACTS,
    CASE_CLUSTERS,
    RISK_AREA_DAILY,
    RISK_PERSONS,
    CONTACT_TRACING_DAILY,
    HEALTH_CODE,
)
