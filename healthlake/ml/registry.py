"""The feature tables ``healthlake features`` keeps (in the order it runs them) and the models.

Adding a feature table is adding its module (transformation and ``DerivedTable``) and one line here.
"""

from __future__ import annotations

from healthlake.derived import DerivedTable
from healthlake.ml.readmission import READMISSION_FEATURES

FEATURES: tuple[DerivedTable, ...] = (READMISSION_FEATURES,)
