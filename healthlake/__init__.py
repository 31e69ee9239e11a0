"""healthlake: PySpark + Delta Lake library for a regional health data lake.

Importing the package starts no JVM and does not import pyspark: the exports below load on first use.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "get_spark", "load_config", "load_pandas", "read_table", "table_history"]

_LAZY = {
    "load_config": "healthlake.config",
    "get_spark": "healthlake.spark",
    "read_table": "healthlake.tables",
    "load_pandas": "healthlake.tables",
    "table_history": "healthlake.tables",
}

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from healthlake.config import load_config
    from healthlake.spark import get_spark
    from healthlake.tables import load_pandas, read_table, table_history


def __getattr__(name: str) -> Any:
    """Import a public export on first access."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'healthlake' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the public exports next to the module's own names."""
    return sorted({*globals(), *__all__})
