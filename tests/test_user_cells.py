"""Cells as users write them: step cells, torch's own cells, cells from their papers, and their errors."""

import pytest
import torch

from pytest_rnnmemory.cells import RECURRENCES, build_cell, recurrence_of
from pytest_rnnmemory.cells.protocol import check_cell
from pytest_rnnmemory.engine import train
from pytest_rnnmemory.errors import CellError
from pytest_rnnmemory.stacked import initial_modules
from pytest_rnnmemory.tasks import make_task
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


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("NoGradient", "no gradient reaches its parameters (inp.weight, inp.bias)"),
        ("NanAtInit", "forward returns NaN or infinite states at initialisation"),
        ("DoubleStates", "forward must return float32 states, got torch.float64"),
        ("StepForgetsC", "a step must return the next state, a tuple of 2 tensors (h, c) of [batch, hidden]"),
        ("WrongShape", "forward must return hidden states [batch, steps, hidden] = [2, 3, 4]"),
    ],
)
def test_a_cell_that_breaks_the_protocol_is_one_line_saying_how(name, message):
    with pytest.raises(CellError) as info:
        check_cell(f"tests.cells_for_tests:{name}", 1, 4)
    assert message in str(info.value) and "\n" not in str(info.value)


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


@pytest.mark.slow
def test_a_compiled_step_cell_trains_as_it_does_under_vmap(monkeypatch):
    """The one test that compiles (tens of seconds on a 2-core CPU): torch.compile of one time step."""
    from pytest_rnnmemory.schemes import compiler_missing

    if compiler_missing():
        pytest.skip(compiler_missing())
    spec = spec_for(
        "tests.cells_for_tests:StepGRU", task="latching", length=6, hidden=2, samples=48, epochs=2
    )
    compiled, eager = train(spec, scheme="compiled"), train(spec, scheme="vmap")
    assert compiled.outcome.scheme == "compiled"
    for key, value in eager.weights.items():
        torch.testing.assert_close(compiled.weights[key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert compiled.outcome.metrics == pytest.approx(eager.outcome.metrics, abs=1e-6)


def test_auto_compiles_a_users_cell_only_where_it_pays(monkeypatch):
    from pytest_rnnmemory.schemes import COMPILE_MIN_CALLS, choose_scheme, compiler_missing

    cell = "tests.cells_for_tests:StepGRU"
    monkeypatch.delenv("RNNMEMORY_COMPILE", raising=False)
    expected = "vmap" if compiler_missing() else "compiled"
    assert choose_scheme(cell, 1, 30, calls=COMPILE_MIN_CALLS) == expected
    assert choose_scheme(cell, 1, 30, calls=COMPILE_MIN_CALLS - 1) == "vmap"
    monkeypatch.setenv("RNNMEMORY_COMPILE", "off")
    assert choose_scheme(cell, 1, 30, calls=10 * COMPILE_MIN_CALLS) == "vmap"
    assert choose_scheme("lstm", 1, 30, calls=10 * COMPILE_MIN_CALLS) != "compiled"
