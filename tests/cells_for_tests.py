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


# --- Cells as users write them, from their papers -------------------------------------------------


class StepGRU(nn.Module):
    """A GRU written step by step with nn.Linear gates, as users write one (torch's equations)."""

    rnnmemory_state = ("h",)

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.x2h = nn.Linear(input_size, 3 * hidden_size)
        self.h2h = nn.Linear(hidden_size, 3 * hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        xr, xz, xn = self.x2h(x).chunk(3, dim=-1)
        hr, hz, hn = self.h2h(h).chunk(3, dim=-1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h


class IndRNN(nn.Module):
    """IndRNN (Li et al. 2018): h_t = relu(W x_t + u * h_(t-1) + b), each unit its own recurrent weight."""

    rnnmemory_state = ("h",)

    def __init__(self, input_size: int, hidden_size: int, recurrent_max: float = 1.0) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)
        self.u = nn.Parameter(torch.empty(hidden_size).uniform_(0.0, recurrent_max))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.inp(x) + self.u * h)


class MinGRU(nn.Module):
    """A minGRU-like gated linear recurrence (Feng et al. 2024), run as a parallel scan in log space:
    h_t = (1 - z_t) h_(t-1) + z_t g(x_t), z_t = sigmoid(W_z x_t), as a sequence cell."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.z = nn.Linear(input_size, hidden_size)
        self.h = nn.Linear(input_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.z(x)
        log_z = -nn.functional.softplus(-k)  # log sigmoid(k)
        log_keep = -nn.functional.softplus(k)  # log (1 - sigmoid(k))
        candidate = self.h(x)
        log_g = torch.where(
            candidate >= 0, (nn.functional.relu(candidate) + 0.5).log(), -nn.functional.softplus(-candidate)
        )
        # h_t = sum_s exp(sum_(s<r<=t) log_keep_r + log_z_s + log_g_s): a cumulative log-sum-exp.
        a = torch.cumsum(log_keep, dim=1)
        return torch.exp(a + torch.logcumsumexp(log_z + log_g - a, dim=1))


class OrthogonalRNN(nn.Module):
    """A tanh RNN whose recurrent matrix stays orthogonal (torch.nn.utils.parametrizations.orthogonal)."""

    rnnmemory_state = ("h",)

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)
        self.rec = nn.utils.parametrizations.orthogonal(nn.Linear(hidden_size, hidden_size, bias=False))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.inp(x) + self.rec(h))


class PeepholeLSTM(nn.Module):
    """An LSTM step with peepholes (Gers & Schmidhuber 2000) and an (h, c) state."""

    rnnmemory_state = ("h", "c")

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.gates = nn.Linear(input_size + hidden_size, 4 * hidden_size)
        self.peep = nn.Parameter(torch.zeros(3, hidden_size))

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        i, f, g, o = self.gates(torch.cat([x, h], dim=-1)).chunk(4, dim=-1)
        i = torch.sigmoid(i + self.peep[0] * c)
        f = torch.sigmoid(f + self.peep[1] * c)
        c = f * c + i * torch.tanh(g)
        o = torch.sigmoid(o + self.peep[2] * c)
        return o * torch.tanh(c), c


class SizesSwapped(nn.Module):
    """A tanh RNN whose constructor names the hidden size first: the engine passes the input size
    first, so built as written its sizes would be swapped."""

    rnnmemory_state = ("h",)

    def __init__(self, hidden_size: int, input_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)
        self.rec = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.inp(x) + self.rec(h))


class EvalFails(nn.Module):
    """A step cell that raises in eval mode alone: it passes the load-time check, which runs it as it
    trains, and the failure must say that it was being evaluated."""

    rnnmemory_state = ("h",)

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if not self.training:
            raise ValueError("this cell cannot be evaluated, on purpose")
        return torch.tanh(self.inp(x) + h)


class BackwardFails(nn.Module):
    """A step cell whose backward pass raises on batches of more than two sequences (so that it passes
    the load-time check and fails in training): the plugin must show this file's frame."""

    rnnmemory_state = ("h",)

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return _Exploding.apply(torch.tanh(self.inp(x) + h))


