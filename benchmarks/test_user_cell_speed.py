"""Users' own cells in the engine against the same cells in the per-trial loop users write today.

    pytest benchmarks/test_user_cell_speed.py --benchmark-only

Work: latching, L = 50, 30 trials, one epoch of 8000 sequences, batch 16, Adam,
at hidden sizes 1 and 8. The cells are the outside cells of the tests
(``tests/cells_for_tests.py``): a GRU written step by step with ``nn.Linear``
gates as users write one, an IndRNN (Li et al. 2018), and a minGRU-like
parallel-scan cell. The per-trial loop trains one trial after another (timed on
3 and scaled to 30 by the median trial), the engine all 30 at once, under
``vmap`` and under ``compiled``, all on one thread, in this process, one after
the other. ``compiled`` is timed three ways: its first case compiling into an
empty Inductor cache (a new machine), its first case finding that cache on disk
(a later run: the process's compiled cells are cleared first), and a later case
of the run, which reuses the compiled cell.
"""

from __future__ import annotations

import time

import pytest
import torch

from benchmarks import per_trial
from benchmarks.per_trial import BATCH, LR, SAMPLES, TRIALS, VAL
from pytest_rnnmemory import schemes
from pytest_rnnmemory.cells import build_cell
from pytest_rnnmemory.engine import train_case
from pytest_rnnmemory.schema import ModelSection, TrainSection
from pytest_rnnmemory.spec import CaseSpec

LENGTH = 50
CASES = [(cell, hidden) for cell in ("StepGRU", "IndRNN", "MinGRU") for hidden in (1, 8)]

RESULTS: dict[str, dict] = {}


def per_trial_loop(cell: str, hidden: int) -> float:
    """Seconds for 30 trials trained one after another, scaled from the median of a few."""
    # The cell run over whole sequences as the engine's own wrapper runs a step cell.
    return per_trial.per_trial_loop(
        lambda: build_cell(f"tests.cells_for_tests:{cell}", 1, hidden), hidden, LENGTH
    )


def engine_spec(cell: str, hidden: int, engine: str = "vmap") -> CaseSpec:
    train = TrainSection(samples=SAMPLES, val_samples=VAL, epochs=1, batch_size=BATCH, lr=LR, engine=engine)
    name = f"tests.cells_for_tests:{cell}"
    return CaseSpec(
        "latching", name, LENGTH, ModelSection(hidden=hidden), train, "accuracy", 0.95, tuple(range(TRIALS))
    )


@pytest.mark.parametrize(("cell", "hidden"), CASES, ids=[f"{c}-H{h}" for c, h in CASES])
def test_a_users_cell_in_the_engine_against_its_per_trial_loop(benchmark, cell, hidden):
    torch.set_num_threads(1)
    loop_s = per_trial_loop(cell, hidden)
    started = time.perf_counter()
    train_case(engine_spec(cell, hidden))
    eager_s = time.perf_counter() - started
    from torch._inductor.utils import clear_caches, fresh_cache

    with fresh_cache():  # an empty cache on disk, and Inductor's in-memory caches cleared
        schemes._COMPILED.clear()
        started = time.perf_counter()
        train_case(engine_spec(cell, hidden, "compiled"))  # compiles into an empty cache
        first_s = time.perf_counter() - started
        schemes._COMPILED.clear()
        clear_caches()  # as a new process would be: only the cache on disk is left
        started = time.perf_counter()
        train_case(engine_spec(cell, hidden, "compiled"))  # finds the compiled code on disk
        cached_s = time.perf_counter() - started
    # Compiled cells are kept for the process: later cases of the cell run them at once.
    outcome = benchmark.pedantic(
        train_case, args=(engine_spec(cell, hidden, "compiled"),), rounds=1, iterations=1
    )
    engine_s = benchmark.stats.stats.median
    compiled = f"tests.cells_for_tests:{cell}" not in schemes.failed_to_compile()
    RESULTS[f"{cell}, hidden {hidden}"] = row = {
        "loop_s": loop_s,
        "eager_s": eager_s,
        "eager_ratio": loop_s / eager_s,
        "first_s": first_s,
        "cached_s": cached_s,
        "engine_s": engine_s,
        "ratio": loop_s / engine_s,
        "compiled": compiled,
    }
    benchmark.extra_info.update(row)
    assert len(outcome.metrics) == TRIALS
