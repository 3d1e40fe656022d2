"""The repository's root conftest: the project's own tests drive pytest as a user would, through
pytester, which this loads for every run in the repository.

It loads it as a plugin at configuration, not by ``pytest_plugins``: pytest refuses that in a
conftest outside the rootdir, which this one is when a user runs a shipped suite by its path
(``--rnn-suite=path/to/suites/latching.toml``) from a folder of their own."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")
