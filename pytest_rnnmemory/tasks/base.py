"""What every task is: a seeded generator of (inputs, targets) for a length."""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from ..errors import TaskError

#: Target value of a step that is not scored (cross-entropy's ``ignore_index``).
IGNORE = -100


class Task:
    """A memory problem: for a length ``L`` and a count ``n`` it generates

    * ``x``: float32 inputs ``[n, T, input_size]``
    * ``y``: int64 targets ``[n, T]``, :data:`IGNORE` where a step is not scored;
      for a regression task (``regression = True``), float32 targets with NaN
      where a step is not scored.

    Subclasses set the class attributes and implement :meth:`steps`,
    :meth:`sample` and, where chance is not 0.5, :meth:`chance`. Data is drawn
    on the CPU from the generator it is given, so that one seed gives the
    same tensors on any device.

    A task whose rule is the same at every length can be evaluated at lengths
    it was not trained on (``generalises = True``, see :meth:`sample_longer`).
    """

    name: ClassVar[str]
    input_size: ClassVar[int]
    num_classes: ClassVar[int] = 2
    #: The metric a suite uses unless it names one: ``accuracy`` or ``sequence_accuracy``.
    metric: ClassVar[str] = "accuracy"
    min_length: ClassVar[int] = 1
    #: What the length means for this task, in words, for reports and errors.
    length_means: ClassVar[str] = "the sequence length"
    #: The task's own parameters (the suite's ``[task]`` table) and their defaults.
    params: ClassVar[dict[str, float]] = {}
    #: A regression task: one output per step, trained with squared error; a scored step is
    #: right when its absolute error is below the ``tolerance`` parameter.
    regression: ClassVar[bool] = False
    #: Whether :meth:`sample_longer` can evaluate a model at other lengths than it trained on.
    generalises: ClassVar[bool] = False
    #: Why a task does not generalise, for the error a suite that asks for it gets.
    no_generalisation: ClassVar[str] = (
        "its length is the one distance memory must bridge, so another length asks a new question; "
        "train at that length instead"
    )

    def __init__(self, **params: float) -> None:
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            allowed = ", ".join(sorted(self.params)) or "none"
            raise TaskError(
                f"unknown parameter of task {self.name!r}; allowed: {allowed}",
                where=f"task.{unknown[0]}",
            )
        values = {**self.params, **params}
        for key, value in values.items():
            problem = parameter_problem(value)
            if problem:
                raise TaskError(problem, where=f"task.{key} = {value!r}")
        self.values = values

    def check_length(self, length: int) -> None:
        """Raise :class:`TaskError` unless the task is defined at ``length``."""
        if isinstance(length, bool) or not isinstance(length, int) or length < self.min_length:
            raise TaskError(
                f"task {self.name!r} needs an integer length >= {self.min_length} "
                f"(the length is {self.length_means})"
            )

    def steps(self, length: int) -> int:
        """The number of time steps ``T`` of a sequence at ``length``."""
        raise NotImplementedError

    def chance(self, length: int) -> float:
        """The best value of the task's metric that needs no memory at all."""
        return 0.5

    def sample(self, length: int, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` sequences at ``length``: ``(x, y)`` as described in the class docstring."""
        raise NotImplementedError

    def sample_longer(
        self, length: int, eval_length: int, n: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` sequences that test a model trained at ``length`` at ``eval_length``.

        By default the task's sequences at ``eval_length``; a task whose length
        is a rule's parameter (a delay) keeps the rule and lengthens the stream.
        """
        if not self.generalises:
            raise TaskError(
                f"task {self.name!r} cannot be evaluated at other lengths: {self.no_generalisation}"
            )
        return self.sample(eval_length, n, generator)

    @property
    def outputs(self) -> int:
        """Width of the readout: the number of classes, or 1 for a regression task."""
        return 1 if self.regression else self.num_classes

    @property
    def tolerance(self) -> float:
        """The absolute error below which a regression task's scored step is right."""
        return float(self.values["tolerance"])


def parameter_problem(value: object) -> str | None:
    """What is wrong with ``value`` as any task's parameter, or ``None``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        return "must be a finite number >= 0"
    return None


def balanced_labels(n: int, classes: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` labels in ``range(classes)``, each as often as ``n`` allows, in random order."""
    labels = torch.arange(n) % classes
    return labels[torch.randperm(n, generator=generator)]


def random_bits(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Independent fair bits (int64 0/1) of ``shape``."""
    return torch.randint(0, 2, shape, generator=generator)


def noise(shape: tuple[int, ...], std: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise ``N(0, std^2)`` as float32."""
    return torch.randn(shape, generator=generator).mul_(std)


def unscored(n: int, steps: int, *, regression: bool = False) -> torch.Tensor:
    """A target tensor with no step scored yet (float NaN for a regression task)."""
    if regression:
        return torch.full((n, steps), float("nan"))
    return torch.full((n, steps), IGNORE, dtype=torch.long)


def scored_steps(y: torch.Tensor) -> torch.Tensor:
    """Which steps of targets ``y`` are scored: not :data:`IGNORE`, or not NaN for regression."""
    return ~torch.isnan(y) if y.is_floating_point() else y != IGNORE
