"""The native kernel's cumulative log-sum-exp, for users' cells that scan in log space.

A parallel-scan cell (minGRU and its kin) computes its whole recurrence as one
``torch.logcumsumexp`` along time. On the CPU torch runs it one element after
another, two transcendental functions each: about half of such a cell's
training time, batched or not (profiled on latching, hidden 1, 30 trials). The
native kernel runs it over all trials' lanes at once, vectorised, and its
backward pass as one reverse scan whose factors never exceed 1 (one
exponential a step), where torch's runs two more log-sum-exp scans.

:func:`fast_scans` is a context under which the engine runs a user's cell: it
sends ``torch.logcumsumexp`` (function or method) of a float32 CPU tensor along
an integer dimension to :class:`LogCumSumExp`, whose forward and backward are
the operators ``rnnmemory::logcumsumexp`` and ``rnnmemory::logcumsumexp_backward``
(each with a batching rule for ``vmap`` and a fake for tracing, so that
Inductor calls them as they are). Anything else, and everything where the
kernel cannot be built, goes to torch's own. The values agree with torch's
within float32 rounding (tested to 2e-6, gradients to 1e-5, and over ten
million steps): as torch does, what is carried along the scan is kept in
double. Each value's gradient is shared among its terms in full (their shares
sum to 1), and where infinities tie it is finite where torch's is NaN. The
scan is differentiated once, in reverse mode, as the engine trains: a second
derivative or forward mode raises.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch.overrides import TorchFunctionMode

from . import native


def _around(x: torch.Tensor, dim: int) -> tuple[int, int, int]:
    """``x``'s shape as ``[outer, T, inner]`` around the scanned dimension ``dim``."""
    if not -x.dim() <= dim < x.dim():
        raise IndexError(f"dimension {dim} is out of range for a tensor of {x.dim()} dimensions")
    dim = dim % x.dim()
    return math.prod(x.shape[:dim]), x.shape[dim], math.prod(x.shape[dim + 1 :])


@torch.library.custom_op("rnnmemory::logcumsumexp", mutates_args=())
def logcumsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``torch.logcumsumexp(x, dim)`` of a float32 CPU tensor, by the native kernel."""
    x = x.contiguous()
    out = torch.empty_like(x)
    if x.numel():
        native._check(native._kernel().rnnm_logcumsumexp(*_around(x, dim), x.data_ptr(), out.data_ptr()))
    return out


@logcumsumexp.register_fake
def _(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x.new_empty(x.shape)


@torch.library.custom_op("rnnmemory::logcumsumexp_backward", mutates_args=())
def logcumsumexp_backward(x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor, dim: int) -> torch.Tensor:
    """The gradient at ``x`` of ``y = logcumsumexp(x, dim)`` from the gradient ``grad`` at ``y``."""
    x, y, grad = x.contiguous(), y.contiguous(), grad.contiguous()
    out = torch.empty_like(x)
    if x.numel():
        pointers = (t.data_ptr() for t in (x, y, grad, out))
        native._check(native._kernel().rnnm_logcumsumexp_backward(*_around(x, dim), *pointers))
    return out


@logcumsumexp_backward.register_fake
def _(x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor, dim: int) -> torch.Tensor:
    return x.new_empty(x.shape)


def _batched(tensors: tuple[torch.Tensor, ...], in_dims: tuple, size: int) -> list[torch.Tensor]:
    """Every tensor with the batch first: moved there, or expanded where it has none."""
    return [
        t.movedim(d, 0) if d is not None else t.expand(size, *t.shape)
        for t, d in zip(tensors, in_dims, strict=True)
    ]


def _physical(dim: int, logical_rank: int) -> int:
    """A dimension of the unbatched tensor, counted in the batched one (batch first)."""
    return (dim % logical_rank if logical_rank else 0) + 1


@logcumsumexp.register_vmap
def _(info, in_dims: tuple, x: torch.Tensor, dim: int):
    (batched,) = _batched((x,), in_dims[:1], info.batch_size)
    return logcumsumexp(batched, _physical(dim, batched.dim() - 1)), 0


@logcumsumexp_backward.register_vmap
def _(info, in_dims: tuple, x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor, dim: int):
    x, y, grad = _batched((x, y, grad), in_dims[:3], info.batch_size)
    return logcumsumexp_backward(x, y, grad, _physical(dim, x.dim() - 1)), 0


class LogCumSumExp(torch.autograd.Function):
    """The differentiable scan: the two operators above as one function's forward and backward
    (an autograd function, which ``torch.func``'s transforms differentiate and batch)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, dim: int) -> torch.Tensor:
        # the operators have no derivative of their own: this function is theirs
        with torch.no_grad():
            return logcumsumexp(x, dim)

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: torch.Tensor) -> None:
        x, dim = inputs
        ctx.save_for_backward(x, output)
        ctx.dim = dim

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, y = ctx.saved_tensors
        return _Gradient.apply(x, y, grad, ctx.dim), None

    @staticmethod
    def jvp(ctx, *tangents):
        raise NotImplementedError(
            "forward-mode differentiation of torch.logcumsumexp is not supported under "
            "pytest_rnnmemory's scan (cells/scan.py): the engine differentiates in reverse mode"
        )


class _Gradient(torch.autograd.Function):
    """The scan's gradient, which is not differentiated again: asking for it says so, where a
    gradient without history would silently count as constant."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor, dim: int) -> torch.Tensor:
        with torch.no_grad():
            return logcumsumexp_backward(x, y, grad, dim)

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: torch.Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError(
            "a second derivative of torch.logcumsumexp is not supported under pytest_rnnmemory's "
            "scan (cells/scan.py): the engine trains on first derivatives"
        )


def _served(x: object, dim: object) -> bool:
    return (
        isinstance(x, torch.Tensor)
        and isinstance(dim, int)
        and x.dtype == torch.float32
        and x.device.type == "cpu"
        and -x.dim() <= dim < x.dim()  # out of range: torch's own error
        and native.native_available()
    )


class _FastScans(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.logcumsumexp, torch.Tensor.logcumsumexp):
            x = args[0] if args else kwargs.get("input")
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            others = set(kwargs) - {"input", "dim"}  # out= stays torch's
            if len(args) <= 2 and not others and _served(x, dim):
                return LogCumSumExp.apply(x, dim)
        return func(*args, **kwargs)


def fast_scans() -> contextlib.AbstractContextManager:
    """A context under which ``torch.logcumsumexp`` of float32 CPU tensors runs in the native
    kernel (where it can be built here; the first such call builds it)."""
    return _FastScans()
