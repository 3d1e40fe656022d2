"""The native scheme: the C kernel computes what the built-in cells compute, and is optional."""

import dataclasses
import math
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from pytest_rnnmemory import schemes
from pytest_rnnmemory import stacked as stacked_model
from pytest_rnnmemory.cells import CELLS, RECURRENCES
from pytest_rnnmemory.cells import native as native_module
from pytest_rnnmemory.cells.native import (
    native_available,
    native_forward,
    unavailable_reason,
)
from pytest_rnnmemory.cells.stepwise import stepwise_forward
from pytest_rnnmemory.data import TrialData
from pytest_rnnmemory.engine import train
from pytest_rnnmemory.errors import SchemeError
from pytest_rnnmemory.schemes import choose_scheme
from pytest_rnnmemory.stacked import StackedModel
from pytest_rnnmemory.steppers import KernelStepper
from pytest_rnnmemory.tasks import make_task
from tests.specs import spec_for

needs_native = pytest.mark.skipif(
    not native_available(), reason=f"the native kernel is unavailable here: {unavailable_reason()}"
)

CLOSE = {"rtol": 1e-4, "atol": 1e-5}


def stacked(cell: str, inputs: int, hidden: int, trials: int) -> dict[str, torch.Tensor]:
    """Per-trial weights of the built-in module, stacked as the engine stacks them."""
    torch.manual_seed(hidden * 10 + inputs)
    modules = [CELLS[cell](inputs, hidden) for _ in range(trials)]
    params, _ = torch.func.stack_module_state(modules)
    if cell == "lstm1997":  # its initialisation keeps the gates nearly shut: open them
        return {k: torch.randn_like(v).requires_grad_() for k, v in params.items()}
    return {k: v.detach().mul(1.5).requires_grad_() for k, v in params.items()}  # past the init's range


def by_vmap(cell: str, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    base = CELLS[cell](x.shape[-1], params["weight_hh"].shape[-1]).to("meta")
    return torch.func.vmap(lambda p, x_: torch.func.functional_call(base, p, (x_,)))(params, x)


def states_and_grads(run, params: dict[str, torch.Tensor], x: torch.Tensor, upstream: torch.Tensor):
    x = x.detach().requires_grad_()
    states = run(params, x)
    grads = torch.autograd.grad((states * upstream).sum(), [x, *params.values()])
    return states.detach(), dict(zip(["x", *params], grads, strict=True))


def assert_same_states_and_grads(run, reference, params, x, upstream):
    """``run`` and ``reference`` give the same hidden states and gradients (x and every weight)."""
    got, got_grads = states_and_grads(run, params, x, upstream)
    want, want_grads = states_and_grads(reference, params, x, upstream)
    torch.testing.assert_close(got, want, **CLOSE)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, **CLOSE, msg=lambda m, n=name: f"{n}: {m}")


