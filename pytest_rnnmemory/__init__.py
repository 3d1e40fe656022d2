"""pytest-rnnmemory: can this recurrent cell learn to carry information across L steps?

Memory tasks for recurrent cells as parametrized pytest cases, each decided by
a binomial test over many independently seeded trials. The pytest hooks are
in :mod:`.plugin`; the engine (:mod:`.engine`), the statistics (:mod:`.stats`)
and the report (:mod:`.report`) are plain functions that work without pytest.
"""

__version__ = "0.1.0"
