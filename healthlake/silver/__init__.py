"""Silver: one conformed clinical model from every feed."""

from __future__ import annotations
