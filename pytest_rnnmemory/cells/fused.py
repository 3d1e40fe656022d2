"""Many trials of a built-in cell as one wide cell, through torch's fused RNN kernels.

Trial ``j``'s weights become the ``j``-th diagonal block of each gate's weight
matrix, and its inputs and hidden units the ``j``-th slice of one wide input
and state. Off-diagonal blocks are exact zeros built from the per-trial
weights on every call, so no trial can read another's state and each
trial's gradient lands on its own weights only. One call of ``torch.lstm``
(or ``gru``, ``rnn_tanh``) then runs every trial: oneDNN on the CPU, cuDNN on
CUDA. Its cost grows with ``(trials * hidden)^2``, so it pays off for the small
hidden sizes of memory experiments; the engine measures and picks.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .recurrence import Recurrence


def block_diagonal(weight: torch.Tensor, gates: int) -> torch.Tensor:
    """``[n, G*H, K]`` per-trial weights -> ``[G*n*H, n*K]``, gate-major, trials on the diagonal."""
    n, rows, k = weight.shape
    h = rows // gates
    eye = torch.eye(n, dtype=weight.dtype, device=weight.device)
    wide = torch.einsum("jghk,jm->gjhmk", weight.reshape(n, gates, h, k), eye)
    return wide.reshape(gates * n * h, n * k)


def wide_bias(bias: torch.Tensor, gates: int) -> torch.Tensor:
    """``[n, G*H]`` per-trial biases -> ``[G*n*H]`` in the layout of :func:`block_diagonal`."""
    n, rows = bias.shape
    return bias.reshape(n, gates, rows // gates).transpose(0, 1).reshape(-1)


def fused_forward(params: dict[str, torch.Tensor], x: torch.Tensor, cell: Recurrence) -> torch.Tensor:
    """Hidden states ``[n, B, T, H]`` of ``n`` trials for inputs ``x`` laid out as ``[B, T, n*I]``."""
    gates = cell.gates
    n, rows, _ = params["weight_hh"].shape
    h = rows // gates
    batch = x.shape[0]
    flat = [
        block_diagonal(params["weight_ih"], gates),
        block_diagonal(params["weight_hh"], gates),
        wide_bias(params["bias_ih"], gates),
        wide_bias(params["bias_hh"], gates),
    ]
    h0 = x.new_zeros(1, batch, n * h)
    hx = (h0, h0) if cell.cell_state else h0
    with warnings.catch_warnings():
        # cuDNN asks for one contiguous weight buffer; ours are rebuilt each call by design.
        warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
        op = getattr(torch, cell.fused_op)
        out = op(x, hx, flat, True, 1, 0.0, torch.is_grad_enabled(), False, True)[0]
    return out.reshape(batch, x.shape[1], n, h).permute(2, 0, 1, 3)