@pytest.fixture
def rebuilt(monkeypatch, tmp_path):
    """A fresh look for the kernel in an empty cache; the real one is found again afterwards."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    native_module._library.cache_clear()
    yield
    native_module._library.cache_clear()


@needs_native
@pytest.mark.parametrize("inputs", [1, 2])
@pytest.mark.parametrize("hidden", [1, 3])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "lstm1997"])
def test_states_and_gradients_match_stepwise_and_the_vmapped_modules(cell, hidden, inputs):
    trials, batch, steps = 3, 5, 7
    params = stacked(cell, inputs, hidden, trials)
    # A minibatch as the engine slices it: rows of a larger tensor, not contiguous.
    x = torch.randn(trials, 3 * batch, steps, inputs)[:, batch : 2 * batch] * 2
    upstream = torch.randn(trials, batch, steps, hidden)  # every step's state reaches the loss
    kind = RECURRENCES[cell]
    for reference in (lambda p, x_: stepwise_forward(p, x_, kind), lambda p, x_: by_vmap(cell, p, x_)):
        assert_same_states_and_grads(
            lambda p, x_: native_forward(p, x_, kind), reference, params, x, upstream
        )


@needs_native
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "lstm1997"])
def test_long_sequences_match_stepwise(cell):
    """Longer than the blocks of steps the kernel reads its inputs in."""
    params = stacked(cell, 2, 2, trials=2)
    x = torch.randn(2, 4, 75, 2)
    upstream = torch.randn(2, 4, 75, 2)
    kind = RECURRENCES[cell]
    assert_same_states_and_grads(
        lambda p, x_: native_forward(p, x_, kind),
        lambda p, x_: stepwise_forward(p, x_, kind),
        params,
        x,
        upstream,
    )


@needs_native
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "lstm1997"])
def test_without_gradients_the_states_are_the_same(cell):
    params = stacked(cell, 2, 3, trials=2)
    x = torch.randn(2, 4, 6, 2)
    kind = RECURRENCES[cell]
    with torch.no_grad():
        evaluated = native_forward(params, x, kind)
    torch.testing.assert_close(evaluated, native_forward(params, x, kind).detach(), rtol=0, atol=0)


@needs_native
@pytest.mark.parametrize(
    ("cell", "task"),
    [("rnn", "latching"), ("lstm", "latching"), ("gru", "addition"), ("lstm1997", "latching")],
)
def test_a_whole_case_trains_as_stepwise_trains_it(cell, task):
    spec = spec_for(cell, task=task, length=6 if task == "latching" else 3)
    trained_native, trained_stepwise = train(spec, scheme="native"), train(spec, scheme="stepwise")
    native, stepwise = trained_native.outcome, trained_stepwise.outcome
    assert native.scheme == "native"
    assert native.metrics == pytest.approx(stepwise.metrics, abs=1e-6)
    torch.testing.assert_close(torch.tensor(native.train_loss), torch.tensor(stepwise.train_loss), **CLOSE)
    assert native.input_gradient == pytest.approx(stepwise.input_gradient, rel=1e-4)
    for name, value in trained_stepwise.weights.items():
        torch.testing.assert_close(trained_native.weights[name], value, **CLOSE)


def assert_same_case(trained_native, trained_stepwise):
    """Two trainings of one spec agree: divergence, metrics, losses and final weights."""
    native, stepwise = trained_native.outcome, trained_stepwise.outcome
    assert native.scheme == "native"
    assert native.diverged == stepwise.diverged
    assert native.metrics == pytest.approx(stepwise.metrics, abs=1e-6)
    assert [[v is None for v in row] for row in native.train_loss] == [
        [v is None for v in row] for row in stepwise.train_loss
    ]
    finite = [[math.nan if v is None else v for v in row] for row in native.train_loss]
    want = [[math.nan if v is None else v for v in row] for row in stepwise.train_loss]
    torch.testing.assert_close(torch.tensor(finite), torch.tensor(want), **CLOSE, equal_nan=True)
    for name, value in trained_stepwise.weights.items():
        torch.testing.assert_close(
            trained_native.weights[name], value, **CLOSE, msg=lambda m, n=name: f"{n}: {m}"
        )


@needs_native
@pytest.mark.parametrize(("hidden", "clip"), [(1, 0.0), (3, 0.05)])
@pytest.mark.parametrize(("task", "length"), [("latching", 6), ("addition", 3), ("adding", 10)])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "lstm1997"])
def test_native_training_trains_as_stepwise_trains(cell, task, length, hidden, clip):
    """Classification scored at one step or at every step, and regression; with and without clipping."""
    spec = spec_for(cell, task=task, length=length, hidden=hidden, clip=clip)
    assert_same_case(train(spec, scheme="native"), train(spec, scheme="stepwise"))


@needs_native
@pytest.mark.parametrize(("optimizer", "lr"), [("adam", 0.05), ("sgd", 0.5), ("rmsprop", 0.01)])
def test_native_training_follows_each_optimizers_torch_update_rule(optimizer, lr):
    """50 sequences in minibatches of 16 end in a short one; 3 epochs carry the optimizer's state."""
    spec = spec_for("gru", hidden=3, optimizer=optimizer, lr=lr, samples=50, epochs=3, clip=0.5)
    assert_same_case(train(spec, scheme="native"), train(spec, scheme="stepwise"))


@needs_native
def test_an_epoch_of_many_copied_groups_of_minibatches_trains_as_stepwise_trains():
    """1100 sequences: more minibatches than the kernel copies at once, and a short last one."""
    spec = spec_for("lstm", samples=1100, epochs=2, hidden=2, trials=2)
    assert_same_case(train(spec, scheme="native"), train(spec, scheme="stepwise"))


