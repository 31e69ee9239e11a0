"""Table names and folders of the lake: ``layer.table`` lives in ``<lake_root>/<layer>/<table>``.

Free of pyspark, so that ``healthlake.load_pandas`` finds a table in a process that never starts a JVM.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import NamedTuple

from healthlake.errors import LakeError

LAYERS = ("bronze", "silver", "gold", "research", "omop", "vault")
"""The lake's layers; each is also a database in the Spark catalog."""
_PART = re.compile(r"[a-z][a-z0-9_]*")
DELTA_LOG = "_delta_log"


class TableRef(NamedTuple):
    """A Delta table found in the lake."""

    layer: str
    name: str
    path: str


class TableStatus(NamedTuple):
    """The state of one table, as shown by ``healthlake status``."""

    layer: str
    table: str
    version: int
    rows: int
    last_operation: str
    last_time: dt.datetime


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


def list_local_tables(lake_root: str) -> list[TableRef]:
    """The Delta tables of a local lake (a folder or ``file:`` URI): ``<root>/<layer>/<table>/_delta_log``.

    Folders starting with ``_`` or ``.`` are skipped (``visible``). ``healthlake.io.list_tables`` also
    lists remote lakes, through Spark.

    Args:
        lake_root: Lake root folder or ``file:`` URI.

    Returns:
        The tables, sorted by layer and name, their paths in the form of ``lake_root``.

    Raises:
        LakeError: When the lake root does not exist or is not a folder.
    """
    root = Path(local_path(lake_root)).expanduser()
    if not root.exists():
        raise LakeError(f"lake root {lake_root} does not exist")
    if not root.is_dir():
        raise LakeError(f"lake root {lake_root} is not a folder")
    base = lake_root.rstrip("/")
    found = []
    for layer in sorted(p for p in root.iterdir() if p.is_dir() and visible(p.name)):
        for table in sorted(p for p in layer.iterdir() if p.is_dir() and visible(p.name)):
            if (table / DELTA_LOG).is_dir():
                found.append(TableRef(layer.name, table.name, f"{base}/{layer.name}/{table.name}"))
    return found


def visible(name: str) -> bool:
    """False for folders that are not layers or tables (``_warehouse``, ``.hidden``)."""
    return not name.startswith(("_", "."))


def local_path(path: str) -> str:
    """A ``file:`` URI turned into a plain path; other paths unchanged."""
    if path.startswith("file://"):
        return path[len("file://") :]
    return path.removeprefix("file:")
