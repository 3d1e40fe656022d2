"""Schemes: how the cells of every trial of a case run in one call, and which one runs a case.

A scheme takes the trials' stacked weights (``name -> [n, ...]``) and a
minibatch for every trial and returns every trial's hidden states
``[n, batch, steps, hidden]``. Each lays the training data out once per epoch
the way its kernels want it, so that a minibatch is a contiguous slice.

:data:`SCHEMES` is the one registry: each entry says what it is, which cells
and devices it serves, and whether it can run here. The suite check, the
``auto`` choice and the README's list of schemes all read it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from .cells import RECURRENCES, cell_class, recurrence_of
from .cells.compiled import CompiledCell, Signature, compile_cell, configuration
from .cells.native import Training, native_available, unavailable_reason
from .cells.recurrence import Recurrence
from .cells.scan import fast_scans
from .cells.step import StepSequence, is_step_cell
from .errors import CellError, SchemeError, did_you_mean
from .schema import TrainSection


class Scheme(Protocol):
    """How one case's trials run: the data's layout and the hidden states of a minibatch."""

    def arrange(self, x: torch.Tensor) -> torch.Tensor:
        """The trials' sequences ``x [n, S, T, I]`` laid out for :meth:`rows` and :meth:`hidden`."""
        ...

    def rows(self, arranged: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Sequences ``start:stop`` of every trial from an arranged tensor."""
        ...

    def hidden(self, params: dict[str, torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        """Every trial's hidden states ``[n, b, T, H]`` for an arranged minibatch."""
        ...


class TrialMajor:
    """Inputs laid out as ``[n, S, T, I]``, as the engine stacks them."""

    def arrange(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def rows(self, arranged: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return arranged[:, start:stop]


class Fused:
    """Built-in cells as one wide cell through torch's fused kernels; inputs laid out as ``[S, T, n*I]``."""

    def __init__(self, cell: Recurrence) -> None:
        self.cell = cell

    def arrange(self, x: torch.Tensor) -> torch.Tensor:
        n, s, t, i = x.shape
        return x.permute(1, 2, 0, 3).reshape(s, t, n * i)

    def rows(self, arranged: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return arranged[start:stop]

    def hidden(self, params: dict[str, torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        from .cells.fused import fused_forward

        return fused_forward(params, batch, self.cell)


class Stepwise(TrialMajor):
    """Built-in cells with per-trial weights and a hand-written backward pass."""

    def __init__(self, cell: Recurrence) -> None:
        self.cell = cell

    def hidden(self, params: dict[str, torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        from .cells.stepwise import stepwise_forward

        return stepwise_forward(params, batch, self.cell)


class Native(TrialMajor):
    """Built-in cells through the C kernel of :mod:`.cells.native`; CPU only.

    Besides the hidden states (for evaluation and the gradient diagnostic) it
    trains whole epochs itself: :meth:`training`.
    """

    def __init__(self, cell: Recurrence) -> None:
        self.cell = cell

    def hidden(self, params: dict[str, torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        from .cells.native import native_forward

        return native_forward(params, batch, self.cell)

    def training(
        self, offsets: dict[str, int], regression: bool, trials: int, width: int, train: TrainSection
    ) -> Training:
        """Training in C, as ``train`` says, of weights at these offsets in flat rows of ``width``."""
        return Training(
            self.cell,
            offsets,
            regression,
            trials,
            width,
            optimizer=train.optimizer,
            lr=train.lr,
            clip=train.clip,
        )


#: torch's warning for an operator vmap runs by looping over the batch (torch's own wording).
_UNBATCHED_WARNING = "There is a performance drop because we have not yet implemented the batching rule"


@contextlib.contextmanager
def without_unbatched_warning() -> Iterator[None]:
    """A case's training without torch's warning that vmap loops over a cell's trials: the cell's
    load check says it once, as the plugin's own SlowBatchingWarning. Set once a case, not once a
    call: every change of the warning filters resets which warnings were already shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_UNBATCHED_WARNING, category=UserWarning)
        yield


class Vmap(TrialMajor):
    """Any protocol cell under ``torch.func.vmap``."""

    def __init__(self, module: nn.Module, buffers: dict[str, torch.Tensor]) -> None:
        self.base = copy.deepcopy(module).to("meta")
        self.buffers = buffers
        # A user's sequence cell scans in log space in the native kernel. The package's own
        # modules (the built-in cells, the time loop around a step cell) are left without: the
        # context would cost every one of their many small calls a Python hop.
        self.scans = not type(module).__module__.startswith(f"{__package__}.")

    def keep(self, rows: torch.Tensor) -> None:
        """Keep the buffers of the trials ``rows`` selects."""
        self.buffers = {name: value[rows] for name, value in self.buffers.items()}

    def hidden(self, params: dict[str, torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        """The cell of every trial at once: in training mode where it trains (a gradient is being
        taken for its weights), else in eval mode; each trial draws its own random numbers
        (dropout's masks)."""
        training = trains(params)
        if self.base.training != training:
            self.base.train(training)

        def one(p, b, x):
            return torch.func.functional_call(self.base, (p, b), (x,))

        with fast_scans() if self.scans else contextlib.nullcontext():
            return torch.func.vmap(one, randomness="different")(params, self.buffers, batch)


def trains(params: dict[str, torch.Tensor]) -> bool:
    """Whether a call of the cell trains it: its weights take a gradient."""
    return torch.is_grad_enabled() and any(p.requires_grad for p in params.values())


class Compiled(Vmap):
    """Any protocol cell, its forward and backward compiled by Inductor (:mod:`.cells.compiled`).

    A step cell compiles its one time step (which does not depend on the length, so one
    compiled step serves every case of the cell built alike, with the same trials and
    minibatch), a sequence cell its whole forward. Code is compiled for the widest minibatch
    a case trains on, for the trials the case starts with, and kept for the process; once
    trials stop (``train.stop = "learned"``), the rest run through that code in the places
    of the stopped ones, whose results are dropped. Other shapes (a last, partial
    minibatch), evaluation (in eval mode, where compiled code was traced in training mode)
    and a gradient with respect to the input run as under ``vmap``. Where compiling or
    compiled code fails, the cell runs as under ``vmap``, after a one-line note; so does a
    cell that draws random numbers (dropout), whose trace ``vmap`` refuses: the backward
    pass of a compiled step recomputes the step, which would draw them anew.
    """

    def __init__(self, module: nn.Module, buffers: dict[str, torch.Tensor]) -> None:
        super().__init__(module, buffers)
        self.step = isinstance(module, StepSequence)
        cell = module.cell if self.step else module
        cls = type(cell)
        if cls.__module__ == "torch.nn.utils.parametrize":  # a parametrization's subclass of the user's
            cls = cls.__bases__[0]
        self.key = (cls.__module__, cls.__qualname__, self.step)
        self.widest = 0
        self.configuration = configuration(self.base)
        #: Each kept trial's place among the trials the case started with (set by the first call).
        self.places: torch.Tensor | None = None
        self.started = 0
        #: Code for a cell that :func:`~.cells.compiled.configuration` cannot describe: this case's.
        self.own: dict[tuple, CompiledCell] = {}

    @property
    def fell_back(self) -> bool:
        """Whether this cell runs under vmap because compiling it or its compiled code failed."""
        return self.key in _FAILED

    def keep(self, rows: torch.Tensor) -> None:
        super().keep(rows)
        if self.places is not None:
            self.places = self.places[rows.cpu()]

    def hidden(self, params: dict[str, torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        # Compiled code is traced in training mode: evaluation, in eval mode, runs as under vmap.
        if self.key in _FAILED or batch.requires_grad or not trains(params):
            return super().hidden(params, batch)
        if self.places is None:
            self.started = batch.shape[0]
            self.places = torch.arange(self.started)
        try:
            with _compiling():
                hidden = self._hidden(params, batch)
        except Exception as exc:
            _FAILED.add(self.key)
            LOG.warning(
                "cell %s did not compile or run compiled (%s); it runs under torch.func.vmap instead",
                ":".join(self.key[:2]),
                _fallback_reason(exc, self.step),
            )
            hidden = None
        return super().hidden(params, batch) if hidden is None else hidden

    def _hidden(self, params: dict[str, torch.Tensor], batch: torch.Tensor) -> torch.Tensor | None:
        """The hidden states through compiled code, or ``None`` where there is none for this call."""
        started, places = self.started, self.places.to(batch.device)
        filled = len(places) < started
        if filled:
            # Every place the case started with, each stopped trial's filled by a kept one: the
            # code compiled for the starting trials runs, and the stopped places' results, which
            # no loss reaches, are dropped.
            fill = torch.zeros(started, dtype=torch.long, device=batch.device)
            fill[places] = torch.arange(len(places), device=batch.device)
            params = {k: v[fill] for k, v in params.items()}
            batch = batch[fill]
        buffers = {k: v[fill] for k, v in self.buffers.items()} if filled else self.buffers
        compiled = self._compiled(params, buffers, batch)
        if compiled is None:
            return None
        hidden = compiled.hidden(self._own(params), self._own(buffers), batch)
        if not filled:
            return hidden
        # A cell that updates a buffer as it runs (BatchNorm's running statistics) updated these.
        for name, value in buffers.items():
            self.buffers[name].copy_(value[places])
        return hidden[places]

    def _own(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Tensors by the cell's own names: the engine's wrapper of a step cell prefixes them."""
        strip = len("cell.") if self.step else 0
        return {k[strip:]: v for k, v in tensors.items()}

    def _compiled(
        self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], batch: torch.Tensor
    ) -> CompiledCell | None:
        """The compiled cell for this call's shapes, compiling it for a training minibatch."""
        if self.configuration is None:  # a cell that cannot be compared: code for this case alone
            cache, key = self.own, (tuple(batch.shape),)
        else:
            cache = _COMPILED
            key = Signature.of(self.base, self.configuration, {**params, **buffers}, batch, self.step)
        found = cache.get(key)
        if found is None and batch.shape[1] >= self.widest:
            self.base.train()  # traced as it trains
            name = ":".join(self.key[:2])
            what = "one time step" if self.step else f"its forward and backward at length {batch.shape[2]}"
            LOG.info("compiling %s, %s, with Inductor (seconds; tens for a process's first)", name, what)
            started = time.perf_counter()
            try:
                found = cache[key] = compile_cell(
                    self.base.cell if self.step else self.base,
                    self.base.parts if self.step else 0,
                    self.base.hidden_size if self.step else 0,
                    self._own(params),
                    self._own(buffers),
                    batch,
                )
            finally:
                spent = time.perf_counter() - started
                _COMPILING_S[0] += spent
            LOG.info("compiled %s in %.1f s", name, spent)
        self.widest = max(self.widest, batch.shape[1])
        return found


def _fallback_reason(exc: Exception, step: bool) -> str:
    """Why a cell did not compile, in the cell's terms where torch's message is one we know."""
    text = str(exc).strip()
    redone = "a compiled step's backward pass would " if step else "compiled code would not "
    if "randomness error mode" in text:
        again = "draw again" if step else "draw as vmap does, each trial its own"
        return f"it draws random numbers (dropout, say), which {redone}{again}"
    if "mutate a captured Tensor" in text:
        return (
            "it updates a buffer as it runs (BatchNorm's running statistics, say), which "
            f"{redone}{'update again' if step else 'update as vmap does'}"
        )
    return text.splitlines()[0][:200] if text else type(exc).__name__


#: Compiled cells by :class:`~.cells.compiled.Signature`, for the process; classes whose
#: compiling failed.
_COMPILED: dict[Signature, CompiledCell] = {}
_FAILED: set[tuple] = set()
#: Seconds this process has spent compiling users' cells (successful or not).
_COMPILING_S = [0.0]


def compiling_seconds() -> float:
    """Seconds this process has spent compiling users' cells: time a case's pace leaves out."""
    return _COMPILING_S[0]


@contextlib.contextmanager
def _compiling():
    """Compiling, what torch says for itself kept out of the user's run: its structured trace log
    (empty DEBUG lines, for its trace files), where a failing case's captured log held hundreds of
    them, left on where the user asked for a trace (``TORCH_TRACE``); and the deprecation warnings
    torch's own modules raise as Inductor imports them (fourteen, filed under the user's suite)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.")
        trace = logging.getLogger("torch.__trace")
        if os.environ.get("TORCH_TRACE") or trace.disabled:
            yield
            return
        trace.disabled = True
        try:
            yield
        finally:
            trace.disabled = False


def scheme_ran(scheme: Scheme, chosen: str) -> str:
    """The scheme a case ran: the one chosen, or ``vmap`` where a compiled cell fell back to it."""
    return "vmap" if isinstance(scheme, Compiled) and scheme.fell_back else chosen


def failed_to_compile() -> frozenset[str]:
    """The cells (``module:Class``, as a suite names them) this process tried to compile and runs under
    ``vmap`` instead."""
    return frozenset(":".join(key[:2]) for key in _FAILED)


def compiler_missing() -> str | None:
    """Why ``torch.compile`` cannot build code here (``None``: a C++ compiler is there for Inductor)."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return None
    return "no C++ compiler for torch.compile's Inductor backend"


#: ``RNNMEMORY_COMPILE``: ``off`` never compiles a user's cell unless ``train.engine = "compiled"``
#: asks; ``on`` always does under ``auto``; unset, ``auto`` compiles where it pays
#: (:data:`COMPILE_MIN_CALLS`).
COMPILE_SWITCH = "RNNMEMORY_COMPILE"

#: Cell calls (epochs x minibatches x steps) from which compiling a step cell pays under ``auto``.
#: Measured (``benchmarks/test_user_cell_speed.py``, 30 trials, minibatch 16, a 2-core CPU): the
#: first compile of a process into an empty cache costs 11 to 14 s (Inductor's start included;
#: a later cell's 2 to 7 s), and a compiled call saves 0.09 ms (the IndRNN) to 0.35 ms (the
#: step-written GRU) against ``vmap``: a cell as cheap as the IndRNN, compiled first in its
#: process, would break even at 110,000 to 155,000 calls.
COMPILE_MIN_CALLS = 160_000


#: ``build(recurrence, module, buffers)``: the scheme for trials of one cell (``recurrence`` is
#: ``None`` for a cell that is not a built-in recurrence; ``module`` is one trial's cell as built).
Build = Callable[["Recurrence | None", nn.Module, dict[str, torch.Tensor]], Scheme]


def _available() -> str | None:
    return None


def _dtype_problem() -> str | None:
    """Why the native kernel cannot read the trials' weights and data, which take torch's default
    dtype (``None``: it can)."""
    dtype = torch.get_default_dtype()
    return None if dtype == torch.float32 else f"it runs float32, and torch's default dtype here is {dtype}"


def _native_unavailable() -> str | None:
    """Why the native scheme cannot run here (``None``: it can)."""
    if native_available():
        return _dtype_problem()
    return unavailable_reason() or "its kernel is unavailable here"


@dataclass(frozen=True)
class SchemeEntry:
    """One scheme: what it is, what it serves, and how to build it."""

    name: str
    #: One sentence for the README and for errors.
    summary: str
    #: Whether it runs only the built-in recurrent cells (those whose :class:`.Recurrence` lists it).
    builtin_only: bool
    #: The device types it runs on.
    devices: tuple[str, ...]
    build: Build
    #: Why it cannot run on this machine (``None``: it can).
    unavailable: Callable[[], str | None] = _available
    #: Whether it trains whole epochs itself (loss, gradient and optimizer step) instead of autograd.
    trains: bool = False

    def serves(self, cell: str) -> bool:
        """Whether this scheme runs ``cell`` at all (whatever the device)."""
        if not self.builtin_only:
            return True
        recurrence = recurrence_of(cell)
        return recurrence is not None and self.name in recurrence.schemes

    def cells(self) -> list[str]:
        """The built-in cells this built-in-only scheme runs."""
        return [name for name, recurrence in RECURRENCES.items() if self.name in recurrence.schemes]

    def refusal(self, cell: str, device: str) -> str | None:
        """Why this scheme cannot run ``cell`` on a ``device`` (a device type); ``None`` if it can."""
        if not self.serves(cell):
            built_in = " or ".join(repr(name) for name, entry in SCHEMES.items() if not entry.builtin_only)
            return (
                f"train.engine = {self.name!r} runs the built-in cells {', '.join(self.cells())} only, "
                f"not {cell!r}; use 'auto' or {built_in}"
            )
        if device not in self.devices:
            return f"train.engine = {self.name!r} runs on {' and '.join(self.devices)} only, not on {device}"
        reason = self.unavailable()
        if reason is not None:
            return f"train.engine = {self.name!r} is unavailable here: {reason}"
        return None


LOG = logging.getLogger("pytest_rnnmemory")

#: Every scheme, in the order the README lists them.
SCHEMES: dict[str, SchemeEntry] = {
    entry.name: entry
    for entry in (
        SchemeEntry(
            name="native",
            summary="built-in cells through a small C kernel that trains whole epochs, optimizer "
            "included, compiled on first use; CPU only",
            builtin_only=True,
            devices=("cpu",),
            build=lambda recurrence, module, buffers: Native(recurrence),
            unavailable=_native_unavailable,
            trains=True,
        ),
        SchemeEntry(
            name="stepwise",
            summary="built-in cells with per-trial weights and a hand-written backward pass",
            builtin_only=True,
            devices=("cpu", "cuda"),
            build=lambda recurrence, module, buffers: Stepwise(recurrence),
        ),
        SchemeEntry(
            name="fused",
            summary="built-in cells as one block-diagonal wide cell through torch's fused kernels "
            "(oneDNN on the CPU, cuDNN on CUDA)",
            builtin_only=True,
            devices=("cpu", "cuda"),
            build=lambda recurrence, module, buffers: Fused(recurrence),
        ),
        SchemeEntry(
            name="vmap",
            summary="any cell that follows the cell protocol, through torch.func.vmap",
            builtin_only=False,
            devices=("cpu", "cuda"),
            build=lambda recurrence, module, buffers: Vmap(module, buffers),
        ),
        SchemeEntry(
            name="compiled",
            summary="any cell that follows the cell protocol, its forward and backward under "
            "torch.func.vmap traced once and compiled by Inductor (one time step of a step cell)",
            builtin_only=False,
            devices=("cpu", "cuda"),
            build=lambda recurrence, module, buffers: Compiled(module, buffers),
            unavailable=compiler_missing,
        ),
    )
}

#: What ``train.engine`` may name.
ENGINE_CHOICES = ("auto", *SCHEMES)

#: Above this many hidden units over all trials the block-diagonal weights of ``fused``
#: cost more than they save and ``auto`` picks ``stepwise``.
FUSED_MAX_WIDTH = 256

#: Up to this many hidden units per trial ``auto`` picks ``native`` on the CPU; above it the
#: per-step products are large enough for ``stepwise``'s batched matrix products to catch up.
NATIVE_MAX_HIDDEN = 16


def unknown_scheme(name: str) -> str:
    """The message for a ``train.engine`` that names no scheme."""
    return f"unknown scheme{did_you_mean(name, ENGINE_CHOICES)}; allowed: {', '.join(ENGINE_CHOICES)}"


def choose_scheme(
    cell: str, hidden: int, trials: int, requested: str = "auto", device: str = "cpu", calls: int = 0
) -> str:
    """The scheme that trains ``trials`` trials of ``cell`` fastest (or the one requested).

    A requested scheme that cannot run the case raises :class:`.SchemeError`
    with the reason. ``auto`` follows the measurements the README's *The
    engine* section gives: on the CPU, ``native`` for the built-in cells up to
    :data:`NATIVE_MAX_HIDDEN` hidden units when its kernel builds (and torch's default
    dtype is float32, which it reads); without it,
    ``fused`` where torch's CPU kernel runs whole sequences (oneDNN's LSTM) and
    the case is narrow, ``stepwise`` otherwise; on CUDA,
    ``fused`` (cuDNN) while trials x hidden stays narrow. Any other cell runs under
    ``vmap``; a step cell ``compiled`` where its ``calls`` (epochs x minibatches x
    steps) pay for compiling (:data:`COMPILE_SWITCH` decides otherwise). A sequence
    cell is not compiled under ``auto``: its graph is compiled again for every length,
    and grows with the length where the cell loops over time in Python.
    """
    kind = torch.device(device).type
    if requested != "auto":
        if requested not in SCHEMES:
            raise SchemeError(f"train.engine = {requested!r}: {unknown_scheme(requested)}")
        refusal = SCHEMES[requested].refusal(cell, kind)
        if refusal is not None:
            raise SchemeError(refusal)
        return requested
    recurrence = recurrence_of(cell)
    if recurrence is None:
        switch = os.environ.get(COMPILE_SWITCH, "").lower()
        pays = switch == "on" or (switch != "off" and calls >= COMPILE_MIN_CALLS and _steps(cell))
        return "compiled" if pays and SCHEMES["compiled"].refusal(cell, kind) is None else "vmap"
    narrow = trials * hidden <= FUSED_MAX_WIDTH
    fused = "fused" in recurrence.schemes
    if kind == "cuda":
        chosen = "fused" if narrow and fused else "stepwise"
    elif kind == "cpu" and hidden <= NATIVE_MAX_HIDDEN and _native_unavailable() is None:
        chosen = "native"
    else:
        chosen = "fused" if fused and recurrence.fused_whole_sequence_on_cpu and narrow else "stepwise"
    return chosen if chosen in recurrence.schemes else "vmap"


def _steps(cell: str) -> bool:
    """Whether a user's cell is a step cell (one that does not import is left to the suite's check)."""
    try:
        return is_step_cell(cell_class(cell))
    except CellError:
        return False


def make_scheme(name: str, cell: str, module: nn.Module, buffers: dict[str, torch.Tensor]) -> Scheme:
    """The scheme ``name`` for trials of ``cell`` (``module``: one of them, as built), with their buffers."""
    return SCHEMES[name].build(recurrence_of(cell), module, buffers)
