"""What the bit-stream tasks with a delay share: the stream, the scored steps, longer streams."""

from __future__ import annotations

import torch

from .base import Task, random_bits, unscored


class DelayedBitStream(Task):
    """A stream of fair bits ``b_t`` over ``T = 2L`` steps, fed as ``2b - 1``, scored from ``t = L`` on.

    The length is the delay ``L``; a subclass says what the target at step
    ``t`` is from the bits and the delay. Evaluated at a longer length, the
    delay stays ``L`` and the stream grows to ``2 * eval_length`` steps.
    """

    input_size = 1
    length_means = "the delay"
    generalises = True

    def steps(self, length: int) -> int:
        return 2 * length

    def sample(self, length, n, generator):
        return self._stream(length, 2 * length, n, generator)

    def sample_longer(self, length, eval_length, n, generator):
        return self._stream(length, 2 * eval_length, n, generator)

    def targets(self, bits: torch.Tensor, delay: int) -> torch.Tensor:
        """The targets of steps ``delay`` onwards, ``[n, steps - delay]``, from bits ``[n, steps]``."""
        raise NotImplementedError

    def _stream(self, delay: int, steps: int, n: int, generator: torch.Generator):
        bits = random_bits((n, steps), generator)
        x = (2.0 * bits - 1.0).unsqueeze(-1)
        y = unscored(n, steps)
        y[:, delay:] = self.targets(bits, delay)
        return x, y
