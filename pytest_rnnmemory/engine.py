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

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from . import seeds
from .data import EpochOrders, Sequences, Streams, TrialData, length_range, stream_piece
from .outcome import CaseOutcome
from .schemes import SCHEMES, choose_scheme, compiling_seconds, scheme_ran, without_unbatched_warning
from .seeds import EVAL_PREFIX
from .spec import CaseSpec
from .stacked import StackedModel
from .steppers import Stepper, make_stepper, minibatches
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
    #: Of ``elapsed_s``, the seconds spent compiling the cell, which the pace leaves out.
    compiling_s: float = 0.0

    @property
    def left_s(self) -> float:
        """About how long the trials planned still take, at the pace so far (an upper bound in stages)."""
        planned = self.planned or self.trials
        done = self.before * self.epochs + self.trials * self.epoch
        return max(self.elapsed_s - self.compiling_s, 0.0) / max(done, 1) * (planned * self.epochs - done)


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
    curves: bool = True,
) -> CaseOutcome:
    """Train every trial of ``spec`` in one batched run and measure it on fresh validation data."""
    return train(spec, device, progress, scheme, threads, curves).outcome


def train(
    spec: CaseSpec,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    scheme: str | None = None,
    threads: int | None = CPU_THREADS,
    curves: bool = True,
) -> TrainedCase:
    """:func:`train_case`, with the trials' final weights.

    ``threads`` caps torch's intra-op threads on the CPU while the case runs
    (``None``: leave torch's setting alone); the previous setting is restored.
    ``curves = False`` skips what only a report reads (the validation metric after
    every epoch, the gradient diagnostic): tuning trials need their final result alone.
    """
    device = torch.device(device)
    with (
        _seeded(spec, device),
        _threads(threads if device.type == "cpu" else None),
        without_unbatched_warning(),
    ):
        return _train(spec, device, progress, scheme, curves)


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` (``None``: left alone), and restored after."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _seeded(spec: CaseSpec, device: torch.device) -> Iterator[None]:
    """torch's global generators seeded from the case's trials, and restored after: the random
    numbers a user's cell draws (dropout's masks) are the same every time the case runs."""
    seed = seeds.derive_seed(*spec.trial_seeds, "global")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def _train(
    spec: CaseSpec, device: torch.device, progress: Progress | None, scheme: str | None, curves: bool
) -> TrainedCase:
    started = time.perf_counter()
    task = make_task(spec.task, spec.task_params)
    schedule = Schedule.of(spec, task)
    chosen = choose_scheme(
        spec.cell,
        spec.hidden,
        spec.trials,
        scheme or spec.train.engine,
        str(device),
        schedule.calls(spec, task),
    )
    model = StackedModel(spec, task, device, chosen)
    streams = Streams(spec, "train") if spec.train.data == "stream" else None
    data = TrialData.draw(spec, task, device, streams, schedule.sizes[0])
    stepper = make_stepper(model, data.train, spec.train, trains=SCHEMES[chosen].trains)
    run = _Run(spec, task, model, data, stepper, curves, schedule, streams)
    gradient = _input_gradient(model, data.train).cpu() if curves else torch.zeros(0)
    run.train(progress, started)
    outcome = CaseOutcome(
        metrics=tuple(run.final),
        diverged=tuple(run.diverged),
        train_loss=tuple(tuple(_finite(v) for v in row) for row in run.losses),
        val_metric=tuple(tuple(row) for row in run.metrics),
        scheme=scheme_ran(model.scheme, chosen),
        device=str(device),
        wall_s=time.perf_counter() - started,
        eval_metrics={length: tuple(values) for length, values in run.eval_metrics.items()},
        input_gradient=tuple(gradient.tolist()),
        sequences=tuple(run.sequences),
        budget=schedule.budget,
    )
    return TrainedCase(outcome, run.weights())


@dataclass(frozen=True)
class Schedule:
    """The training sequences of each pass ("epoch"): ``samples`` per epoch over a fixed set, or
    pieces of fresh sequences from each trial's stream, ``max_sequences`` in all."""

    sizes: tuple[int, ...]

    @property
    def budget(self) -> int:
        return sum(self.sizes)

    def calls(self, spec: CaseSpec, task: Task) -> int:
        """Cell calls of the whole schedule (minibatches x steps, at the longest length): what
        compiling a cell must pay for."""
        _, longest = length_range(spec, task, spec.train.lengths)
        return sum(minibatches(size, spec.train.batch_size) for size in self.sizes) * task.steps(longest)

    @classmethod
    def of(cls, spec: CaseSpec, task: Task) -> Schedule:
        train = spec.train
        if train.data == "fixed":
            return cls((train.samples,) * train.epochs)
        _, longest = length_range(spec, task, train.lengths)
        piece = stream_piece(spec.train, task.steps(longest), task.input_size)
        whole, rest = divmod(train.max_sequences, piece)
        return cls((piece,) * whole + ((rest,) if rest else ()))


class _Run:
    """The epochs of one case, trial by trial: curves, stops, final metrics and the weights they end with.

    Under ``train.stop = "budget"`` every trial trains every epoch and its final
    validation metric decides. Under ``"learned"`` the trials' validation metric is
    checked every ``eval_every`` sequences (and at the end of the budget); a trial
    that reaches the threshold stops for good, leaves every tensor of the batch,
    and is measured on its fresh test set, which decides its success, and at the
    evaluation lengths: every trial is measured there with the weights it ends with.
    """

    def __init__(
        self,
        spec: CaseSpec,
        task: Task,
        model: StackedModel,
        data: TrialData,
        stepper: Stepper,
        curves: bool,
        schedule: Schedule,
        streams: Streams | None,
    ):
        self.spec, self.task, self.model, self.data, self.stepper = spec, task, model, data, stepper
        self.curves, self.schedule, self.streams = curves, schedule, streams
        n = spec.trials
        self.learned = spec.train.stop == "learned"
        self.test = (
            Sequences.draw(
                spec,
                task,
                "test",
                spec.train.test_samples or spec.train.val_samples,
                model.device,
                shuffle=spec.shuffle_labels,
            )
            if self.learned
            else None
        )
        #: A fresh order of each trial's fixed training set every epoch (streamed data comes in order).
        self.orders = EpochOrders(spec, model.device) if streams is None else None
        #: The trials still training, by their index in the case, in the order of the batch's rows.
        self.alive = list(range(n))
        self.losses: list[list[float]] = [[] for _ in range(n)]
        self.metrics: list[list[float]] = [[] for _ in range(n)]
        self.final: list[float] = [0.0] * n
        self.diverged: list[bool] = [False] * n
        self.sequences: list[int | None] = [None] * n
        #: Each trial's metric at each of ``spec.eval_lengths``, with the weights it ends with.
        self.eval_metrics: dict[int, list[float]] = {length: [0.0] * n for length in spec.eval_lengths}
        self._weights: dict[int, torch.Tensor] = {}
        #: The process's compiling time when the case began: what it adds is not its training pace.
        self.compiled_before = compiling_seconds()

    def train(self, progress: Progress | None, started: float) -> None:
        spec, model = self.spec, self.model
        batch, sizes = spec.train.batch_size, self.schedule.sizes
        epochs = len(sizes)
        every = spec.train.check_interval if self.learned else sizes[0]
        seen, check_at = 0, every
        for epoch, samples in enumerate(sizes):
            if not self.alive:
                break  # every trial has learned: the case ends
            order = self._next_order(epoch, samples)
            total = torch.zeros(model.n, device=model.device)
            start = 0
            while start < samples:
                # Up to the next check, in whole minibatches so that they fall as in one epoch.
                ahead = minibatches(max(check_at - seen, 1), batch) * batch
                stop = min(samples, start + ahead) if self.learned else samples
                total += self.stepper.train(order[:, start:stop])
                seen, done = seen + stop - start, stop
                start = stop
                last = epoch == epochs - 1 and stop == samples
                if self.learned and (seen >= check_at or last):
                    check_at = seen + every
                    val = self._evaluate(self.data.val)
                    if stop == samples:
                        self._epoch_end(total, val, samples)
                    reached = (val >= spec.threshold) & ~model.diverged
                    rows = self._stop(reached, val, total, done, seen, ended=stop == samples)
                    order, total = order[rows], total[rows]
                    if not self.alive:
                        break
                elif stop == samples:
                    # Without curves only the last epoch's validation metric is read.
                    measured = self.curves or epoch == epochs - 1
                    val = self._evaluate(self.data.val) if measured else torch.full((model.n,), math.nan)
                    self._epoch_end(total, val, samples)
            if progress is not None:
                elapsed = time.perf_counter() - started
                compiling = compiling_seconds() - self.compiled_before
                progress(ProgressPoint(epoch + 1, epochs, spec.trials, elapsed, compiling_s=compiling))
        self._finish()

    def _next_order(self, epoch: int, samples: int) -> torch.Tensor:
        """Each live trial's sequences of this pass, in order: a fresh shuffle of its fixed set, or,
        streamed, its next fresh sequences (the first piece was drawn with the validation set)."""
        if self.orders is not None:
            return self.orders.next()
        if epoch > 0:
            spec = self.spec
            live = dataclasses.replace(spec, trial_seeds=tuple(spec.trial_seeds[i] for i in self.alive))
            fresh = Sequences.draw(
                live,
                self.task,
                self.streams,
                samples,
                self.model.device,
                lengths=spec.train.lengths,
                shuffle=spec.shuffle_labels,
            )
            self.data = TrialData(fresh, self.data.val)
            self.stepper.use(fresh)
        return torch.arange(samples, device=self.model.device).expand(self.model.n, samples).contiguous()

    def _evaluate(self, sequences: Sequences) -> torch.Tensor:
        return self.model.evaluate(self.spec.metric, sequences.x, sequences.y, sequences.first)

    def _epoch_end(self, total: torch.Tensor, val: torch.Tensor, trained: int) -> None:
        """Each live trial's mean minibatch loss of the epoch and its validation metric."""
        losses = total / minibatches(trained, self.spec.train.batch_size)
        losses = losses.masked_fill(self.model.diverged, math.nan)
        for row, i in enumerate(self.alive):
            self.losses[i].append(float(losses[row]))
            self.metrics[i].append(float(val[row]))

    def _stop(
        self,
        reached: torch.Tensor,
        val: torch.Tensor,
        total: torch.Tensor,
        trained: int,
        seen: int,
        ended: bool,
    ) -> torch.Tensor:
        """Stop the trials that ``reached`` the threshold; the rows of the others, which train on.

        ``trained`` sequences of this pass are behind; ``ended``: the pass is over, and its
        curve point already recorded.
        """
        if not reached.any():
            return ~reached
        test = self._evaluate(self.test)
        losses = total / minibatches(trained, self.spec.train.batch_size)
        flat = self.model.flat.detach()
        for row, i in enumerate(self.alive):
            if reached[row]:
                if not ended:  # the curves end where the trial stopped
                    self.losses[i].append(float(losses[row]))
                    self.metrics[i].append(float(val[row]))
                self.sequences[i], self.final[i] = seen, float(test[row])
                self._weights[i] = flat[row].cpu().clone()
        self._evaluate_lengths(reached)
        rows = ~reached
        self.alive = [i for row, i in enumerate(self.alive) if rows[row]]
        if self.alive:
            self.model.keep(rows)
            self.data = TrialData(self.data.train.keep(rows), self.data.val.keep(rows))
            self.test = self.test.keep(rows)
            self.stepper.keep(rows)
            kept = [row for row in range(len(rows)) if rows[row]]
            if self.orders is not None:
                self.orders.keep(kept)
            if self.streams is not None:
                self.streams.keep(kept)
        return rows

    def _finish(self) -> None:
        """The trials that trained to the end: their final metric (test set when stopping on learning)."""
        if not self.alive:
            return
        if self.learned:
            final = self._evaluate(self.test).cpu().tolist()
        else:
            final = [self.metrics[i][-1] for i in self.alive]
        diverged = self.model.diverged.cpu()
        flat = self.model.flat.detach().cpu()
        for row, i in enumerate(self.alive):
            self.final[i] = 0.0 if diverged[row] else final[row]
            self.diverged[i] = bool(diverged[row])
            self._weights[i] = flat[row].clone()
        self._evaluate_lengths(torch.ones(len(self.alive), dtype=torch.bool))

    def _evaluate_lengths(self, rows: torch.Tensor) -> None:
        """The metric at every evaluation length of the live trials ``rows`` selects (and of no
        other), with their weights now. Measured during training, it leaves the training untouched
        (the global random numbers included)."""
        if not self.spec.eval_lengths:
            return
        chosen = [i for row, i in enumerate(self.alive) if rows[row]]
        model = self.model if len(chosen) == len(self.alive) else self.model.subset(rows)
        measured = dataclasses.replace(self.spec, trial_seeds=tuple(self.spec.trial_seeds[i] for i in chosen))
        device = self.model.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for length in self.spec.eval_lengths:
                values = _evaluate_at(model, measured, self.task, length)
                for i, value in zip(chosen, values, strict=True):
                    self.eval_metrics[length][i] = value

    def weights(self) -> dict[str, torch.Tensor]:
        """Every trial's final weights by name, stacked over the case's trials in their order."""
        flat = torch.stack([self._weights[i] for i in range(self.spec.trials)])
        return self.model.params.unflatten(flat)


def _input_gradient(model: StackedModel, train: Sequences) -> torch.Tensor:
    """The gradient diagnostic at the initial weights, on each trial's first training sequences."""
    count = min(GRADIENT_SEQUENCES, train.x.shape[1])
    return model.input_gradient(train.x[:, :count], train.y[:, :count], train.first)


def _evaluate_at(model: StackedModel, spec: CaseSpec, task: Task, length: int) -> tuple[float, ...]:
    """Each trial's metric on fresh sequences that test it at ``length`` (a stream of their own):
    the trials of ``spec`` are the model's, in its rows' order."""
    sequences = Sequences.draw(
        spec,
        task,
        f"{EVAL_PREFIX}{length}",
        spec.train.val_samples,
        model.device,
        eval_length=length,
        shuffle=spec.shuffle_labels,
    )
    return tuple(model.evaluate(spec.metric, sequences.x, sequences.y, sequences.first).cpu().tolist())


def _finite(value: float) -> float | None:
    """A loss for the report: JSON has no NaN, so a diverged epoch's loss is ``None``."""
    return value if math.isfinite(value) else None
