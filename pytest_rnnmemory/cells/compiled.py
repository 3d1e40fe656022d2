"""Users' cells compiled once by Inductor: every trial's forward and backward at once.

``torch.compile`` of one time step pays Dynamo's guards and AOTAutograd's wrappers
at every call, about 0.1 ms a step forward and back on a CPU (profiled), more than
a small cell's own kernels take. Here a step cell of every trial at once
(``torch.func.vmap``) and its vector-Jacobian product (``torch.func.vjp``) are
traced once to ATen graphs (``make_fx``) and compiled by Inductor, and one
autograd node runs a minibatch.

These graphs are one time step, which does not depend on the length:
the forward loop keeps each step's state, and the backward loop runs from the
last step to the first, recomputing a step's insides from its input state, so
memory holds states only. A sequence cell, called once a minibatch, is compiled
whole, for one length, through AOTAutograd: its forward and backward are traced
as one graph and split where the backward reads least of what the forward
computed (``min_cut_rematerialization_partition``), instead of running the
forward again (measured on the minGRU-like cell of the tests, 30 trials, L = 50:
a minibatch forward and back took 1.0 against 1.4 ms at hidden 1, 7.7 against
12.3 ms at hidden 8); the wrappers it adds cost once a minibatch, not once a step.

A cell's ``torch.logcumsumexp`` is traced as the native kernel's scan
(:mod:`.scan`), which the compiled code calls as it is.

Compiled code is specialised to the shapes, dtype and device it was traced
with: :class:`Signature`. Inductor keeps what it compiled in its cache on disk,
so a later run finds it.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .scan import fast_scans

LOG = logging.getLogger("pytest_rnnmemory")


@dataclass(frozen=True)
class Signature:
    """What compiled code is specialised to: the cell, its trials' tensors and a minibatch.

    ``configuration`` is what else makes the cell compute what it computes
    (:func:`configuration`): two cases whose cells were built with different
    ``model.cell_args`` share no code.
    """

    cell: type
    configuration: tuple
    tensors: tuple[tuple[str, tuple[int, ...], torch.dtype], ...]
    batch: tuple[int, ...]
    dtype: torch.dtype
    device: str

    @classmethod
    def of(
        cls,
        cell: nn.Module,
        described: tuple,
        tensors: dict[str, torch.Tensor],
        batch: torch.Tensor,
        step: bool,
    ) -> Signature:
        """The signature of a call to ``cell``, whose :func:`configuration` is ``described``; a step
        cell's leaves the length out, which its graphs do not depend on."""
        n, b, steps, inputs = batch.shape
        return cls(
            type(cell),
            described,
            tuple((name, tuple(t.shape), t.dtype) for name, t in tensors.items()),
            (n, b, inputs) if step else (n, b, steps, inputs),
            batch.dtype,
            str(batch.device),
        )


#: The attributes every ``nn.Module`` keeps for itself; hooks are described apart.
_MODULE_INTERNALS = frozenset(vars(nn.Module()))
_HOOKS = tuple(sorted(k for k in _MODULE_INTERNALS if "hook" in k))
#: Hooks torch runs around every module's call, wherever they were registered (its registries;
#: ``_global_is_full_backward_hook``, a flag that stays set, is not one).
_GLOBAL_HOOKS = tuple(
    name
    for name, value in vars(torch.nn.modules.module).items()
    if name.startswith("_global_") and "hook" in name and isinstance(value, dict)
)
#: Plain tensors in a cell are constants of its traced graph: described by value up to this size.
_MAX_DESCRIBED_ELEMENTS = 4096


