"""The trials of a case as one model: every trial's weights in one tensor, run by a scheme.

Each trial's cell and linear readout are built from the trial's own ``init``
stream, then stacked along a leading trial dimension into one flat
``[n, P]`` tensor. A scheme runs the cells of every trial at once; the
readout, the losses, the metrics and the gradient diagnostic are computed
here for all trials together, each trial's from its own weights and data.
A trial whose loss or weights turn NaN or infinite is marked diverged and
frozen at zero weights; it never touches the others.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from . import seeds
from .cells import build_cell, is_user_cell, recurrence_of
from .errors import CellError
from .schemes import Scheme, make_scheme, trains
from .spec import CaseSpec
from .tasks import IGNORE, Task, scored_steps
from .usercode import BACKWARD, EVALUATION, FORWARD, INIT, UserCodeError, user_code

#: Prefix of the readout's weights among a case's parameters.
READOUT = "readout."

#: Validation sequences evaluated per chunk, to bound memory on long sequences.
EVAL_CHUNK = 1024

#: Hidden-state values (trials x sequences x steps x units) evaluated at once at most: a few MiB,
#: so that the buffers of one chunk are reused by the next, not taken afresh from the system.
EVAL_BUDGET = 1 << 20


class Readout(nn.Module):
    """The linear readout from hidden state to class scores, initialised as ``nn.Linear``."""

    def __init__(self, hidden: int, classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(classes, hidden))
        self.bias = nn.Parameter(torch.empty(classes))
        bound = 1.0 / math.sqrt(hidden)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)


def initial_modules(spec: CaseSpec, task: Task) -> list[tuple[nn.Module, Readout]]:
    """Each trial's cell and readout, initialised from its own ``init`` stream (on the CPU)."""
    modules = []
    recurrence, model = recurrence_of(spec.cell), spec.model
    for seed in spec.trial_seeds:
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only: modules are built on the CPU, and torch.manual_seed would
            # also queue a reseed of every accelerator's generator, at a cost, outside the fork.
            torch.default_generator.manual_seed(seeds.derive_seed(seed, "init"))
            try:
                cell = build_cell(spec.cell, task.input_size, spec.hidden, model.args_for(spec.cell))
            except CellError as exc:
                if exc.__cause__ is None or not is_user_cell(spec.cell):
                    raise
                raise UserCodeError("cell", spec.cell, INIT, exc.__cause__) from exc.__cause__
            readout = Readout(spec.hidden, task.outputs)
            if recurrence is not None:
                recurrence.initialise(cell, model.init, model.forget_bias, model.chrono_tmax or spec.length)
        modules.append((cell, readout))
    return modules


class FlatParams:
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

    def keep(self, rows: torch.Tensor) -> None:
        """Keep the rows of the trials ``rows`` selects, as a new leaf tensor."""
        self.flat = self.flat.detach()[rows].clone().requires_grad_()
        self.n = self.flat.shape[0]

    def detached(self) -> dict[str, torch.Tensor]:
        return self.unflatten(self.flat.detach().cpu())

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rows of weights ``[n, P]`` laid out as this tensor's, by name: ``[n, ...]`` each."""
        n = flat.shape[0]
        return {name: flat[:, a:b].reshape(n, *shape) for name, (a, b, shape) in self.layout.items()}


