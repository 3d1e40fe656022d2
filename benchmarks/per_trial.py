"""The per-trial loop users write today, which the speed benchmarks measure the engine against.

Latching, one epoch of ``SAMPLES`` sequences in minibatches of ``BATCH``, Adam at
``LR``, a ``Linear`` readout at the last step, then accuracy on ``VAL`` fresh
sequences: one trial after another, each with its own seed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from pytest_rnnmemory.tasks import make_task

TRIALS = 30
SAMPLES, VAL, BATCH, LR = 8000, 2000, 16, 0.001
#: Trials the loop is timed on; its time for ``TRIALS`` is scaled from the median.
LOOP_TRIALS = 3


def per_trial_loop(
    make_cell: Callable[[], nn.Module], hidden: int, length: int, trials: int = LOOP_TRIALS
) -> float:
    """Seconds for ``TRIALS`` trials trained one after another, scaled from the median of ``trials``.

    ``make_cell()`` builds one trial's cell, mapping ``[batch, steps, 1]`` to ``[batch, steps, hidden]``.
    """
    task = make_task("latching")
    seconds = []
    for seed in range(trials):
        started = time.perf_counter()
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        x, y = task.sample(length, SAMPLES, g)
        xv, yv = task.sample(length, VAL, g)
        y, yv = y[:, -1], yv[:, -1]
        cell, readout = make_cell(), nn.Linear(hidden, 2)
        optimizer = torch.optim.Adam([*cell.parameters(), *readout.parameters()], lr=LR)
        order = torch.randperm(SAMPLES, generator=g)
        for start in range(0, SAMPLES, BATCH):
            idx = order[start : start + BATCH]
            optimizer.zero_grad()
            nn.functional.cross_entropy(readout(cell(x[idx])[:, -1]), y[idx]).backward()
            optimizer.step()
        with torch.no_grad():
            (readout(cell(xv)[:, -1]).argmax(1) == yv).float().mean().item()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * TRIALS
