"""Synthetic regional health data: a province's institutions, residents and feeds, with ground truth."""

from __future__ import annotations

from healthlake.synth.generate import check_paths, generate_region

__all__ = ["check_paths", "generate_region"]
