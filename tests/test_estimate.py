"""The run's training time, estimated from the rates earlier cases trained at."""

import pytest

from pytest_rnnmemory.cells import ignored_keys
from pytest_rnnmemory.estimate import rate_key, seconds, work
from pytest_rnnmemory.recipes import TuningTrial, recipes_of, repeats, successive_halving
from pytest_rnnmemory.suite import load_suite

SUITE = '[suite]\ntask = "latching"\ncells = ["gru"]\nlengths = [20]\n'


@pytest.fixture
def case(tmp_path):
    """The one case of :data:`SUITE`: a GRU on latching at length 20."""
    path = tmp_path / "s.toml"
    path.write_text(SUITE)
    (only,) = load_suite(path).cases()
    return only


def test_a_cell_never_measured_is_estimated_from_the_slowest_cell_of_its_kind(case):
    """A user's cell under vmap trains tens of times slower than a built-in cell: an unmeasured
    built-in cell is estimated from built-in cells, not from the slowest of everything."""
    hidden = case.suite.model.hidden
    rates = {
        rate_key("rnn", hidden, "cpu"): 2000.0,
        rate_key("lstm", hidden, "cpu"): 1000.0,
        rate_key("mycells:Slow", hidden, "cpu"): 10.0,
        rate_key("lstm", hidden, "cuda:0"): 1.0,
    }
    assert seconds([case], rates, "cpu") == work(case) / 1000.0
    # torch's cells run as the built-in cells: built-in, though their names hold a colon.
    torchs = {
        rate_key("torch.nn:LSTMCell", hidden, "cpu"): 800.0,
        rate_key("mycells:Slow", hidden, "cpu"): 10.0,
    }
    assert seconds([case], torchs, "cpu") == work(case) / 800.0
    # Measured on another device only, a rate of the same kind is nearer than a user's cell here.
    elsewhere = {rate_key("lstm", hidden, "cuda"): 50.0, rate_key("mycells:Slow", hidden, "cpu"): 10.0}
    assert seconds([case], elsewhere, "cpu") == work(case) / 50.0
    # A rate of its own is used as it is.
    assert seconds([case], {**rates, rate_key("gru", hidden, "cpu"): 500.0}, "cpu") == work(case) / 500.0
    # Even where it is not the slowest of its kind.
    assert seconds([case], {**rates, rate_key("gru", hidden, "cpu"): 1500.0}, "cpu") == work(case) / 1500.0


def test_a_cell_with_no_rate_of_its_kind_anywhere_is_estimated_from_the_slowest_rate_measured(case):
    """Only users' cells measured: a built-in cell is estimated from the slowest of them, which
    overestimates rather than promise a run shorter than it will be."""
    hidden = case.suite.model.hidden
    rates = {rate_key("mycells:Slow", hidden, "cpu"): 10.0, rate_key("mycells:Fast", hidden, "cpu"): 40.0}
    assert seconds([case], rates, "cpu") == work(case) / 10.0


def test_a_rate_is_kept_by_device_type_not_by_device_index(case):
    """A GRU measured on the first GPU trains as fast on the second: its own rate, not the slowest
    other cell's on that one."""
    hidden = case.suite.model.hidden
    rates = {rate_key("gru", hidden, "cuda:0"): 300.0, rate_key("lstm", hidden, "cuda:1"): 100.0}
    assert seconds([case], rates, "cuda:1") == work(case) / 300.0


@pytest.mark.parametrize(
    "grid",
    [
        '"model.init" = ["torch", "chrono"]\n"train.lr" = [0.01, 0.05]\n',
        '"model.init" = ["torch", "chrono"]\n',
        '"model.init" = ["torch", "chrono"]\n"train.lr" = [0.01, 0.03, 0.05, 0.1]\n'
        '"train.clip" = [0.0, 1.0]\n',
    ],
    ids=["init-and-lr", "init-alone", "sixteen"],
)
def test_a_searched_case_is_estimated_with_the_tuning_trials_its_search_trains(tmp_path, grid):
    """model.init does nothing for the RNN: its search halves over the recipes that differ for it
    (2 of 4 here: 20 tuning trials, not 30), and a grid all one for it trains one recipe's 10."""
    path = tmp_path / "s.toml"
    path.write_text('[suite]\ntask = "latching"\ncells = ["rnn", "lstm"]\nlengths = [5]\n[search]\n' + grid)
    suite = load_suite(path)
    for case in (c for c in suite.cases() if not c.control):
        recipes = recipes_of(suite.config.grid)
        search = successive_halving(
            recipes,
            suite.config.search.trials,
            lambda recipe, start, stop: {5: [TuningTrial(False, 0.5)] * (stop - start)},
            same_as=repeats(recipes, ignored_keys(case.trained_cell)),
        )
        per_trial = suite.train.epochs * suite.train.samples * suite.task.steps(case.length)
        assert work(case) == (suite.verdict.trials + search.trained) * per_trial, case.cell
