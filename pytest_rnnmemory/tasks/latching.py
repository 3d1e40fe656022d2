"""Information latching (Bengio, Simard & Frasconi 1994, Fig. 1-2)."""

from __future__ import annotations

from typing import ClassVar

from .base import Task, balanced_labels, noise, unscored


class Latching(Task):
    """A sign at the first step, noise after it; the class is that sign, read at the last step.

    ``x_t = noise`` for every step, plus ``s`` in {-1, +1} at ``t = 0``; the target
    at ``t = L - 1`` is 1 when ``s = +1``. The classes are balanced exactly.
    """

    name = "latching"
    input_size = 1
    length_means = "the sequence length"
    params: ClassVar[dict[str, float]] = {"noise": 0.1}

    def steps(self, length: int) -> int:
        return length

    def sample(self, length, n, generator):
        y_class = balanced_labels(n, 2, generator)
        x = noise((n, length, 1), self.values["noise"], generator)
        x[:, 0, 0] += 2.0 * y_class - 1.0
        y = unscored(n, length)
        y[:, -1] = y_class
        return x, y
