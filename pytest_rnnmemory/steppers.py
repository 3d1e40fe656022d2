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


class Stepper(Protocol):
    def epoch(self, order: torch.Tensor) -> torch.Tensor:
        """Train on every trial's sequences once, in ``order`` (int64 ``[n, S]``); mean losses ``[n]``."""
        ...


class AutogradStepper:
    """Forward through the scheme, backward through autograd, then torch's optimizer."""

    def __init__(self, model: StackedModel, data: Sequences, train: TrainSection) -> None:
        self.model, self.data, self.train = model, data, train
        self.optimizer = make_optimizer(train.optimizer, [model.flat], train.lr, model.device)
        self.trial_index = torch.arange(model.n, device=model.device).unsqueeze(1)
        # Scored steps per sequence, so that a minibatch's count is one slice-sum.
        self.scored = scored_steps(data.y).sum(-1)

    def epoch(self, order: torch.Tensor) -> torch.Tensor:
        model, train = self.model, self.train
        # Shuffle once per epoch so that every minibatch is a contiguous slice.
        xs = model.scheme.arrange(self.data.x[self.trial_index, order])
        ys = self.data.y[self.trial_index, order]
        scored = self.scored[self.trial_index, order]
        samples = order.shape[1]
        total = torch.zeros(model.n, device=model.device)
        batches = 0
        for start in range(0, samples, train.batch_size):
            stop = min(start + train.batch_size, samples)
            batch = model.scheme.rows(xs, start, stop)
            losses = self._backward(batch, ys[:, start:stop], scored[:, start:stop].sum(1))
            if train.clip > 0:
                self._clip(train.clip)
            self.optimizer.step()
            model.freeze_diverged()
            total += losses.detach()
            batches += 1
        return total / batches

    def _backward(self, batch: torch.Tensor, y: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Each trial's loss ``[n]``; marks diverging trials, leaves the live ones' gradient in ``grad``."""
        model = self.model
        logits = model.forward(model.params.views(), batch, self.data.first)
        losses = model.trial_losses(logits, y, counts)
        model.diverged |= ~torch.isfinite(losses)
        self.optimizer.zero_grad(set_to_none=False)
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
        self.model, self.data, self.train = model, data, train
        flat = model.flat
        self.kernel = model.scheme.training(  # type: ignore[attr-defined]
            model.params.offsets(), model.task.regression, model.n, flat.shape[1], train
        )

    @torch.no_grad()
    def epoch(self, order: torch.Tensor) -> torch.Tensor:
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
            self.train.batch_size,
        )


def make_stepper(model: StackedModel, data: Sequences, train: TrainSection, *, trains: bool) -> Stepper:
    """The kernel's own training where the scheme ``trains``, else autograd and torch's optimizer."""
    return KernelStepper(model, data, train) if trains else AutogradStepper(model, data, train)


def masked(losses: torch.Tensor, diverged: torch.Tensor) -> torch.Tensor:
    """An epoch's losses with a diverged trial's as NaN."""
    return losses.masked_fill(diverged, math.nan)