@needs_native
@pytest.mark.parametrize("layout", ["strided sequences", "steps not contiguous"])
def test_native_training_reads_the_data_wherever_it_lies(layout):
    spec = spec_for("gru", task="addition", length=3, hidden=3, samples=40)
    task, cpu = make_task(spec.task), torch.device("cpu")
    trained = []
    for moved in (False, True):
        model = StackedModel(spec, task, cpu, "native")
        data = TrialData.draw(spec, task, cpu).train
        x, y = data.x, data.y
        if moved and layout == "strided sequences":
            wide_x, wide_y = x.repeat_interleave(2, dim=1), y.repeat_interleave(2, dim=1)
            x, y = wide_x[:, ::2], wide_y[:, ::2]
        elif moved:
            x = x.transpose(2, 3).contiguous().transpose(2, 3)
            y = y.transpose(1, 2).contiguous().transpose(1, 2)
        order = torch.stack(
            [torch.randperm(40, generator=torch.Generator().manual_seed(i)) for i in range(3)]
        )
        stepper = KernelStepper(model, dataclasses.replace(data, x=x, y=y), spec.train)
        losses = stepper.train(order)
        trained.append((losses, model.flat.detach().clone()))
    (losses, flat), (moved_losses, moved_flat) = trained
    assert torch.equal(moved_losses, losses)
    assert torch.equal(moved_flat, flat)


@needs_native
def test_an_epoch_split_over_kernel_calls_trains_exactly_as_in_one(monkeypatch):
    spec = spec_for("lstm", samples=50, epochs=2)
    whole = train(spec, scheme="native")
    monkeypatch.setattr(native_module, "CALL_LANE_STEPS", 1)  # one minibatch per call
    split = train(spec, scheme="native")
    assert split.outcome.train_loss == whole.outcome.train_loss
    for name, value in whole.weights.items():
        torch.testing.assert_close(split.weights[name], value, rtol=0, atol=0)


@needs_native
@pytest.mark.parametrize("task", ["latching", "adding"])
def test_native_training_masks_a_diverging_trial_as_stepwise_does(monkeypatch, task):
    """Trial 1's readout weights are finite but so large that its loss overflows while it trains."""
    original = stacked_model.initial_modules

    def oversized(spec_, task_):
        modules = original(spec_, task_)
        with torch.no_grad():
            modules[1][1].weight.fill_(-3e38)
            modules[1][1].weight[0].fill_(3e38)
        return modules

    monkeypatch.setattr(stacked_model, "initial_modules", oversized)
    spec = spec_for("lstm", task=task, length=6 if task == "latching" else 10, trials=3, hidden=3, clip=0.05)
    native = train(spec, scheme="native")
    assert native.outcome.diverged == (False, True, False)
    assert_same_case(native, train(spec, scheme="stepwise"))


@needs_native
def test_native_training_clips_a_gradient_too_large_for_a_float_norm_as_stepwise_does(monkeypatch):
    """Trial 1's readout weights stay finite and its loss too, but its gradient's norm overflows
    float32: the engine's clip then scales the gradient by 0 and the trial does not move."""
    original = stacked_model.initial_modules

    def huge(spec_, task_):
        modules = original(spec_, task_)
        with torch.no_grad():
            modules[1][1].weight.mul_(1e27)
        return modules

    monkeypatch.setattr(stacked_model, "initial_modules", huge)
    spec = spec_for("lstm", trials=3, hidden=3, clip=0.05)
    native = train(spec, scheme="native")
    assert native.outcome.diverged == (False, False, False)
    assert_same_case(native, train(spec, scheme="stepwise"))


@needs_native
def test_native_training_diverges_as_stepwise_does_at_a_huge_learning_rate():
    spec = spec_for("rnn", trials=3, hidden=3, lr=1e38)
    native = train(spec, scheme="native")
    assert any(native.outcome.diverged)
    assert_same_case(native, train(spec, scheme="stepwise"))


