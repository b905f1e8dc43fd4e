"""Search spaces shipped with budgetsearch (data only: ``*.yaml``).

This folder stays at the top of the repository; pyproject.toml installs it as the package
``budgetsearch.search_spaces`` so that a wheel carries it. Read it through
``budgetsearch.search.space.SPACE_DIR`` / ``load_space``, not by importing this package.
"""
