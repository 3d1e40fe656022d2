"""Control: recall the bit L steps back."""

from __future__ import annotations

from .delayed import DelayedBitStream


class Recall(DelayedBitStream):
    """From ``t = L`` on, the target is ``b_(t-L)``: the bit ``L`` steps back.

    With ``L = 1`` this is the "predict the previous input" question.
    """

    name = "recall"

    def targets(self, bits, delay):
        return bits[:, :-delay]
