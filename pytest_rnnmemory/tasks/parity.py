"""Parity of a bit stream."""

from __future__ import annotations

from .base import Task, random_bits, unscored


class Parity(Task):
    """``L`` fair bits ``b_t`` fed as ``2b - 1``; the target at the last step is their XOR.

    Only the last step is scored (the parity problem of Bengio et al. 1994 and
    Hochreiter & Schmidhuber 1997). Every bit changes the answer, so the
    model must carry one bit of state across the whole sequence.
    """

    name = "parity"
    input_size = 1
    length_means = "the number of bits"
    generalises = True

    def steps(self, length: int) -> int:
        return length

    def sample(self, length, n, generator):
        bits = random_bits((n, length), generator)
        x = (2.0 * bits - 1.0).unsqueeze(-1)
        y = unscored(n, length)
        y[:, -1] = bits.sum(1) % 2
        return x, y
