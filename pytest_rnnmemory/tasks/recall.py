"""Control: recall the bit L steps back."""

from __future__ import annotations

from .base import Task, random_bits, unscored


class Recall(Task):
    """A stream of fair bits ``b_t`` over ``T = 2L`` steps, fed as ``2b - 1``.

    From ``t = L`` on, the target is ``b_(t-L)``. With ``L = 1`` this is the
    "predict the previous input" question. Evaluated at a longer length, the
    delay stays ``L`` and the stream grows to ``2 * eval_length`` steps.
    """

    name = "recall"
    input_size = 1
    length_means = "the delay"
    generalises = True

    def steps(self, length: int) -> int:
        return 2 * length

    def sample(self, length, n, generator):
        return self._stream(length, 2 * length, n, generator)

    def sample_longer(self, length, eval_length, n, generator):
        return self._stream(length, 2 * eval_length, n, generator)

    @staticmethod
    def _stream(delay, steps, n, generator):
        bits = random_bits((n, steps), generator)
        x = (2.0 * bits - 1.0).unsqueeze(-1)
        y = unscored(n, steps)
        y[:, delay:] = bits[:, : steps - delay]
        return x, y
