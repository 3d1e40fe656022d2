"""Control: bitwise OR of two bit streams, which needs no memory."""

from __future__ import annotations

import torch

from .base import Task, random_bits


class BitwiseOr(Task):
    """Two streams of fair bits ``a_t``, ``b_t`` fed as 0/1; every step's target is ``a_t OR b_t``.

    The majority class (1) has rate 0.75: the chance level a model reaches
    without reading its input.
    """

    name = "or"
    input_size = 2
    generalises = True
    length_means = "the sequence length"

    def steps(self, length: int) -> int:
        return length

    def chance(self, length: int) -> float:
        return 0.75

    def sample(self, length, n, generator):
        bits = random_bits((n, length, 2), generator)
        return bits.to(torch.float32), bits[..., 0] | bits[..., 1]
