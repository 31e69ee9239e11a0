"""Fault injection for crash tests: die like ``kill -9`` right after the n-th write to a table.

``HEALTHLAKE_FAULT=kill-after:<layer.table>:<n>`` makes the process SIGKILL itself after its n-th
successful write to that table (counted per process), so a test can prove that a re-run after a crash
neither loses nor duplicates anything. Unset (the normal case), it costs one environment lookup per write.

``on_write`` runs an action right after each write to a table, in this process: a test can so make
another session's write land at a precise point of a stage (between its reads and its last write).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

FAULT_ENV = "HEALTHLAKE_FAULT"

log = logging.getLogger(__name__)
_writes: dict[str, int] = {}
_actions: dict[str, list[Callable[[], None]]] = {}


def after_write(table: str) -> None:
    """Count a committed write to ``table``; run the ``on_write`` actions set for it; kill the process
    when ``HEALTHLAKE_FAULT`` says so."""
    for action in list(_actions.get(table, ())):
        action()
    fault = os.environ.get(FAULT_ENV, "")
    if not fault.startswith("kill-after:"):
        return
    _, target, n = fault.split(":")
    _writes[table] = _writes.get(table, 0) + 1
    if table == target and _writes[table] >= int(n):
        log.warning("fault injection: killing the process after write %d to %s", _writes[table], table)
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def on_write(table: str, action: Callable[[], None]) -> Iterator[None]:
    """Run ``action`` right after each committed write to ``table`` made while the context is open.

    Args:
        table: Table name ``layer.table``.
        action: What to do, e.g. another session's write (a reviewer recording a decision while a link
            run goes).
    """
    _actions.setdefault(table, []).append(action)
    try:
        yield
    finally:
        _actions[table].remove(action)
