"""budgetsearch: the most accurate pruned network that fits a hardware budget."""

from __future__ import annotations

__version__ = "0.1.0"
