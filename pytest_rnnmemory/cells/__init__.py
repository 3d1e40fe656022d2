"""The cell registry and the cell protocol.

A cell is a class called as ``Cell(input_size, hidden_size)`` that returns a
``torch.nn.Module`` whose ``forward(x)`` maps a batch of sequences ``x`` of
shape ``[batch, steps, input_size]`` to the hidden states at every step,
``[batch, steps, hidden_size]``, starting from a state of its own choosing
(zeros for the built-ins). The module's parameters are its trainable
weights; its initialisation is the one it does in ``__init__``. The readout
and the loss are the engine's, not the cell's.

Built-in cells are named ``rnn``, ``lstm`` and ``gru``, and ``memoryless`` for
the control that ignores its past; a user's own cell is named by its import
path, ``package.module:Class``. Each built-in recurrent cell has one
:class:`.Recurrence` in :data:`RECURRENCES`: adding a built-in cell is its
module, its stepwise recurrence, its code in the native kernel and one entry there.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CellError
from ..imports import import_object
from . import native, stepwise
from .builtin import GRU, LSTM, ElmanRNN, Memoryless
from .recurrence import Recurrence

#: The built-in recurrent cells, each as every scheme runs it.
RECURRENCES: dict[str, Recurrence] = {
    r.name: r
    for r in (
        Recurrence(
            name="rnn",
            module=ElmanRNN,
            gates=1,
            fused_op="rnn_tanh",
            fused_whole_sequence_on_cpu=False,
            cell_state=False,
            bias_hh_inside=False,
            stepwise=stepwise.elman,
            native_code=native.RNN_TANH,
            native_keeps_gates=False,
            native_kept_rows=0,
        ),
        Recurrence(
            name="lstm",
            module=LSTM,
            gates=4,
            fused_op="lstm",
            fused_whole_sequence_on_cpu=True,
            cell_state=True,
            bias_hh_inside=False,
            stepwise=stepwise.lstm,
            native_code=native.LSTM,
            native_keeps_gates=True,
            native_kept_rows=2,
            # gates i, f, g, o: the forget gate's bias log u, the input gate's -log u
            chrono_gates=((1, 1.0), (0, -1.0)),
            forget_gate=1,
        ),
        Recurrence(
            name="gru",
            module=GRU,
            gates=3,
            fused_op="gru",
            fused_whole_sequence_on_cpu=False,
            cell_state=False,
            bias_hh_inside=True,
            stepwise=stepwise.gru,
            native_code=native.GRU,
            native_keeps_gates=True,
            native_kept_rows=1,
            # gates r, z, n: h = (1 - z) n + z h_prev, so z keeps the old state: its bias +log u
            chrono_gates=((1, 1.0),),
        ),
    )
}

#: Built-in cells by the name a suite or ``--cell`` uses.
CELLS: dict[str, type[nn.Module]] = {
    **{name: r.module for name, r in RECURRENCES.items()},
    "memoryless": Memoryless,
}


def ignored_keys(cell: str) -> frozenset[str]:
    """The recipe keys that have no effect on ``cell`` (init and forget bias act on gated built-ins only)."""
    recurrence = RECURRENCES.get(cell)
    keys = ("model.init", "model.forget_bias")
    return frozenset(k for k in keys if recurrence is None or recurrence.ignores(k))


def recurrence_of(name: str) -> Recurrence | None:
    """The built-in recurrent cell ``name`` as the schemes run it (``None``: not one)."""
    return RECURRENCES.get(name)


def cell_class(name: str) -> type[nn.Module]:
    """The class for a built-in cell name or a ``package.module:Class`` path."""
    if name in CELLS:
        return CELLS[name]
    if ":" not in name:
        raise CellError(
            f"unknown cell {name!r}; built-in cells: {', '.join(CELLS)}; "
            "or name your own as 'package.module:Class'"
        )
    cls = import_object(name, what="cell", error=CellError)
    # Checked before anything is called: a suite names code that is imported and run.
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise CellError(
            f"cell {name!r} must be a class, a subclass of torch.nn.Module; it is a {type(cls).__name__}"
        )
    return cls


def build_cell(name: str, input_size: int, hidden_size: int) -> nn.Module:
    """One cell ``name`` built for ``input_size`` and ``hidden_size``, its protocol checked."""
    cls = cell_class(name)
    try:
        module = cls(input_size, hidden_size)
    except Exception as exc:  # a user's constructor may raise anything
        raise CellError(f"cell {name!r}: {name}({input_size}, {hidden_size}) raised {exc!r}") from exc
    if not isinstance(module, nn.Module):
        raise CellError(f"cell {name!r} must build a torch.nn.Module, got {type(module).__name__}")
    if not any(True for _ in module.parameters()):
        raise CellError(f"cell {name!r} has no parameters to train")
    return module


def check_cell(name: str, input_size: int, hidden_size: int) -> None:
    """Build cell ``name`` and run it on a tiny batch; raise :class:`CellError` if it breaks the protocol."""
    module = build_cell(name, input_size, hidden_size)
    x = torch.zeros(2, 3, input_size)
    try:
        with torch.no_grad():
            out = module(x)
    except Exception as exc:
        raise CellError(f"cell {name!r}: forward on a [2, 3, {input_size}] batch raised {exc!r}") from exc
    expected = (2, 3, hidden_size)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CellError(
            f"cell {name!r}: forward must return hidden states [batch, steps, hidden] = "
            f"{list(expected)}, got {got}"
        )
    # The engine runs a user's cell for every trial at once under torch.func.vmap.
    params, buffers = torch.func.stack_module_state([module, build_cell(name, input_size, hidden_size)])
    try:
        with torch.no_grad():
            torch.func.vmap(lambda p, b, x_: torch.func.functional_call(module, (p, b), (x_,)))(
                params, buffers, torch.zeros(2, 2, 3, input_size)
            )
    except RuntimeError as exc:
        hint = (
            " torch.nn.RNN, LSTM and GRU modules cannot be batched this way (PyTorch issue 105982);"
            " write the recurrence with tensor operations, as pytest_rnnmemory/cells/builtin.py does"
            if "Batching rule not implemented" in str(exc)
            else ""
        )
        raise CellError(
            f"cell {name!r}: the engine trains all trials at once with torch.func.vmap, which "
            f"failed: {str(exc).splitlines()[0]}.{hint}"
        ) from exc


__all__ = [
    "CELLS",
    "GRU",
    "LSTM",
    "RECURRENCES",
    "CellError",
    "ElmanRNN",
    "Recurrence",
    "build_cell",
    "cell_class",
    "check_cell",
    "recurrence_of",
]
