"""What one case trains: plain data that names the task, the cell, the recipe and the seeds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .schema import ModelSection, TrainSection


@dataclass(frozen=True)
class CaseSpec:
    """Everything that determines the result of one case's trials.

    The task and the cell are named (a built-in name or ``package.module:Class``),
    not built: the training layer builds them, so a spec travels as plain data.
    """

    #: The task's name or import path, and its parameters (the suite's ``[task]`` table).
    task: str
    cell: str
    length: int
    model: ModelSection
    train: TrainSection
    metric: str
    threshold: float
    trial_seeds: tuple[int, ...]
    task_params: Mapping[str, float] = field(default_factory=dict)
    #: Targets moved to other sequences of the same set, in training, validation and test (the
    #: ``shuffled`` control): no target depends on its sequence, so success measures what the
    #: criterion gives away. Validated on the true targets, a trial could remember the rule from
    #: the moved training targets, which agree with the true ones on about half of a finite set,
    #: a little more or less, and reach the threshold.
    shuffle_labels: bool = False
    #: Lengths at which the trained trials are evaluated too, on fresh data (length generalisation).
    eval_lengths: tuple[int, ...] = ()

    @property
    def hidden(self) -> int:
        return self.model.hidden

    @property
    def trials(self) -> int:
        return len(self.trial_seeds)
