"""Cells as users write them: step cells, torch's own cells, cells from their papers, and their errors."""

import inspect
import logging
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from pytest_rnnmemory.cells import RECURRENCES, build_cell, cell_class, ignored_keys, recurrence_of
from pytest_rnnmemory.cells.protocol import SlowBatchingWarning, check_cell
from pytest_rnnmemory.engine import train
from pytest_rnnmemory.errors import CellError
from pytest_rnnmemory.stacked import initial_modules
from pytest_rnnmemory.tasks import make_task
from tests import cells_for_tests
from tests.specs import alone, spec_for

OUTSIDE = ["StepGRU", "IndRNN", "MinGRU", "OrthogonalRNN", "PeepholeLSTM"]


@pytest.mark.parametrize("name", OUTSIDE)
def test_an_outside_cell_trains_in_a_batch_as_each_trial_would_alone(name):
    spec = spec_for(
        f"tests.cells_for_tests:{name}", task="latching", length=5, hidden=3, samples=64, epochs=2
    )
    batch = train(spec)
    assert batch.outcome.scheme == "vmap"
    for i in (0, 2):
        single = train(alone(spec, i))
        for key, value in single.weights.items():
            torch.testing.assert_close(batch.weights[key][i], value[0], rtol=1e-4, atol=1e-5, msg=key)
        assert batch.outcome.metrics[i] == pytest.approx(single.outcome.metrics[0], abs=1e-6)


def test_a_step_cell_runs_from_zero_states_and_reads_out_the_first_part():
    from tests.cells_for_tests import PeepholeLSTM

    torch.manual_seed(0)
    wrapped = build_cell("tests.cells_for_tests:PeepholeLSTM", 2, 3)
    x = torch.randn(4, 5, 2)
    h = c = torch.zeros(4, 3)
    expected = []
    for t in range(5):
        h, c = PeepholeLSTM.forward(wrapped.cell, x[:, t], (h, c))
        expected.append(h)
    torch.testing.assert_close(wrapped(x), torch.stack(expected, 1))


@pytest.mark.parametrize(
    ("torch_cell", "builtin"), [("LSTMCell", "lstm"), ("GRUCell", "gru"), ("RNNCell", "rnn")]
)
def test_torchs_own_cells_run_as_the_built_in_cell_with_torchs_weights(torch_cell, builtin):
    name = f"torch.nn:{torch_cell}"
    assert recurrence_of(name) is RECURRENCES[builtin]
    # So a search tries the same recipes on them: chrono initialisation acts on torch's LSTM cell too.
    assert ignored_keys(name) == ignored_keys(builtin)
    spec = spec_for(name, hidden=3)
    ours = initial_modules(spec, make_task("latching"))[0][0]
    # torch's cell built from the same draws of the same stream: the same weights, names and order.
    with torch.random.fork_rng(devices=[]):
        from pytest_rnnmemory import seeds

        torch.default_generator.manual_seed(seeds.derive_seed(spec.trial_seeds[0], "init"))
        theirs = getattr(torch.nn, torch_cell)(1, 3)
    for key, value in theirs.named_parameters():
        torch.testing.assert_close(getattr(ours, key), value, rtol=0, atol=0)
    x = torch.randn(4, 6, 1)
    state = None
    expected = []
    for t in range(6):
        state = theirs(x[:, t], state)
        expected.append(state[0] if isinstance(state, tuple) else state)
    torch.testing.assert_close(ours(x), torch.stack(expected, 1), rtol=1e-5, atol=1e-6)


def test_cell_args_reach_a_users_constructor():
    module = build_cell("tests.cells_for_tests:IndRNN", 1, 4, {"recurrent_max": 0.001})
    assert float(module.cell.u.detach().max()) <= 0.001
    with pytest.raises(CellError, match=r"is built in and takes no model\.cell_args"):
        build_cell("lstm", 1, 4, {"x": 1})


def test_a_cell_that_fails_in_eval_mode_alone_is_said_to_have_failed_being_evaluated():
    from pytest_rnnmemory.usercode import UserCodeError

    check_cell("tests.cells_for_tests:EvalFails", 1, 2)  # the load-time check runs it as it trains
    with pytest.raises(UserCodeError) as failed:
        train(spec_for("tests.cells_for_tests:EvalFails", length=3))
    first = str(failed.value).splitlines()[0]
    assert "failed in its forward pass in eval mode (validation, the metrics or the gradient " in first


def test_a_failing_cases_message_of_many_lines_is_indented_line_by_line_under_its_first():
    """A shape error from torch spans lines: its later lines stood at the margin, where a reader
    takes them for lines of pytest's own."""
    from pytest_rnnmemory.usercode import UserCodeError

    error = UserCodeError(
        "cell", "mycells:Cell", "the backward pass", ValueError("shapes differ:\n  [2, 3]\n  [3]")
    )
    assert error.describe("demo mycells:Cell-L5").splitlines() == [
        "cell 'mycells:Cell' failed in the backward pass in case demo mycells:Cell-L5",
        "  ValueError: shapes differ:",
        "    [2, 3]",
        "    [3]",
    ]