def configuration(module: nn.Module) -> tuple | None:
    """What, besides its weights, makes a module compute what it computes: the class, the plain
    attributes (numbers, strings, small tensors, functions by name, containers of these) of it
    and of every submodule and of their own classes, and the hooks set on them. ``None`` where
    an attribute or a hook is none of these (a lambda, say), or where a hook is set on every
    module: such a cell's compiled code is kept for its case alone."""
    if any(getattr(torch.nn.modules.module, name, None) for name in _GLOBAL_HOOKS):
        return None
    described = []
    for name, sub in module.named_modules():
        # A hook by what it is, in order: the registry's keys are handles' ids, which grow with
        # every registration in the process.
        hooks = _described_items(
            (k, list(v.values()) if isinstance(v, dict) else v)
            for k in _HOOKS
            if (v := getattr(sub, k, None))
        )
        attributes = _described_items((k, v) for k, v in vars(sub).items() if k not in _MODULE_INTERNALS)
        classes = _class_attributes(type(sub))
        if hooks is None or attributes is None or classes is None:
            return None
        described.append((name, type(sub), hooks, attributes, classes))
    return tuple(described)


def _described_items(items) -> tuple | None:
    """Named values, sorted by name, each described; ``None`` where one cannot be."""
    described = []
    for key, value in sorted(items, key=lambda item: item[0]):
        plain = _describe(value)
        if plain is None:
            return None
        described.append((key, plain))
    return tuple(described)


def _class_attributes(cls: type) -> tuple | None:
    """The values a user's class and its bases set as class attributes (a class-wide constant
    the forward reads), as :func:`_describe` describes them; the class's methods, descriptors and
    torch's own classes left out. ``None`` where a value cannot be described."""
    described = []
    for owner in cls.__mro__:
        if owner.__module__.split(".")[0] in ("torch", "builtins"):
            continue
        for key, value in sorted(vars(owner).items()):
            if key.startswith(("__", "_abc_")) or _is_code_of(owner, value):
                continue
            plain = _describe(value)
            if plain is None:
                return None
            described.append((owner.__qualname__, key, plain))
    return tuple(described)


def _is_code_of(owner: type, value: object) -> bool:
    """Whether ``value`` is code the class defines (a method, a descriptor, a nested class), which
    its module's source pins, rather than a value it holds (``act = torch.tanh``)."""
    if isinstance(value, property | staticmethod | classmethod | type):
        return True
    return inspect.isfunction(value) and value.__qualname__.startswith(f"{owner.__qualname__}.")


def _describe(value: object) -> object | None:
    if isinstance(value, float):  # by its bits: 0.0 and -0.0 are equal keys, not the same constant
        return ("value", "float", value.hex())
    if isinstance(value, complex):
        return ("value", "complex", value.real.hex(), value.imag.hex())
    if value is None or isinstance(value, bool | int | str | bytes | torch.dtype):
        # the type too: 1 and True are equal keys, but not the same constant in a graph
        return ("value", type(value).__name__, value)
    if isinstance(value, torch.device):
        return ("device", str(value))
    if isinstance(value, torch.Tensor):
        if value.device.type == "meta" or value.numel() > _MAX_DESCRIBED_ELEMENTS:
            return None
        data = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        return ("tensor", value.dtype, tuple(value.shape), bytes(data.tolist()))
    if isinstance(value, tuple | list | frozenset | set):
        items = [
            _describe(v) for v in (sorted(value, key=repr) if isinstance(value, set | frozenset) else value)
        ]
        return None if any(i is None for i in items) else (type(value).__name__, tuple(items))
    if isinstance(value, dict):
        items = [(_describe(k), _describe(v)) for k, v in value.items()]
        return None if any(k is None or v is None for k, v in items) else ("dict", tuple(items))
    if inspect.ismethod(value):  # bound to an object this cannot describe
        return None
    if callable(value) and hasattr(value, "__module__") and hasattr(value, "__qualname__"):
        if "<locals>" in value.__qualname__ or "<lambda>" in value.__qualname__:
            return None
        return ("function", value.__module__, value.__qualname__)
    return None


def compile_cell(
    base: nn.Module,
    parts: int,
    hidden: int,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    batch: torch.Tensor,
) -> CompiledCell:
    """``base`` (its weights unused: each call passes every trial's, stacked) compiled for every
    trial at once: a step cell whose state has ``parts`` tensors of width ``hidden``, for the
    shapes of ``params``, ``buffers`` and the training minibatch ``batch``; a sequence cell
    (``parts == 0``) for the length of ``batch`` too."""
    if parts:
        return CompiledStep(base, parts, hidden, params, buffers, batch)
    return CompiledSequence(base, params, buffers, batch)


