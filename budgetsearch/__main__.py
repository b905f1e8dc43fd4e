"""``python -m budgetsearch`` runs the command-line interface."""

from __future__ import annotations

from budgetsearch.cli import main

raise SystemExit(main())
