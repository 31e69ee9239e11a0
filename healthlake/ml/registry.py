"""The feature tables ``healthlake features`` keeps (in the order it runs them) and the models.

Adding a feature table is adding its module (transformation and ``DerivedTable``) and one line here.
"""

from __future__ import annotations

from healthlake.derived import DerivedTable
from healthlake.ml.chronic_control import CHRONIC_CONTROL_FEATURES
from healthlake.ml.demand import DEMAND_FEATURES
from healthlake.ml.readmission import READMISSION_FEATURES

FEATURES: tuple[DerivedTable, ...] = (READMISSION_FEATURES, CHRONIC_CONTROL_FEATURES, DEMAND_FEATURES)
