"""The cell protocol, checked when a suite loads: a user's cell builds, runs, learns and batches.

Each check runs the cell on a tiny batch and, where it breaks the protocol,
raises a :class:`.CellError` of one line that says what it did and what was
expected: a constructor or forward that raises, a wrong shape or dtype, NaN
outputs at initialisation, no gradient reaching its parameters, or a cell that
``torch.func.vmap`` cannot batch (with the way around it).
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

import torch

from ..errors import CellError
from ..usercode import where
from . import build_cell
from .step import STATE_ATTRIBUTE, StepSequence, state_parts, zero_state

#: torch's warning that vmap runs an operator without a batching rule by looping over the batch.
UNBATCHED = re.compile(r"not yet implemented the batching rule for (\S+?)\.")


class SlowBatchingWarning(UserWarning):
    """A cell that vmap batches by looping over the trials: correct, but no faster than one at a time."""


#: The input of the tiny batch: 2 sequences of 3 steps, drawn from a fixed generator.
BATCH, STEPS = 2, 3
#: Initialisations tried before a cell is said to send no gradient to its parameters.
INITIALISATIONS = 3


def check_cell(
    name: str,
    input_size: int,
    hidden_size: int,
    cell_args: Mapping[str, Any] | None = None,
    own: Collection[str] = (),
) -> None:
    """Build cell ``name``, run it forward and backward on a tiny batch, and batch two of it with vmap
    (``own``: the keys of ``cell_args`` from the cell's own table).

    The cells are built under fixed seeds, apart from the caller's random state, so that a suite
    loads or is refused the same way every time."""
    with torch.random.fork_rng(devices=[]):
        # The CPU generator alone: cells are built on the CPU, and torch.manual_seed would also
        # reseed every accelerator's generator, which the fork does not restore.
        torch.default_generator.manual_seed(0)
        _check(name, input_size, hidden_size, cell_args, own)


def _check(
    name: str, input_size: int, hidden_size: int, cell_args: Mapping[str, Any] | None, own: Collection[str]
) -> None:
    module = build_cell(name, input_size, hidden_size, cell_args, own)
    step = isinstance(module, StepSequence)
    x = torch.randn(BATCH, STEPS, input_size, generator=torch.Generator().manual_seed(0))
    if step:
        _check_step(name, module.cell, type(module.cell), x[:, 0], hidden_size)
    out = _forward(name, module, x, hidden=hidden_size)
    expected = (BATCH, STEPS, hidden_size)
    what = "states [batch, hidden]" if step else "hidden states [batch, steps, hidden]"
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        shown = [BATCH, hidden_size] if step else list(expected)
        hint = ""
        if isinstance(out, tuple) and not step:
            hint = (
                "; a sequence cell returns its hidden states alone (torch.nn.RNN, LSTM and GRU return"
                " (output, state), and have no batching rule: name torch.nn:LSTMCell, RNNCell or"
                " GRUCell, which run as the built-in cells)"
            )
        raise CellError(f"cell {name!r}: forward must return {what} = {shown}, got {got}{hint}")
    if out.dtype != x.dtype:  # torch's default dtype, which the engine trains in
        raise CellError(
            f"cell {name!r}: forward must return states of its input's dtype, {x.dtype}, got {out.dtype}"
        )
    if not torch.isfinite(out).all():
        raise CellError(f"cell {name!r}: forward returns NaN or infinite states at initialisation")

    def rebuild() -> torch.nn.Module:
        return build_cell(name, input_size, hidden_size, cell_args)

    if not step and _runs_as_step(module, x, hidden_size):
        _check_memory(name, module, x, rebuild)
    _check_gradient(name, module, out, x, rebuild)
    _check_batching(name, input_size, hidden_size, cell_args, module)


def _forward(
    name: str, module: torch.nn.Module, x: torch.Tensor, seed: int = 0, hidden: int | None = None
) -> torch.Tensor:
    """The cell's states on the tiny batch ``x``; a forward that raises is a :class:`.CellError`
    that points to the user's line (``seed``: the one the cell was built under, where not 0; with
    ``hidden``, a cell that runs as a step cell is asked whether it is one)."""
    try:
        return module(x)
    except Exception as exc:
        built = f", built under seed {seed}," if seed else ""
        hint = ""
        if hidden is not None and not isinstance(module, StepSequence) and _runs_as_step(module, x, hidden):
            hint = f"; {_SEQUENCE_UNLESS_DECLARED}: is it a step cell?"
        raise CellError(
            f"cell {name!r}: forward on a {list(x.shape)} batch{built} raised {exc!r}{where(exc, name)}{hint}"
        ) from exc


def _check_gradient(
    name: str,
    module: torch.nn.Module,
    out: torch.Tensor,
    x: torch.Tensor,
    rebuild: Callable[[], torch.nn.Module],
) -> None:
    """A loss on the states sends a gradient to the cell's parameters, at one initialisation of
    :data:`INITIALISATIONS` at least (``rebuild`` builds the cell again under the seed set)."""
    # A unit dead at one initialisation (a ReLU whose every input is negative) takes no gradient
    # on a tiny batch; a cell that never reaches its parameters takes none at any.
    stuck: list[str] = []
    for seed, cell in _initialisations(module, rebuild):
        stuck = _unreached(name, cell, out if seed == 0 else _forward(name, cell, x, seed))
        if not stuck:
            return
    raise _no_gradient(name, stuck)


def _initialisations(
    module: torch.nn.Module, rebuild: Callable[[], torch.nn.Module]
) -> Iterator[tuple[int, torch.nn.Module]]:
    """The cell as built (seed 0), then built again under seeds 1 to :data:`INITIALISATIONS` - 1."""
    yield 0, module
    for seed in range(1, INITIALISATIONS):
        torch.default_generator.manual_seed(seed)
        yield seed, rebuild()


def _check_step(name: str, cell: torch.nn.Module, cls: type, x: torch.Tensor, hidden: int) -> None:
    """One step from zero states returns a state of the declared parts, each ``[batch, hidden]``."""
    parts = state_parts(cls)
    state = zero_state(x, BATCH, hidden, len(parts))
    try:
        new = cell(x, state)
    except Exception as exc:
        raise CellError(
            f"cell {name!r}: forward(input [{BATCH}, {x.shape[1]}], state) raised {exc!r}"
            f"{where(exc, name)}; a step cell takes one step's input and its state ({', '.join(parts)}) and "
            "returns the next state"
        ) from exc
    tensors = (new,) if len(parts) == 1 else new
    if (
        not isinstance(tensors, tuple)
        or len(tensors) != len(parts)
        or not all(isinstance(t, torch.Tensor) and tuple(t.shape) == (BATCH, hidden) for t in tensors)
    ):
        got = (
            tuple(new.shape)
            if isinstance(new, torch.Tensor)
            else [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in new]
            if isinstance(new, (tuple, list))
            else type(new).__name__
        )
        form = "a tensor" if len(parts) == 1 else f"a tuple of {len(parts)} tensors ({', '.join(parts)})"
        raise CellError(
            f"cell {name!r}: a step must return the next state, {form} of [batch, hidden] = "
            f"[{BATCH}, {hidden}], got {got}"
        )
    wrong = [t.dtype for t in tensors if t.dtype != x.dtype]
    if wrong:
        raise CellError(
            f"cell {name!r}: a step must return states of its input's dtype, {x.dtype}, got {wrong[0]}"
        )


_SEQUENCE_UNLESS_DECLARED = (
    f"a class is run as a sequence cell, forward(x), unless it declares {STATE_ATTRIBUTE} or subclasses "
    "torch.nn.RNNCellBase"
)


def _runs_as_step(module: torch.nn.Module, x: torch.Tensor, hidden: int) -> bool:
    """Whether ``module``, a class run as a sequence cell, also runs as a step cell: given one
    step's input and a zero state (a tensor, or an (h, c) pair), it returns a next state
    ``[batch, hidden]`` (or a tuple that starts with one)."""
    zero = x.new_zeros(x.shape[0], hidden)
    for state in (zero, (zero, zero)):
        try:
            with torch.no_grad():
                out = module(x[:, 0], state)
        except Exception:
            continue
        first = out[0] if isinstance(out, tuple) and out else out
        if isinstance(first, torch.Tensor) and tuple(first.shape) == (x.shape[0], hidden):
            return True
    return False


def _check_memory(
    name: str, module: torch.nn.Module, x: torch.Tensor, rebuild: Callable[[], torch.nn.Module]
) -> None:
    """A sequence cell that also runs as a step cell carries its first input to its last state, at
    one initialisation of :data:`INITIALISATIONS` at least: a step cell run as a sequence cell (no
    state declared) sees each step from a zero state, remembers nothing, and would fail every
    length."""
    for seed, cell in _initialisations(module, rebuild):
        first = x.clone().requires_grad_(True)
        out = _forward(name, cell, first, seed)
        if not out.requires_grad:
            return  # no gradient at all: the gradient check says so
        (grad,) = torch.autograd.grad(out[:, -1].sum(), first, allow_unused=True)
        if grad is not None and torch.any(grad[:, 0] != 0):
            return
    raise CellError(
        f"cell {name!r}: its last states do not depend on its first input at any of {INITIALISATIONS} "
        "initialisations, and it also runs as a step cell, forward(input, state) -> state: "
        f"{_SEQUENCE_UNLESS_DECLARED}, and run so, a step cell sees every step from a zero state and "
        f'remembers nothing. Declare its state (class attribute {STATE_ATTRIBUTE} = ("h",), or ("h", "c"))'
    )


def _unreached(name: str, module: torch.nn.Module, out: torch.Tensor) -> list[str]:
    """The parameters a loss on the states sends no gradient to, where it reaches none of them, by
    their names in the user's class."""
    # A step cell runs inside the engine's wrapper, whose names ("cell.gate.weight") are not the user's.
    module = module.cell if isinstance(module, StepSequence) else module
    everything = [n for n, _ in module.named_parameters()]
    if not out.requires_grad:
        return everything
    try:
        out.square().sum().backward()
    except Exception as exc:
        raise CellError(
            f"cell {name!r}: backward through a [2, 3] batch raised {exc!r}{where(exc, name)}"
        ) from exc
    stuck = [n for n, p in module.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    return stuck if len(stuck) == len(everything) else []


def _no_gradient(name: str, names: list[str]) -> CellError:
    return CellError(
        f"cell {name!r}: no gradient reaches its parameters ({', '.join(names)}) at any of "
        f"{INITIALISATIONS} initialisations: are the states computed under torch.no_grad, detached, "
        "or not from the parameters?"
    )


def _check_batching(
    name: str, input_size: int, hidden: int, cell_args: Mapping[str, Any] | None, module: torch.nn.Module
) -> None:
    """Two trials of the cell run at once under ``torch.func.vmap``, as the engine runs a user's cell."""
    other = build_cell(name, input_size, hidden, cell_args)
    params, buffers = torch.func.stack_module_state([module, other])
    try:
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.func.vmap(
                lambda p, b, x_: torch.func.functional_call(module, (p, b), (x_,)), randomness="different"
            )(params, buffers, torch.zeros(2, BATCH, STEPS, input_size))
    except RuntimeError as exc:
        hint = ""
        if "Batching rule not implemented" in str(exc):
            hint = (
                " torch.nn.RNN, LSTM and GRU modules, and LSTMCell, have no batching rule (PyTorch issue"
                " 105982): name torch.nn:LSTMCell (or RNNCell, GRUCell) itself, which runs as the built-in"
                " cell, or write the equations with tensor operations, as pytest_rnnmemory/cells/builtin.py"
                " does"
            )
        raise CellError(
            f"cell {name!r}: the engine trains all trials at once with torch.func.vmap, which "
            f"failed: {str(exc).splitlines()[0]}{where(exc, name)}.{hint}"
        ) from exc
    unbatched = sorted({m[1] for w in caught if (m := UNBATCHED.search(str(w.message)))})
    if unbatched:
        _warn_at_class(
            SlowBatchingWarning(
                f"cell {name!r} calls {', '.join(unbatched)}, which torch.func.vmap has no batching rule "
                "for: the engine runs it for one trial after another, at about the speed of a per-trial "
                "loop. torch.nn:RNNCell, GRUCell and LSTMCell named as such run as the built-in cells; a "
                "subclass of them does not. Write the step with tensor operations, as "
                "pytest_rnnmemory/cells/builtin.py does, to train the trials at once"
            ),
            module.cell if isinstance(module, StepSequence) else module,
        )


def _warn_at_class(warning: Warning, module: torch.nn.Module) -> None:
    """``warning``, shown at the line where the user's class of ``module`` is defined: what it
    warns of is the class's code, not the line of this package that found it."""
    cls = type(module)
    try:
        filename = inspect.getsourcefile(cls)
        line = inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):  # a class defined where its source cannot be read
        filename = None
    if filename is None:
        warnings.warn(warning, stacklevel=3)
        return
    warnings.warn_explicit(warning, type(warning), filename, line, module=cls.__module__)
