"""Privacy: keyed tokens for direct identifiers and the identity vault."""

from __future__ import annotations
