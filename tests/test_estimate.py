"""The run's training time, estimated from the rates earlier cases trained at."""

from pytest_rnnmemory.estimate import rate_key, seconds, work
from pytest_rnnmemory.suite import load_suite

SUITE = '[suite]\ntask = "latching"\ncells = ["gru"]\nlengths = [20]\n'


def test_a_cell_never_measured_is_estimated_from_the_slowest_cell_of_its_kind(tmp_path):
    """A user's cell under vmap trains tens of times slower than a built-in cell: an unmeasured
    built-in cell is estimated from built-in cells, not from the slowest of everything."""
    path = tmp_path / "s.toml"
    path.write_text(SUITE)
    (case,) = load_suite(path).cases()
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
