"""The cell registry and the cell protocol.

A cell is a class called as ``Cell(input_size, hidden_size)`` that returns a
``torch.nn.Module`` whose ``forward(x)`` maps a batch of sequences ``x`` of
shape ``[batch, steps, input_size]`` to the hidden states at every step,
``[batch, steps, hidden_size]``, starting from a state of its own choosing
(zeros for the built-ins). The module's parameters are its trainable
weights; its initialisation is the one it does in ``__init__``. The readout
and the loss are the engine's, not the cell's.

Built-in cells are named ``rnn``, ``lstm`` and ``gru``, ``lstm1997`` for
Hochreiter & Schmidhuber's LSTM without a forget gate, and ``memoryless`` for
the control that ignores its past; a user's own cell is named by its import
path, ``package.module:Class``. Each built-in recurrent cell has one
:class:`.Recurrence` in :data:`RECURRENCES`: adding a built-in cell is its
module, its stepwise recurrence, its code in the native kernel and one entry there.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Mapping
from typing import Any

from torch import nn

from ..errors import CellError, did_you_mean
from ..imports import import_object
from ..usercode import where
from . import native, stepwise
from .builtin import GRU, LSTM, LSTM1997, ElmanRNN, Memoryless
from .recurrence import Recurrence
from .step import StepSequence, is_step_cell, state_declaration_error, state_parts

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
        Recurrence(
            name="lstm1997",
            module=LSTM1997,
            gates=3,
            fused_op=None,
            fused_whole_sequence_on_cpu=False,
            cell_state=True,
            bias_hh_inside=False,
            stepwise=stepwise.lstm1997,
            native_code=native.LSTM1997,
            native_keeps_gates=True,
            native_kept_rows=2,
            # torch has no fused op for it; it keeps the paper's initialisation and has no forget gate
            schemes=frozenset({"native", "stepwise"}),
        ),
        Recurrence(
            name="memoryless",
            module=Memoryless,
            gates=1,
            fused_op=None,
            fused_whole_sequence_on_cpu=False,
            cell_state=False,
            bias_hh_inside=False,
            stepwise=stepwise.elman,
            native_code=native.MEMORYLESS,
            native_keeps_gates=False,
            native_kept_rows=0,
            # the fused and stepwise recurrences would train its zero recurrent weights
            schemes=frozenset({"native"}),
        ),
    )
}

#: Built-in cells by the name a suite or ``--cell`` uses.
CELLS: dict[str, type[nn.Module]] = {name: r.module for name, r in RECURRENCES.items()}


def ignored_keys(cell: str) -> frozenset[str]:
    """The recipe keys that have no effect on ``cell`` (init and forget bias act on gated built-ins,
    and on torch's cells, which run as them, only)."""
    recurrence = recurrence_of(cell)
    keys = ("model.init", "model.forget_bias")
    return frozenset(k for k in keys if recurrence is None or recurrence.ignores(k))


#: torch's own cells compute a built-in cell's equations, with the same weights, names and
#: initialisation: they run as that built-in cell, in every scheme and at its speed.
TORCH_CELLS: dict[str, str] = {
    "torch.nn:RNNCell": "rnn",
    "torch.nn:GRUCell": "gru",
    "torch.nn:LSTMCell": "lstm",
}


def recurrence_of(name: str) -> Recurrence | None:
    """The built-in recurrent cell ``name`` as the schemes run it (``None``: not one)."""
    return RECURRENCES.get(TORCH_CELLS.get(name, name))


def is_user_cell(name: str) -> bool:
    """Whether ``name`` is a user's own cell (code the suite imports), not one this package knows."""
    return name not in CELLS and name not in TORCH_CELLS


def cell_class(name: str) -> type[nn.Module]:
    """The class for a built-in cell name or a ``package.module:Class`` path."""
    if name in CELLS:
        return CELLS[name]
    if name in TORCH_CELLS:
        return RECURRENCES[TORCH_CELLS[name]].module
    if ":" not in name:
        raise CellError(
            f"unknown cell {name!r}{did_you_mean(name, CELLS)}; built-in cells: {', '.join(CELLS)}; "
            "or name your own as 'package.module:Class'"
        )
    cls = import_object(name, what="cell", error=CellError)
    # Checked before anything is called: a suite names code that is imported and run.
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        what = "a class that does not subclass it" if isinstance(cls, type) else f"a {type(cls).__name__}"
        raise CellError(f"cell {name!r} must be a class, a subclass of torch.nn.Module; it is {what}")
    problem = state_declaration_error(cls)
    if problem is not None:
        raise CellError(f"cell {name!r}: {problem}")
    return cls


def _check_constructor(
    name: str,
    cls: type,
    input_size: int,
    hidden_size: int,
    cell_args: dict[str, Any],
    shown: str,
    own: Collection[str] = (),
) -> None:
    """A user's constructor takes what the engine passes, ``(input_size, hidden_size,
    **model.cell_args)``; where it does not, the error names the argument, the constructor's own
    parameters and, for a misspelt ``model.cell_args`` key, the one it likely meant."""
    try:
        signature = inspect.signature(cls).replace(return_annotation=inspect.Signature.empty)
    except (TypeError, ValueError):  # no signature to read (a C extension's): the call will tell
        return
    try:
        bound = signature.bind(input_size, hidden_size, **cell_args)
    except TypeError as exc:
        taken = [p for p in signature.parameters if p not in ("input_size", "hidden_size")]
        unknown = [k for k in cell_args if k not in signature.parameters]
        hint = "".join(
            f'; model.cell_args."{name}".{k}{did_you_mean(k, taken) or " is none of its parameters"}'
            if k in own
            else f"; model.cell_args.{k}{_unknown_argument(k, taken)}"
            for k in unknown
        )
        raise CellError(
            f"cell {name!r}: the engine builds it as {name}(input_size, hidden_size"
            f"{', **model.cell_args' if cell_args else ''}) = {name}({shown}), which its constructor "
            f"{cls.__qualname__}{signature} does not take: {exc}{hint}"
        ) from None
    # Named the other way round, the sizes would be swapped silently, and go unnoticed where equal.
    if list(bound.arguments)[:2] == ["hidden_size", "input_size"]:
        raise CellError(
            f"cell {name!r}: its constructor {cls.__qualname__}{signature} takes hidden_size first, where "
            "the engine passes (input_size, hidden_size) by position, as torch's cells take them: put "
            "input_size first"
        )


def _unknown_argument(key: str, taken: list[str]) -> str:
    """What a ``model.cell_args`` key a constructor does not take likely is: a misspelling of one of
    its parameters, else an argument of another of the suite's cells, given to every one."""
    close = did_you_mean(key, taken)
    if close:
        return close
    return (
        " is none of its parameters: a key of model.cell_args is passed to every one of your cells, a "
        f'cell\'s own go under its name (cell_args = {{ "package.module:Class" = {{ {key} = ... }} }})'
    )


def build_cell(
    name: str,
    input_size: int,
    hidden_size: int,
    cell_args: Mapping[str, Any] | None = None,
    own: Collection[str] = (),
) -> nn.Module:
    """One cell ``name`` built for ``input_size`` and ``hidden_size`` (and a user's ``cell_args``,
    ``own``: the keys of them from the cell's own table, which its errors name under the cell's name).

    A step cell comes back wrapped in a :class:`.StepSequence`, so that every
    cell maps whole sequences to hidden states.
    """
    cls = cell_class(name)
    cell_args = dict(cell_args or {})
    if cell_args and not is_user_cell(name):
        raise CellError(f"cell {name!r} is built in and takes no model.cell_args")
    shown = ", ".join([str(input_size), str(hidden_size), *(f"{k}={v!r}" for k, v in cell_args.items())])
    _check_constructor(name, cls, input_size, hidden_size, cell_args, shown, own)
    try:
        module = cls(input_size, hidden_size, **cell_args)
    except Exception as exc:  # a user's constructor may raise anything
        raise CellError(f"cell {name!r}: {name}({shown}) raised {exc!r}{where(exc, name)}") from exc
    if not isinstance(module, nn.Module):
        raise CellError(f"cell {name!r} must build a torch.nn.Module, got {type(module).__name__}")
    if not any(True for _ in module.parameters()):
        raise CellError(f"cell {name!r} has no parameters to train")
    if is_step_cell(cls):
        return StepSequence(module, hidden_size, state_parts(cls))
    return module


__all__ = [
    "CELLS",
    "GRU",
    "LSTM",
    "LSTM1997",
    "RECURRENCES",
    "CellError",
    "ElmanRNN",
    "Recurrence",
    "build_cell",
    "cell_class",
    "recurrence_of",
]
