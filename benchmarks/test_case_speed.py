"""Every shipped suite's quick cases as pytest-benchmark benchmarks: a speed gate for the engine.

    pytest benchmarks/test_case_speed.py --benchmark-only --benchmark-autosave
    pytest benchmarks/test_case_speed.py --benchmark-only --benchmark-compare --benchmark-compare-fail=min:25%

The first stores each case's training time in pytest-benchmark's storage
(``.benchmarks/``); the second fails a case whose time grew by more than a
quarter against the last stored run, the way ``--rnn-baseline`` fails a
verdict that fell. A capability run itself does not feed pytest-benchmark:
pytest-benchmark switches itself off under pytest-xdist, which is how long
suites run, and a capability run's times are in its JSON report already
(``wall_s`` per case). ``-k latching`` and the like pick suites or cells.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from pytest_rnnmemory.engine import CPU_THREADS, train_case
from pytest_rnnmemory.schema import Overrides
from pytest_rnnmemory.suite import load_suite

SUITES = sorted((Path(__file__).resolve().parent.parent / "suites").glob("*.toml"))
CASES = [
    case
    for path in SUITES
    for case in load_suite(path, Overrides(profile="quick")).cases()
    if case.suite.profiles and "quick" in case.suite.profiles
]


@pytest.fixture(scope="module", autouse=True)
def warm_engine():
    """Pay the one-time costs (imports, kernels' first calls) before the first timed case."""
    torch.set_num_threads(CPU_THREADS)
    for case in {c.spec().cell: c for c in CASES}.values():
        train_case(dataclasses.replace(case.spec(), trial_seeds=case.spec().trial_seeds[:2]))


@pytest.mark.parametrize("case", CASES, ids=[f"{c.suite.name}/{c.id}" for c in CASES])
def test_case_training_time(benchmark, case):
    torch.set_num_threads(CPU_THREADS)
    spec = case.spec()
    # One round: a case trains for seconds, and its trials are the repetitions.
    outcome = benchmark.pedantic(train_case, args=(spec,), rounds=1, iterations=1)
    benchmark.extra_info.update(
        {
            "scheme": outcome.scheme,
            "trials": len(spec.trial_seeds),
            "length": spec.length,
            "config_hash": case.config_hash(),
        }
    )
    assert len(outcome.metrics) == len(spec.trial_seeds)
