"""Training the trials of one case together, as one batched run.

The ``n`` trials of a case are independent models: each has its own initial
weights, training data, minibatch order and validation data, all drawn from
its own seed (:mod:`.seeds`). Their weights are stacked along a leading trial
dimension and trained in the same tensors: one forward, one backward and one
optimizer step per minibatch for every trial at once. The loss is the sum of
the trials' own mean losses, so each trial's gradient is exactly the
gradient of its own loss, and the optimizers (Adam, SGD, RMSprop) work
elementwise, so each trial's optimizer state is its own.

How the cells of all trials run in one call is a scheme's business
(:mod:`.schemes`: ``stepwise``, ``fused``, ``native`` or ``vmap``); a scheme
that offers ``training`` (``native``) runs whole minibatches itself, loss,
gradient and optimizer step, in place of autograd and the torch optimizer.
A trial whose loss or weights turn NaN or infinite is marked diverged and
frozen at zero weights; it never stops the others.

Everything here is plain PyTorch and callable without pytest.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn
from torch.nn import functional as F

from . import seeds
from .cells import build_cell
from .config import TrainSection
from .schemes import choose_scheme, make_scheme
from .tasks import IGNORE, Task, scored_steps, unscored

#: Intra-op threads per case on the CPU. The trials' tensors are small, so more threads
#: only add synchronisation, and with other processes on the cores (pytest-xdist
#: workers, a second job) spinning OpenMP threads made a case 50 times slower.
#: Parallelism comes from running cases side by side (``pytest -n``).
CPU_THREADS = 1

#: Prefix of the readout's weights among a case's parameters.
READOUT = "readout."

#: Validation sequences evaluated per chunk, to bound memory on long sequences.
EVAL_CHUNK = 1024

#: Hidden-state values (trials x sequences x steps x units) evaluated at once at most: a few MiB,
#: so that the buffers of one chunk are reused by the next, not taken afresh from the system.
EVAL_BUDGET = 1 << 20

#: Training sequences per trial that the gradient diagnostic measures.
GRADIENT_SEQUENCES = 256


@dataclass(frozen=True)
class CaseSpec:
    """Everything that determines the result of one case's trials."""

    task: Task
    cell: str
    length: int
    hidden: int
    train: TrainSection
    metric: str
    threshold: float
    trial_seeds: tuple[int, ...]
    #: Train on targets moved to other training sequences (the ``shuffled`` control); validation
    #: keeps the true targets, so success measures what the criterion gives away without learning.
    shuffle_labels: bool = False
    #: Lengths at which the trained trials are evaluated too, on fresh data (length generalisation).
    eval_lengths: tuple[int, ...] = ()


@dataclass
class CaseOutcome:
    """What training the trials of one case produced, trial by trial."""

    metrics: list[float]
    diverged: list[bool]
    #: Per trial, the mean training loss of each epoch.
    train_loss: list[list[float]]
    #: Per trial, the validation metric after each epoch.
    val_metric: list[list[float]]
    scheme: str
    device: str
    wall_s: float
    #: Final weights, stacked over trials (kept on the CPU).
    params: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)
    #: Per evaluation length, each trial's final metric there (``spec.eval_lengths``).
    eval_metrics: dict[int, list[float]] = field(default_factory=dict)
    #: Per trial, the median over its first training sequences of the norm of the loss's
    #: gradient with respect to the first step's input, at the initial weights.
    input_gradient: list[float] = field(default_factory=list)

    def successes(self, threshold: float) -> list[bool]:
        """Which trials reached ``threshold`` without diverging."""
        return [(m >= threshold) and not d for m, d in zip(self.metrics, self.diverged, strict=True)]


class Progress(Protocol):
    def __call__(self, epoch: int, epochs: int, elapsed_s: float) -> None: ...


class Readout(nn.Module):
    """The linear readout from hidden state to class scores, initialised as ``nn.Linear``."""

    def __init__(self, hidden: int, classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(classes, hidden))
        self.bias = nn.Parameter(torch.empty(classes))
        bound = 1.0 / math.sqrt(hidden)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)


