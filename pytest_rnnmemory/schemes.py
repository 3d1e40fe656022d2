"""Schemes: how the cells of every trial of a case run in one call.

A scheme takes the trials' stacked weights (``name -> [n, ...]``) and a
minibatch for every trial and returns every trial's hidden states
``[n, batch, steps, hidden]``. Each lays the training data out once per epoch
the way its kernels want it, so that a minibatch is a contiguous slice.

* ``stepwise``: built-in cells, per-trial weights, hand-written backward
  (:mod:`.cells.stepwise`).
* ``fused``: built-in cells as one block-diagonal wide cell through torch's
  fused kernels (:mod:`.cells.fused`).
* ``vmap``: any protocol cell through ``torch.func``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .cells import cell_class

SCHEMES = ("fused", "stepwise", "vmap")

#: Above this many hidden units over all trials the block-diagonal weights of ``fused``
#: cost more than they save and ``auto`` picks ``stepwise``.
FUSED_MAX_WIDTH = 256


def is_builtin(cell: str) -> bool:
    """True for the built-in cells, which every scheme can run."""
    return hasattr(cell_class(cell), "fused_op")


def choose_scheme(cell: str, hidden: int, trials: int, requested: str = "auto", device: str = "cpu") -> str:
    """The scheme that trains ``trials`` trials of ``cell`` fastest (or the one requested).

    Measured on a 2-core CPU (latching, L = 50, 30 trials, batch 16): the
    stepwise scheme is 3-4x faster than torch's fused kernels for ``rnn`` and
    about 1.3x for ``gru``, whose fused CPU kernels run step by step under
    autograd; for ``lstm`` the fused kernel is oneDNN's and wins (1.8x at
    hidden 1, 1.2x at hidden 8) while trials x hidden stays small. On CUDA the
    fused kernels are cuDNN's, one launch for a whole sequence.
    """
    builtin = is_builtin(cell)
    if requested in ("fused", "stepwise") and not builtin:
        raise ValueError(f"train.engine = {requested!r} works for the built-in cells only, not {cell!r}")
    if requested != "auto":
        return requested
    if not builtin:
        return "vmap"
    narrow = trials * hidden <= FUSED_MAX_WIDTH
    if torch.device(device).type == "cuda":
        return "fused" if narrow else "stepwise"
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
    return Vmap(cell, buffers)
