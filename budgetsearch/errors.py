"""Errors the command line reports in one line (exit code 2, no traceback unless ``--debug``)."""

from __future__ import annotations


class UsageError(ValueError):
    """A user mistake the CLI reports in one line (exit code 2)."""
