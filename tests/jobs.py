"""Run a ``jobs/`` entry point in its own process (its own JVM), as a scheduler would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Small and quick: the job's own session, 2 shuffle partitions, a JIT that starts fast.
FAST_SPARK_CONF = (
    "{spark.ui.enabled: 'false', spark.sql.shuffle.partitions: '2', spark.driver.extraJavaOptions: "
    "'-XX:TieredStopAtLevel=1 -XX:+UseSerialGC'}"
)


def run_job(job: str, args: list[str], **env: str) -> int:
    """Run ``jobs/<job>.py`` with ``args``; return its exit code (0, or -SIGKILL for an injected crash).

    Raises:
        AssertionError: When the job fails in any other way (with the end of its stderr).
    """
    full_env = {
        **os.environ,
        "HEALTHLAKE_SPARK__MASTER": "local[2]",
        "HEALTHLAKE_SPARK__CONF": FAST_SPARK_CONF,
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "jobs" / f"{job}.py"), *args],
        env=full_env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _, err = proc.communicate(timeout=600)
    finally:
        with contextlib.suppress(ProcessLookupError):  # a killed driver must not leave its JVM behind
            os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(err.decode(errors="replace")[-2000:])
    return proc.returncode