class StackedModel:
    """Every trial's cell and readout, their weights in one flat tensor, run by one scheme."""

    def __init__(self, spec: CaseSpec, task: Task, device: torch.device, scheme: str) -> None:
        self.spec, self.task, self.device = spec, task, device
        #: Whether the cell is a user's own code (its errors are reported with the user's frames).
        self.user = is_user_cell(spec.cell)
        self.n = spec.trials
        modules = initial_modules(spec, task)
        cells = [m[0] for m in modules]
        cell_params, cell_buffers = torch.func.stack_module_state(cells)
        read_params, _ = torch.func.stack_module_state([m[1] for m in modules])
        buffers = {k: v.to(device) for k, v in cell_buffers.items()}
        self.scheme: Scheme = make_scheme(scheme, spec.cell, cells[0], buffers)
        self.scheme_name = scheme
        self.params = FlatParams(
            {**cell_params, **{f"{READOUT}{k}": v for k, v in read_params.items()}}, device
        )
        self.diverged = torch.zeros(self.n, dtype=torch.bool, device=device)
        self.freeze_diverged()

    @property
    def flat(self) -> torch.Tensor:
        return self.params.flat

    def forward(self, params: dict[str, torch.Tensor], batch: torch.Tensor, first: int) -> torch.Tensor:
        """Outputs ``[n, b, T', C]`` at the steps from ``first`` on, for an arranged minibatch."""
        cell = {k: v for k, v in params.items() if not k.startswith(READOUT)}
        phase = FORWARD if trains(cell) else EVALUATION  # the cell runs in eval mode where it does not train
        with user_code("cell", self.spec.cell, phase, active=self.user):
            hidden = self.scheme.hidden(cell, batch)[:, :, first:]
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
        if self.task.regression:
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
        if self.task.regression:
            return ((outputs[..., 0] - torch.nan_to_num(y)).abs() < self.task.tolerance) & scored
        return (outputs.argmax(-1) == y) & scored

    @torch.no_grad()
    def evaluate(self, metric: str, x: torch.Tensor, y: torch.Tensor, first: int) -> torch.Tensor:
        """Each trial's ``metric`` ``[n]`` on sequences ``x``, targets ``y`` from step ``first``."""
        # Counted in float64: 950 right of 1000 must be 0.95 exactly, not float32's 0.94999999,
        # which falls short of a threshold of 0.95.
        right = torch.zeros(self.n, device=self.device, dtype=torch.float64)
        count = torch.zeros(self.n, device=self.device, dtype=torch.float64)
        params = self.params.views()
        width = max(self.spec.hidden, self.task.outputs)
        chunk = max(1, min(EVAL_CHUNK, EVAL_BUDGET // (self.n * x.shape[2] * width)))
        for start in range(0, x.shape[1], chunk):
            stop = start + chunk
            logits = self.forward(params, self.scheme.arrange(x[:, start:stop]), first)
            part = y[:, start:stop]
            scored = scored_steps(part)
            correct = self.right(logits, part)
            if metric == "sequence_accuracy":
                right += (correct.sum(-1) == scored.sum(-1)).sum(1)
                count += part.shape[1]
            else:
                right += correct.sum((1, 2))
                count += scored.sum((1, 2))
        result = right / count.clamp_min(1)
        return result.masked_fill(self.diverged, 0.0)

    def input_gradient(self, x: torch.Tensor, y: torch.Tensor, first: int) -> torch.Tensor:
        """Per trial, the median norm of d(sequence loss)/d(input at step 0) at the current weights.

        Measured on the sequences ``x``, each sequence's loss being its mean over
        its scored steps. A norm that falls by orders of magnitude with length
        is the vanishing gradient.
        """
        x = x.clone().requires_grad_()
        params = {k: v.detach() for k, v in self.params.views().items()}
        logits = self.forward(params, self.scheme.arrange(x), first)
        per_sequence = self.step_losses(logits, y).sum(-1) / scored_steps(y).sum(-1).clamp_min(1)
        with user_code("cell", self.spec.cell, BACKWARD, active=self.user):
            (grad,) = torch.autograd.grad(per_sequence.sum(), x)
        return grad[:, :, 0, :].norm(dim=-1).median(dim=1).values.detach()

    @torch.no_grad()
    def freeze_diverged(self) -> None:
        """Mark trials whose weights are no longer finite as diverged, and zero a diverged trial's weights."""
        flat = self.params.flat
        self.diverged |= ~torch.isfinite(flat).all(1)
        flat.masked_fill_(self.diverged.unsqueeze(1), 0.0)

    @torch.no_grad()
    def keep(self, rows: torch.Tensor) -> None:
        """Keep the trials ``rows`` selects (a bool mask) and drop the others from every tensor."""
        self.params.keep(rows)
        self.diverged = self.diverged[rows]
        self.n = int(rows.sum())
        keep = getattr(self.scheme, "keep", None)
        if keep is not None:
            keep(rows)

    def subset(self, rows: torch.Tensor) -> StackedModel:
        """The trials ``rows`` selects (a bool mask) as a model of their own, to evaluate: this one,
        which trains on, keeps every trial."""
        other = copy.copy(self)
        other.params, other.scheme = copy.copy(self.params), copy.copy(self.scheme)
        other.keep(rows)
        return other

    def final_weights(self) -> dict[str, torch.Tensor]:
        """Every trial's weights by name, stacked over trials, on the CPU."""
        return self.params.detached()
