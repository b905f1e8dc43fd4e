"""Device profiles shipped with budgetsearch (data only: ``*.yaml`` profiles, ``*.csv`` timings).

This folder stays at the top of the repository; pyproject.toml installs it as the package
``budgetsearch.hw_profiles`` so that a wheel carries it. Read it through
``budgetsearch.cost.profiles.PROFILE_DIR`` / ``load_profile``, not by importing this package.
"""
