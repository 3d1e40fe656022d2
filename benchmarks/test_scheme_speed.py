"""The schemes that run the built-in cells, on the same cases: what ``auto``'s choice rests on.

    pytest benchmarks/test_scheme_speed.py --benchmark-only

Work: latching, L = 50, 30 trials, one epoch of 1000 sequences, batch 16, Adam, one thread, for
``rnn``, ``lstm`` and ``gru`` at hidden sizes 1, 8 and 32. Each case is trained by ``native``
(the C kernel), ``fused`` (torch's own cuDNN/oneDNN-style kernels, trials as a batch of
block-diagonal weights) and ``stepwise`` (the cells' equations as batched tensor operations, a step
at a time), interleaved, three rounds each, and timed by the median round: the summary prints
each scheme's time and its ratio to ``native``'s, all measured in this run.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import pytest
import torch

from pytest_rnnmemory.engine import CPU_THREADS, train_case
from pytest_rnnmemory.schema import ModelSection, TrainSection
from pytest_rnnmemory.schemes import compiler_missing
from pytest_rnnmemory.spec import CaseSpec

SCHEMES = ("native", "fused", "stepwise")
CASES = [(cell, hidden) for cell in ("rnn", "lstm", "gru") for hidden in (1, 8, 32)]
ROUNDS = 3

RESULTS: dict[str, dict[str, float]] = {}


def spec(cell: str, hidden: int) -> CaseSpec:
    train = TrainSection(samples=1000, val_samples=250, epochs=1, batch_size=16, lr=0.01)
    return CaseSpec(
        "latching", cell, 50, ModelSection(hidden=hidden), train, "accuracy", 0.95, tuple(range(30))
    )


@pytest.mark.skipif(compiler_missing() is not None, reason="the native kernel needs a C compiler")
@pytest.mark.parametrize(("cell", "hidden"), CASES, ids=[f"{c}-H{h}" for c, h in CASES])
def test_the_schemes_on_one_case(benchmark, cell, hidden):
    torch.set_num_threads(CPU_THREADS)
    case = spec(cell, hidden)
    warm = dataclasses.replace(case, trial_seeds=case.trial_seeds[:2])
    for scheme in SCHEMES:  # first calls (imports, the kernel's build) outside the timing
        train_case(warm, scheme=scheme)
    seconds: dict[str, list[float]] = {scheme: [] for scheme in SCHEMES}
    for _ in range(ROUNDS):
        for scheme in SCHEMES:
            started = time.perf_counter()
            outcome = train_case(case, scheme=scheme)
            seconds[scheme].append(time.perf_counter() - started)
            assert outcome.scheme == scheme
    medians = {scheme: statistics.median(s) for scheme, s in seconds.items()}
    benchmark.pedantic(train_case, args=(case,), kwargs={"scheme": "native"}, rounds=1, iterations=1)
    RESULTS[f"{cell}, hidden {hidden}"] = medians
    benchmark.extra_info.update(medians)
