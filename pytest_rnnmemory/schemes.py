"""Schemes: how the cells of every trial of a case run in one call.

A scheme takes the trials' stacked weights (``name -> [n, ...]``) and a
minibatch for every trial and returns every trial's hidden states
``[n, batch, steps, hidden]``. Each lays the training data out once per epoch
the way its kernels want it, so that a minibatch is a contiguous slice.

* ``stepwise``: built-in cells, per-trial weights, hand-written backward
  (:mod:`.cells.stepwise`).
* ``fused``: built-in cells as one block-diagonal wide cell through torch's
  fused kernels (:mod:`.cells.fused`).
* ``native``: built-in cells through a C kernel compiled on first use, every
  step of a minibatch in one call (:mod:`.cells.native`); CPU only. It also
  offers ``training``: cell, readout, loss, gradient and optimizer step of many
  minibatches in one call, which the engine uses instead of autograd.
* ``vmap``: any protocol cell through ``torch.func``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .cells import cell_class
from .cells.native import NativeUnavailable, Training, native_available, unavailable_reason
from .config import TrainSection

SCHEMES = ("fused", "native", "stepwise", "vmap")

#: Above this many hidden units over all trials the block-diagonal weights of ``fused``
#: cost more than they save and ``auto`` picks ``stepwise``.
FUSED_MAX_WIDTH = 256

#: Up to this many hidden units per trial ``auto`` picks ``native`` on the CPU; above it the
#: per-step products are large enough for ``stepwise``'s batched matrix products to catch up.
NATIVE_MAX_HIDDEN = 16


def is_builtin(cell: str) -> bool:
    """True for the built-in cells, which every scheme can run."""
    return hasattr(cell_class(cell), "fused_op")


def choose_scheme(cell: str, hidden: int, trials: int, requested: str = "auto", device: str = "cpu") -> str:
    """The scheme that trains ``trials`` trials of ``cell`` fastest (or the one requested).

    Measured on a 2-core CPU, one thread (30 trials, batch 16, L = 50; CPU
    time of one forward and backward pass of the cells): ``native`` takes
    0.8 ms for ``lstm`` at hidden 1 where ``fused`` takes 3.1 ms and
    ``stepwise`` 7.5 ms (``gru`` 1.0 against 11.4 and 9.0 ms, ``rnn`` 0.6
    against 4.1 and 2.1 ms); at hidden 8 and 16 it is 1.5x (``rnn``) to 3x
    (``lstm``, ``gru``) faster than ``stepwise``, the faster of the other two
    there, and at hidden 32 the two are even. So on the CPU ``auto`` picks
    ``native`` up to :data:`NATIVE_MAX_HIDDEN` hidden units when its kernel
    builds. Without it, ``stepwise`` is 3-4x faster than torch's fused kernels
    for ``rnn`` and about 1.3x for ``gru``, whose fused CPU kernels run step by
    step under autograd; for ``lstm`` the fused kernel is oneDNN's and wins
    (1.8x at hidden 1, 1.2x at hidden 8) while trials x hidden stays small. On
    CUDA the fused kernels are cuDNN's, one launch for a whole sequence, and
    ``native`` is not offered.
    """
    builtin = is_builtin(cell)
    kind = torch.device(device).type
    if requested in ("fused", "native", "stepwise") and not builtin:
        raise ValueError(f"train.engine = {requested!r} works for the built-in cells only, not {cell!r}")
    if requested == "native":
        if kind != "cpu":
            raise ValueError(f"train.engine = 'native' runs on the CPU only, not on {kind}")
        if not native_available():
            raise NativeUnavailable(f"train.engine = 'native' is unavailable here: {unavailable_reason()}")
    if requested != "auto":
        return requested
    if not builtin:
        return "vmap"
    narrow = trials * hidden <= FUSED_MAX_WIDTH
    if kind == "cuda":
        return "fused" if narrow else "stepwise"
    if kind == "cpu" and hidden <= NATIVE_MAX_HIDDEN and native_available():
        return "native"
    return "fused" if cell == "lstm" and narrow else "stepwise"


class Fused:
    """Built-in cells as one wide cell; inputs laid out as ``[S, T, n*I]``."""

    name = "fused"

    def __init__(self, cell: nn.Module) -> None:
        self.op, self.gates = cell.fused_op, cell.gates

    def arrange(self, x: torch.Tensor) -> torch.Tensor:
        n, s, t, i = x.shape
        return x.permute(1, 2, 0, 3).reshape(s, t, n * i)

    def rows(self, arranged: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return arranged[start:stop]

    def hidden(self, params: dict[str, torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        from .cells.fused import fused_forward

        return fused_forward(params, batch, self.op, self.gates)


class Stepwise:
    """Built-in cells with per-trial weights and a hand-written backward; inputs ``[n, S, T, I]``."""

    name = "stepwise"

    def __init__(self, cell: nn.Module) -> None:
        self.op = cell.fused_op

    def arrange(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def rows(self, arranged: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return arranged[:, start:stop]

    def hidden(self, params: dict[str, torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        from .cells.stepwise import stepwise_forward

        return stepwise_forward(params, batch, self.op)


class Native(Stepwise):
    """Built-in cells through the C kernel of :mod:`.cells.native`; inputs ``[n, S, T, I]``, CPU only."""

    name = "native"

    def hidden(self, params: dict[str, torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        from .cells.native import native_forward

        return native_forward(params, batch, self.op)

    def training(
        self, offsets: dict[str, int], regression: bool, trials: int, width: int, train: TrainSection
    ) -> Training:
        """Training in C, as ``train`` says, of weights at these offsets in flat rows of ``width``."""
        return Training(
            self.op,
            offsets,
            regression,
            trials,
            width,
            optimizer=train.optimizer,
            lr=train.lr,
            clip=train.clip,
        )


class Vmap(Stepwise):
    """Any protocol cell under ``torch.func.vmap``; inputs laid out as ``[n, S, T, I]``."""

    name = "vmap"

    def __init__(self, cell: nn.Module, buffers: dict[str, torch.Tensor]) -> None:
        self.base = copy.deepcopy(cell).to("meta")
        self.buffers = buffers

    def hidden(self, params: dict[str, torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        def one(p, b, x):
            return torch.func.functional_call(self.base, (p, b), (x,))

        return torch.func.vmap(one)(params, self.buffers, batch)


def make_scheme(name: str, cell: nn.Module, buffers: dict[str, torch.Tensor]):
    """The scheme ``name`` for trials of ``cell`` (one of them, as built), with the trials' buffers."""
    if name == "fused":
        return Fused(cell)
    if name == "stepwise":
        return Stepwise(cell)
    if name == "native":
        return Native(cell)
    return Vmap(cell, buffers)
