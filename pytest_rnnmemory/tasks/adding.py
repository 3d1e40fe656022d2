"""The adding problem of Hochreiter & Schmidhuber (1997), experiment 4."""

from __future__ import annotations

from typing import ClassVar

import torch

from ..errors import TaskError
from .base import Task, unscored


class Adding(Task):
    """Pairs ``(value, marker)`` over ``T = L`` steps; at the end, output the two marked values' sum.

    Every value is uniform in ``[-1, 1]``. Exactly two pairs are marked with
    1.0: one of the first ten pairs (value ``X1``), then one of the first
    ``L // 2 - 1`` pairs that is still unmarked (``X2``). The markers of the
    first and last pairs are -1.0 unless marked, all others 0.0; when the first
    pair holds ``X1``, ``X1`` is set to 0. The target at the last step is
    ``0.5 + (X1 + X2) / 4`` and a sequence is right when the absolute error
    there is below ``tolerance`` (0.04 in the paper). The paper draws each
    sequence's length from ``[L, L + L/10]``; here every sequence has length
    ``L``, so that a minibatch is one tensor.
    """

    name = "adding"
    input_size = 2
    regression = True
    min_length = 10
    length_means = "the sequence length (the paper's minimal length T)"
    params: ClassVar[dict[str, float]] = {"tolerance": 0.04}
    generalises = True

    def __init__(self, **params: float) -> None:
        super().__init__(**params)
        if self.values["tolerance"] <= 0:
            raise TaskError("must be a number > 0", where=f"task.tolerance = {self.values['tolerance']!r}")

    def steps(self, length: int) -> int:
        return length

    def chance(self, length: int) -> float:
        """The rate of sequences a constant 0.5 gets right, the best a model without memory can do.

        ``|X1 + X2| < 4 tol``: with ``X1 = 0`` (one time in ten) ``X2`` alone is
        uniform; otherwise the sum has the triangular density ``(2 - |s|) / 4``.
        """
        c = 4.0 * self.tolerance
        triangular = 1.0 if c >= 2 else c - c * c / 4.0
        return 0.9 * triangular + 0.1 * min(c, 1.0)

    def sample(self, length, n, generator):
        values = torch.rand(n, length, generator=generator) * 2.0 - 1.0
        markers = torch.zeros(n, length)
        markers[:, 0] = -1.0
        markers[:, -1] = -1.0
        rows = torch.arange(n)
        first = torch.randint(0, 10, (n,), generator=generator)
        # The second marked pair is uniform over the first L//2 - 1 pairs other than the first one.
        span = length // 2 - 1
        inside = first < span
        pick = (torch.rand(n, generator=generator) * (span - inside.long())).long()
        second = pick + (inside & (pick >= first)).long()
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        values[rows[first == 0], 0] = 0.0
        y = unscored(n, length, regression=True)
        y[:, -1] = 0.5 + (values[rows, first] + values[rows, second]) / 4.0
        return torch.stack([values, markers], dim=-1), y
