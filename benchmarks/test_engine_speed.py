"""The batched engine against the per-trial loop users write today, on the same work.

    pytest benchmarks/ --benchmark-only

Work: latching, hidden size 1, 30 trials, 1 epoch of 8000 sequences, batch
16, Adam; L = 50 and 200, rnn and lstm. The per-trial loop (the logic of the
project's shared ``per_trial_baseline.py``: ``torch.nn.RNN``/``LSTM`` plus a
``Linear`` readout, one trial after another) is timed on a few trials and
scaled to 30 by the median trial's time, and the engine is timed by the
median of three runs (one slow run on a shared machine moves neither).
Both sides run in this process, one after the other, with the same thread
setting (one thread, the engine's), so the headline ratio
compares like with like on whatever machine runs it. The loop is timed a
second time with torch's default threads, as ``per_trial_baseline.py`` runs
when a user starts it, for the ratio a user sees. Peak memory is measured in
a fresh process per engine case.

The engine runs as users run it, with ``train.engine = "auto"``; the table
names the scheme that ran. Where that is ``native``, the scheme ``auto``
picks without it is timed too, for the speed-up the kernel adds. The native
kernel is built (or found in the user's cache) before anything is timed:
that happens once per machine and source, and its time is printed apart.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmarks import per_trial
from benchmarks.per_trial import BATCH, LOOP_TRIALS, LR, SAMPLES, TRIALS, VAL
from pytest_rnnmemory import schemes
from pytest_rnnmemory.cells.native import native_available, unavailable_reason
from pytest_rnnmemory.engine import train_case
from pytest_rnnmemory.schema import ModelSection, TrainSection
from pytest_rnnmemory.schemes import choose_scheme
from pytest_rnnmemory.spec import CaseSpec

#: Runs of the engine timed; like the loop, it is measured by its median run.
ENGINE_ROUNDS = 3
CASES = [("rnn", 50), ("lstm", 50), ("rnn", 200), ("lstm", 200)]

RESULTS: dict[str, dict] = {}
#: Seconds spent building or loading the native kernel before timing, and why it is unavailable.
NATIVE: dict[str, object] = {}


#: torch's thread count before the benchmark sets its own: what a user's script runs with.
DEFAULT_THREADS = torch.get_num_threads()


class _Outputs(nn.Module):
    """torch's ``RNN`` or ``LSTM`` of one unit, its outputs alone."""

    def __init__(self, module: type[nn.Module]) -> None:
        super().__init__()
        self.rnn = module(1, 1, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


def per_trial_loop(cell: str, length: int, trials: int) -> float:
    """Train ``trials`` trials one after another as a user's script does; seconds for 30 trials."""
    module = {"rnn": nn.RNN, "lstm": nn.LSTM}[cell]
    return per_trial.per_trial_loop(lambda: _Outputs(module), 1, length, trials)


def engine_spec(cell: str, length: int) -> CaseSpec:
    train = TrainSection(samples=SAMPLES, val_samples=VAL, epochs=1, batch_size=BATCH, lr=LR)
    seeds = tuple(range(TRIALS))
    return CaseSpec("latching", cell, length, ModelSection(hidden=1), train, "accuracy", 0.95, seeds)


PEAK_SCRIPT = """
import json, resource, sys
from benchmarks.test_engine_speed import engine_spec
from pytest_rnnmemory.engine import train_case
outcome = train_case(engine_spec(sys.argv[1], int(sys.argv[2])))
print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "scheme": outcome.scheme}))
"""


def peak_memory(cell: str, length: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, cell, str(length)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,  # where `benchmarks` is importable
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", autouse=True)
def native_kernel():
    """Build or load the native kernel once, untimed by the cases."""
    started = time.perf_counter()
    available = native_available()
    NATIVE.update(build_s=time.perf_counter() - started, reason=None if available else unavailable_reason())


@pytest.mark.parametrize(("cell", "length"), CASES, ids=[f"{c}-L{n}" for c, n in CASES])
def test_engine_against_the_per_trial_loop(benchmark, monkeypatch, cell, length):
    torch.set_num_threads(DEFAULT_THREADS)
    loop_default_s = per_trial_loop(cell, length, LOOP_TRIALS)
    torch.set_num_threads(1)  # the engine's own setting, for both sides
    loop_s = per_trial_loop(cell, length, LOOP_TRIALS)
    spec = engine_spec(cell, length)
    outcome = benchmark.pedantic(train_case, args=(spec,), rounds=ENGINE_ROUNDS, iterations=1)
    engine_s = benchmark.stats.stats.median
    without_s = without = None
    if outcome.scheme == "native":
        with monkeypatch.context() as patched:
            patched.setattr(schemes, "native_available", lambda: False)
            without = choose_scheme(cell, 1, TRIALS)
        started = time.perf_counter()
        train_case(spec, scheme=without)
        without_s = time.perf_counter() - started
    steps = TRIALS * SAMPLES * length
    memory = peak_memory(cell, length)
    RESULTS[f"{cell}-L{length}"] = row = {
        "scheme": outcome.scheme,
        "engine_s": engine_s,
        "loop_s": loop_s,
        "ratio": loop_s / engine_s,
        "loop_default_s": loop_default_s,
        "default_ratio": loop_default_s / engine_s,
        "seq_steps_per_s": steps / engine_s,
        "loop_seq_steps_per_s": steps / loop_s,
        "peak_mib": memory["peak_mib"],
        "without": without,
        "without_ratio": None if without_s is None else loop_s / without_s,
    }
    benchmark.extra_info.update(row)
    assert len(outcome.metrics) == TRIALS