def _vmapped(base: nn.Module, param_names: tuple[str, ...], buffer_names: tuple[str, ...]) -> Callable:
    """``base`` of every trial at once, called as ``(weights, *args)``: the trials' parameters,
    then buffers, stacked, in the order of the names."""
    count = len(param_names)

    def one(weights: Sequence[torch.Tensor], *args: torch.Tensor):
        params = dict(zip(param_names, weights[:count], strict=True))
        buffers = dict(zip(buffer_names, weights[count:], strict=True))
        return torch.func.functional_call(base, (params, buffers), args)

    # A random draw (dropout) makes the trace raise, and the cell run under vmap: a compiled
    # step's backward recomputes the step, and would draw it anew.
    return torch.func.vmap(one, randomness="error")


class CompiledSequence:
    """A sequence cell's forward and backward, compiled for the shapes of ``params``, ``buffers``
    and the training minibatch ``batch``."""

    def __init__(
        self,
        base: nn.Module,
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        batch: torch.Tensor,
    ) -> None:
        self._run = _compile_differentiable(_vmapped(base, tuple(params), tuple(buffers)))
        # AOTAutograd compiles at the first call, and the backward at the first backward pass: both
        # here, on copies (a buffer the cell updates stays as it was), where the caller compiles.
        weights = [p.detach().clone().requires_grad_() for p in params.values()]
        hidden = self.hidden(dict(zip(params, weights, strict=True)), _copies(buffers), batch.detach())
        torch.autograd.grad(hidden.sum(), weights, allow_unused=True)

    def hidden(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], batch: torch.Tensor):
        """Every trial's hidden states ``[n, b, T, H]``, differentiable in ``params``; a buffer the
        cell updates as it runs is updated in ``buffers``."""
        # The code takes the strides it was traced with: the engine's weights are views of one
        # flat row per trial, and a minibatch is a slice of the epoch's sequences.
        dense = {name: value.contiguous() for name, value in buffers.items()}
        hidden = self._run(*(p.contiguous() for p in params.values()), *dense.values(), batch.contiguous())
        for name, value in dense.items():
            if value is not buffers[name]:  # the cell's in-place updates went to a copy
                buffers[name].copy_(value)
        return hidden


