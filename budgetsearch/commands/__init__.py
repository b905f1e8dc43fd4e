"""Command-line commands that are more than a parser entry (``pareto``, ``baselines``).

This package sits at the top with :mod:`budgetsearch.cli`: it may use every other package, and
nothing below imports it.
"""
