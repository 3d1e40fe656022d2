"""What every task is: a seeded generator of (inputs, targets) for a length."""

from __future__ import annotations

from typing import ClassVar

import torch

from ..errors import TaskError

#: Target value of a step that is not scored (cross-entropy's ``ignore_index``).
IGNORE = -100


class Task:
    """A memory problem: for a length ``L`` and a count ``n`` it generates

    * ``x``: float32 inputs ``[n, T, input_size]``
    * ``y``: int64 targets ``[n, T]``, :data:`IGNORE` where a step is not scored.

    Subclasses set the class attributes and implement :meth:`steps`,
    :meth:`sample` and, where chance is not 0.5, :meth:`chance`. Data is drawn
    on the CPU from the generator it is given, so that one seed gives the
    same tensors on any device.
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
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise TaskError("must be a number >= 0", where=f"task.{key} = {value!r}")
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


def balanced_labels(n: int, classes: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` labels in ``range(classes)``, each as often as ``n`` allows, in random order."""
    labels = torch.arange(n) % classes
    return labels[torch.randperm(n, generator=generator)]


def random_bits(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Independent fair bits (int64 0/1) of ``shape``."""
    return torch.randint(0, 2, shape, generator=generator)


def noise(shape: tuple[int, ...], std: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise ``N(0, std^2)`` as float32."""
    return torch.randn(shape, generator=generator) * std


def unscored(n: int, steps: int) -> torch.Tensor:
    """A target tensor with no step scored yet."""
    return torch.full((n, steps), IGNORE, dtype=torch.long)
