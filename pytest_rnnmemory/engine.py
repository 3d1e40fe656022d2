"""Training the trials of one case together, as one batched run.

The ``n`` trials of a case are independent models: each has its own initial
weights, training data, minibatch order and validation data, all drawn from
its own seed (:mod:`.seeds`). Their weights are stacked along a leading trial
dimension and trained in the same tensors (:mod:`.stacked`): one forward, one
backward and one optimizer step per minibatch for every trial at once
(:mod:`.steppers`). How the cells of all trials run in one call is a scheme's
business (:mod:`.schemes`).

Everything here is plain PyTorch and callable without pytest.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .data import EpochOrders, Sequences, TrialData
from .outcome import CaseOutcome
from .schemes import SCHEMES, choose_scheme
from .seeds import EVAL_PREFIX
from .spec import CaseSpec
from .stacked import StackedModel
from .steppers import make_stepper, masked
from .tasks import Task, make_task

#: Intra-op threads per case on the CPU. The trials' tensors are small, so more threads
#: only add synchronisation, and with other processes on the cores (pytest-xdist
#: workers, a second job) spinning OpenMP threads made a case 50 times slower.
#: Parallelism comes from running cases side by side (``pytest -n``).
CPU_THREADS = 1

#: Training sequences per trial that the gradient diagnostic measures.
GRADIENT_SEQUENCES = 256


@dataclass(frozen=True)
class ProgressPoint:
    """How far a case has come: ``epoch`` of ``epochs`` done for the ``trials`` training now.

    Trained in stages, ``before`` trials were trained by earlier stages, of
    ``planned`` in all, and ``elapsed_s`` counts from the first stage.
    """

    epoch: int
    epochs: int
    trials: int
    elapsed_s: float
    before: int = 0
    planned: int | None = None

    @property
    def left_s(self) -> float:
        """About how long the trials planned still take, at the pace so far (an upper bound in stages)."""
        planned = self.planned or self.trials
        done = self.before * self.epochs + self.trials * self.epoch
        return self.elapsed_s / max(done, 1) * (planned * self.epochs - done)


#: Called after every epoch of a case.
Progress = Callable[[ProgressPoint], None]


@dataclass(frozen=True)
class TrainedCase:
    """A case's outcome and its trials' final weights (stacked over trials, on the CPU)."""

    outcome: CaseOutcome
    weights: dict[str, torch.Tensor]


def train_case(
    spec: CaseSpec,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    scheme: str | None = None,
    threads: int | None = CPU_THREADS,
) -> CaseOutcome:
    """Train every trial of ``spec`` in one batched run and measure it on fresh validation data."""
    return train(spec, device, progress, scheme, threads).outcome


def train(
    spec: CaseSpec,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    scheme: str | None = None,
    threads: int | None = CPU_THREADS,
) -> TrainedCase:
    """:func:`train_case`, with the trials' final weights.

    ``threads`` caps torch's intra-op threads on the CPU while the case runs
    (``None``: leave torch's setting alone); the previous setting is restored.
    """
    device = torch.device(device)
    if device.type != "cpu" or threads is None:
        return _train(spec, device, progress, scheme)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(spec, device, progress, scheme)
    finally:
        torch.set_num_threads(before)


def _train(
    spec: CaseSpec, device: torch.device, progress: Progress | None, scheme: str | None
) -> TrainedCase:
    started = time.perf_counter()
    task = make_task(spec.task, spec.task_params)
    chosen = choose_scheme(spec.cell, spec.hidden, spec.trials, scheme or spec.train.engine, str(device))
    model = StackedModel(spec, task, device, chosen)
    data = TrialData.draw(spec, task, device)
    stepper = make_stepper(model, data.train, spec.train, trains=SCHEMES[chosen].trains)
    orders = EpochOrders(spec, device)
    gradient = _input_gradient(model, data.train).cpu()
    losses, metrics = [], []
    for epoch in range(spec.train.epochs):
        losses.append(masked(stepper.epoch(orders.next()), model.diverged))
        metrics.append(model.evaluate(spec.metric, data.val.x, data.val.y, data.val.first))
        if progress is not None:
            progress(ProgressPoint(epoch + 1, spec.train.epochs, spec.trials, time.perf_counter() - started))
    loss_rows = torch.stack(losses, 1).cpu()
    metric_rows = torch.stack(metrics, 1).cpu()
    eval_metrics = {length: _evaluate_at(model, spec, task, length) for length in spec.eval_lengths}
    outcome = CaseOutcome(
        metrics=tuple(metric_rows[:, -1].tolist()),
        diverged=tuple(model.diverged.cpu().tolist()),
        train_loss=tuple(tuple(_finite(v) for v in row) for row in loss_rows.tolist()),
        val_metric=tuple(tuple(row) for row in metric_rows.tolist()),
        scheme=chosen,
        device=str(device),
        wall_s=time.perf_counter() - started,
        eval_metrics=eval_metrics,
        input_gradient=tuple(gradient.tolist()),
    )
    return TrainedCase(outcome, model.final_weights())


def _input_gradient(model: StackedModel, train: Sequences) -> torch.Tensor:
    """The gradient diagnostic at the initial weights, on each trial's first training sequences."""
    count = min(GRADIENT_SEQUENCES, train.x.shape[1])
    return model.input_gradient(train.x[:, :count], train.y[:, :count], train.first)


def _evaluate_at(model: StackedModel, spec: CaseSpec, task: Task, length: int) -> tuple[float, ...]:
    """Each trial's metric on fresh sequences that test it at ``length`` (a stream of their own)."""
    sequences = Sequences.draw(
        spec, task, f"{EVAL_PREFIX}{length}", spec.train.val_samples, model.device, eval_length=length
    )
    return tuple(model.evaluate(spec.metric, sequences.x, sequences.y, sequences.first).cpu().tolist())


def _finite(value: float) -> float | None:
    """A loss for the report: JSON has no NaN, so a diverged epoch's loss is ``None``."""
    return value if math.isfinite(value) else None
