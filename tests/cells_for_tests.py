"""User cells for the tests: they follow the cell protocol of pytest_rnnmemory.cells."""

import torch
from torch import nn


class ZeroRecurrence(nn.Module):
    """An Elman cell whose recurrent weights are fixed at zero: it remembers nothing."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.inp(x))


class WrongShape(nn.Module):
    """Breaks the protocol: returns only the last hidden state."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inp(x)[:, -1]


class TorchRNN(nn.RNN):
    """Breaks the protocol's batching: torch.func.vmap has no rule for nn.RNN."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[0]
