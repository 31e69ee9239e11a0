"""Fault injection for crash tests: die like ``kill -9`` right after the n-th write to a table.

``HEALTHLAKE_FAULT=kill-after:<layer.table>:<n>`` makes the process SIGKILL itself after its n-th
successful write to that table (counted per process), so a test can prove that a re-run after a crash
neither loses nor duplicates anything. Unset (the normal case), it costs one environment lookup per write.
"""

from __future__ import annotations

import logging
import os
import signal

FAULT_ENV = "HEALTHLAKE_FAULT"

log = logging.getLogger(__name__)
_writes: dict[str, int] = {}


def after_write(table: str) -> None:
    """Count a committed write to ``table``; kill the process when ``HEALTHLAKE_FAULT`` says so."""
    fault = os.environ.get(FAULT_ENV, "")
    if not fault.startswith("kill-after:"):
        return
    _, target, n = fault.split(":")
    _writes[table] = _writes.get(table, 0) + 1
    if table == target and _writes[table] >= int(n):
        log.warning("fault injection: killing the process after write %d to %s", _writes[table], table)
        os.kill(os.getpid(), signal.SIGKILL)
