"""Many trials of a built-in cell through a small C kernel: every step of a minibatch in one call.

The eager schemes pay a few microseconds of framework overhead for each of
the dozen tensor operations of a time step, far more than the arithmetic of
cells with a handful of hidden units. Here the recurrence of ``rnn_tanh``,
``lstm`` and ``gru`` (the equations of :mod:`.builtin`, torch's gate order)
runs for all trials and all steps in one call of ``native.c``, forward and
backward, as a :class:`torch.autograd.Function`. As in :mod:`.stepwise`, the
input's contribution to every gate (``pre``) is computed outside the
recurrence, by a second function with its own backward pass, so the
gradient reaches ``x``, ``weight_ih`` and the biases through ``pre``; the
recurrence returns those of ``pre``, ``weight_hh`` and (for ``gru``)
``bias_hh``.

The kernel is compiled on first use with the system's C compiler (``$CC``,
else the one Python was built with where it is installed here, else ``cc``)
for the CPU it runs on, and kept in the user's cache directory
(``$XDG_CACHE_HOME`` or ``~/.cache``, under ``pytest-rnnmemory/native``)
under a name derived from the source, the
compiler, the flags and the CPU, so that a home directory shared between
machines never loads a library built for another CPU. A build lands under
its final name by an atomic rename, so processes that build at once never
load half a file. Without a compiler, or if the build fails, the scheme is
unavailable: :func:`native_available` says so and :func:`unavailable_reason`
says why.

Inside, the trials' sequences are the kernel's lanes (``pre [T, G*H, n, b]``,
hidden states ``[T, H, n, b]``), so that each step's arithmetic runs over
``n * b`` contiguous values; the inputs are read where they lie.

For training, :class:`Training` runs whole minibatches per call and no
autograd: cell, readout, each trial's loss, the gradient of the live trials'
losses, the clip and the optimizer's update, on the flat weights in place.

The kernel also holds a cumulative log-sum-exp for users' scan cells, which
:mod:`.scan` serves.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.autograd.function import once_differentiable

from ..errors import SchemeError
from ..optimizers import torch_defaults

if TYPE_CHECKING:
    from .recurrence import Recurrence

LOG = logging.getLogger("pytest_rnnmemory")

SOURCE = Path(__file__).with_name("native.c")

#: Compiler flags, tried in order: tuned for the CPU that builds (and so runs) it, then portable.
FLAG_SETS = (
    ("-O3", "-march=native", "-fno-trapping-math", "-fno-math-errno", "-fPIC", "-shared"),
    ("-O3", "-fno-trapping-math", "-fno-math-errno", "-fPIC", "-shared"),
)

#: Seconds a build may take before it counts as failed.
BUILD_TIMEOUT_S = 300

#: The cells of ``native.c`` (its ``enum``), named in each built-in cell's :class:`.Recurrence`.
RNN_TANH, LSTM, GRU, MEMORYLESS, LSTM1997 = 0, 1, 2, 3, 4


class NativeUnavailable(SchemeError):
    """The native scheme was asked for, but its kernel cannot be built or loaded here."""


def cache_dir() -> Path:
    """Where built kernels are kept: ``$XDG_CACHE_HOME/pytest-rnnmemory/native`` (or ``~/.cache/...``)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "pytest-rnnmemory" / "native"


def compiler() -> list[str]:
    """The C compiler's command: ``$CC``, else the one Python was built with where it is
    installed here, else ``cc``."""
    if os.environ.get("CC"):
        return shlex.split(os.environ["CC"])
    # A Python built elsewhere (python-build-standalone's, as uv and rye install it) names the
    # compiler of the machine that built it, often clang where only gcc is installed.
    built_with = shlex.split(sysconfig.get_config_var("CC") or "")
    if built_with and shutil.which(built_with[0]) is not None:
        return built_with
    return ["cc"]


def _cpu() -> str:
    """The machine and, where the OS tells, the CPU's model and feature flags."""
    described = [platform.machine(), platform.processor()]
    try:
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for field in ("model name", "flags", "Features", "CPU implementer", "CPU part"):
        described += [line for line in lines if line.split(":")[0].strip() == field][:1]
    return "\n".join(described)


def _library_name(command: list[str], flags: tuple[str, ...], source: bytes) -> str:
    digest = hashlib.sha256(source)
    for part in (*command, *flags, _cpu()):
        digest.update(b"\0" + part.encode())
    return f"rnnmemory-native-{digest.hexdigest()[:24]}.so"


