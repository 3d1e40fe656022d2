"""Training the trials of one case together, as one batched run.

The ``n`` trials of a case are independent models: each has its own initial
weights, training data, minibatch order and validation data, all drawn from
its own seed (:mod:`.seeds`). Their weights are stacked along a leading trial
dimension and trained in the same tensors: one forward, one backward and one
optimizer step per minibatch for every trial at once. The loss is the sum of
the trials' own mean losses, so each trial's gradient is exactly the
gradient of its own loss, and the optimizers (Adam, SGD, RMSprop) work
elementwise, so each trial's optimizer state is its own.

Two schemes batch the cells (:data:`SCHEMES`): ``fused`` runs built-in cells as
one wide cell with block-diagonal weights through torch's fused kernels, and
``vmap`` runs any cell that follows the cell protocol through
``torch.func.vmap``. A trial whose loss or weights turn NaN or infinite is
marked diverged and frozen at zero weights; it never stops the others.

Everything here is plain PyTorch and callable without pytest.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn
from torch.nn import functional as F

from . import seeds
from .cells import build_cell, cell_class
from .config import TrainSection
from .tasks import IGNORE, Task

SCHEMES = ("fused", "vmap")

#: Above this many hidden units over all trials the block-diagonal weights cost more
#: than they save and ``auto`` picks ``vmap``.
FUSED_MAX_WIDTH = 256

#: Intra-op threads per case on the CPU. The trials' tensors are small, so more threads
#: only add synchronisation, and with other processes on the cores (pytest-xdist
#: workers, a second job) spinning OpenMP threads made a case 50 times slower.
#: Parallelism comes from running cases side by side (``pytest -n``).
CPU_THREADS = 1

#: Validation sequences evaluated per chunk, to bound memory on long sequences.
EVAL_CHUNK = 1024


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


def choose_scheme(cell: str, hidden: int, trials: int, requested: str = "auto") -> str:
    """The scheme that trains ``trials`` trials of ``cell`` fastest (or the one requested)."""
    fusable = hasattr(cell_class(cell), "fused_op")
    if requested == "fused" and not fusable:
        raise ValueError(f"train.engine = 'fused' works for the built-in cells only, not {cell!r}")
    if requested != "auto":
        return requested
    return "fused" if fusable and trials * hidden <= FUSED_MAX_WIDTH else "vmap"


def initial_modules(spec: CaseSpec) -> list[tuple[nn.Module, Readout]]:
    """Each trial's cell and readout, initialised from its own ``init`` stream (on the CPU)."""
    modules = []
    for seed in spec.trial_seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seeds.derive_seed(seed, "init"))
            cell = build_cell(spec.cell, spec.task.input_size, spec.hidden)
            readout = Readout(spec.hidden, spec.task.num_classes)
        modules.append((cell, readout))
    return modules