class _Exploding(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(value):
        return value.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        if grad.shape[0] > 2:
            raise ValueError("this cell's backward pass is broken on purpose")
        return grad


class NoGradient(nn.Module):
    """Breaks the protocol: its states are computed without the parameters' gradient."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.inp(x)).detach()


class NanAtInit(nn.Module):
    """Breaks the protocol: NaN states from the start."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inp(x) * float("nan")


class DoubleStates(nn.Module):
    """Breaks the protocol: float64 states."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.inp(x)).double()


class StepForgetsC(nn.Module):
    """Breaks the step protocol: declares an (h, c) state and returns h alone."""

    rnnmemory_state = ("h", "c")

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)

    def forward(self, x, state):
        return torch.tanh(self.inp(x) + state[0])


class StepDoubles(nn.Module):
    """Breaks the step protocol: a step that returns a float64 state (its next step would mix dtypes)."""

    rnnmemory_state = ("h",)

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.gate = nn.Linear(input_size + hidden_size, hidden_size)

    def forward(self, x, h):
        return torch.tanh(self.gate(torch.cat([x, h], -1))).double()


class StepNoGradient(nn.Module):
    """Breaks the step protocol: a step whose next state is detached from its parameters."""

    rnnmemory_state = ("h",)

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.gate = nn.Linear(input_size + hidden_size, hidden_size)

    def forward(self, x, h):
        return torch.tanh(self.gate(torch.cat([x, h], -1))).detach()


class UndeclaredStep(nn.Module):
    """Breaks the protocol: written as a step cell, forward(x, h), but declared as none."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.gate = nn.Linear(input_size + hidden_size, hidden_size)

    def forward(self, x, h):
        return torch.tanh(self.gate(torch.cat([x, h], -1)))


class TorchStyleUndeclared(nn.Module):
    """Breaks the protocol: a step cell in torch's shape, forward(input, hx=None), declared as none;
    run as a sequence cell, every step starts from a zero state."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.ih, self.hh = nn.Linear(input_size, hidden_size), nn.Linear(hidden_size, hidden_size)

    def forward(self, input, hx=None):
        if hx is None:
            hx = torch.zeros(*input.shape[:-1], self.hh.in_features)
        return torch.tanh(self.ih(input) + self.hh(hx))


class TorchStyleUndeclaredBatchState(TorchStyleUndeclared):
    """Breaks the protocol as above, its zero state shaped [batch, hidden]: a sequence raises."""

    def forward(self, input, hx=None):
        if hx is None:
            hx = torch.zeros(input.shape[0], self.hh.in_features)
        return torch.tanh(self.ih(input) + self.hh(hx))


class SequenceFromAState(nn.Module):
    """A sequence cell that takes an optional initial state, as torch.nn.RNN does, its recurrent
    weights starting at zero: at initialisation its last state does not depend on its first
    input, and it is a sequence cell all the same."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.ih, self.hh = nn.Linear(input_size, hidden_size), nn.Linear(hidden_size, hidden_size)
        nn.init.zeros_(self.hh.weight)

    def forward(self, x, h0=None):
        h = torch.zeros(x.shape[0], self.hh.in_features) if h0 is None else h0
        states = []
        for t in range(x.shape[1]):
            h = torch.tanh(self.ih(x[:, t]) + self.hh(h))
            states.append(h)
        return torch.stack(states, 1)


class MaskedShapeBug(nn.Module):
    """Breaks the protocol: a sequence cell with an optional mask whose forward has a shape bug
    (not a step cell: it gets no step-cell hint)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)

    def forward(self, x, mask=None):
        return torch.tanh(self.inp(torch.cat([x, x[..., :1]], dim=2))).cumsum(1)


class ForwardFails(nn.Module):
    """Breaks the protocol: its forward raises, on the line the load-time check must point to."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)

    def forward(self, x):
        raise ValueError("this cell's forward pass is broken on purpose")


class LSTMOnRNNCellBase(nn.RNNCellBase):
    """A step cell on torch's cell base class with an (h, c) state, which it declares."""

    rnnmemory_state = ("h", "c")

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size, bias=True, num_chunks=4)

    def forward(self, x, state):
        h, c = state
        gates = x @ self.weight_ih.T + h @ self.weight_hh.T + self.bias_ih + self.bias_hh
        i, f, g, o = gates.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class DeadUnderSeedZero(nn.Module):
    """A ReLU cell whose unit is dead (every input negative) when built under seed 0 alone."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)
        if torch.initial_seed() == 0:
            nn.init.constant_(self.inp.bias, -100.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.inp(x)).cumsum(1)


class DroppedStep(nn.Module):
    """A tanh RNN step with dropout on its input (``cell_args``' ``dropout``), as users add one."""

    rnnmemory_state = ("h",)

    def __init__(self, input_size: int, hidden_size: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.inp = nn.Linear(input_size, hidden_size)
        self.rec = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.inp(self.drop(x)) + self.rec(h))


class NormedStep(nn.Module):
    """A tanh RNN step whose pre-activation goes through BatchNorm1d, which updates its running
    statistics at every step as it trains."""

    rnnmemory_state = ("h",)

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)
        self.rec = nn.Linear(hidden_size, hidden_size, bias=False)
        self.norm = nn.BatchNorm1d(hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.norm(self.inp(x) + self.rec(h)))


class RunningScale(nn.Module):
    """A sequence cell with buffers it updates as it runs, as BatchNorm's statistics are: a
    count of its calls, and a running scale of its input while it trains, which divides it."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)
        self.register_buffer("calls", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.add_(1)
        if self.training:
            self.scale.mul_(0.5).add_(0.5 * x.abs().mean())
        return torch.tanh(self.inp(x / self.scale)).cumsum(1)


def _declaring(name: str, state: object) -> type[nn.Module]:
    """An Elman step cell that declares ``rnnmemory_state = state``: the declarations a cell loads
    with, or is refused for, as it loads."""

    class Declaring(nn.Module):
        rnnmemory_state = state

        def __init__(self, input_size: int, hidden_size: int) -> None:
            super().__init__()
            self.gate = nn.Linear(input_size + hidden_size, hidden_size)

        def forward(self, x, state):
            h = state[0] if isinstance(state, tuple) else state
            h = torch.tanh(self.gate(torch.cat([x, h], -1)))
            return (h, h) if isinstance(state, tuple) else h

    Declaring.__name__ = Declaring.__qualname__ = name
    return Declaring


StateAString = _declaring("StateAString", "hidden")
StateEmpty = _declaring("StateEmpty", ())
StateTwice = _declaring("StateTwice", ("h", "h"))
StateNotNames = _declaring("StateNotNames", ("h", 2))
StateASet = _declaring("StateASet", {"h"})
StateAList = _declaring("StateAList", ["h", "c"])


class TweakedRNNCell(nn.RNNCell):
    """torch's RNNCell with its own initialisation, as a user subclasses it: vmap has no batching rule
    for the rnn_tanh_cell it calls, and loops over the trials."""

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            self.bias_hh.zero_()