class CompiledStep:
    """A step cell's compiled step forward and backward, for one :class:`Signature`.

    ``parts`` is the number of tensors in its state, ``hidden`` its width; the example
    tensors fix the shapes.
    """

    def __init__(
        self,
        base: nn.Module,
        parts: int,
        hidden: int,
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        batch: torch.Tensor,
    ) -> None:
        self.parts, self.width = parts, hidden
        self.param_names, self.buffer_names = tuple(params), tuple(buffers)
        weights = [t.detach().contiguous() for t in (*params.values(), *buffers.values())]
        n, b = batch.shape[:2]
        x = batch[:, :, 0].detach().contiguous()
        state = [x.new_zeros(n, b, hidden) for _ in range(parts)]
        forward, backward = self._step_functions(base)
        grads = [t.clone() for t in weights[: len(params)]]
        # Both traced before either compiles: a cell that cannot be traced is found in a moment,
        # not after Inductor has compiled its forward.
        traced = [
            _trace(forward, [*weights, x, *state]),
            _trace(backward, [*weights, *grads, x, *state, state[0], *state]),
        ]
        options = _step_settings(hidden, str(batch.device))
        self._forward, self._backward = (_inductor(graph, example, options) for graph, example in traced)

    def _step_functions(self, base: nn.Module) -> tuple[Callable, Callable]:
        cell, parts = _vmapped(base, self.param_names, self.buffer_names), self.parts
        count, weighed = len(self.param_names), len(self.param_names) + len(self.buffer_names)

        def step(weights, x, state):
            out = cell(weights, x, state[0] if parts == 1 else tuple(state))
            return (out,) if parts == 1 else tuple(out)

        def forward(*args):
            # every trial's weights and buffers, the step's input, its state
            return step(args[:weighed], args[weighed], args[weighed + 1 :])

        def backward(*args):
            # every trial's weights and buffers, the gradients summed so far, the step's input
            # and state, the loss's gradient at the step's output, the gradient from the next step
            weights, rest = args[:weighed], args[weighed:]
            summed, x, state = rest[:count], rest[count], rest[count + 1 : count + 1 + parts]
            at_output, arriving = rest[count + 1 + parts], list(rest[count + 2 + parts :])
            arriving[0] = arriving[0] + at_output
            params, others = weights[:count], weights[count:]
            _, pull = torch.func.vjp(lambda p, s: step((*p, *others), x, s), tuple(params), tuple(state))
            grads, before = pull(tuple(arriving))
            return (*(a + g for a, g in zip(summed, grads, strict=True)), *before)

        return forward, backward

    def hidden(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], batch: torch.Tensor):
        """Every trial's hidden states ``[n, b, T, H]``, differentiable in ``params``."""
        return _Run.apply(self, batch, len(params), *params.values(), *buffers.values())

    def run_forward(self, weights: list[torch.Tensor], batch: torch.Tensor) -> tuple[torch.Tensor, list]:
        """The hidden states ``[n, b, T, H]`` and what the backward pass needs."""
        xs = batch.permute(2, 0, 1, 3).contiguous()  # time first: each step's input is contiguous
        n, b = batch.shape[:2]
        state = [xs.new_zeros(n, b, self.width) for _ in range(self.parts)]
        states = [state]
        for x in xs.unbind(0):
            state = _dense(self._forward(*weights, x, *state))
            states.append(state)
        stacked = [torch.stack([s[k] for s in states]) for k in range(self.parts)]
        return stacked[0][1:].permute(1, 2, 0, 3), [xs, *stacked]

    def run_backward(
        self, weights: list[torch.Tensor], saved: list, grad: torch.Tensor
    ) -> list[torch.Tensor]:
        """The gradient of every trial's parameters from the gradient at the hidden states."""
        count = len(self.param_names)
        xs, stacked = saved[0].unbind(0), [s.unbind(0) for s in saved[1:]]
        at_output = grad.permute(2, 0, 1, 3).contiguous().unbind(0)
        summed = [torch.zeros_like(w) for w in weights[:count]]
        arriving = [at_output[0].new_zeros(at_output[0].shape) for _ in range(self.parts)]
        for t in reversed(range(len(xs))):
            state = [s[t] for s in stacked]
            out = self._backward(*weights, *summed, xs[t], *state, at_output[t], *arriving)
            summed, arriving = _dense(out[:count]), _dense(out[count:])
        return summed


def _copies(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in tensors.items()}