@needs_native
def test_a_trial_in_the_batch_trains_as_it_trains_alone():
    spec = spec_for("lstm")
    batch = train(spec, scheme="native")
    single = train(spec_for("lstm", trials=1), scheme="native")
    for name, value in single.weights.items():
        torch.testing.assert_close(batch.weights[name][0], value[0], **CLOSE)
    assert batch.outcome.metrics[0] == pytest.approx(single.outcome.metrics[0], abs=1e-6)


@needs_native
def test_auto_picks_native_on_the_cpu_for_small_cells():
    assert choose_scheme("lstm", hidden=1, trials=30) == "native"
    assert choose_scheme("gru", hidden=schemes.NATIVE_MAX_HIDDEN, trials=30) == "native"
    assert choose_scheme("rnn", hidden=64, trials=30) == "stepwise"
    assert choose_scheme("lstm", hidden=1, trials=30, device="cuda") == "fused"
    assert choose_scheme("tests.cells_for_tests:ZeroRecurrence", hidden=1, trials=3) == "vmap"
    with pytest.raises(SchemeError, match="runs on cpu only, not on cuda"):
        choose_scheme("lstm", hidden=1, trials=30, requested="native", device="cuda")
    with pytest.raises(SchemeError, match=r"runs the built-in cells .* only, not"):
        choose_scheme("tests.cells_for_tests:ZeroRecurrence", hidden=1, trials=3, requested="native")


@pytest.mark.usefixtures("rebuilt")
def test_without_a_compiler_the_scheme_is_unavailable_and_auto_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert not native_available()
    assert "no C compiler" in unavailable_reason()
    assert choose_scheme("lstm", hidden=1, trials=30) == "fused"
    assert choose_scheme("rnn", hidden=1, trials=30) == "stepwise"
    with pytest.raises(SchemeError, match="unavailable here: no C compiler"):
        choose_scheme("lstm", hidden=1, trials=30, requested="native")
    assert not (tmp_path / "cache").exists()


def fake_compiler(monkeypatch, path: Path, script: str) -> Path:
    """A shell script at ``path`` that runs ``script`` in place of a compiler, set as ``$CC``."""
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    monkeypatch.setenv("CC", str(path))
    return path


@pytest.mark.usefixtures("rebuilt")
def test_a_failing_build_makes_the_scheme_unavailable_with_the_compilers_words(monkeypatch, tmp_path):
    fake_compiler(monkeypatch, tmp_path / "broken-cc", "echo 'cannot compile today' >&2\nexit 3")
    assert not native_available()
    assert "did not build" in unavailable_reason()
    assert "cannot compile today" in unavailable_reason()
    assert list((tmp_path / "cache").rglob("*.so")) == []  # nothing half-built is left to load


def test_the_built_library_is_keyed_by_source_flags_compiler_and_cpu(monkeypatch):
    name = native_module._library_name
    flags = native_module.FLAG_SETS[0]
    here = name(["cc"], flags, b"source")
    assert here == name(["cc"], flags, b"source")
    assert here != name(["cc"], flags, b"edited source")
    assert here != name(["cc"], native_module.FLAG_SETS[1], b"source")
    assert here != name(["clang"], flags, b"source")
    monkeypatch.setattr(native_module, "_cpu", lambda: "another CPU\nflags: sse2")
    assert here != name(["cc"], flags, b"source")


