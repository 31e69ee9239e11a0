"""spark-submit entry point for `healthlake train`: `spark-submit jobs/train.py [options]`."""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import healthlake  # noqa: F401
except ImportError:  # run from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from healthlake import cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli.main(["train", *sys.argv[1:]]))
