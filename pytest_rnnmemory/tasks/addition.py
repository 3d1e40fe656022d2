"""Binary addition with carry."""

from __future__ import annotations

import torch

from .base import Task, random_bits


class Addition(Task):
    """Add two uniform ``L``-bit integers ``a`` and ``b``, least significant bit first.

    Step ``t < L`` feeds ``(a_t, b_t)`` as 0/1, step ``L`` feeds ``(0, 0)``;
    the target at step ``t`` is bit ``t`` of ``a + b`` (``T = L + 1`` steps, all
    scored). A sequence counts as right only when every bit is right, so the
    metric is sequence accuracy and chance is ``2^-(L+1)``.
    """

    name = "addition"
    input_size = 2
    metric = "sequence_accuracy"
    generalises = True
    length_means = "the number of bits"

    def steps(self, length: int) -> int:
        return length + 1

    def chance(self, length: int) -> float:
        return 2.0 ** -(length + 1)

    def sample(self, length, n, generator):
        operands = random_bits((n, length, 2), generator)
        x = torch.zeros(n, length + 1, 2)
        x[:, :length] = operands.to(torch.float32)
        y = torch.empty(n, length + 1, dtype=torch.long)
        carry = torch.zeros(n, dtype=torch.long)
        for t in range(length):  # ripple-carry, one bit position at a time
            total = operands[:, t, 0] + operands[:, t, 1] + carry
            y[:, t] = total % 2
            carry = total // 2
        y[:, length] = carry
        return x, y
