"""The built-in cells: torch's Elman RNN, LSTM and GRU, and the 1997 LSTM, one sequence at a time.

Each follows the cell protocol (see :mod:`pytest_rnnmemory.cells`). The first
three hold their weights exactly as the matching ``torch.nn`` module holds
those of its first layer: same names, same gate order, same shapes, same
initialisation (every weight and bias uniform in ``[-1/sqrt(H), 1/sqrt(H)]``);
the 1997 LSTM holds its three gate blocks the same way. The schemes
run these modules under ``torch.func.vmap``, or compute the equations
written here in their own way (:mod:`.stepwise`, :mod:`.fused`,
:mod:`.native`); the tests hold them all to these modules.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn


class _Recurrent(nn.Module):
    """Weights ``weight_ih [G*H, I]``, ``weight_hh [G*H, H]``, ``bias_ih``, ``bias_hh [G*H]``."""

    #: Number of gate blocks stacked in the weights.
    gates: ClassVar[int]

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        rows = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(rows))
        self.bias_hh = nn.Parameter(torch.empty(rows))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's initialisation: every weight and bias uniform in ``[-1/sqrt(H), 1/sqrt(H)]``."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def _input_part(self, x: torch.Tensor) -> torch.Tensor:
        # The input's contribution does not depend on the state: one product for all steps.
        return x @ self.weight_ih.T + self.bias_ih


class ElmanRNN(_Recurrent):
    """``h_t = tanh(W_ih x_t + b_ih + W_hh h_(t-1) + b_hh)``, ``h_(-1) = 0``."""

    gates = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self._input_part(x)
        h = x.new_zeros(x.shape[0], self.hidden_size)
        states = []
        for t in range(x.shape[1]):
            h = torch.tanh(pre[:, t] + h @ self.weight_hh.T + self.bias_hh)
            states.append(h)
        return torch.stack(states, dim=1)


class LSTM(_Recurrent):
    """torch's LSTM, gates stacked in the order input, forget, cell, output::

    i, f, g, o = W_ih x_t + b_ih + W_hh h_(t-1) + b_hh      (split in 4)
    c_t = sigmoid(f) * c_(t-1) + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)                             h_(-1) = c_(-1) = 0
    """

    gates = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self._input_part(x)
        h = x.new_zeros(x.shape[0], self.hidden_size)
        c = h
        states = []
        for t in range(x.shape[1]):
            i, f, g, o = (pre[:, t] + h @ self.weight_hh.T + self.bias_hh).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            states.append(h)
        return torch.stack(states, dim=1)


class GRU(_Recurrent):
    """torch's GRU, gates stacked in the order reset, update, new::

    r = sigmoid(W_ir x_t + b_ir + W_hr h_(t-1) + b_hr)
    z = sigmoid(W_iz x_t + b_iz + W_hz h_(t-1) + b_hz)
    n = tanh(W_in x_t + b_in + r * (W_hn h_(t-1) + b_hn))
    h_t = (1 - z) * n + z * h_(t-1)                          h_(-1) = 0
    """

    gates = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self._input_part(x)
        h = x.new_zeros(x.shape[0], self.hidden_size)
        states = []
        for t in range(x.shape[1]):
            xr, xz, xn = pre[:, t].chunk(3, dim=-1)
            hr, hz, hn = (h @ self.weight_hh.T + self.bias_hh).chunk(3, dim=-1)
            r = torch.sigmoid(xr + hr)
            z = torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h = (1 - z) * n + z * h
            states.append(h)
        return torch.stack(states, dim=1)


class LSTM1997(_Recurrent):
    """Hochreiter & Schmidhuber's 1997 LSTM: input and output gates, no forget gate::

    i, g, o = W_ih x_t + b_ih + W_hh h_(t-1) + b_hh          (split in 3)
    c_t = c_(t-1) + sigmoid(i) * (4 sigmoid(g) - 2)          the cell input squashed into [-2, 2]
    h_t = sigmoid(o) * (2 sigmoid(c_t) - 1)                  the cell state squashed into [-1, 1]
    h_(-1) = c_(-1) = 0

    Each unit is a memory cell with its own gates (the paper's blocks of one cell) and
    feeds back to every gate and cell input. The paper's initialisation for the adding
    problem: every weight and bias uniform in ``[-0.1, 0.1]``, then the input gates'
    biases at -3 in the first half of the units and -6 in the second (the paper's two
    blocks), so that the cells first ignore their inputs; ``bias_hh`` starts at zero.
    The gradient is the full one through time, where the paper truncated it at the cells.
    """

    gates = 3

    #: The input gates' biases in the first and second half of the units.
    INPUT_GATE_BIASES = (-3.0, -6.0)

    def reset_parameters(self) -> None:
        """The paper's initialisation (see the class)."""
        for weight in self.parameters():
            nn.init.uniform_(weight, -0.1, 0.1)
        with torch.no_grad():
            half = (self.hidden_size + 1) // 2
            first, second = self.INPUT_GATE_BIASES
            self.bias_ih[:half] = first
            self.bias_ih[half : self.hidden_size] = second
            self.bias_hh.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self._input_part(x)
        h = x.new_zeros(x.shape[0], self.hidden_size)
        c = h
        states = []
        for t in range(x.shape[1]):
            i, g, o = (pre[:, t] + h @ self.weight_hh.T + self.bias_hh).chunk(3, dim=-1)
            c = c + torch.sigmoid(i) * (4.0 * torch.sigmoid(g) - 2.0)
            h = torch.sigmoid(o) * (2.0 * torch.sigmoid(c) - 1.0)
            states.append(h)
        return torch.stack(states, dim=1)


class Memoryless(nn.Module):
    """A control that remembers nothing: ``h_t = tanh(W_ih x_t + b_ih)``, from the current input alone.

    Whatever it learns needs no memory; a suite whose criterion it meets
    measures something other than memory. It holds ``weight_hh`` and ``bias_hh``
    too, at zero and unused (they take no gradient), so that its weights have the
    layout of the Elman cell's and the native kernel trains it as fast as one.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        bound = 1.0 / math.sqrt(hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.zeros(hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(hidden_size).uniform_(-bound, bound))
        self.bias_hh = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.weight_ih.T + self.bias_ih)
