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
    #: torch's fused sequence op (``torch.lstm``, ``torch.gru``, ``torch.rnn_tanh``), for ``fused``
    #: (``None``: torch has none, and ``schemes`` leaves ``fused`` out).
    fused_op: str | None
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
    #: ``chrono`` initialisation (Tallec & Ollivier 2018): the gate blocks whose total bias becomes
    #: ``sign * log u``, ``u`` uniform in ``[1, T_max - 1]`` per unit (empty: no chrono form).
    chrono_gates: tuple[tuple[int, float], ...] = ()
    #: The forget gate's block, which ``model.forget_bias`` shifts (``None``: the cell has none).
    forget_gate: int | None = None
    #: The built-in-only schemes that run it (a cell with weights that must not train runs in
    #: the native kernel alone, which holds them; ``vmap`` runs every cell).
    schemes: frozenset[str] = frozenset({"native", "stepwise", "fused"})

    def initialise(self, module: nn.Module, init: str, forget_bias: float, tmax: int) -> None:
        """Set ``module``'s biases as ``model.init`` and ``model.forget_bias`` ask, drawing from torch's
        current generator (the trial's ``init`` stream, after its weights and readout are drawn).

        ``chrono`` puts each listed gate's total bias in the input-side bias and zeroes the
        hidden-side one; ``forget_bias`` is then added to the forget gate's input-side bias.
        """
        hidden = module.hidden_size
        with torch.no_grad():
            if init == "chrono" and self.chrono_gates:
                log_u = torch.log1p(torch.rand(hidden) * max(tmax - 2, 0))  # log u, u in [1, T_max - 1]
                for gate, sign in self.chrono_gates:
                    block = slice(gate * hidden, (gate + 1) * hidden)
                    module.bias_ih[block] = sign * log_u
                    module.bias_hh[block] = 0.0
            if forget_bias and self.forget_gate is not None:
                block = slice(self.forget_gate * hidden, (self.forget_gate + 1) * hidden)
                module.bias_ih[block] += forget_bias

    def ignores(self, key: str) -> bool:
        """Whether a recipe key has no effect on this cell."""
        return (key == "model.init" and not self.chrono_gates) or (
            key == "model.forget_bias" and self.forget_gate is None
        )
