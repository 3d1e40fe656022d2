"""Bit relay: do the signs at the start and in the middle agree?"""

from __future__ import annotations

from typing import ClassVar

from .base import Task, balanced_labels, noise, unscored


class Relay(Task):
    """Signs ``s1`` at ``t = 0`` and ``s2`` at ``t = L // 2`` on a noise stream.

    The target at the last step is 1 when ``s1 = s2``. The four sign pairs are
    balanced exactly, so both classes are too.
    """

    name = "relay"
    input_size = 1
    min_length = 2
    length_means = "the sequence length"
    params: ClassVar[dict[str, float]] = {"noise": 0.1}

    def steps(self, length: int) -> int:
        return length

    def sample(self, length, n, generator):
        pair = balanced_labels(n, 4, generator)
        s1 = (pair // 2) * 2.0 - 1.0
        s2 = (pair % 2) * 2.0 - 1.0
        x = noise((n, length, 1), self.values["noise"], generator)
        x[:, 0, 0] += s1
        x[:, length // 2, 0] += s2
        y = unscored(n, length)
        y[:, -1] = (s1 == s2).long()
        return x, y
