"""Table names and folders of the lake: ``layer.table`` lives in ``<lake_root>/<layer>/<table>``.

Free of pyspark, so that ``healthlake.load_pandas`` finds a table in a process that never starts a JVM.
"""

from __future__ import annotations

import re

from healthlake.errors import LakeError

LAYERS = ("bronze", "silver", "gold", "research", "omop", "vault")
"""The lake's layers; each is also a database in the Spark catalog."""
_PART = re.compile(r"[a-z][a-z0-9_]*")


def split_name(name: str) -> tuple[str, str]:
    """Split ``layer.table`` into its parts.

    Args:
        name: Table name such as ``bronze.fhir_resources``.

    Returns:
        ``(layer, table)``.

    Raises:
        LakeError: When the name is not two lower-case identifiers joined by a dot.
    """
    parts = name.split(".") if isinstance(name, str) else []
    if len(parts) != 2 or not all(_PART.fullmatch(part) for part in parts):
        raise LakeError(
            f"bad table name {name!r}: expected 'layer.table' in lower-case letters, digits and "
            "underscores, e.g. 'bronze.fhir_resources'"
        )
    return parts[0], parts[1]


def table_path(lake_root: str, name: str) -> str:
    """The folder of table ``name``: ``<lake_root>/<layer>/<table>``.

    Args:
        lake_root: Lake root folder or URI.
        name: Table name ``layer.table``.

    Returns:
        The table's path, in the same form (relative, absolute or URI) as ``lake_root``.

    Raises:
        LakeError: For a bad table name or an empty lake root.
    """
    layer, table = split_name(name)
    if not lake_root:
        raise LakeError("the lake root is empty")
    return f"{lake_root.rstrip('/')}/{layer}/{table}"