def _dense(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors, each contiguous: compiled code takes the strides it was traced with, and an
    output may be a view (a slice of a concatenation's gradient, say)."""
    return [t if t.is_contiguous() else t.contiguous() for t in tensors]


#: What :func:`compile_cell` returns.
CompiledCell = CompiledStep | CompiledSequence


class _Run(torch.autograd.Function):
    """A minibatch of every trial through a :class:`CompiledStep`, as one autograd node."""

    @staticmethod
    def forward(ctx, compiled: CompiledStep, batch: torch.Tensor, count: int, *tensors: torch.Tensor):
        weights = [t.contiguous() for t in tensors]
        hidden, saved = compiled.run_forward(weights, batch)
        ctx.compiled, ctx.count, ctx.buffers = compiled, count, len(tensors) - count
        ctx.save_for_backward(*weights, *saved)
        return hidden

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        tensors = ctx.saved_tensors
        weights, saved = list(tensors[: ctx.count + ctx.buffers]), list(tensors[ctx.count + ctx.buffers :])
        grads = ctx.compiled.run_backward(weights, saved, grad)
        return (None, None, None, *grads, *([None] * ctx.buffers))


def _trace(
    function: Callable, example: list[torch.Tensor]
) -> tuple[torch.fx.GraphModule, list[torch.Tensor]]:
    """``function`` traced to an ATen graph on ``example``, and the example it was traced on."""
    from torch.fx.experimental.proxy_tensor import make_fx

    # Every input its own tensor: the tracer maps a tensor to one input, so a tensor
    # passed twice would make the graph read one input for the other.
    example = [t.clone() for t in example]
    with torch.no_grad(), fast_scans():
        return make_fx(function)(*example), example


def _step_settings(width: int, device: str) -> dict[str, object]:
    """Inductor's settings for a step cell's graphs, whose state is ``width`` wide, on ``device``.

    On the CPU, the code that calls a graph's kernels is C++ (``cpp_wrapper``): a step's
    graphs are called twice a step, and the Python wrapper's own work (its size asserts, its
    allocations) is a large part of a small step. A width that is a multiple of 8 but not of 16
    gets vectors of 8 floats where the machine's widest hold 16: the kernels loop over the
    state's width innermost, and half-filled vectors load and store through a buffer.
    Measured on the step-written GRU at hidden 8 (30 trials, minibatch 16, one thread, a
    shared 2-core machine): a minibatch forward and back took 11.4 ms instead of 13.6 ms
    (medians of 25 interleaved rounds), a whole case 11.7 s instead of 12.5 s (medians of six);
    the C++ wrapper adds about 1.3 s to compiling into an empty cache.
    """
    if device != "cpu":
        return {}
    settings: dict[str, object] = {"cpp_wrapper": True}
    if width % 8 == 0 and width % 16:
        with contextlib.suppress(Exception):  # Inductor's list of vector ISAs is its own
            from torch._inductor.cpu_vec_isa import pick_vec_isa, valid_vec_isa_list

            if pick_vec_isa().bit_width() > 256 and any(i.bit_width() == 256 for i in valid_vec_isa_list()):
                settings["cpp.simdlen"] = 256
    return settings


def _inductor(
    graph: torch.fx.GraphModule, example: list[torch.Tensor], settings: dict | None = None
) -> Callable:
    """A traced graph compiled by Inductor for the shapes of ``example``, under Inductor's
    ``settings`` (:func:`_step_settings`); without a C++ wrapper where one does not build."""
    # Inductor keeps compiled graphs on disk only for a fake mode with a shape environment.
    from torch._guards import TracingContext, tracing
    from torch._subclasses import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    def compiled(options: dict | None) -> Callable:
        with tracing(TracingContext(FakeTensorMode(shape_env=ShapeEnv()))):
            return torch._inductor.compile(graph, example, options=options)

    if not settings or not settings.get("cpp_wrapper"):
        return compiled(settings)
    untouched = copy.deepcopy(graph)  # what a failed compile leaves of the graph is Inductor's
    try:
        return compiled(settings)
    except Exception as exc:  # an operator with no C++ interface: the Python wrapper calls it
        LOG.debug("compiling with Inductor's C++ wrapper failed (%s); compiling with its Python wrapper", exc)
        graph = untouched
        return compiled({k: v for k, v in settings.items() if k != "cpp_wrapper"})


def _compile_differentiable(cell: Callable) -> Callable:
    """A sequence cell (``cell(weights, x)``, every trial at once) compiled by Inductor with its
    backward pass: a function of the weights, the buffers and the batch whose result is
    differentiable in the weights. Its forward and backward are one joint graph, partitioned so
    that the backward reads what the forward kept instead of running the forward again."""
    from functorch.compile import aot_function, min_cut_rematerialization_partition
    from torch._inductor.compile_fx import compile_fx_inner
    from torch._inductor.decomposition import select_decomp_table

    def forward(*args):
        with fast_scans():
            return cell(args[:-1], args[-1])

    return aot_function(
        forward,
        fw_compiler=compile_fx_inner,
        bw_compiler=compile_fx_inner,
        partition_fn=min_cut_rematerialization_partition,
        decompositions=select_decomp_table(),
    )
