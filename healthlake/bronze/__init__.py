"""Bronze: feed parsers that turn landing-zone bytes into bronze rows or quarantine (see docs/bronze.md)."""

from __future__ import annotations