def test_a_cell_from_an_installed_package_shows_the_frames_of_its_package(tmp_path, monkeypatch):
    """A user's cells installed as a package of theirs (pip install .) live among installed
    packages, whose frames are cut: the case's failure showed no frame at all, not even the cell's."""
    from pytest_rnnmemory import usercode
    from pytest_rnnmemory.usercode import UserCodeError

    package = tmp_path / "site" / "installedcells"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from .cells import EvalFails\n")
    (package / "cells.py").write_text(Path(cells_for_tests.__file__).read_text(encoding="utf-8"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    installed = usercode.installed_roots
    # The folder stands for site-packages: installed code, not the user's, but for their own package.
    monkeypatch.setattr(usercode, "installed_roots", lambda: (*installed(), (tmp_path / "site").resolve()))
    monkeypatch.delitem(sys.modules, "installedcells", raising=False)
    monkeypatch.delitem(sys.modules, "installedcells.cells", raising=False)
    with pytest.raises(UserCodeError) as failed:
        train(spec_for("installedcells:EvalFails", length=3))
    (frame,) = failed.value.frames()
    assert (Path(frame.filename).name, frame.name) == ("cells.py", "forward")
    assert "  the error arose in your code:" in failed.value.describe("demo installedcells:EvalFails-L3")


def test_a_constructor_that_does_not_take_what_the_engine_passes_names_the_argument_and_its_parameters():
    with pytest.raises(CellError) as misspelt:
        build_cell("tests.cells_for_tests:IndRNN", 1, 4, {"recurent_max": 0.5})
    assert str(misspelt.value) == (
        "cell 'tests.cells_for_tests:IndRNN': the engine builds it as "
        "tests.cells_for_tests:IndRNN(input_size, hidden_size, **model.cell_args) = "
        "tests.cells_for_tests:IndRNN(1, 4, recurent_max=0.5), which its "
        "constructor IndRNN(input_size: int, hidden_size: int, recurrent_max: float = 1.0) does not "
        "take: got an unexpected keyword argument 'recurent_max'; model.cell_args.recurent_max "
        "(did you mean 'recurrent_max'?)"
    )
    with pytest.raises(CellError, match=r"does not take: multiple values for argument 'input_size'$"):
        build_cell("tests.cells_for_tests:IndRNN", 1, 4, {"input_size": 3})


def test_under_a_float64_default_dtype_a_users_cell_in_float64_loads_and_trains():
    """The engine trains in torch's default dtype: under float64 (a user's conftest may set it) the
    load check refused every cell of the user's, whose states were float64 as the engine's are."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for name in ("tests.cells_for_tests:StepGRU", "tests.cells_for_tests:MinGRU"):
            check_cell(name, 1, 2)
            trained = train(spec_for(name, length=3, hidden=2, trials=2, samples=32, epochs=1))
            assert {w.dtype for w in trained.weights.values()} == {torch.float64}
    finally:
        torch.set_default_dtype(before)


def test_a_constructor_that_names_the_hidden_size_first_is_told_to_put_the_input_size_first():
    """Built as (input_size, hidden_size) by position, it would have its sizes swapped: a shape error
    in training where they differ, and nothing at all where they are equal."""
    for hidden in (1, 4):
        with pytest.raises(CellError) as swapped:
            build_cell("tests.cells_for_tests:SizesSwapped", 1, hidden)
        assert str(swapped.value) == (
            "cell 'tests.cells_for_tests:SizesSwapped': its constructor SizesSwapped(hidden_size: int, "
            "input_size: int) takes hidden_size first, where the engine passes (input_size, hidden_size) "
            "by position, as torch's cells take them: put input_size first"
        )


def test_torchs_sequence_modules_are_told_to_name_torchs_cells_instead():
    """torch.nn.LSTM returns (output, (h, c)) and cannot be batched: its cell can."""
    with pytest.raises(CellError) as info:
        check_cell("torch.nn:LSTM", 1, 4)
    assert "got tuple; a sequence cell returns its hidden states alone" in str(info.value)
    assert "name torch.nn:LSTMCell, RNNCell or GRUCell" in str(info.value)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("NoGradient", "no gradient reaches its parameters (inp.weight, inp.bias)"),
        ("NanAtInit", "forward returns NaN or infinite states at initialisation"),
        ("DoubleStates", "forward must return states of its input's dtype, torch.float32, got torch.float64"),
        ("StepForgetsC", "a step must return the next state, a tuple of 2 tensors (h, c) of [batch, hidden]"),
        ("WrongShape", "forward must return hidden states [batch, steps, hidden] = [2, 3, 4]"),
        ("StepDoubles", "a step must return states of its input's dtype, torch.float32, got torch.float64"),
        # Named as in the user's class, not as the engine's wrapper that runs it over a sequence.
        ("StepNoGradient", "no gradient reaches its parameters (gate.weight, gate.bias) at any of 3"),
        (
            "UndeclaredStep",
            "a class is run as a sequence cell, forward(x), unless it declares rnnmemory_state or "
            "subclasses torch.nn.RNNCellBase: is it a step cell?",
        ),
        (
            "TorchStyleUndeclared",
            "its last states do not depend on its first input at any of 3 initialisations, and it also "
            "runs as a step cell, forward(input, state) -> state: a class is run as a sequence cell, "
            "forward(x), unless it declares rnnmemory_state",
        ),
        ("TorchStyleUndeclaredBatchState", "must match the size of tensor b"),
        ("TorchStyleUndeclaredBatchState", "subclasses torch.nn.RNNCellBase: is it a step cell?"),
    ],
)
def test_a_cell_that_breaks_the_protocol_is_one_line_saying_how(name, message):
    with pytest.raises(CellError) as info:
        check_cell(f"tests.cells_for_tests:{name}", 1, 4)
    assert message in str(info.value) and "\n" not in str(info.value)


ALLOWED_STATES = (
    "it must be a non-empty tuple of distinct names, one per state tensor, the readout's first: "
    "('h',) or ('h', 'c')"
)


@pytest.mark.parametrize(
    ("name", "wrong"),
    [
        ("StateAString", "'hidden' is a string, whose letters would be the parts: write ('hidden',)"),
        ("StateEmpty", "() names no part"),
        ("StateTwice", "('h', 'h') names a part twice"),
        ("StateNotNames", "('h', 2) has a part that is not a name"),
        ("StateASet", "{'h'} is a set"),
    ],
)
def test_a_state_declaration_that_is_not_a_tuple_of_names_is_refused_as_the_cell_loads(name, wrong):
    """Refused by the class alone, before anything is built or run: a string was split into its
    letters, and () passed nothing to the user's forward."""
    with pytest.raises(CellError) as info:
        cell_class(f"tests.cells_for_tests:{name}")
    assert str(info.value) == (
        f"cell 'tests.cells_for_tests:{name}': {name}.rnnmemory_state = {wrong}; {ALLOWED_STATES}"
    )


def test_a_state_declared_as_a_list_of_names_loads():
    check_cell("tests.cells_for_tests:StateAList", 1, 4)


def test_a_sequence_cell_that_takes_an_initial_state_loads_though_it_starts_without_memory():
    check_cell("tests.cells_for_tests:SequenceFromAState", 1, 4)


def test_a_sequence_cell_whose_forward_raises_is_not_asked_whether_it_is_a_step_cell():
    with pytest.raises(CellError) as info:
        check_cell("tests.cells_for_tests:MaskedShapeBug", 1, 4)
    assert "forward on a [2, 3, 1] batch raised" in str(info.value) and "step cell" not in str(info.value)


def test_a_unit_dead_at_one_initialisation_is_not_a_cell_without_gradient():
    check_cell("tests.cells_for_tests:DeadUnderSeedZero", 1, 1)


def test_checking_a_cell_leaves_the_callers_random_state_as_it_was():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    check_cell("tests.cells_for_tests:IndRNN", 1, 2)
    assert torch.equal(torch.rand(3), expected)


def test_a_cell_that_raises_as_the_suite_loads_points_to_the_users_line():
    import tests.cells_for_tests as module

    with pytest.raises(CellError) as info:
        check_cell("tests.cells_for_tests:ForwardFails", 1, 4)
    line = inspect.getsourcelines(module.ForwardFails.forward)[1] + 1
    assert f"(at {module.__file__}:{line}, in forward)" in str(info.value)


def test_an_error_raised_inside_an_installed_library_points_to_the_users_call():
    import numpy

    from pytest_rnnmemory.usercode import where

    try:
        numpy.linalg.inv(numpy.zeros((2, 2)))  # raises in numpy's own Python code
    except numpy.linalg.LinAlgError as exc:
        shown, line = where(exc), exc.__traceback__.tb_lineno  # the line of the call, in this test
    assert shown == f" (at {__file__}:{line}, in {inspect.currentframe().f_code.co_name})"


def test_a_step_cell_on_torchs_cell_base_keeps_the_state_it_declares():
    cell = build_cell("tests.cells_for_tests:LSTMOnRNNCellBase", 1, 3)
    assert cell.parts == 2
    check_cell("tests.cells_for_tests:LSTMOnRNNCellBase", 1, 3)


def test_torchs_lstm_cell_under_vmap_names_the_way_around_it():
    class Wrapped(torch.nn.LSTMCell):
        """Not torch's own class: it runs through vmap, which has no rule for lstm_cell."""

    import tests.cells_for_tests as module

    module.WrappedLSTMCell = Wrapped
    try:
        with pytest.raises(
            CellError, match=r"name torch\.nn:LSTMCell .* itself, which runs as the built-in cell"
        ):
            check_cell("tests.cells_for_tests:WrappedLSTMCell", 1, 3)
    finally:
        del module.WrappedLSTMCell


def _stacked(name: str, trials: int, hidden: int):
    """``trials`` of cell ``name`` as the engine stacks them: the module, its weights and buffers."""
    spec = spec_for(f"tests.cells_for_tests:{name}", hidden=hidden, trials=trials)
    cells = [modules[0] for modules in initial_modules(spec, make_task("latching"))]
    params, buffers = torch.func.stack_module_state(cells)
    return cells[0], {k: v.detach().requires_grad_() for k, v in params.items()}, buffers


def _hidden_and_grads(scheme, params, batch):
    hidden = scheme.hidden(params, batch)
    # a loss on every step and every unit, so that every step's backward is checked
    weights = torch.linspace(-1, 1, hidden[0, 0].numel()).view(hidden.shape[2:])
    grads = torch.autograd.grad((hidden * weights).square().sum(), list(params.values()))
    return hidden.detach(), dict(zip(params, grads, strict=True))


@pytest.mark.slow
def test_compiled_cells_give_the_hidden_states_and_gradients_of_vmap(caplog, monkeypatch):
    """The one test that compiles (tens of seconds on a 2-core CPU): a step cell with one state
    tensor, one with (h, c), and a sequence cell, each through Inductor against vmap; then the
    step cell trains as it does under vmap."""
    from pytest_rnnmemory.schemes import Compiled, Vmap, compiler_missing, failed_to_compile

    if compiler_missing():
        pytest.skip(compiler_missing())
    monkeypatch.delenv("TORCH_TRACE", raising=False)
    batch = torch.randn(3, 4, 7, 1, generator=torch.Generator().manual_seed(0))
    for name in ("StepGRU", "PeepholeLSTM", "MinGRU"):
        # hidden 8: a step cell's kernels take vectors of 8 floats (where the machine has wider)
        module, params, buffers = _stacked(name, trials=3, hidden=8)
        eager = _hidden_and_grads(Vmap(module, buffers), params, batch)
        with caplog.at_level(logging.DEBUG):  # compiling, forward and backward, as a case does
            compiled = _hidden_and_grads(Compiled(module, buffers), params, batch)
        assert not [r for r in caplog.records if r.name == "torch.__trace"], name
        assert "C++ wrapper failed" not in caplog.text, name
        assert f"tests.cells_for_tests:{name}" not in failed_to_compile()
        torch.testing.assert_close(compiled[0], eager[0], rtol=1e-5, atol=1e-6, msg=name)
        for key, grad in eager[1].items():
            torch.testing.assert_close(compiled[1][key], grad, rtol=1e-4, atol=1e-6, msg=f"{name} {key}")
        # The engine's weights are views of one flat row per trial, with strides no trace saw.
        flat = torch.cat([v.detach().reshape(3, -1) for v in params.values()], 1).requires_grad_()
        sizes = [v[0].numel() for v in params.values()]
        views = dict(zip(params, torch.split(flat, sizes, 1), strict=True))
        views = {k: v.view(params[k].shape) for k, v in views.items()}
        strided = _hidden_and_grads(Compiled(module, buffers), views, batch)
        assert f"tests.cells_for_tests:{name}" not in failed_to_compile()
        torch.testing.assert_close(strided[0], eager[0], rtol=1e-5, atol=1e-6, msg=name)
        # trial 1 stops: the others run through the code compiled for three trials
        scheme, kept = Compiled(module, buffers), torch.tensor([True, False, True])
        _hidden_and_grads(scheme, params, batch)
        scheme.keep(kept)
        fewer = {k: v.detach()[kept].requires_grad_() for k, v in params.items()}
        eager = _hidden_and_grads(Vmap(module, {k: v[kept] for k, v in buffers.items()}), fewer, batch[kept])
        compiled = _hidden_and_grads(scheme, fewer, batch[kept])
        torch.testing.assert_close(compiled[0], eager[0], rtol=1e-5, atol=1e-6, msg=name)
        for key, grad in eager[1].items():
            torch.testing.assert_close(compiled[1][key], grad, rtol=1e-4, atol=1e-6, msg=f"{name} {key}")
    # the sequence cell's compiled code scans in the native kernel, once forward and once back:
    # its backward reads what its forward kept instead of running the forward again
    module, params, buffers = _stacked("MinGRU", trials=3, hidden=2)
    scheme = Compiled(module, buffers)
    _hidden_and_grads(scheme, params, batch)
    with torch.profiler.profile() as profiled:
        _hidden_and_grads(scheme, params, batch)
    scans = Counter(e.name for e in profiled.events() if e.name.startswith("rnnmemory::"))
    assert scans == {"rnnmemory::logcumsumexp": 1, "rnnmemory::logcumsumexp_backward": 1}
    # one minibatch an epoch: the gradient diagnostic's sequences have the compiled shape
    spec = spec_for(
        "tests.cells_for_tests:StepGRU",
        task="latching",
        length=6,
        hidden=2,
        samples=48,
        epochs=2,
        batch_size=48,
    )
    compiled, eager = train(spec, scheme="compiled"), train(spec, scheme="vmap")
    assert compiled.outcome.scheme == "compiled"
    for key, value in eager.weights.items():
        torch.testing.assert_close(compiled.weights[key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert compiled.outcome.metrics == pytest.approx(eager.outcome.metrics, abs=1e-6)


class _Counted:
    """Stands in for a compiled cell: counts what was compiled and runs the cell under vmap."""

    built: ClassVar[list] = []

    def __init__(self, base, parts, hidden, params, buffers, batch):
        from pytest_rnnmemory.cells.step import StepSequence

        self.module = StepSequence(base, hidden, ("h",) * parts) if parts else base
        _Counted.built.append(tuple(batch.shape))

    def hidden(self, params, buffers, batch):
        prefix = "cell." if hasattr(self.module, "parts") else ""
        with_prefix = {f"{prefix}{k}": v for k, v in params.items()}
        return torch.func.vmap(
            lambda p, b, x: torch.func.functional_call(self.module.to("meta"), (p, b), (x,))
        )(with_prefix, {f"{prefix}{k}": v for k, v in buffers.items()}, batch)


def test_compiled_code_is_built_for_the_widest_training_minibatch_alone(monkeypatch):
    """A last, partial minibatch and evaluation at a shape never compiled run under vmap; the
    compiled step of a step cell serves every length; the process keeps it for later cases."""
    from pytest_rnnmemory import schemes

    monkeypatch.setattr(schemes, "compile_cell", _Counted)
    monkeypatch.setattr(schemes, "_COMPILED", {})
    monkeypatch.setattr(_Counted, "built", [])
    module, params, buffers = _stacked("StepGRU", trials=2, hidden=3)
    scheme = schemes.Compiled(module, buffers)

    def minibatch(size, steps=5):
        return torch.randn(2, size, steps, 1)

    with torch.no_grad():
        scheme.hidden(params, minibatch(50))  # evaluation before training: nothing to compile for
    assert _Counted.built == []
    scheme.hidden(params, minibatch(8))
    scheme.hidden(params, minibatch(8, steps=9))  # another length: the same compiled step
    scheme.hidden(params, minibatch(3))  # the last, partial minibatch
    with torch.no_grad():
        scheme.hidden(params, minibatch(8))
        scheme.hidden(params, minibatch(50))
    assert _Counted.built == [(2, 8, 5, 1)]
    schemes.Compiled(module, buffers).hidden(params, minibatch(8, steps=20))  # a later case
    assert _Counted.built == [(2, 8, 5, 1)]
    sequence, sequence_params, sequence_buffers = _stacked("MinGRU", trials=2, hidden=3)
    scheme = schemes.Compiled(sequence, sequence_buffers)
    scheme.hidden(sequence_params, minibatch(8))
    scheme.hidden(sequence_params, minibatch(8, steps=9))  # a sequence cell compiles per length
    assert _Counted.built == [(2, 8, 5, 1), (2, 8, 5, 1), (2, 8, 9, 1)]


class _Isa:
    def __init__(self, bits):
        self.bits = bits

    def bit_width(self):
        return self.bits


@pytest.mark.parametrize(
    ("machine", "width", "device", "settings"),
    [
        ((512, 256), 8, "cpu", {"cpp_wrapper": True, "cpp.simdlen": 256}),
        ((512, 256), 24, "cpu", {"cpp_wrapper": True, "cpp.simdlen": 256}),
        ((512, 256), 16, "cpu", {"cpp_wrapper": True}),  # filled by the widest vectors
        ((512, 256), 1, "cpu", {"cpp_wrapper": True}),
        ((256,), 8, "cpu", {"cpp_wrapper": True}),  # vectors of 8 are the widest already
        ((512,), 8, "cpu", {"cpp_wrapper": True}),  # none narrower to choose
        ((512, 256), 8, "cuda", {}),
    ],
)
def test_a_step_cell_compiles_for_the_machine_and_its_width(monkeypatch, machine, width, device, settings):
    from torch._inductor import cpu_vec_isa

    from pytest_rnnmemory.cells.compiled import _step_settings

    monkeypatch.setattr(cpu_vec_isa, "pick_vec_isa", lambda: _Isa(machine[0]))
    monkeypatch.setattr(cpu_vec_isa, "valid_vec_isa_list", lambda: [_Isa(bits) for bits in machine])
    assert _step_settings(width, device) == settings


def test_a_graph_whose_cpp_wrapper_does_not_build_compiles_with_the_python_wrapper(monkeypatch, caplog):
    from torch.fx.experimental.proxy_tensor import make_fx

    from pytest_rnnmemory.cells.compiled import _inductor

    asked = []

    def compile(graph, example, options=None):
        asked.append((dict(options or {}), len(graph.graph.nodes)))
        graph.graph.erase_node(next(iter(graph.graph.find_nodes(op="output"))))  # as a failed pass might
        if (options or {}).get("cpp_wrapper"):
            raise RuntimeError("no C shim for this operator")
        return "compiled"

    monkeypatch.setattr(torch._inductor, "compile", compile)
    graph = make_fx(lambda x: x.sin() * 2)(torch.ones(3))
    nodes = len(graph.graph.nodes)
    with caplog.at_level(logging.DEBUG, logger="pytest_rnnmemory"):
        assert _inductor(graph, [torch.ones(3)], {"cpp_wrapper": True, "cpp.simdlen": 256}) == "compiled"
    assert "C++ wrapper failed (no C shim for this operator)" in caplog.text
    assert asked == [({"cpp_wrapper": True, "cpp.simdlen": 256}, nodes), ({"cpp.simdlen": 256}, nodes)]


@pytest.fixture
def counted(monkeypatch):
    """The compiled scheme with :class:`_Counted` in place of Inductor, and empty caches."""
    from pytest_rnnmemory import schemes

    monkeypatch.setattr(schemes, "compile_cell", _Counted)
    monkeypatch.setattr(schemes, "_COMPILED", {})
    monkeypatch.setattr(schemes, "_FAILED", set())
    monkeypatch.setattr(_Counted, "built", [])
    return schemes


def test_cells_built_with_other_arguments_share_no_compiled_code(counted):
    """Compiled code is traced from a cell's attributes as well as its weights' shapes."""
    module, params, buffers = _stacked("IndRNN", trials=2, hidden=3)
    batch = torch.randn(2, 4, 5, 1)
    counted.Compiled(module, buffers).hidden(params, batch)
    other = build_cell("tests.cells_for_tests:IndRNN", 1, 3)
    counted.Compiled(other, buffers).hidden(params, batch)  # built alike: the same code
    assert len(_Counted.built) == 1
    other.cell.scale = 3.0  # as a cell_args value kept by __init__ would be
    counted.Compiled(other, buffers).hidden(params, batch)
    assert len(_Counted.built) == 2
    other.cell.activation = lambda h: h  # not describable: compiled for its case alone
    scheme = counted.Compiled(other, buffers)
    scheme.hidden(params, batch)
    scheme.hidden(params, batch)
    counted.Compiled(other, buffers).hidden(params, batch)
    assert len(_Counted.built) == 4


def test_configuration_describes_a_cells_plain_attributes():
    from pytest_rnnmemory.cells.compiled import configuration
    from tests.cells_for_tests import IndRNN, StepGRU

    assert configuration(StepGRU(1, 3)) == configuration(StepGRU(1, 3))
    assert configuration(StepGRU(1, 3)) != configuration(IndRNN(1, 3))
    cell = StepGRU(1, 3)
    cell.mask = torch.tensor([1.0, 0.0])
    described = configuration(cell)
    cell.mask = torch.tensor([0.0, 1.0])
    assert configuration(cell) != described
    cell.scale = 1
    as_int = configuration(cell)
    cell.scale = 1.0  # an equal number, but another constant in the traced graph
    assert configuration(cell) != as_int
    cell.act = torch.tanh
    assert configuration(cell) is not None
    cell.act = lambda h: h
    assert configuration(cell) is None


def _squash(module, inputs, output):
    return output * 0.5


def _stretch(module, inputs, output):
    return output * 2.0


def test_configuration_tells_apart_what_equal_keys_would_confuse():
    """Constants a traced graph holds that compare equal, hooks, and a class's own attributes."""
    from pytest_rnnmemory.cells.compiled import configuration
    from tests.cells_for_tests import StepGRU

    cell = StepGRU(1, 3)
    cell.offset = 0.0
    positive = configuration(cell)
    cell.offset = -0.0  # equal to 0.0, yet copysign or 1 / x tell them apart
    assert configuration(cell) != positive
    cell.offset = torch.tensor([0.0])
    positive = configuration(cell)
    cell.offset = torch.tensor([-0.0])
    assert configuration(cell) != positive

    hooked = StepGRU(1, 3)
    handle = hooked.register_forward_hook(_squash)
    squashed = configuration(hooked)
    other = StepGRU(1, 3)
    other.register_forward_hook(_squash)  # the same hook, under another handle's id
    assert configuration(other) == squashed
    handle.remove()
    hooked.register_forward_hook(_stretch)
    assert configuration(hooked) not in (squashed, None)
    hooked.register_forward_hook(lambda module, inputs, output: output * 3.0)
    assert configuration(hooked) is None  # a closure's values cannot be read: this case's own code
    with torch.nn.modules.module.register_module_forward_hook(_squash):
        assert configuration(StepGRU(1, 3)) is None
    backward = torch.nn.modules.module.register_module_full_backward_hook(lambda *args: None)
    backward.remove()  # torch's flag that one was registered stays set
    assert configuration(StepGRU(1, 3)) is not None

    class Gained(StepGRU):
        gain = 1.0

    before = configuration(Gained(1, 3))
    Gained.gain = 0.1  # a class-wide constant changed between two cases of one process
    assert configuration(Gained(1, 3)) != before
    Gained.act = torch.tanh
    with_tanh = configuration(Gained(1, 3))
    Gained.act = torch.sigmoid
    assert configuration(Gained(1, 3)) not in (with_tanh, None)
    Gained.settings = object()  # a value that cannot be compared: code for its case alone
    assert configuration(Gained(1, 3)) is None


def test_trials_that_stop_leave_their_places_to_the_others(counted):
    """After trials stop, the kept ones run through the code compiled for the trials the case
    started with, with the hidden states and gradients they have alone, and nothing compiles."""
    module, params, buffers = _stacked("StepGRU", trials=4, hidden=3)
    batch = torch.randn(4, 6, 5, 1, generator=torch.Generator().manual_seed(1))
    scheme = counted.Compiled(module, buffers)
    _hidden_and_grads(scheme, params, batch)
    for kept in (torch.tensor([True, False, True, True]), torch.tensor([False, True, True])):
        scheme.keep(kept)
        params = {k: v.detach()[kept].requires_grad_() for k, v in params.items()}
        buffers = {k: v[kept] for k, v in buffers.items()}
        batch = batch[kept]
        got = _hidden_and_grads(scheme, params, batch)
        expected = _hidden_and_grads(counted.Vmap(module, buffers), params, batch)
        torch.testing.assert_close(got[0], expected[0])
        for key, grad in expected[1].items():
            torch.testing.assert_close(got[1][key], grad, msg=key)
    assert _Counted.built == [(4, 6, 5, 1)]


def test_buffers_a_compiled_cell_updates_keep_every_update_once_after_trials_stop(counted):
    """A cell's in-place updates of its buffers (BatchNorm's running statistics) reach the case's
    buffers, once a call, when compiled code runs on copies of them (the places of stopped trials
    filled), as under vmap."""
    module, params, buffers = _stacked("RunningScale", trials=4, hidden=3)
    batch = torch.randn(4, 6, 5, 1, generator=torch.Generator().manual_seed(2))
    compiled = counted.Compiled(module, buffers)
    eager = counted.Vmap(module, {k: v.clone() for k, v in buffers.items()})
    for kept in (None, torch.tensor([True, False, True, True]), torch.tensor([False, True, True])):
        if kept is not None:
            compiled.keep(kept)
            eager.keep(kept)
            params = {k: v.detach()[kept].requires_grad_() for k, v in params.items()}
            batch = batch[kept]
        got, expected = _hidden_and_grads(compiled, params, batch), _hidden_and_grads(eager, params, batch)
        torch.testing.assert_close(got[0], expected[0])
        for name in ("calls", "scale"):
            torch.testing.assert_close(compiled.buffers[name], eager.buffers[name], msg=name)
    assert compiled.buffers["calls"].tolist() == [3.0, 3.0]


def test_a_gradient_with_respect_to_the_input_runs_under_vmap(counted, monkeypatch):
    """The vanishing-gradient diagnostic differentiates the input, which compiled code does not."""
    module, params, buffers = _stacked("StepGRU", trials=2, hidden=3)
    batch = torch.randn(2, 8, 5, 1)
    scheme = counted.Compiled(module, buffers)
    scheme.hidden(params, batch)
    calls = []
    monkeypatch.setattr(_Counted, "hidden", lambda *args: calls.append(args))
    x = batch.clone().requires_grad_()
    hidden = scheme.hidden({k: v.detach() for k, v in params.items()}, x)
    (grad,) = torch.autograd.grad(hidden.sum(), x)
    assert calls == []
    assert grad.abs().sum() > 0
    assert counted.failed_to_compile() == frozenset()


def test_compiled_code_that_fails_as_it_runs_falls_back_to_vmap(counted, monkeypatch, caplog):
    def fails(*args):
        raise RuntimeError("expected stride 8, got 12")

    monkeypatch.setattr(_Counted, "hidden", fails)
    module, params, buffers = _stacked("IndRNN", trials=2, hidden=3)
    batch = torch.randn(2, 4, 5, 1)
    got = _hidden_and_grads(counted.Compiled(module, buffers), params, batch)
    expected = _hidden_and_grads(counted.Vmap(module, buffers), params, batch)
    torch.testing.assert_close(got[0], expected[0])
    assert counted.failed_to_compile() == {"tests.cells_for_tests:IndRNN"}
    assert "(expected stride 8, got 12); it runs under torch.func.vmap instead" in caplog.text


def test_a_cell_that_does_not_compile_runs_under_vmap_after_one_note(monkeypatch, caplog):
    from pytest_rnnmemory import schemes

    def refuses(*args):
        raise RuntimeError("Inductor cannot lower this op\nand a second line")

    monkeypatch.setattr(schemes, "compile_cell", refuses)
    monkeypatch.setattr(schemes, "_COMPILED", {})
    monkeypatch.setattr(schemes, "_FAILED", set())
    module, params, buffers = _stacked("IndRNN", trials=2, hidden=3)
    batch = torch.randn(2, 4, 5, 1)
    expected = _hidden_and_grads(schemes.Vmap(module, buffers), params, batch)
    scheme = schemes.Compiled(module, buffers)
    for _ in range(2):
        got = _hidden_and_grads(scheme, params, batch)
        torch.testing.assert_close(got[0], expected[0])
    notes = [r.getMessage() for r in caplog.records if "compile" in r.getMessage()]
    assert notes == [
        "cell tests.cells_for_tests:IndRNN did not compile or run compiled (Inductor cannot lower this op); "
        "it runs under torch.func.vmap instead"
    ]
    assert schemes.failed_to_compile() == {"tests.cells_for_tests:IndRNN"}


def test_a_cell_with_dropout_trains_each_trial_on_its_own_masks_and_is_evaluated_without(monkeypatch, caplog):
    from pytest_rnnmemory import schemes

    monkeypatch.setattr(schemes, "_COMPILED", {})
    monkeypatch.setattr(schemes, "_FAILED", set())
    check_cell("tests.cells_for_tests:DroppedStep", 1, 3)
    module, params, buffers = _stacked("DroppedStep", trials=2, hidden=3)
    # the two trials' weights made the same: only their masks tell them apart
    params = {k: v[:1].expand_as(v).detach().clone().requires_grad_() for k, v in params.items()}
    batch = torch.ones(2, 64, 5, 1)
    for scheme in (schemes.Vmap(module, buffers), schemes.Compiled(module, buffers)):
        trained = scheme.hidden(params, batch)
        assert not torch.equal(trained[0], trained[1])  # each trial its own dropout masks
        with torch.no_grad():
            evaluated = scheme.hidden(params, batch)
        assert torch.equal(evaluated[0], evaluated[1])
        without = {k: v.detach() for k, v in params.items()}
        module.cell.drop.p = 0.0
        try:
            with torch.no_grad():
                expected = schemes.Vmap(module, buffers).hidden(without, batch)
        finally:
            module.cell.drop.p = 0.5
        torch.testing.assert_close(evaluated, expected)  # eval mode: no dropout
    # Compiling would draw a step's masks again in its backward: the cell runs under vmap.
    assert schemes.failed_to_compile() == {"tests.cells_for_tests:DroppedStep"}
    assert any(
        "it draws random numbers (dropout, say), which a compiled step's backward pass would draw again)"
        in r.getMessage()
        for r in caplog.records
    )


def test_a_step_cell_that_updates_its_buffers_runs_under_vmap_without_compiling_first(monkeypatch, caplog):
    """BatchNorm's statistics, updated at every step, would be updated again by a compiled step's
    backward, which runs the step again; the trace finds it before Inductor compiles anything."""
    from pytest_rnnmemory import schemes

    def compiles(*args):
        raise AssertionError("Inductor was asked to compile a cell that cannot be traced")

    monkeypatch.setattr(torch._inductor, "compile", compiles)
    monkeypatch.setattr(schemes, "_COMPILED", {})
    monkeypatch.setattr(schemes, "_FAILED", set())
    module, params, buffers = _stacked("NormedStep", trials=2, hidden=3)
    batch = torch.randn(2, 8, 5, 1)
    compiled = _hidden_and_grads(
        schemes.Compiled(module, {k: v.clone() for k, v in buffers.items()}), params, batch
    )
    eager = _hidden_and_grads(schemes.Vmap(module, {k: v.clone() for k, v in buffers.items()}), params, batch)
    torch.testing.assert_close(compiled[0], eager[0])
    assert schemes.failed_to_compile() == {"tests.cells_for_tests:NormedStep"}
    assert [
        r.getMessage().partition("(")[2] for r in caplog.records if "did not compile" in r.getMessage()
    ] == [
        "it updates a buffer as it runs (BatchNorm's running statistics, say), which a compiled step's "
        "backward pass would update again); it runs under torch.func.vmap instead"
    ]


def test_a_case_of_a_cell_with_dropout_repeats_exactly_and_leaves_the_callers_random_state():
    spec = spec_for(
        "tests.cells_for_tests:DroppedStep", task="latching", length=4, hidden=2, samples=32, epochs=1
    )
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    first = train(spec, scheme="vmap")
    assert torch.equal(torch.rand(2), expected)
    again = train(spec, scheme="vmap")
    for key, value in first.weights.items():
        assert torch.equal(again.weights[key], value), key


def test_compiling_keeps_torchs_trace_log_out_of_the_users_captured_logs(caplog, monkeypatch):
    """Inductor writes hundreds of empty DEBUG lines to torch's structured trace log as it
    compiles; a failing case's captured log showed them all."""
    from pytest_rnnmemory.schemes import _compiling

    monkeypatch.delenv("TORCH_TRACE", raising=False)
    trace = logging.getLogger("torch.__trace")
    with caplog.at_level(logging.DEBUG):
        with _compiling():
            trace.debug("while compiling")
        trace.debug("after")
        monkeypatch.setenv("TORCH_TRACE", "traces")  # the user asked for a trace: it is left alone
        with _compiling():
            trace.debug("traced")
    assert [r.getMessage() for r in caplog.records if r.name == "torch.__trace"] == ["after", "traced"]


def test_compiling_keeps_torchs_own_deprecation_warnings_out_and_the_users_in():
    """Inductor imports torch modules that call deprecated torch.jit functions: fourteen warnings,
    filed under the user's suite file."""
    import warnings

    from pytest_rnnmemory.schemes import _compiling

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _compiling():
            for module in ("torch.jit._script", "mycells"):
                warnings.warn_explicit(
                    f"deprecated in {module}", DeprecationWarning, "f.py", 1, module=module
                )
        warnings.warn_explicit("after", DeprecationWarning, "f.py", 2, module="torch.jit._script")
    assert [str(w.message) for w in caught] == ["deprecated in mycells", "after"]


def test_the_compiled_scheme_compiles_with_torchs_trace_log_kept_out(counted, caplog, monkeypatch):
    class Tracing(_Counted):
        def __init__(self, *args):
            logging.getLogger("torch.__trace").debug("compiling")
            super().__init__(*args)

    monkeypatch.setattr(counted, "compile_cell", Tracing)
    monkeypatch.delenv("TORCH_TRACE", raising=False)
    module, params, buffers = _stacked("IndRNN", trials=2, hidden=3)
    with caplog.at_level(logging.DEBUG):
        _hidden_and_grads(counted.Compiled(module, buffers), params, torch.randn(2, 4, 5, 1))
    assert Tracing.built and not [r for r in caplog.records if r.name == "torch.__trace"]


def test_compiling_is_announced_and_left_out_of_a_cases_pace(counted, caplog):
    """A first compile takes tens of seconds: the run says it is compiling, and the time a case
    has left is estimated from its training alone."""
    from pytest_rnnmemory.engine import ProgressPoint

    class Slow(_Counted):
        def __init__(self, *args):
            time.sleep(0.05)
            super().__init__(*args)

    counted.compile_cell = Slow
    module, params, buffers = _stacked("IndRNN", trials=2, hidden=3)
    before = counted.compiling_seconds()
    with caplog.at_level(logging.INFO, logger="pytest_rnnmemory"):
        counted.Compiled(module, buffers).hidden(params, torch.randn(2, 4, 5, 1))
    assert counted.compiling_seconds() - before >= 0.05
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == (
        "compiling tests.cells_for_tests:IndRNN, one time step, with Inductor "
        "(seconds; tens for a process's first)"
    )
    assert messages[1].startswith("compiled tests.cells_for_tests:IndRNN in ")
    # 25 s elapsed after one epoch of two, 20 of them compiling: 5 s left, not 25
    assert ProgressPoint(1, 2, 10, 25.0, compiling_s=20.0).left_s == pytest.approx(5.0)
    assert ProgressPoint(1, 2, 10, 25.0).left_s == pytest.approx(25.0)


def test_a_case_whose_cell_fell_back_says_it_ran_under_vmap(monkeypatch):
    from pytest_rnnmemory import schemes

    def refuses(*args):
        raise RuntimeError("Inductor cannot lower this op")

    monkeypatch.setattr(schemes, "compile_cell", refuses)
    monkeypatch.setattr(schemes, "_FAILED", set())
    spec = spec_for("tests.cells_for_tests:IndRNN", task="latching", length=4, hidden=2, samples=32, epochs=1)
    assert train(spec, scheme="compiled").outcome.scheme == "vmap"


class _SelfOrthogonal(torch.nn.Module):
    """A step cell that parametrizes its own weight: torch swaps its class for a subclass."""

    rnnmemory_state = ("h",)

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(input_size, hidden_size)
        self.weight = torch.nn.Parameter(torch.empty(hidden_size, hidden_size).uniform_(-0.5, 0.5))
        torch.nn.utils.parametrizations.orthogonal(self, "weight")

    def forward(self, x, h):
        return torch.tanh(self.inp(x) + h @ self.weight.T)


def test_a_cell_that_parametrizes_itself_is_named_by_its_own_class():
    from pytest_rnnmemory.cells.step import StepSequence
    from pytest_rnnmemory.schemes import Compiled

    cell = _SelfOrthogonal(1, 2)
    assert type(cell).__module__ == "torch.nn.utils.parametrize"
    scheme = Compiled(StepSequence(cell, 2, ("h",)), {})
    assert scheme.key[:2] == (__name__, "_SelfOrthogonal")


def test_auto_compiles_a_users_cell_only_where_it_pays(monkeypatch):
    from pytest_rnnmemory.schemes import COMPILE_MIN_CALLS, choose_scheme, compiler_missing

    cell = "tests.cells_for_tests:StepGRU"
    monkeypatch.delenv("RNNMEMORY_COMPILE", raising=False)
    expected = "vmap" if compiler_missing() else "compiled"
    assert choose_scheme(cell, 1, 30, calls=COMPILE_MIN_CALLS) == expected
    assert choose_scheme(cell, 1, 30, calls=COMPILE_MIN_CALLS - 1) == "vmap"
    # a sequence cell is not compiled under auto: the scan cell measured gained nothing
    assert choose_scheme("tests.cells_for_tests:MinGRU", 1, 30, calls=10 * COMPILE_MIN_CALLS) == "vmap"
    monkeypatch.setenv("RNNMEMORY_COMPILE", "off")
    assert choose_scheme(cell, 1, 30, calls=10 * COMPILE_MIN_CALLS) == "vmap"
    assert choose_scheme("lstm", 1, 30, calls=10 * COMPILE_MIN_CALLS) != "compiled"


def test_a_subclass_of_torchs_rnn_cell_is_said_once_to_run_one_trial_after_another():
    """torch batches rnn_tanh_cell under vmap by a loop, with a warning asking for an issue to be filed;
    the load check says what it means for the user, and training does not repeat torch's."""
    name = "tests.cells_for_tests:TweakedRNNCell"
    with pytest.warns(
        SlowBatchingWarning, match=r"calls aten::rnn_tanh_cell, which torch\.func\.vmap has"
    ) as got:
        check_cell(name, 1, 3)
    # shown where the class is written, which is what it speaks of, not where this package found it
    warned = next(w for w in got if w.category is SlowBatchingWarning)
    line = inspect.getsourcelines(cells_for_tests.TweakedRNNCell)[1]
    assert (warned.filename, warned.lineno) == (cells_for_tests.__file__, line)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(spec_for(name, length=3, hidden=3, samples=32, epochs=1))
    assert [str(w.message) for w in caught] == []
