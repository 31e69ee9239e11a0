"""Exceptions raised for user errors, each carrying a one-line message."""

from __future__ import annotations


class HealthlakeError(Exception):
    """Base class for errors caused by user input; the CLI prints them as one line and exits 2."""


class ConfigError(HealthlakeError):
    """A configuration file, environment variable or override is missing, malformed or invalid."""


class UsageError(HealthlakeError):
    """A command was called with arguments that cannot work (bad path, bad date, conflicting options)."""


class LakeError(HealthlakeError):
    """A lake path or table name is invalid, or a table that should exist does not."""
