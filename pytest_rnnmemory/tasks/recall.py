"""Control: recall the bit L steps back."""

from __future__ import annotations

from .base import Task, random_bits, unscored


class Recall(Task):
    """A stream of fair bits ``b_t`` over ``T = 2L`` steps, fed as ``2b - 1``.

    From ``t = L`` on, the target is ``b_(t-L)``. With ``L = 1`` this is the
    "predict the previous input" question.
    """

    name = "recall"
    input_size = 1
    length_means = "the delay"

    def steps(self, length: int) -> int:
        return 2 * length

    def sample(self, length, n, generator):
        bits = random_bits((n, 2 * length), generator)
        x = (2.0 * bits - 1.0).unsqueeze(-1)
        y = unscored(n, 2 * length)
        y[:, length:] = bits[:, :length]
        return x, y
