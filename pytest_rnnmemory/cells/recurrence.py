"""What a built-in recurrent cell is to the schemes: one descriptor, looked up by name.

Each built-in cell (``rnn``, ``lstm``, ``gru``) has one :class:`Recurrence`
that holds everything a scheme needs to run it: the plain module with
torch's equations and initialisation, its gate blocks, torch's fused
sequence op, the stepwise scheme's recurrence, and the native kernel's code
for it. A scheme reads the descriptor; none branches on the cell's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

#: ``states = recurrence(pre [T, n, b, G*H], weight_hh [n, G*H, H], bias_hh [n, G*H] or None)``.
StepwiseRecurrence = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


@dataclass(frozen=True)
class Recurrence:
    """One built-in recurrent cell as every scheme runs it."""

    #: The name a suite or ``--cell`` uses.
    name: str
    #: The plain module: torch's equations, gate order and initialisation (``vmap`` runs it).
    module: type[nn.Module]
    #: Gate blocks stacked in the weights (``weight_ih [G*H, I]``).
    gates: int
    #: torch's fused sequence op (``torch.lstm``, ``torch.gru``, ``torch.rnn_tanh``), for ``fused``.
    fused_op: str
    #: Whether torch's CPU kernel for it runs a whole sequence in one call (oneDNN's LSTM), so that
    #: ``fused`` beats ``stepwise`` on the CPU for narrow cases; the others step under autograd.
    fused_whole_sequence_on_cpu: bool
    #: Whether the cell carries a second state (the LSTM's ``c``) beside ``h``.
    cell_state: bool
    #: Whether ``bias_hh`` acts inside the recurrence (the GRU's ``r * (W_hn h + b_hn)``) rather than
    #: adding to ``bias_ih``, so that it cannot be folded into the input part.
    bias_hh_inside: bool
    #: The recurrence with a hand-written backward pass, for ``stepwise``.
    stepwise: StepwiseRecurrence
    #: The cell's code in ``native.c``; whether its forward pass keeps the gates for the backward
    #: pass, and how many more rows per step, in units of H (the LSTM's ``c_t`` and ``tanh c_t``).
    native_code: int
    native_keeps_gates: bool
    native_kept_rows: int