def initial_modules(spec: CaseSpec) -> list[tuple[nn.Module, Readout]]:
    """Each trial's cell and readout, initialised from its own ``init`` stream (on the CPU)."""
    modules = []
    for seed in spec.trial_seeds:
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only: modules are built on the CPU, and torch.manual_seed would
            # also queue a reseed of every accelerator's generator, at a cost, outside the fork.
            torch.default_generator.manual_seed(seeds.derive_seed(seed, "init"))
            cell = build_cell(spec.cell, spec.task.input_size, spec.hidden)
            readout = Readout(spec.hidden, spec.task.outputs)
        modules.append((cell, readout))
    return modules


def trial_data(
    spec: CaseSpec, stream: str, count: int, eval_length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each trial's sequences from its own stream, stacked: ``x [n, S, T, I]``, ``y [n, S, T]``.

    With ``eval_length``, the sequences that test the trials at that length.
    """
    x, targets = _trial_samples(spec, stream, count, eval_length)
    return x, _stack_targets(targets, 0, spec.task.regression)


#: A trial's targets from its own first scored step on: (that step, ``y [S, T - step]``).
Targets = tuple[int, torch.Tensor]


def _trial_samples(
    spec: CaseSpec, stream: str, count: int, eval_length: int | None = None, shuffle: bool = False
) -> tuple[torch.Tensor, list[Targets]]:
    """Each trial's sequences, ``x [n, S, T, I]`` stacked, and each trial's :data:`Targets`.

    Trials are drawn one after another and copied into place, so that one
    trial's whole target tensor is alive at a time: on long sequences scored
    at a few steps it is most of the memory, and memory the process takes
    afresh costs a page fault per page. ``shuffle`` moves each trial's
    targets to other sequences (the ``shuffled`` control).
    """
    stacked, targets = None, []
    for i, seed in enumerate(spec.trial_seeds):
        generator = seeds.stream(seed, stream)
        if eval_length is None:
            x, y = spec.task.sample(spec.length, count, generator)
        else:
            x, y = spec.task.sample_longer(spec.length, eval_length, count, generator)
        if shuffle:
            y = y[torch.randperm(len(y), generator=seeds.stream(seed, "shuffle"))]
        if stacked is None:
            stacked = x.new_empty((len(spec.trial_seeds), *x.shape))
        stacked[i] = x
        first = _first_scored(y)
        targets.append((first, y[..., first:].clone()))
    return stacked, targets


def _optimizer(train: TrainSection, params: list[torch.Tensor], device: torch.device):
    # Every supported optimizer works elementwise, so stacked trials keep separate state.
    kinds = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}
    kwargs = {"lr": train.lr}
    if train.optimizer == "adam":
        kwargs["fused"] = device.type in ("cpu", "cuda")
    return kinds[train.optimizer](params, **kwargs)


class _FlatParams:
    """Every trial's weights in one ``[n, P]`` leaf tensor, seen as named ``[n, ...]`` views.

    One tensor means one optimizer kernel, one gradient to zero, one norm per
    trial for clipping and one finiteness check per step, whatever the cell.
    """

    def __init__(self, named: dict[str, torch.Tensor], device: torch.device) -> None:
        self.n = next(iter(named.values())).shape[0]
        self.layout: dict[str, tuple[int, int, torch.Size]] = {}
        offset = 0
        for name, value in named.items():
            size = value[0].numel()
            self.layout[name] = (offset, offset + size, value.shape[1:])
            offset += size
        flat = torch.cat([v.detach().reshape(self.n, -1) for v in named.values()], dim=1)
        self.flat = flat.to(device).requires_grad_()

    def views(self) -> dict[str, torch.Tensor]:
        """Named views of the flat tensor; gradients through them land in ``flat.grad``."""
        return {name: self.flat[:, a:b].view(self.n, *shape) for name, (a, b, shape) in self.layout.items()}

    def offsets(self) -> dict[str, int]:
        """Where each named parameter starts in a trial's row."""
        return {name: a for name, (a, _, _) in self.layout.items()}

    def detached(self) -> dict[str, torch.Tensor]:
        flat = self.flat.detach().cpu()
        return {name: flat[:, a:b].reshape(self.n, *shape) for name, (a, b, shape) in self.layout.items()}


class _Trainer:
    """The stacked weights, data and optimizer of one case's trials during training."""

    def __init__(self, spec: CaseSpec, device: torch.device, scheme: str) -> None:
        self.spec, self.device = spec, device
        modules = initial_modules(spec)
        cells = [m[0] for m in modules]
        cell_params, cell_buffers = torch.func.stack_module_state(cells)
        read_params, _ = torch.func.stack_module_state([m[1] for m in modules])
        self.scheme = make_scheme(scheme, cells[0], {k: v.to(device) for k, v in cell_buffers.items()})
        self.params = _FlatParams(
            {**cell_params, **{f"{READOUT}{k}": v for k, v in read_params.items()}}, device
        )
        self.n = len(spec.trial_seeds)
        self.trial_index = torch.arange(self.n, device=device).unsqueeze(1)
        # A scheme that trains by itself keeps its own optimizer state; the others use torch's.
        make_training = getattr(self.scheme, "training", None)
        self.training = (
            make_training(
                self.params.offsets(), spec.task.regression, self.n, self.params.flat.shape[1], spec.train
            )
            if make_training
            else None
        )
        self.optimizer = None if self.training else _optimizer(spec.train, [self.params.flat], device)
        self.diverged = torch.zeros(self.n, dtype=torch.bool, device=device)
        self._freeze_diverged()

        x, y = _trial_samples(spec, "train", spec.train.samples, shuffle=spec.shuffle_labels)
        xv, yv = _trial_samples(spec, "val", spec.train.val_samples)
        # Targets from the first step scored anywhere on only: the steps before it are never read.
        self.first = min(first for first, _ in [*y, *yv])
        regression = spec.task.regression
        self.x, self.y = x.to(device), _stack_targets(y, self.first, regression).to(device)
        self.xv, self.yv = xv.to(device), _stack_targets(yv, self.first, regression).to(device)
        # Scored steps per sequence, so that a minibatch's count is one slice-sum (autograd path).
        self.scored = scored_steps(self.y).sum(-1) if self.training is None else None
        self.order = [seeds.stream(seed, "order") for seed in spec.trial_seeds]

    def forward(
        self, params: dict[str, torch.Tensor], batch: torch.Tensor, first: int | None = None
    ) -> torch.Tensor:
        """Outputs ``[n, b, T', C]`` at the steps from the first scored one (``first``) on."""
        cell = {k: v for k, v in params.items() if not k.startswith(READOUT)}
        hidden = self.scheme.hidden(cell, batch)[:, :, self.first if first is None else first :]
        n, b, steps, width = hidden.shape
        weight, bias = params[f"{READOUT}weight"], params[f"{READOUT}bias"]
        scores = torch.baddbmm(bias.unsqueeze(1), hidden.reshape(n, b * steps, width), weight.transpose(1, 2))
        return scores.view(n, b, steps, -1)

    def step_losses(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each scored step's loss, zero where a step is not scored: ``[n, b, T']``.

        Cross-entropy for a classification task, squared error for a regression task.
        """
        # nan_to_num keeps a diverged trial's outputs finite, so its masked-out loss
        # sends exact zeros (never NaN * 0) back through the shared fused kernels.
        logits = torch.nan_to_num(logits)
        if self.spec.task.regression:
            scored = scored_steps(y)
            error = (logits[..., 0] - torch.nan_to_num(y)) * scored
            return error * error
        ce = F.cross_entropy(
            logits.view(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE, reduction="none"
        )
        return ce.view(y.shape)

    def trial_losses(self, logits: torch.Tensor, y: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Each trial's mean loss over its scored steps, ``[n]``."""
        return self.step_losses(logits, y).view(self.n, -1).sum(1) / counts.clamp_min(1)

    def right(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Which scored steps the outputs get right (``False`` where a step is not scored)."""
        scored = scored_steps(y)
        if self.spec.task.regression:
            return ((outputs[..., 0] - torch.nan_to_num(y)).abs() < self.spec.task.tolerance) & scored
        return (outputs.argmax(-1) == y) & scored

    def input_gradient(self) -> torch.Tensor:
        """Per trial, the median norm of d(sequence loss)/d(input at step 0) at the current weights.

        Measured on the first :data:`GRADIENT_SEQUENCES` training sequences, each
        sequence's loss being its mean over its scored steps. A norm that falls
        by orders of magnitude with length is the vanishing gradient.
        """
        count = min(GRADIENT_SEQUENCES, self.x.shape[1])
        x = self.x[:, :count].clone().requires_grad_()
        y = self.y[:, :count]
        params = {k: v.detach() for k, v in self.params.views().items()}
        logits = self.forward(params, self.scheme.arrange(x))
        per_sequence = self.step_losses(logits, y).sum(-1) / scored_steps(y).sum(-1).clamp_min(1)
        (grad,) = torch.autograd.grad(per_sequence.sum(), x)
        return grad[:, :, 0, :].norm(dim=-1).median(dim=1).values.detach()

    def epoch(self) -> torch.Tensor:
        """One pass over each trial's training data in a fresh order; returns mean losses ``[n]``."""
        train = self.spec.train
        order = torch.stack([torch.randperm(train.samples, generator=g) for g in self.order]).to(self.device)
        if self.training is not None:
            losses = self._trained_by_the_scheme(order)
        else:
            losses = self._trained_by_autograd(order)
        return losses.masked_fill(self.diverged, math.nan)

    @torch.no_grad()
    def _trained_by_the_scheme(self, order: torch.Tensor) -> torch.Tensor:
        flat, spec = self.params.flat, self.spec
        return self.training.epoch(
            flat,
            self.x,
            self.y,
            order,
            self.first,
            self.diverged,
            spec.hidden,
            spec.task.outputs,
            spec.train.batch_size,
        )

    def _trained_by_autograd(self, order: torch.Tensor) -> torch.Tensor:
        train = self.spec.train
        # Shuffle once per epoch so that every minibatch is a contiguous slice.
        xs = self.scheme.arrange(self.x[self.trial_index, order])
        ys = self.y[self.trial_index, order]
        scored = self.scored[self.trial_index, order]
        total = torch.zeros(self.n, device=self.device)
        batches = 0
        for start in range(0, train.samples, train.batch_size):
            stop = min(start + train.batch_size, train.samples)
            batch = self.scheme.rows(xs, start, stop)
            losses = self._backward(batch, ys[:, start:stop], scored[:, start:stop].sum(1))
            if train.clip > 0:
                self._clip(train.clip)
            self.optimizer.step()
            self._freeze_diverged()
            total += losses.detach()
            batches += 1
        return total / batches

    def _backward(self, batch: torch.Tensor, y: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Each trial's loss ``[n]``; marks diverging trials, leaves the live ones' gradient in ``grad``."""
        logits = self.forward(self.params.views(), batch)
        losses = self.trial_losses(logits, y, counts)
        self.diverged |= ~torch.isfinite(losses)
        self.optimizer.zero_grad(set_to_none=False)
        losses.masked_fill(self.diverged, 0.0).sum().backward()
        return losses

    @torch.no_grad()
    def _clip(self, max_norm: float) -> None:
        """Clip each trial's gradient norm separately, as ``clip_grad_norm_`` would alone."""
        grad = self.params.flat.grad
        factor = (max_norm / (grad.norm(dim=1) + 1e-6)).clamp(max=1.0)
        grad.mul_(factor.unsqueeze(1))

    @torch.no_grad()
    def _freeze_diverged(self) -> None:
        flat = self.params.flat
        self.diverged |= ~torch.isfinite(flat).all(1)
        flat.masked_fill_(self.diverged.unsqueeze(1), 0.0)

    @torch.no_grad()
    def evaluate(
        self, metric: str, data: tuple[torch.Tensor, torch.Tensor, int] | None = None
    ) -> torch.Tensor:
        """Each trial's metric ``[n]`` on the validation data, or on ``data`` = (x, y, first)."""
        xv, yv, first = (self.xv, self.yv, self.first) if data is None else data
        right = torch.zeros(self.n, device=self.device)
        count = torch.zeros(self.n, device=self.device)
        params = self.params.views()
        width = max(self.spec.hidden, self.spec.task.outputs)
        chunk = max(1, min(EVAL_CHUNK, EVAL_BUDGET // (self.n * xv.shape[2] * width)))
        for start in range(0, xv.shape[1], chunk):
            stop = start + chunk
            logits = self.forward(params, self.scheme.arrange(xv[:, start:stop]), first)
            y = yv[:, start:stop]
            scored = scored_steps(y)
            correct = self.right(logits, y)
            if metric == "sequence_accuracy":
                right += (correct.sum(-1) == scored.sum(-1)).sum(1)
                count += y.shape[1]
            else:
                right += correct.sum((1, 2))
                count += scored.sum((1, 2))
        result = right / count.clamp_min(1)
        return result.masked_fill(self.diverged, 0.0)

    def evaluate_at(self, metric: str, length: int) -> torch.Tensor:
        """Each trial's metric ``[n]`` on fresh sequences that test it at ``length``."""
        x, targets = _trial_samples(
            self.spec, f"{seeds.EVAL_PREFIX}{length}", self.spec.train.val_samples, eval_length=length
        )
        first = min(own for own, _ in targets)
        y = _stack_targets(targets, first, self.spec.task.regression)
        return self.evaluate(metric, (x.to(self.device), y.to(self.device), first))

    def final_params(self) -> dict[str, torch.Tensor]:
        return self.params.detached()


def _first_scored(y: torch.Tensor) -> int:
    """The first step scored in any sequence of targets ``y [S, T]`` (the last step if none is):
    readout and loss need only the steps from it on."""
    found = _scored_anywhere(y).nonzero()
    return int(found.min()) if len(found) else y.shape[-1] - 1


def _scored_anywhere(y: torch.Tensor) -> torch.Tensor:
    """Which steps of targets ``y [..., T]`` are scored in at least one sequence, ``[T]``."""
    rows = y.reshape(-1, y.shape[-1])
    if rows.is_floating_point():
        return scored_steps(rows).any(0)
    # Classes are >= 0 > IGNORE, so a step is scored somewhere where its largest target is a class;
    # a max is several times faster than comparing every target.
    return rows.amax(0) > IGNORE


def _stack_targets(targets: list[Targets], first: int, regression: bool) -> torch.Tensor:
    """The trials' targets from step ``first`` on, stacked: ``[n, S, T - first]``.

    ``first`` is at most any trial's own first scored step; the steps between are unscored.
    """
    rows = []
    for own, y in targets:
        if own > first:
            y = torch.cat([unscored(len(y), own - first, regression=regression), y], dim=-1)
        rows.append(y)
    return torch.stack(rows)


def train_case(
    spec: CaseSpec,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    scheme: str | None = None,
    threads: int | None = CPU_THREADS,
) -> CaseOutcome:
    """Train every trial of ``spec`` in one batched run and measure it on fresh validation data.

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
) -> CaseOutcome:
    started = time.perf_counter()
    chosen = choose_scheme(
        spec.cell, spec.hidden, len(spec.trial_seeds), scheme or spec.train.engine, str(device)
    )
    trainer = _Trainer(spec, device, chosen)
    gradient = trainer.input_gradient().cpu()
    losses, metrics = [], []
    for epoch in range(spec.train.epochs):
        losses.append(trainer.epoch())
        metrics.append(trainer.evaluate(spec.metric))
        if progress is not None:
            progress(epoch + 1, spec.train.epochs, time.perf_counter() - started)
    loss_rows = torch.stack(losses, 1).cpu()
    metric_rows = torch.stack(metrics, 1).cpu()
    eval_metrics = {
        length: trainer.evaluate_at(spec.metric, length).cpu().tolist() for length in spec.eval_lengths
    }
    diverged = trainer.diverged.cpu()
    return CaseOutcome(
        metrics=metric_rows[:, -1].tolist(),
        diverged=diverged.tolist(),
        train_loss=[[_finite(v) for v in row] for row in loss_rows.tolist()],
        val_metric=metric_rows.tolist(),
        scheme=chosen,
        device=str(device),
        wall_s=time.perf_counter() - started,
        params=trainer.final_params(),
        eval_metrics=eval_metrics,
        input_gradient=gradient.tolist(),
    )


def _finite(value: float) -> float | None:
    """A loss for the report: JSON has no NaN, so a diverged epoch's loss is ``None``."""
    return value if math.isfinite(value) else None