def _build(command: list[str], flags: tuple[str, ...], source: bytes, target: Path) -> None:
    """Compile ``source`` into ``target``, which appears whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as work:
        c_file, built = Path(work) / "native.c", Path(work) / target.name
        c_file.write_bytes(source)
        done = subprocess.run(
            [*command, *flags, "-o", str(built), str(c_file)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            said = " / ".join(tail) if tail else "it printed nothing"
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {said}")
        os.replace(built, target)


def _bind(library: ctypes.CDLL) -> ctypes.CDLL:
    sizes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
    library.rnnm_forward.argtypes = sizes + [ctypes.c_void_p] * 6
    library.rnnm_forward.restype = ctypes.c_int
    library.rnnm_backward.argtypes = sizes + [ctypes.c_void_p] * 8
    library.rnnm_backward.restype = ctypes.c_int
    strided = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64)]
    library.rnnm_input.argtypes = [ctypes.c_int64] * 5 + strided + [ctypes.c_void_p] * 4
    library.rnnm_input.restype = ctypes.c_int
    library.rnnm_input_backward.argtypes = [ctypes.c_int64] * 5 + strided + [ctypes.c_void_p] * 5
    library.rnnm_input_backward.restype = ctypes.c_int
    library.rnnm_train_batches.argtypes = (
        [ctypes.c_int, ctypes.c_int]
        + [ctypes.c_int64] * 8
        + [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
        + strided * 2
        + [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        + [ctypes.c_void_p] * 3
    )
    library.rnnm_train_batches.restype = ctypes.c_int
    library.rnnm_logcumsumexp.argtypes = [ctypes.c_int64] * 3 + [ctypes.c_void_p] * 2
    library.rnnm_logcumsumexp.restype = ctypes.c_int
    library.rnnm_logcumsumexp_backward.argtypes = [ctypes.c_int64] * 3 + [ctypes.c_void_p] * 4
    library.rnnm_logcumsumexp_backward.restype = ctypes.c_int
    return library


def _load(command: list[str], flags: tuple[str, ...], source: bytes) -> ctypes.CDLL:
    target = cache_dir() / _library_name(command, flags, source)
    if target.exists():
        try:
            return _bind(ctypes.CDLL(str(target)))
        except (OSError, AttributeError):
            pass  # left by something else than a finished build: build it again
    _build(command, flags, source, target)
    return _bind(ctypes.CDLL(str(target)))


@functools.cache
def _library() -> tuple[ctypes.CDLL | None, str | None]:
    """The loaded kernel, or ``None`` and why not (once per process)."""
    command = compiler()
    try:
        source = SOURCE.read_bytes()
    except OSError as exc:
        return _unavailable(f"the kernel's source is missing ({exc})")
    if not command or shutil.which(command[0]) is None:
        return _unavailable(f"no C compiler: {command[0] if command else '$CC is empty'!r} not found")
    failures = []
    for flags in FLAG_SETS:
        try:
            return _load(command, flags, source), None
        except (OSError, RuntimeError, AttributeError, subprocess.SubprocessError) as exc:
            failures.append(str(exc))
    return _unavailable(f"the kernel did not build: {failures[0]}")


def _unavailable(reason: str) -> tuple[None, str]:
    LOG.debug("native scheme unavailable: %s", reason)
    return None, reason


def native_available() -> bool:
    """Whether the native kernel is built (building it on first call) and loaded in this process."""
    return _library()[0] is not None


def unavailable_reason() -> str | None:
    """Why the native kernel cannot be used here, or ``None`` when it can."""
    return _library()[1]


def _kernel() -> ctypes.CDLL:
    library, reason = _library()
    if library is None:
        raise NativeUnavailable(f"the native scheme is unavailable: {reason}")
    return library


def _pointer(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def _strides(x: torch.Tensor) -> ctypes.Array:
    return (ctypes.c_int64 * x.dim())(*x.stride())


def _sequences_contiguous(tensor: torch.Tensor, dims: int) -> torch.Tensor:
    """``tensor``, copied only if a sequence (its last ``dims`` dimensions) is not contiguous in it."""
    if tensor[(0,) * (tensor.dim() - dims)].is_contiguous():
        return tensor
    return tensor.contiguous()


def _check(status: int) -> None:
    if status != 0:
        raise MemoryError("the native kernel could not allocate its working memory")


def _input_shape(x: torch.Tensor, weight_ih: torch.Tensor) -> tuple:
    """The leading arguments of both passes of the input part: sizes, then where ``x [n, b, T, I]`` lies."""
    n, b, steps, inputs = x.shape
    return steps, n, b, inputs, weight_ih.shape[1], x.data_ptr(), _strides(x)


class _InputPart(torch.autograd.Function):
    """The input part of every gate, ``[T, G*H, n, b]``, from ``x [n, b, T, I]`` and per-trial weights.

    ``x`` is read through its strides. ``bias2``, when given, is added too (its gradient is ``bias``'s).
    """

    @staticmethod
    def forward(ctx, x, weight_ih, bias, bias2):
        n, b, steps, _ = x.shape
        rows = weight_ih.shape[1]
        weight_ih, bias = weight_ih.contiguous(), bias.contiguous()
        bias2 = bias2.contiguous() if bias2 is not None else None
        pre = x.new_empty(steps, rows, n, b)
        _check(
            _kernel().rnnm_input(
                *_input_shape(x, weight_ih),
                weight_ih.data_ptr(),
                bias.data_ptr(),
                _pointer(bias2),
                pre.data_ptr(),
            )
        )
        ctx.save_for_backward(x, weight_ih)
        ctx.two_biases = bias2 is not None
        return pre

    @staticmethod
    @once_differentiable
    def backward(ctx, d_pre):
        x, weight_ih = ctx.saved_tensors
        n, b, steps, inputs = x.shape
        rows = weight_ih.shape[1]
        d_pre = d_pre.contiguous()
        d_x = x.new_empty(n, b, steps, inputs) if ctx.needs_input_grad[0] else None
        d_weight = torch.empty_like(weight_ih)
        d_bias = weight_ih.new_empty(n, rows)
        _check(
            _kernel().rnnm_input_backward(
                *_input_shape(x, weight_ih),
                weight_ih.data_ptr(),
                d_pre.data_ptr(),
                _pointer(d_x),
                d_weight.data_ptr(),
                d_bias.data_ptr(),
            )
        )
        return d_x, d_weight, d_bias, d_bias.clone() if ctx.two_biases else None


class _Recurrence(torch.autograd.Function):
    """Hidden states ``[T, H, n, b]`` from gate pre-activations ``pre [T, G*H, n, b]``."""

    @staticmethod
    def forward(ctx, pre, weight_hh, bias_hh, cell: Recurrence, keep: bool):
        steps, rows, n, b = pre.shape
        hidden = rows // cell.gates
        pre, weight_hh = pre.contiguous(), weight_hh.contiguous()
        bias_hh = bias_hh.contiguous() if bias_hh is not None else None
        states = pre.new_empty(steps, hidden, n, b)
        gates = pre.new_empty(steps, rows, n, b) if keep and cell.native_keeps_gates else None
        kept = cell.native_kept_rows
        extra = pre.new_empty(steps, kept * hidden, n, b) if keep and kept else None
        _check(
            _kernel().rnnm_forward(
                cell.native_code,
                steps,
                n,
                b,
                hidden,
                pre.data_ptr(),
                weight_hh.data_ptr(),
                _pointer(bias_hh),
                states.data_ptr(),
                _pointer(gates),
                _pointer(extra),
            )
        )
        ctx.cell = cell
        ctx.save_for_backward(states, weight_hh, gates, extra)
        return states

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_states):
        states, weight_hh, gates, extra = ctx.saved_tensors
        cell: Recurrence = ctx.cell
        if cell.native_keeps_gates and gates is None:
            raise RuntimeError("the native forward pass kept nothing for a backward pass (keep=False)")
        steps, hidden, n, b = states.shape
        grad_states = grad_states.contiguous()
        d_pre = states.new_empty(steps, cell.gates * hidden, n, b)
        d_weight = torch.empty_like(weight_hh)
        d_bias = weight_hh.new_empty(n, weight_hh.shape[1]) if cell.bias_hh_inside else None
        _check(
            _kernel().rnnm_backward(
                cell.native_code,
                steps,
                n,
                b,
                hidden,
                grad_states.data_ptr(),
                weight_hh.data_ptr(),
                states.data_ptr(),
                _pointer(gates),
                _pointer(extra),
                d_pre.data_ptr(),
                d_weight.data_ptr(),
                _pointer(d_bias),
            )
        )
        return d_pre, d_weight, d_bias, None, None


def native_forward(params: dict[str, torch.Tensor], x: torch.Tensor, cell: Recurrence) -> torch.Tensor:
    """Hidden states ``[n, b, T, H]`` of ``n`` trials of a built-in cell for inputs ``x [n, b, T, I]``."""
    for tensor in (x, *params.values()):
        if tensor.device.type != "cpu" or tensor.dtype != torch.float32:
            raise ValueError(
                f"the native scheme runs float32 on the CPU, not {tensor.dtype} on {tensor.device.type}"
            )
    inside = cell.bias_hh_inside
    # Where bias_hh adds to bias_ih it joins the input part; the GRU keeps b_hn inside r * (...).
    pre = _InputPart.apply(x, params["weight_ih"], params["bias_ih"], None if inside else params["bias_hh"])
    bias_hh = params["bias_hh"] if inside else None
    keep = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (pre, params["weight_hh"], bias_hh)
    )
    states = _Recurrence.apply(pre, params["weight_hh"], bias_hh, cell, keep)
    return states.permute(2, 3, 0, 1)


#: The order in which :class:`Training` passes the parameters' offsets to the kernel.
PARAMETERS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "readout.weight", "readout.bias")

OPTIMIZER_CODES = {"adam": 0, "sgd": 1, "rmsprop": 2}

#: Sequence-steps of all trials that one kernel call trains on at most (whole minibatches, at least
#: one): long enough that the call's overhead vanishes, short enough for Ctrl-C to stop a case soon.
CALL_LANE_STEPS = 1 << 24


class Training:
    """Training ``n`` trials of a built-in cell and their linear readouts through the C kernel.

    Each call of :meth:`epoch` runs whole minibatches per kernel call: cell,
    readout, loss, gradient, per-trial clip and the optimizer's update, with no
    autograd and no Python per step. The trials' weights are the rows of a flat
    ``[n, P]`` tensor; ``layout`` says where each parameter (:data:`PARAMETERS`)
    starts in a row. The optimizer (``adam``, ``sgd`` or ``rmsprop``) follows
    torch's update rule with torch's defaults besides ``lr``; its state lives here.
    """

    def __init__(
        self,
        cell: Recurrence,
        layout: dict[str, int],
        regression: bool,
        trials: int,
        width: int,
        *,
        optimizer: str,
        lr: float,
        clip: float,
    ) -> None:
        self.cell, self.regression = cell.native_code, regression
        self.offsets = (ctypes.c_int64 * len(PARAMETERS))(*(layout[name] for name in PARAMETERS))
        defaults = torch_defaults(optimizer)
        variants = ("momentum", "weight_decay", "amsgrad", "centered", "nesterov", "maximize")
        if any(defaults.get(name) for name in variants):
            raise ValueError(f"torch's defaults for {optimizer} are not the update rule the kernel knows")
        beta1, beta2 = defaults.get("betas", (0.9, 0.999))
        hyper = (lr, beta1, beta2, defaults.get("eps", 1e-8), defaults.get("alpha", 0.99), clip)
        self.hyper = (ctypes.c_double * len(hyper))(*hyper)
        #: optimizer steps taken, and Adam's betas to the power of that count
        self.clock = (ctypes.c_double * 3)(0.0, 1.0, 1.0)
        self.optimizer = OPTIMIZER_CODES[optimizer]
        self.state = torch.zeros(2, trials, width)
        self.kernel = _kernel()

    def keep(self, rows: torch.Tensor) -> None:
        """Keep the optimizer state of these trials only (``rows``: a bool mask or indices)."""
        self.state = self.state[:, rows].contiguous()

    def epoch(
        self,
        flat: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        order: torch.Tensor,
        first: int,
        diverged: torch.Tensor,
        hidden: int,
        classes: int,
        batch_size: int,
    ) -> torch.Tensor:
        """Train on the sequences ``order`` names; each trial's minibatch losses summed, ``[n]``.

        ``flat`` (``[n, P]``, contiguous) is updated in place. ``x [n, S, T, I]`` and
        targets ``y [n, S, T - first]`` are read where they lie if each sequence is
        contiguous in them (as in the engine's stacked data), else copied; ``order``
        (int64 ``[n, m]``) names, per trial, the ``m`` sequences to train on, in order,
        ``batch_size`` at a time. ``diverged`` (bool ``[n]``) marks the trials whose loss
        or weights turned non-finite; their weights are zeroed and they send back
        no gradient, as on the engine's autograd path.
        """
        n, _, steps, inputs = x.shape
        samples = order.shape[1]
        x, y = _sequences_contiguous(x, 2), _sequences_contiguous(y, 1)
        order = order.contiguous()
        total = flat.new_zeros(n)
        per_call = max(1, CALL_LANE_STEPS // (n * batch_size * steps)) * batch_size
        for start in range(0, samples, per_call):
            count = min(per_call, samples - start)
            _check(
                self.kernel.rnnm_train_batches(
                    self.cell,
                    int(self.regression),
                    steps,
                    first,
                    n,
                    count,
                    batch_size,
                    inputs,
                    hidden,
                    classes,
                    flat.data_ptr(),
                    flat.shape[1],
                    self.offsets,
                    x.data_ptr(),
                    _strides(x),
                    y.data_ptr(),
                    _strides(y),
                    order[:, start:].data_ptr(),
                    order.stride(0),
                    diverged.data_ptr(),
                    total.data_ptr(),
                    self.optimizer,
                    self.hyper,
                    self.state.data_ptr(),
                    self.clock,
                )
            )
        return total
