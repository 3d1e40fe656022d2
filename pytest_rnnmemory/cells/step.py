"""Step cells: cells written as torch's own cells are, one time step at a time.

A step cell's ``forward(input, state)`` maps one step's input ``[batch, I]`` and
the state to the next state. The state is a tensor ``[batch, H]``, or a tuple
of them (an LSTM's ``(h, c)``); the readout reads its first tensor. A class is
a step cell when it subclasses ``torch.nn.RNNCellBase`` (torch's ``RNNCell``,
``GRUCell``, ``LSTMCell``) or names the parts of its state in a class attribute,
``rnnmemory_state = ("h",)`` or ``("h", "c")``: nothing is guessed from
signatures. The engine runs the time loop, from zero states.
"""

from __future__ import annotations

import torch
from torch import nn

#: The class attribute that makes a class a step cell and names the parts of its state.
STATE_ATTRIBUTE = "rnnmemory_state"


def is_step_cell(cls: type) -> bool:
    """Whether a cell class follows the step protocol (a sequence cell otherwise)."""
    return issubclass(cls, nn.RNNCellBase) or getattr(cls, STATE_ATTRIBUTE, None) is not None


def state_declaration_error(cls: type) -> str | None:
    """What is wrong with a class's ``rnnmemory_state``, if anything: it must be a non-empty tuple
    (or list) of distinct strings, one per state tensor (a string alone would be split into letters,
    and no parts would give ``forward`` no state)."""
    declared = getattr(cls, STATE_ATTRIBUTE, None)
    if declared is None:
        return None
    if isinstance(declared, str):
        wrong = f"is a string, whose letters would be the parts: write ({declared!r},)"
    elif not isinstance(declared, (tuple, list)):
        wrong = f"is a {type(declared).__name__}"
    elif not declared:
        wrong = "names no part"
    elif not all(isinstance(part, str) and part for part in declared):
        wrong = "has a part that is not a name"
    elif len(set(declared)) != len(declared):
        wrong = "names a part twice"
    else:
        return None
    return (
        f"{cls.__name__}.{STATE_ATTRIBUTE} = {declared!r} {wrong}; it must be a non-empty tuple of "
        "distinct names, one per state tensor, the readout's first: ('h',) or ('h', 'c')"
    )


def state_parts(cls: type) -> tuple[str, ...]:
    """The names of a step cell's state tensors, the readout's first: as the class declares them,
    else torch's LSTMCell's ``(h, c)`` and any other ``RNNCellBase``'s ``h``."""
    declared = getattr(cls, STATE_ATTRIBUTE, None)
    if declared is not None:
        return tuple(declared)
    if issubclass(cls, nn.LSTMCell):
        return ("h", "c")
    return ("h",)


def zero_state(
    x: torch.Tensor, batch: int, hidden: int, parts: int
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """A step cell's state before the first step: zeros ``[batch, hidden]``, a tuple of ``parts`` of them
    for a state of more than one tensor."""
    zeros = x.new_zeros(batch, hidden)
    return zeros if parts == 1 else (zeros,) * parts


class StepSequence(nn.Module):
    """A step cell run over whole sequences: the cell protocol the engine trains.

    ``forward(x [B, T, I]) -> states [B, T, H]``: the step cell ``cell`` from
    zero states, step by step, its state's first tensor at every step.
    """

    def __init__(self, cell: nn.Module, hidden_size: int, parts: tuple[str, ...]) -> None:
        super().__init__()
        self.cell = cell
        self.hidden_size = hidden_size
        self.parts = len(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = zero_state(x, x.shape[0], self.hidden_size, self.parts)
        outputs = []
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
            outputs.append(state if self.parts == 1 else state[0])
        return torch.stack(outputs, dim=1)
