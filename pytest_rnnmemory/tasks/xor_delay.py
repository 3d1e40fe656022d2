"""Delayed XOR on a bit stream."""

from __future__ import annotations

from .delayed import DelayedBitStream


class XorDelay(DelayedBitStream):
    """From ``t = L`` on, the target is ``b_t XOR b_(t-L)``: the current bit against the one ``L`` back."""

    name = "xor_delay"

    def targets(self, bits, delay):
        return bits[:, delay:] ^ bits[:, :-delay]
