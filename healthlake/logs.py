"""What a run shows: one progress line per stage and step, Spark and Splink quiet unless ``-v``.

healthlake logs through ``logging`` (the ``healthlake`` logger and its children); this module holds the
command line's set-up of those logs, ``output`` (the one place healthlake prints a result line to stdout)
and the one format of a progress line::

    12:04:31 ingest hl7v2: 8 records in 2.9s (2.8 records/s); 4 files, 0 quarantined

By default (``configure_logging(0)``) healthlake's own INFO lines and every warning show; the JVM's log4j
logs show from ERROR up only (``log4j2.properties`` next to this module, which ``healthlake.spark`` hands
to the driver JVM), and the Python loggers of py4j and Splink from ERROR up. ``-v`` (``verbosity`` > 0)
shows healthlake's DEBUG lines and gives Spark, py4j and Splink back their own defaults. Importing this
module imports no pyspark.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"
"""Format of ``-v`` log lines: time, level, logger, message."""
PROGRESS_FORMAT = "%(asctime)s %(message)s"
"""Format of default log lines: time and message (the level too when above INFO)."""
DATE_FORMAT = "%H:%M:%S"

JVM_LOG_CONFIG = Path(__file__).with_name("log4j2.properties")
"""The driver JVM's quiet log4j 2 configuration (root logger at ERROR), used unless ``-v``."""
QUIET_LOGGERS = ("py4j", "splink")
"""Python loggers of the libraries under healthlake that are held at ERROR by default: py4j's and Splink's
(its warnings about levels not observed in a sample and about ``max_pairs`` are about the model
healthlake configures, not something a user can act on). pyspark's query-context loggers, which print a
JSON record for a failed query, are held back by ``healthlake.spark`` (they must be pyspark's own class)."""

_state = {"verbosity": 0}
_handler: logging.Handler | None = None


class _Formatter(logging.Formatter):
    """Default lines: ``HH:MM:SS message``, with the level when it is above INFO."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if record.levelno > logging.INFO:
            stamp = self.formatTime(record, self.datefmt)
            line = f"{stamp} {record.levelname}: {line[len(stamp) + 1 :]}"
        return line


def configure_logging(verbosity: int = 0) -> None:
    """Send healthlake's logs, and py4j's and Splink's, to stderr and set how much each says.

    Args:
        verbosity: Number of ``-v`` flags. 0: healthlake's INFO lines (one per stage and step) and every
            warning, Spark's JVM logs from ERROR up, py4j and Splink from ERROR up. 1 or more: healthlake's
            DEBUG lines with their level and logger, and Spark, py4j and Splink at their own levels.
    """
    global _handler
    _state["verbosity"] = verbosity
    names = ("healthlake", *QUIET_LOGGERS)
    if _handler is not None:
        for name in names:
            logging.getLogger(name).removeHandler(_handler)
    _handler = logging.StreamHandler(sys.stderr)
    if verbosity > 0:
        _handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt=DATE_FORMAT))
    else:
        _handler.setFormatter(_Formatter(PROGRESS_FORMAT, datefmt=DATE_FORMAT))
    for name in names:
        logging.getLogger(name).addHandler(_handler)
    logging.getLogger("healthlake").setLevel(logging.DEBUG if verbosity > 0 else logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbosity > 0 else logging.ERROR)


def verbose() -> bool:
    """True when ``configure_logging`` was asked for ``-v``: Spark then keeps its own log settings."""
    return _state["verbosity"] > 0


def output(text: str) -> None:
    """Write a result line to stdout (the only place healthlake prints)."""
    print(text, flush=True)


def progress_line(what: str, records: int | None, seconds: float, detail: str = "") -> str:
    """The text of a progress line: ``<what>: <records> records in <s>s (<rate> records/s)[; detail]``.

    Args:
        what: The stage and step, e.g. ``ingest hl7v2``.
        records: Records the step took; None for a step that counts none (only its time is shown).
        seconds: Wall time of the step.
        detail: More figures, after a semicolon.
    """
    if records is None:
        text = f"{what}: {seconds:.1f}s"
    else:
        noun = "record" if records == 1 else "records"
        text = f"{what}: {records:,} {noun} in {seconds:.1f}s ({_rate(records, seconds)} records/s)"
    return f"{text}; {detail}" if detail else text


def progress(log: logging.Logger, what: str, records: int | None, seconds: float, detail: str = "") -> None:
    """Log one progress line at INFO (see ``progress_line``)."""
    log.info("%s", progress_line(what, records, seconds, detail))


@contextmanager
def timed(log: logging.Logger, what: str) -> Iterator[None]:
    """Log one progress line with the block's time (``progress_line`` without records) when it succeeds."""
    started = time.monotonic()
    yield
    progress(log, what, None, time.monotonic() - started)


class Steps:
    """Times the consecutive steps of a stage: each ``done`` logs one progress line for its step."""

    def __init__(self, log: logging.Logger, stage: str) -> None:
        self.log, self.stage = log, stage
        self.started = self.last = time.monotonic()

    def done(self, step: str, records: int | None, detail: str = "") -> float:
        """Log the step that ended now (time since the previous step's end) and return its seconds."""
        now = time.monotonic()
        seconds, self.last = now - self.last, now
        progress(self.log, f"{self.stage} {step}", records, seconds, detail)
        return seconds

    @property
    def seconds(self) -> float:
        """Seconds since the stage started."""
        return time.monotonic() - self.started


def _rate(records: int, seconds: float) -> str:
    if seconds <= 0:
        return "-"
    rate = records / seconds
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:.1f}"
