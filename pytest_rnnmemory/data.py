"""Each trial's sequences: drawn from its own streams, stacked over trials, kept from the first scored step.

The trials of a case train on data of their own: training and validation
sequences from separate streams of each trial's seed (:mod:`.seeds`), drawn on
the CPU so that a seed gives the same sequences on any device, then moved to
the case's device once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import seeds
from .spec import CaseSpec
from .tasks import IGNORE, Task, scored_steps, unscored
from .usercode import DATA, user_code

#: A trial's targets from its own first scored step on: (that step, ``y [S, T - step]``).
Targets = tuple[int, torch.Tensor]


def sample_trials(
    spec: CaseSpec,
    task: Task,
    stream: str,
    count: int,
    eval_length: int | None = None,
    shuffle: bool = False,
) -> tuple[torch.Tensor, list[Targets]]:
    """Each trial's sequences, ``x [n, S, T, I]`` stacked, and each trial's :data:`Targets`.

    With ``eval_length``, the sequences that test the trials at that length.
    Trials are drawn one after another and copied into place, so that one
    trial's whole target tensor is alive at a time: on long sequences scored
    at a few steps it is most of the memory, and memory the process takes
    afresh costs a page fault per page. ``shuffle`` moves each trial's
    targets to other sequences (the ``shuffled`` control).
    """
    stacked, targets = None, []
    users = ":" in spec.task
    for i, seed in enumerate(spec.trial_seeds):
        generator = seeds.stream(seed, stream)
        with user_code("task", spec.task, DATA, active=users):
            if eval_length is None:
                x, y = task.sample(spec.length, count, generator)
            else:
                x, y = task.sample_longer(spec.length, eval_length, count, generator)
        if shuffle:
            y = y[torch.randperm(len(y), generator=seeds.stream(seed, "shuffle"))]
        if stacked is None:
            stacked = x.new_empty((spec.trials, *x.shape))
        stacked[i] = x
        first = first_scored(y)
        targets.append((first, y[..., first:].clone()))
    return stacked, targets


def first_scored(y: torch.Tensor) -> int:
    """The first step scored in any sequence of targets ``y [S, T]`` (the last step if none is):
    readout and loss need only the steps from it on."""
    found = scored_anywhere(y).nonzero()
    return int(found.min()) if len(found) else y.shape[-1] - 1


def scored_anywhere(y: torch.Tensor) -> torch.Tensor:
    """Which steps of targets ``y [..., T]`` are scored in at least one sequence, ``[T]``."""
    rows = y.reshape(-1, y.shape[-1])
    if rows.is_floating_point():
        return scored_steps(rows).any(0)
    # Classes are >= 0 > IGNORE, so a step is scored somewhere where its largest target is a class;
    # a max is several times faster than comparing every target.
    return rows.amax(0) > IGNORE


def stack_targets(targets: list[Targets], first: int, regression: bool) -> torch.Tensor:
    """The trials' targets from step ``first`` on, stacked: ``[n, S, T - first]``.

    ``first`` is at most any trial's own first scored step; the steps between are unscored.
    """
    rows = []
    for own, y in targets:
        if own > first:
            y = torch.cat([unscored(len(y), own - first, regression=regression), y], dim=-1)
        rows.append(y)
    return torch.stack(rows)


@dataclass(frozen=True)
class Sequences:
    """Stacked sequences of every trial: inputs ``x [n, S, T, I]``, targets ``y [n, S, T - first]``."""

    x: torch.Tensor
    y: torch.Tensor
    #: The step the targets start at: the first step scored in any trial's sequences.
    first: int

    @classmethod
    def draw(
        cls,
        spec: CaseSpec,
        task: Task,
        stream: str,
        count: int,
        device: torch.device,
        eval_length: int | None = None,
    ) -> Sequences:
        """``count`` sequences per trial from each trial's stream ``stream``, on ``device``."""
        x, targets = sample_trials(spec, task, stream, count, eval_length)
        first = min(own for own, _ in targets)
        return cls(x.to(device), stack_targets(targets, first, task.regression).to(device), first)

    def keep(self, rows: torch.Tensor) -> Sequences:
        """These sequences of the trials ``rows`` selects only."""
        return Sequences(self.x[rows], self.y[rows], self.first)


@dataclass(frozen=True)
class TrialData:
    """Each trial's training and validation sequences, stacked, from one first scored step on."""

    train: Sequences
    val: Sequences

    @classmethod
    def draw(cls, spec: CaseSpec, task: Task, device: torch.device) -> TrialData:
        x, y = sample_trials(spec, task, "train", spec.train.samples, shuffle=spec.shuffle_labels)
        xv, yv = sample_trials(spec, task, "val", spec.train.val_samples)
        # Targets from the first step scored anywhere on only: the steps before it are never read.
        first = min(own for own, _ in [*y, *yv])
        regression = task.regression
        return cls(
            Sequences(x.to(device), stack_targets(y, first, regression).to(device), first),
            Sequences(xv.to(device), stack_targets(yv, first, regression).to(device), first),
        )


class EpochOrders:
    """Each trial's order of its training sequences, a fresh one every epoch, from its ``order`` stream."""

    def __init__(self, spec: CaseSpec, device: torch.device) -> None:
        self.samples = spec.train.samples
        self.device = device
        self.generators = [seeds.stream(seed, "order") for seed in spec.trial_seeds]

    def next(self) -> torch.Tensor:
        """The next epoch's orders, int64 ``[n, S]``."""
        orders = [torch.randperm(self.samples, generator=g) for g in self.generators]
        return torch.stack(orders).to(self.device)

    def keep(self, rows: list[int]) -> None:
        """Draw the orders of these trials only (indices among the trials now training)."""
        self.generators = [self.generators[i] for i in rows]