@needs_native
def test_workers_that_build_at_once_all_load_a_whole_library(tmp_path):
    """pytest-xdist workers starting together each build; every one must load what it finds."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    script = "from pytest_rnnmemory.cells.native import *; print(native_available(), unavailable_reason())"
    workers = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    assert [w.communicate(timeout=300)[0].strip() for w in workers] == ["True None"] * 3
    built = Path(tmp_path) / "pytest-rnnmemory" / "native"
    assert len(list(built.glob("*.so"))) == 1
    assert not [p for p in built.iterdir() if p.name.startswith(".build-")]


def test_the_result_cache_keys_on_the_kernels_source_too(monkeypatch):
    from pytest_rnnmemory import cache

    before = cache._package_source.__wrapped__()
    read_bytes = Path.read_bytes

    def edited(path):
        return read_bytes(path) + (b"/* edited */" if path.name == "native.c" else b"")

    monkeypatch.setattr(Path, "read_bytes", edited)
    assert cache._package_source.__wrapped__() != before


@pytest.mark.usefixtures("rebuilt")
def test_a_compiler_that_fails_without_a_word_leaves_a_reason_that_reads_whole(monkeypatch, tmp_path):
    """A compiler that fails without a word (as ``CC=false``) still leaves a reason that reads whole."""
    silent = fake_compiler(monkeypatch, tmp_path / "silent-cc", "exit 1")
    assert not native_available()
    assert unavailable_reason() == f"the kernel did not build: {silent} failed (1): it printed nothing"


def run_sanitized(tmp_path, sanitizers: str, code: str) -> None:
    """Run ``code`` in a process whose kernel is built to stop at the first undefined behaviour of
    the kind ``sanitizers`` names (in C: it faults on some CPUs, and a compiler may assume it never
    happens); skip where the compiler here has no such sanitizer."""
    flags = ("-O1", f"-fsanitize={sanitizers}", "-fno-sanitize-recover=all", "-fPIC", "-shared")
    script = (
        "import sys\n"
        "from pytest_rnnmemory.cells import native\n"
        f"native.FLAG_SETS = ({flags!r},)\n"
        "if not native.native_available():\n"
        "    print('unbuilt:', native.unavailable_reason())\n"
        "    sys.exit(0)\n"
    ) + code
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)},
        cwd=Path(__file__).parents[1],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.stdout.startswith("unbuilt:"):
        pytest.skip(f"the compiler here has no such sanitizer ({done.stdout.strip()})")
    assert done.returncode == 0, done.stderr[-2000:]


@needs_native
def test_the_training_kernel_reads_its_integer_targets_aligned(tmp_path):
    """3 trials of 80 weights each put an odd count of floats before the copied targets."""
    run_sanitized(
        tmp_path,
        "alignment",
        "from pytest_rnnmemory.engine import train\n"
        "from tests.specs import spec_for\n"
        "train(spec_for('lstm', trials=3, hidden=3, epochs=1), scheme='native')\n",
    )


@needs_native
def test_a_nan_passes_through_the_kernels_exponential_without_undefined_behaviour(tmp_path):
    """A NaN input makes its own trial's states NaN, and nothing else: converting it to the
    exponential's integer power of 2 was undefined."""
    run_sanitized(
        tmp_path,
        "shift,float-cast-overflow",
        "import torch\n"
        "from pytest_rnnmemory.cells import CELLS, RECURRENCES\n"
        "modules = [CELLS['lstm'](1, 2) for _ in range(2)]\n"
        "params, _ = torch.func.stack_module_state(modules)\n"
        "x = torch.zeros(2, 1, 3, 1)\n"
        "x[1, 0, 1, 0] = float('nan')\n"
        "with torch.no_grad():\n"
        "    states = native.native_forward(params, x, RECURRENCES['lstm'])\n"
        "assert states[0].isfinite().all() and states[1, 0, 1:].isnan().all(), states\n",
    )


@pytest.fixture
def float64_default():
    """torch's default dtype float64, as a user's conftest may set it; float32 again afterwards."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@needs_native
@pytest.mark.usefixtures("float64_default")
def test_under_a_float64_default_dtype_auto_trains_without_the_native_kernel_and_native_says_why():
    """The weights and data are float64 then, which the kernel does not read: a case under ``auto``
    raised the kernel's ValueError instead of training."""
    assert choose_scheme("gru", hidden=2, trials=2) == "stepwise"
    with pytest.raises(SchemeError, match=r"runs float32, and torch's default dtype here is torch\.float64"):
        choose_scheme("gru", hidden=2, trials=2, requested="native")
    trained = train(spec_for("gru", hidden=2, trials=2))
    assert trained.outcome.scheme == "stepwise"
    assert trained.weights["weight_hh"].dtype == torch.float64


@pytest.mark.usefixtures("rebuilt")
def test_where_the_compiler_python_was_built_with_is_not_installed_cc_builds_the_kernel(monkeypatch):
    """python-build-standalone's Python (uv's, rye's) names clang, where many machines have gcc only."""
    if shutil.which("cc") is None:
        pytest.skip("no cc here")
    real = sysconfig.get_config_var
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(
        sysconfig, "get_config_var", lambda name: "no-such-clang -pthread" if name == "CC" else real(name)
    )
    assert native_module.compiler() == ["cc"]
    assert native_available(), unavailable_reason()