def trial_data(spec: CaseSpec, stream: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each trial's sequences from its own stream, stacked: ``x [n, S, T, I]``, ``y [n, S, T]``."""
    xs, ys = [], []
    for seed in spec.trial_seeds:
        x, y = spec.task.sample(spec.length, count, seeds.stream(seed, stream))
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


class _Fused:
    """Built-in cells as one wide cell; inputs laid out as ``[S, T, n*I]``."""

    name = "fused"

    def __init__(self, cell: nn.Module) -> None:
        self.op, self.gates = cell.fused_op, cell.gates

    def arrange(self, x: torch.Tensor) -> torch.Tensor:
        n, s, t, i = x.shape
        return x.permute(1, 2, 0, 3).reshape(s, t, n * i)

    def rows(self, arranged: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return arranged[start:stop]

    def hidden(self, params: dict[str, torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        from .cells.fused import fused_forward

        return fused_forward(params, batch, self.op, self.gates)


class _Vmap:
    """Any protocol cell under ``torch.func.vmap``; inputs laid out as ``[n, S, T, I]``."""

    name = "vmap"

    def __init__(self, cell: nn.Module, buffers: dict[str, torch.Tensor]) -> None:
        self.base = copy.deepcopy(cell).to("meta")
        self.buffers = buffers

    def arrange(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def rows(self, arranged: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return arranged[:, start:stop]

    def hidden(self, params: dict[str, torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        def one(p, b, x):
            return torch.func.functional_call(self.base, (p, b), (x,))

        return torch.func.vmap(one)(params, self.buffers, batch)


def _optimizer(train: TrainSection, params: list[torch.Tensor], device: torch.device):
    # Every supported optimizer works elementwise, so stacked trials keep separate state.
    kinds = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}
    kwargs = {"lr": train.lr}
    if train.optimizer == "adam":
        kwargs["fused"] = device.type in ("cpu", "cuda")
    return kinds[train.optimizer](params, **kwargs)


def _per_trial(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``v [n]`` shaped to broadcast over ``like [n, ...]``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


class _Trainer:
    """The stacked weights, data and optimizer of one case's trials during training."""

    def __init__(self, spec: CaseSpec, device: torch.device, scheme: str) -> None:
        self.spec, self.device = spec, device
        modules = initial_modules(spec)
        cells = [m[0] for m in modules]
        cell_params, cell_buffers = torch.func.stack_module_state(cells)
        read_params, _ = torch.func.stack_module_state([m[1] for m in modules])
        self.scheme = _Fused(cells[0]) if scheme == "fused" else _Vmap(cells[0], _to(cell_buffers, device))
        self.cell_params = {k: v.detach().to(device).requires_grad_() for k, v in cell_params.items()}
        self.read_params = {k: v.detach().to(device).requires_grad_() for k, v in read_params.items()}
        self.all_params = [*self.cell_params.values(), *self.read_params.values()]
        self.n = len(spec.trial_seeds)
        self.trial_index = torch.arange(self.n, device=device).unsqueeze(1)
        self.optimizer = _optimizer(spec.train, self.all_params, device)
        self.diverged = torch.zeros(self.n, dtype=torch.bool, device=device)
        self._freeze_diverged()

        steps = spec.task.steps(spec.length)
        x, y = trial_data(spec, "train", spec.train.samples)
        xv, yv = trial_data(spec, "val", spec.train.val_samples)
        scored = ((y != IGNORE).any(dim=(0, 1)) | (yv != IGNORE).any(dim=(0, 1))).nonzero()
        # Readout and loss need only the steps from the first scored one on.
        self.first = int(scored.min()) if len(scored) else steps - 1
        self.x, self.y = x.to(device), y[..., self.first :].to(device)
        self.xv, self.yv = xv.to(device), yv[..., self.first :].to(device)
        self.order = [seeds.stream(seed, "order") for seed in spec.trial_seeds]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Class scores ``[n, b, T', C]`` at the steps from the first scored one on."""
        h = hidden[:, :, self.first :]
        w, b = self.read_params["weight"], self.read_params["bias"]
        return torch.einsum("nbth,nch->nbtc", h, w) + b[:, None, None, :]

    def trial_losses(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each trial's mean cross-entropy over its scored steps, ``[n]``."""
        classes = logits.shape[-1]
        # nan_to_num keeps a diverged trial's softmax finite, so its masked-out loss
        # sends exact zeros (never NaN * 0) back through the shared fused kernels.
        ce = F.cross_entropy(
            torch.nan_to_num(logits).reshape(-1, classes),
            y.reshape(-1),
            ignore_index=IGNORE,
            reduction="none",
        ).view(self.n, -1)
        counts = (y != IGNORE).view(self.n, -1).sum(1).clamp_min(1)
        return ce.sum(1) / counts

    def epoch(self) -> torch.Tensor:
        """One pass over each trial's training data in a fresh order; returns mean losses ``[n]``."""
        train = self.spec.train
        order = torch.stack([torch.randperm(train.samples, generator=g) for g in self.order]).to(self.device)
        # Shuffle once per epoch so that every minibatch is a contiguous slice.
        xs = self.scheme.arrange(self.x[self.trial_index, order])
        ys = self.y[self.trial_index, order]
        total = torch.zeros(self.n, device=self.device)
        batches = 0
        params = {**self.cell_params}
        for start in range(0, train.samples, train.batch_size):
            stop = min(start + train.batch_size, train.samples)
            hidden = self.scheme.hidden(params, self.scheme.rows(xs, start, stop))
            losses = self.trial_losses(self.logits(hidden), ys[:, start:stop])
            self.diverged |= ~torch.isfinite(losses)
            live = torch.where(self.diverged, torch.zeros_like(losses), losses)
            self.optimizer.zero_grad(set_to_none=False)
            live.sum().backward()
            if train.clip > 0:
                self._clip(train.clip)
            self.optimizer.step()
            self._freeze_diverged()
            total += torch.where(self.diverged, math.nan, losses.detach())
            batches += 1
        return total / batches

    def _clip(self, max_norm: float) -> None:
        """Clip each trial's gradient norm separately, as ``clip_grad_norm_`` would alone."""
        grads = [p.grad for p in self.all_params]
        squares = sum(g.reshape(self.n, -1).pow(2).sum(1) for g in grads)
        factor = (max_norm / (squares.sqrt() + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(_per_trial(factor, g))

    @torch.no_grad()
    def _freeze_diverged(self) -> None:
        for p in self.all_params:
            self.diverged |= ~torch.isfinite(p.reshape(self.n, -1)).all(1)
        for p in self.all_params:
            p.masked_fill_(_per_trial(self.diverged, p), 0.0)

    @torch.no_grad()
    def evaluate(self, metric: str) -> torch.Tensor:
        """Each trial's validation metric ``[n]``."""
        right = torch.zeros(self.n, device=self.device)
        count = torch.zeros(self.n, device=self.device)
        for start in range(0, self.xv.shape[1], EVAL_CHUNK):
            stop = start + EVAL_CHUNK
            batch = self.scheme.arrange(self.xv[:, start:stop])
            logits = self.logits(self.scheme.hidden(self.cell_params, batch))
            y = self.yv[:, start:stop]
            scored = y != IGNORE
            correct = (logits.argmax(-1) == y) & scored
            if metric == "sequence_accuracy":
                right += (correct.sum(-1) == scored.sum(-1)).sum(1)
                count += y.shape[1]
            else:
                right += correct.sum((1, 2))
                count += scored.sum((1, 2))
        result = right / count.clamp_min(1)
        return torch.where(self.diverged, torch.zeros_like(result), result)

    def final_params(self) -> dict[str, torch.Tensor]:
        named = {**self.cell_params, **{f"readout.{k}": v for k, v in self.read_params.items()}}
        return {k: v.detach().cpu() for k, v in named.items()}


def _to(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in tensors.items()}


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
    chosen = choose_scheme(spec.cell, spec.hidden, len(spec.trial_seeds), scheme or spec.train.engine)
    trainer = _Trainer(spec, device, chosen)
    losses, metrics = [], []
    for epoch in range(spec.train.epochs):
        losses.append(trainer.epoch())
        metrics.append(trainer.evaluate(spec.metric))
        if progress is not None:
            progress(epoch + 1, spec.train.epochs, time.perf_counter() - started)
    loss_rows = torch.stack(losses, 1).cpu()
    metric_rows = torch.stack(metrics, 1).cpu()
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
    )


def _finite(value: float) -> float | None:
    """A loss for the report: JSON has no NaN, so a diverged epoch's loss is ``None``."""
    return value if math.isfinite(value) else None
