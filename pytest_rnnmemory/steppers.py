"""One epoch of training for every trial at once: through autograd, or by a scheme that trains itself.

Both steppers train on each trial's training data once, in the trial's own
fresh order, ``batch_size`` sequences per step, and return each trial's mean
loss over the epoch's minibatches. The loss of a step is the sum of the
trials' own mean losses, so each trial's gradient is exactly its own;
clipping is per trial; the optimizers work elementwise, so each trial's
optimizer state is its own.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from .data import Sequences
from .optimizers import make_optimizer
from .schema import TrainSection
from .stacked import StackedModel
from .tasks import scored_steps
from .usercode import BACKWARD, STEP, user_code


class Stepper(Protocol):
    def train(self, order: torch.Tensor) -> torch.Tensor:
        """Train on the sequences ``order`` names (int64 ``[n, m]``), ``batch_size`` at a time.

        Returns each trial's minibatch losses summed, ``[n]``.
        """
        ...

    def keep(self, rows: torch.Tensor) -> None:
        """Keep training these trials only (a bool mask over the trials now training)."""
        ...

    def use(self, data: Sequences) -> None:
        """Train on these sequences from now on (the next piece of a stream)."""
        ...


def minibatches(count: int, batch_size: int) -> int:
    """How many minibatches ``count`` sequences make, the last one perhaps short."""
    return math.ceil(count / batch_size)


class AutogradStepper:
    """Forward through the scheme, backward through autograd, then torch's optimizer."""

    def __init__(self, model: StackedModel, data: Sequences, train: TrainSection) -> None:
        self.model, self.data, self.section = model, data, train
        self.optimizer = make_optimizer(train.optimizer, [model.flat], train.lr, model.device)
        self.state_param = model.flat
        # Scored steps per sequence, so that a minibatch's count is one slice-sum.
        self.scored = scored_steps(data.y).sum(-1)

    def train(self, order: torch.Tensor) -> torch.Tensor:
        model, train = self.model, self.section
        trial_index = torch.arange(model.n, device=model.device).unsqueeze(1)
        # Gathered in order once, so that every minibatch is a contiguous slice.
        xs = model.scheme.arrange(self.data.x[trial_index, order])
        ys = self.data.y[trial_index, order]
        scored = self.scored[trial_index, order]
        total = torch.zeros(model.n, device=model.device)
        for start in range(0, order.shape[1], train.batch_size):
            stop = min(start + train.batch_size, order.shape[1])
            batch = model.scheme.rows(xs, start, stop)
            losses = self._backward(batch, ys[:, start:stop], scored[:, start:stop].sum(1))
            if train.clip > 0:
                self._clip(train.clip)
            with user_code("cell", model.spec.cell, STEP, active=model.user):
                self.optimizer.step()
            model.freeze_diverged()
            total += losses.detach()
        return total

    def keep(self, rows: torch.Tensor) -> None:
        """The model has dropped the other trials: carry torch's optimizer state of these over."""
        old, new = self.state_param, self.model.flat
        state = self.optimizer.state.get(old, {})
        self.optimizer = make_optimizer(self.section.optimizer, [new], self.section.lr, self.model.device)
        self.optimizer.state[new] = {
            k: v[rows].clone() if torch.is_tensor(v) and v.dim() and v.shape[0] == rows.shape[0] else v
            for k, v in state.items()
        }
        self.state_param = new
        self.scored = self.scored[rows]
        self.data = self.data.keep(rows)

    def use(self, data: Sequences) -> None:
        self.data = data
        self.scored = scored_steps(data.y).sum(-1)

    def _backward(self, batch: torch.Tensor, y: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Each trial's loss ``[n]``; marks diverging trials, leaves the live ones' gradient in ``grad``."""
        model = self.model
        logits = model.forward(model.params.views(), batch, self.data.first)
        losses = model.trial_losses(logits, y, counts)
        model.diverged |= ~torch.isfinite(losses)
        self.optimizer.zero_grad(set_to_none=False)
        with user_code("cell", model.spec.cell, BACKWARD, active=model.user):
            losses.masked_fill(model.diverged, 0.0).sum().backward()
        return losses

    @torch.no_grad()
    def _clip(self, max_norm: float) -> None:
        """Clip each trial's gradient norm separately, as ``clip_grad_norm_`` would alone."""
        grad = self.model.flat.grad
        factor = (max_norm / (grad.norm(dim=1) + 1e-6)).clamp(max=1.0)
        grad.mul_(factor.unsqueeze(1))


class KernelStepper:
    """A scheme that trains whole epochs itself (``native``): cell, loss, gradient and update in one call."""

    def __init__(self, model: StackedModel, data: Sequences, train: TrainSection) -> None:
        self.model, self.data, self.section = model, data, train
        flat = model.flat
        self.kernel = model.scheme.training(  # type: ignore[attr-defined]
            model.params.offsets(), model.task.regression, model.n, flat.shape[1], train
        )

    def keep(self, rows: torch.Tensor) -> None:
        self.kernel.keep(rows)
        self.data = self.data.keep(rows)

    def use(self, data: Sequences) -> None:
        self.data = data

    @torch.no_grad()
    def train(self, order: torch.Tensor) -> torch.Tensor:
        model, data = self.model, self.data
        return self.kernel.epoch(
            model.flat,
            data.x,
            data.y,
            order,
            data.first,
            model.diverged,
            model.spec.hidden,
            model.task.outputs,
            self.section.batch_size,
        )


def make_stepper(model: StackedModel, data: Sequences, train: TrainSection, *, trains: bool) -> Stepper:
    """The kernel's own training where the scheme ``trains``, else autograd and torch's optimizer."""
    return KernelStepper(model, data, train) if trains else AutogradStepper(model, data, train)
