"""The batched engine: trials are independent, exact, and follow torch's cells."""

import dataclasses
import math

import pytest
import torch

from pytest_rnnmemory import engine, schemes, seeds, stacked
from pytest_rnnmemory.cells import CELLS, LSTM1997, ignored_keys
from pytest_rnnmemory.cells.native import native_available
from pytest_rnnmemory.data import Sequences, TrialData, sample_trials
from pytest_rnnmemory.engine import GRADIENT_SEQUENCES, train, train_case
from pytest_rnnmemory.errors import SchemeError
from pytest_rnnmemory.outcome import CaseOutcome
from pytest_rnnmemory.schema import ModelSection
from pytest_rnnmemory.schemes import choose_scheme
from pytest_rnnmemory.stacked import initial_modules
from pytest_rnnmemory.tasks import make_task
from tests.specs import alone, spec_for

TORCH_CELLS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def torch_twin(cell, cell_module, readout):
    """``torch.nn``'s own cell and a ``Linear`` readout holding one trial's initial weights."""
    rnn = TORCH_CELLS[cell](1, cell_module.hidden_size, batch_first=True)
    linear = torch.nn.Linear(cell_module.hidden_size, 2)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(rnn, f"{name}_l0").copy_(getattr(cell_module, name))
        linear.weight.copy_(readout.weight)
        linear.bias.copy_(readout.bias)
    return rnn, linear


def train_twin(spec, index, rnn, linear, loss):
    """Train torch.nn's twin of trial ``index`` as the engine trains the trial: Adam at the recipe's
    rate, over the trial's own minibatch order; ``loss(idx)`` is the loss of the sequences ``idx``."""
    order = seeds.stream(spec.trial_seeds[index], "order")
    optimizer = torch.optim.Adam([*rnn.parameters(), *linear.parameters()], lr=spec.train.lr)
    for _ in range(spec.train.epochs):
        perm = torch.randperm(spec.train.samples, generator=order)
        for start in range(0, spec.train.samples, spec.train.batch_size):
            idx = perm[start : start + spec.train.batch_size]
            optimizer.zero_grad()
            loss(idx).backward()
            optimizer.step()


def last_step_loss(rnn, linear, x, y):
    """A minibatch's cross-entropy at the last step, through torch.nn's twin."""
    return lambda idx: torch.nn.functional.cross_entropy(linear(rnn(x[idx])[0][:, -1]), y[idx])


def trial_data(spec, stream, count):
    """Each trial's sequences from its own stream: ``x [n, S, T, I]`` and each trial's (first step, y)."""
    return sample_trials(
        spec, make_task(spec.task, spec.task_params), stream, count, lengths=spec.train.lengths
    )


@pytest.mark.parametrize("scheme", ["fused", "stepwise", "vmap"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_trial_in_batch_equals_trial_alone(cell, scheme):
    spec = spec_for(cell)
    batch = train(spec, scheme=scheme)
    for i in (0, 2):
        single = train(alone(spec, i), scheme=scheme)
        for name, value in single.weights.items():
            torch.testing.assert_close(batch.weights[name][i], value[0], rtol=1e-4, atol=1e-5)
        assert batch.outcome.metrics[i] == pytest.approx(single.outcome.metrics[0], abs=1e-6)
        assert batch.outcome.train_loss[i] == pytest.approx(single.outcome.train_loss[0], rel=1e-4)


@pytest.mark.parametrize("scheme", ["fused", "stepwise"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_every_scheme_trains_the_same_weights_as_vmap(cell, scheme):
    """vmap runs the plain modules of cells/builtin.py; the fast schemes must agree with them."""
    spec = spec_for(cell, task="addition", length=3)
    fast = train(spec, scheme=scheme)
    vmapped = train(spec, scheme="vmap")
    for name, value in fast.weights.items():
        torch.testing.assert_close(vmapped.weights[name], value, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_one_trial_follows_torch_nn_and_adam(cell):
    """Trial 1, trained in a batch of three, ends where torch.nn's module and Adam take it."""
    spec = spec_for(cell, samples=40, batch_size=16, epochs=2)
    weights = train(spec, scheme="fused").weights

    index = 1
    cell_module, readout = initial_modules(spec, make_task(spec.task))[index]
    rnn, linear = torch_twin(cell, cell_module, readout)
    x, y = trial_data(spec, "train", spec.train.samples)
    train_twin(spec, index, rnn, linear, last_step_loss(rnn, linear, x[index], y[index][1][:, -1]))
    torch.testing.assert_close(weights["weight_hh"][index], rnn.weight_hh_l0.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(weights["readout.weight"][index], linear.weight.detach(), rtol=1e-4, atol=1e-5)


def chrono_by_hand(spec, index, gates):
    """The trial's torch-initialised biases with chrono's and the forget bias's changes, from the formula.

    u is drawn from the trial's init stream after its cell and readout, uniform in [1, T_max - 1];
    each listed gate's total bias becomes sign * log u, all of it in the input-side bias.
    """
    torch_spec = dataclasses.replace(spec, model=ModelSection(hidden=spec.hidden))
    cell_module, readout = initial_modules(torch_spec, make_task(spec.task))[index]
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seeds.derive_seed(spec.trial_seeds[index], "init"))
        CELLS[spec.cell](1, spec.hidden)
        stacked.Readout(spec.hidden, 2)
        tmax = spec.model.chrono_tmax or spec.length
        u = 1.0 + torch.rand(spec.hidden) * (tmax - 2)
    h = spec.hidden
    with torch.no_grad():
        for gate, sign in gates:
            cell_module.bias_ih[gate * h : (gate + 1) * h] = sign * torch.log(u)
            cell_module.bias_hh[gate * h : (gate + 1) * h] = 0.0
        if spec.cell == "lstm":
            cell_module.bias_ih[h : 2 * h] += spec.model.forget_bias
    return cell_module, readout


@pytest.mark.parametrize("scheme", ["native", "stepwise", "fused", "vmap"])
@pytest.mark.parametrize(
    ("cell", "gates", "model"),
    [
        ("lstm", ((1, 1.0), (0, -1.0)), {"init": "chrono"}),
        ("lstm", ((1, 1.0), (0, -1.0)), {"init": "chrono", "forget_bias": 1.0, "chrono_tmax": 40}),
        ("lstm", (), {"forget_bias": 1.0}),
        ("gru", ((1, 1.0),), {"init": "chrono"}),
    ],
)
def test_chrono_and_forget_bias_train_as_torch_nn_with_those_biases_set_by_hand(scheme, cell, gates, model):
    if scheme == "native" and not native_available():
        pytest.skip("the native kernel is unavailable here")
    spec = spec_for(cell, length=12, samples=40, batch_size=16, epochs=2, hidden=3, model=model)
    if model.get("init") != "chrono":
        gates = ()
    index = 1
    cell_module, readout = chrono_by_hand(spec, index, gates)
    ours = initial_modules(spec, make_task(spec.task))[index][0]
    for name in ("bias_ih", "bias_hh", "weight_ih", "weight_hh"):
        torch.testing.assert_close(getattr(ours, name), getattr(cell_module, name), rtol=0, atol=1e-7)
    rnn, linear = torch_twin(cell, cell_module, readout)
    x, y = trial_data(spec, "train", spec.train.samples)
    train_twin(spec, index, rnn, linear, last_step_loss(rnn, linear, x[index], y[index][1][:, -1]))
    weights = train(spec, scheme=scheme).weights
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        torch.testing.assert_close(
            weights[name][index], getattr(rnn, f"{name}_l0").detach(), rtol=1e-4, atol=1e-5
        )
    torch.testing.assert_close(weights["readout.weight"][index], linear.weight.detach(), rtol=1e-4, atol=1e-5)


def test_init_and_forget_bias_change_nothing_for_cells_without_gates():
    plain = initial_modules(spec_for("rnn", hidden=3), make_task("latching"))
    chrono = initial_modules(
        spec_for("rnn", hidden=3, model={"init": "chrono", "forget_bias": 1.0}), make_task("latching")
    )
    for (a, _), (b, _) in zip(plain, chrono, strict=True):
        for name, value in a.named_parameters():
            assert torch.equal(value, dict(b.named_parameters())[name])


def test_trials_are_independent_models():
    spec = spec_for("rnn", trials=4)
    modules = initial_modules(spec, make_task(spec.task))
    first = [m[0].weight_hh.detach().clone() for m in modules]
    assert all(not torch.equal(first[0], w) for w in first[1:])
    x, _ = trial_data(spec, "train", 8)
    xv, _ = trial_data(spec, "val", 8)
    assert not torch.equal(x[0], x[1])
    assert not torch.equal(x[0], xv[0])


@pytest.mark.parametrize("task", ["xor_delay", "parity"])
def test_no_validation_sequence_is_a_training_sequence(task):
    """Validation data is drawn fresh from a stream of its own (docs/TASKS.md), never the training
    sequences again: 32 fair bits per sequence make a chance repeat among 64 x 48 pairs about 1e-6."""
    spec = spec_for("rnn", task=task, length=16 if task == "xor_delay" else 32, trials=2)
    data = TrialData.draw(spec, make_task(task), torch.device("cpu"))
    for trial in range(2):
        train_x = data.train.x[trial].flatten(1)
        val_x = data.val.x[trial].flatten(1)
        assert not (val_x[:, None] == train_x[None]).all(-1).any()


def test_the_same_spec_gives_the_same_result():
    spec = spec_for("gru")
    a, b = train_case(spec), train_case(spec)
    assert a.metrics == b.metrics
    assert a.train_loss == b.train_loss


@pytest.mark.parametrize("scheme", ["fused", "stepwise", "vmap"])
def test_a_diverging_trial_is_marked_and_the_others_train_on(monkeypatch, scheme):
    """Trial 2's readout weights are infinite, as an overflowing update would leave them.

    It must be marked diverged and frozen, while the other trials, which share
    its tensors (and, in the fused scheme, its kernels), train exactly as they
    do without it.
    """
    spec = spec_for("rnn", trials=4, task="xor_delay", length=2)
    healthy = train_case(spec, scheme=scheme)
    original = stacked.initial_modules

    def poisoned(spec_, task):
        modules = original(spec_, task)
        with torch.no_grad():
            modules[2][1].weight.fill_(math.inf)
        return modules

    monkeypatch.setattr(stacked, "initial_modules", poisoned)
    trained = train(spec, scheme=scheme)
    outcome = trained.outcome
    assert outcome.diverged == (False, False, True, False)
    assert outcome.metrics[2] == 0.0
    assert outcome.train_loss[2] == (None, None)
    for i in (0, 1, 3):
        assert outcome.metrics[i] == pytest.approx(healthy.metrics[i], abs=1e-6)
        assert outcome.train_loss[i] == pytest.approx(healthy.train_loss[i], rel=1e-5)
    for value in trained.weights.values():
        assert torch.isfinite(value).all()


def test_clipping_is_per_trial():
    """Trial 0 alone and in a batch end the same with clipping on: no norm is shared."""
    spec = spec_for("lstm", clip=0.01)
    batch = train(spec).weights
    single = train(alone(spec, 0)).weights
    torch.testing.assert_close(batch["weight_ih"][0], single["weight_ih"][0], rtol=1e-4, atol=1e-5)


def test_sequence_accuracy_needs_every_scored_step():
    seq = train_case(spec_for("gru", task="addition", length=3, metric="sequence_accuracy"))
    acc = train_case(spec_for("gru", task="addition", length=3, metric="accuracy"))
    assert all(s <= a + 1e-6 for s, a in zip(seq.metrics, acc.metrics, strict=True))


def test_auto_scheme_follows_the_measurements(monkeypatch):
    # Where the native kernel cannot be built (tests/test_native.py pins the rule where it can).
    monkeypatch.setattr(schemes, "native_available", lambda: False)
    assert choose_scheme("lstm", hidden=1, trials=30) == "fused"
    assert choose_scheme("lstm", hidden=64, trials=30) == "stepwise"
    assert choose_scheme("rnn", hidden=1, trials=30) == "stepwise"
    assert choose_scheme("gru", hidden=1, trials=30) == "stepwise"
    assert choose_scheme("gru", hidden=1, trials=30, device="cuda") == "fused"
    assert choose_scheme("tests.cells_for_tests:ZeroRecurrence", hidden=1, trials=3) == "vmap"
    with pytest.raises(SchemeError, match=r"runs the built-in cells .* only, not"):
        choose_scheme("tests.cells_for_tests:ZeroRecurrence", hidden=1, trials=3, requested="fused")
    with pytest.raises(SchemeError, match=r"unknown scheme \(did you mean 'fused'\?\)"):
        choose_scheme("lstm", hidden=1, trials=3, requested="fusd")


def test_user_cell_trains_through_vmap():
    spec = spec_for("tests.cells_for_tests:ZeroRecurrence", hidden=2)
    outcome = train_case(spec)
    assert outcome.scheme == "vmap"
    # A cell with no memory cannot latch: it never beats chance at the last step.
    assert max(outcome.metrics) < 0.75


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("scheme", ["fused", "stepwise", "vmap"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_cuda_trains_what_the_cpu_trains(cell, scheme):
    """Data is drawn on the CPU from the trials' seeds, so both devices see the same sequences."""
    spec = spec_for(cell)
    cpu = train(spec, scheme=scheme)
    cuda = train(spec, device="cuda", scheme=scheme)
    assert cuda.outcome.device.startswith("cuda")
    for name, value in cpu.weights.items():
        torch.testing.assert_close(cuda.weights[name], value, rtol=1e-3, atol=1e-4)


def test_the_shuffled_control_trains_and_validates_on_moved_targets():
    spec = spec_for("rnn", trials=2, task="latching", length=4, samples=400, val_samples=2000)
    task = make_task("latching")
    plain = TrialData.draw(spec, task, torch.device("cpu"))
    moved = TrialData.draw(dataclasses.replace(spec, shuffle_labels=True), task, torch.device("cpu"))
    for true, shuffled in ((plain.train, moved.train), (plain.val, moved.val)):
        assert torch.equal(true.x, shuffled.x) and not torch.equal(true.y, shuffled.y)
        # The same targets, moved between sequences: class counts per trial are unchanged.
        assert torch.equal(true.y.sort(dim=1).values, shuffled.y.sort(dim=1).values)
    # A trial that learned the true rule from the moved training targets (which agree with the
    # true ones on about half of them, never exactly) is right at chance on the moved validation
    # targets: it cannot reach the threshold by its memory.
    agreement = (plain.val.y == moved.val.y).float().mean(dim=1).squeeze(-1)
    assert ((agreement - 0.5).abs() < 0.05).all()


def test_the_memoryless_control_cannot_latch():
    outcome = train_case(spec_for("memoryless", task="latching", length=4))
    assert outcome.scheme == ("native" if native_available() else "vmap")
    assert max(outcome.metrics) < 0.75


@pytest.mark.parametrize("task", ["latching", "adding", "addition"])
def test_the_memoryless_control_trains_in_the_native_kernel_as_under_vmap(task):
    if not native_available():
        pytest.skip("the native kernel is unavailable here")
    spec = spec_for("memoryless", task=task, length=3 if task == "addition" else 10, hidden=3, clip=0.5)
    native, vmapped = train(spec, scheme="native"), train(spec, scheme="vmap")
    for name, value in vmapped.weights.items():
        torch.testing.assert_close(native.weights[name], value, rtol=1e-4, atol=1e-5, msg=name)
    assert native.outcome.metrics == pytest.approx(vmapped.outcome.metrics, abs=1e-6)
    # Its recurrent weights stay at zero: it remembers nothing in either scheme.
    assert not native.weights["weight_hh"].any() and not native.weights["bias_hh"].any()
    with pytest.raises(SchemeError, match="runs the built-in cells rnn, lstm, gru, lstm1997 only"):
        choose_scheme("memoryless", hidden=3, trials=3, requested="stepwise")


def test_the_1997_lstm_starts_as_the_paper_did_and_trains_alike_in_every_scheme_that_runs_it():
    cell = LSTM1997(1, 4)
    # Input gates (first block) at -3 for the first half of the units, -6 for the second.
    assert cell.bias_ih[:4].tolist() == [-3.0, -3.0, -6.0, -6.0]
    assert (
        not cell.bias_hh.any() and cell.weight_hh.abs().max() <= 0.1 and cell.bias_ih[4:].abs().max() <= 0.1
    )
    assert ignored_keys("lstm1997") == {"model.init", "model.forget_bias"}
    spec = spec_for("lstm1997", task="adding", length=10, hidden=3, lr=0.5, optimizer="sgd", clip=1.0)
    vmapped = train(spec, scheme="vmap")
    for scheme in ("stepwise", *(("native",) if native_available() else ())):
        fast = train(spec, scheme=scheme)
        for name, value in vmapped.weights.items():
            torch.testing.assert_close(fast.weights[name], value, rtol=1e-4, atol=1e-5, msg=name)
    # torch has no fused op for it; on CUDA, auto picks the stepwise recurrence.
    with pytest.raises(SchemeError, match="fused' runs the built-in cells rnn, lstm, gru only"):
        choose_scheme("lstm1997", hidden=3, trials=3, requested="fused")
    assert choose_scheme("lstm1997", hidden=1, trials=3, device="cuda") == "stepwise"


# --- Regression tasks, length generalisation, the gradient diagnostic ---------------------------------


def test_a_regression_task_trains_with_squared_error_and_scores_by_tolerance():
    spec = spec_for("gru", length=10, trials=2, task="adding", hidden=4, samples=1024, epochs=4, lr=0.02)
    trained = train(spec)
    outcome = trained.outcome
    assert trained.weights["readout.weight"].shape == (2, 1, 4)  # one output, not two classes
    first, last = (row[0] for row in outcome.train_loss), (row[-1] for row in outcome.train_loss)
    assert all(b < a for a, b in zip(first, last, strict=True))
    # A right sequence is one whose end is within the tolerance: chance is about 0.154 with
    # a constant 0.5; these trials get most sequences right after four short epochs.
    assert all(m > 0.5 for m in outcome.metrics)


def test_the_tolerance_decides_what_counts_as_right():
    strict = spec_for("gru", length=10, trials=1, task="adding", hidden=4, samples=64, epochs=1)
    loose = dataclasses.replace(strict, task_params={"tolerance": 100.0})
    assert train_case(loose).metrics[0] == 1.0  # every output is within 100 of its target
    assert train_case(strict).metrics[0] < 1.0


@pytest.mark.parametrize("scheme", ["fused", "stepwise", "vmap"])
def test_evaluation_at_other_lengths_is_per_trial_and_exact(scheme):
    spec = dataclasses.replace(spec_for("lstm", task="recall", length=2), eval_lengths=(4, 8))
    batch = train_case(spec, scheme=scheme)
    assert sorted(batch.eval_metrics) == [4, 8]
    assert all(len(v) == 3 for v in batch.eval_metrics.values())
    single = train_case(alone(spec, 1), scheme=scheme)
    for length in (4, 8):
        assert batch.eval_metrics[length][1] == pytest.approx(single.eval_metrics[length][0], abs=1e-6)
    # Evaluating elsewhere draws from streams of its own: the trained result is untouched.
    plain = train_case(spec_for("lstm", task="recall", length=2), scheme=scheme)
    assert plain.metrics == batch.metrics
    assert plain.eval_metrics == {}


def test_input_gradient_agrees_across_schemes_and_vanishes_for_a_memoryless_cell():
    spec = spec_for("rnn", length=8, hidden=2)
    values = {s: train_case(spec, scheme=s).input_gradient for s in ("fused", "stepwise", "vmap")}
    assert all(v > 0 for v in values["vmap"])
    for scheme in ("fused", "stepwise"):
        assert values[scheme] == pytest.approx(values["vmap"], rel=1e-4)
    control = train_case(spec_for("memoryless", length=8))
    assert control.input_gradient == (0.0, 0.0, 0.0)  # the last step alone is scored


def test_input_gradient_is_the_median_per_sequence_norm_at_the_initial_weights():
    spec = spec_for("rnn", length=5, trials=1, hidden=2)
    measured = train_case(spec).input_gradient[0]
    cell, readout = initial_modules(spec, make_task(spec.task))[0]
    x, targets = trial_data(spec, "train", spec.train.samples)
    x = x[0, :GRADIENT_SEQUENCES].clone().requires_grad_()
    scores = cell(x)[:, -1] @ readout.weight.T + readout.bias
    loss = torch.nn.functional.cross_entropy(scores, targets[0][1][: x.shape[0], -1], reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    assert measured == pytest.approx(grad[:, 0].norm(dim=-1).median().item(), rel=1e-4)


# --- Outcomes of stages ----------------------------------------------------------------------------


def test_every_outcome_field_says_how_it_joins_over_stages():
    for f in dataclasses.fields(CaseOutcome):
        assert f.metadata.get("join") in ("per trial", "per length", "shared", "summed"), f.name


def test_trials_trained_in_two_parts_join_into_the_outcome_of_one_run():
    spec = dataclasses.replace(spec_for("gru", task="recall", length=2, trials=4), eval_lengths=(4,))
    whole = train_case(spec)
    first = train_case(dataclasses.replace(spec, trial_seeds=spec.trial_seeds[:3]))
    rest = train_case(dataclasses.replace(spec, trial_seeds=spec.trial_seeds[3:]))
    joined = CaseOutcome.concatenate([first, rest])
    for f in dataclasses.fields(CaseOutcome):
        if f.name == "wall_s":
            assert joined.wall_s == pytest.approx(first.wall_s + rest.wall_s)
        elif f.name in ("train_loss", "val_metric"):
            torch.testing.assert_close(
                torch.tensor(getattr(joined, f.name)), torch.tensor(getattr(whole, f.name))
            )
        elif f.name in ("metrics", "input_gradient"):
            assert getattr(joined, f.name) == pytest.approx(getattr(whole, f.name), abs=1e-6), f.name
        elif f.name == "eval_metrics":
            assert joined.eval_metrics[4] == pytest.approx(whole.eval_metrics[4], abs=1e-6)
        else:
            assert getattr(joined, f.name) == getattr(whole, f.name), f.name


# --- Training that stops when learned -------------------------------------------------------------


def learned_spec(cell="rnn", trials=4, **train):
    recipe = dict(task="or", length=3, hidden=3, samples=64, val_samples=32, epochs=4, lr=0.05)
    recipe |= dict(stop="learned", eval_every=16, test_samples=48) | train
    return spec_for(cell, trials=trials, **recipe)


@pytest.mark.parametrize("scheme", ["native", "stepwise", "fused", "vmap"])
def test_trials_that_stop_at_different_times_train_as_each_would_alone(scheme):
    if scheme == "native" and not native_available():
        pytest.skip("the native kernel is unavailable here")
    spec = learned_spec()
    batch = train(spec, scheme=scheme)
    stops = batch.outcome.sequences
    assert len(set(stops)) > 1, f"trials should stop at different times here, got {stops}"
    for i in range(spec.trials):
        single = train(alone(spec, i), scheme=scheme)
        assert single.outcome.sequences == (stops[i],)
        assert single.outcome.metrics[0] == pytest.approx(batch.outcome.metrics[i], abs=1e-6)
        assert single.outcome.val_metric[0] == pytest.approx(batch.outcome.val_metric[i], abs=1e-6)
        for name, value in single.weights.items():
            torch.testing.assert_close(batch.weights[name][i], value[0], rtol=1e-4, atol=1e-5)


def test_a_trial_stops_at_the_first_check_its_validation_metric_reaches_the_threshold():
    spec = learned_spec(trials=3)
    outcome = train_case(spec)
    assert outcome.budget == 4 * 64
    for stop, curve in zip(outcome.sequences, outcome.val_metric, strict=True):
        if stop is None:
            assert max(curve) < spec.threshold
            continue
        assert stop % 16 == 0 and 0 < stop <= outcome.budget
        # The curve holds one value per epoch and a last one where it stopped, which reached it.
        assert curve[-1] >= spec.threshold
        assert all(value < spec.threshold for value in curve[:-1])


def test_success_is_decided_on_the_fresh_test_set_not_the_validation_set():
    spec = learned_spec(trials=3)
    outcome = train_case(spec)
    stopped = [i for i, s in enumerate(outcome.sequences) if s is not None]
    assert stopped
    # The final metric is the test set's: it differs from the validation value it stopped on.
    assert any(outcome.metrics[i] != outcome.val_metric[i][-1] for i in stopped)


def test_the_test_set_shares_no_sequence_with_the_validation_set(monkeypatch):
    """A trial that stopped on its validation metric is judged on fresh sequences: 32 fair bits per
    sequence make a chance repeat among 32 x 32 pairs about 2e-7."""
    seen = {}
    original = engine._Run.train

    def train(self, *args):
        seen["val"], seen["test"] = self.data.val.x.clone(), self.test.x.clone()
        return original(self, *args)

    monkeypatch.setattr(engine._Run, "train", train)
    train_case(learned_spec(task="xor_delay", length=16, trials=2, epochs=1, test_samples=None))
    for trial in range(2):
        val_x = seen["val"][trial].flatten(1)
        test_x = seen["test"][trial].flatten(1)
        assert not (test_x[:, None] == val_x[None]).all(-1).any()


def test_a_trial_that_learned_leaves_the_batch(monkeypatch):
    from pytest_rnnmemory import steppers

    rows = []
    original = steppers.AutogradStepper.train

    def counting(self, order):
        rows.append(order.shape[0])
        return original(self, order)

    monkeypatch.setattr(steppers.AutogradStepper, "train", counting)
    outcome = train_case(learned_spec(trials=4), scheme="stepwise")
    assert rows[0] == 4
    assert rows[-1] == sum(s is None for s in outcome.sequences) or rows[-1] < 4
    assert sorted(rows, reverse=True) == rows and rows[-1] < rows[0]


def test_a_case_whose_trials_all_learned_ends():
    outcome = train_case(learned_spec(trials=3, epochs=50))
    assert all(s is not None for s in outcome.sequences)
    assert max(len(curve) for curve in outcome.val_metric) < 50


@pytest.mark.parametrize("scheme", ["native", "stepwise", "vmap"])
@pytest.mark.parametrize(("trials", "epochs"), [(4, 4), (3, 50)], ids=["some-learned", "all-learned"])
def test_every_trial_is_evaluated_at_other_lengths_with_the_weights_it_ended_with(scheme, trials, epochs):
    if scheme == "native" and not native_available():
        pytest.skip("the native kernel is unavailable here")
    spec = dataclasses.replace(learned_spec(trials=trials, epochs=epochs), eval_lengths=(3, 6))
    measured = []
    evaluate_at = engine._evaluate_at

    def counted(model, at, task, length):
        measured.append(len(at.trial_seeds))
        return evaluate_at(model, at, task, length)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "_evaluate_at", counted)
        trained = train(spec, scheme=scheme)
    assert sum(measured) == 2 * trials  # each trial once at each length, whenever it stops
    stops = trained.outcome.sequences
    assert stops[0] is not None and (epochs == 50 or None in stops), stops
    assert not any(trained.outcome.diverged)
    task = make_task(spec.task)
    model = stacked.StackedModel(spec, task, torch.device("cpu"), "vmap")
    model.params = stacked.FlatParams(trained.weights, torch.device("cpu"))
    for length in (3, 6):
        data = Sequences.draw(spec, task, f"{seeds.EVAL_PREFIX}{length}", 32, torch.device("cpu"), length)
        expected = model.evaluate(spec.metric, data.x, data.y, data.first).tolist()
        assert trained.outcome.eval_metrics[length] == pytest.approx(expected, abs=1e-6), length
    # Measured where a trial stops, in the middle of the others' training, which it leaves as it was.
    plain = train_case(dataclasses.replace(spec, eval_lengths=()), scheme=scheme)
    assert (plain.sequences, plain.metrics) == (stops, trained.outcome.metrics)


def test_without_stopping_every_trial_trains_the_whole_budget_and_no_sequences_are_counted():
    outcome = train_case(learned_spec(trials=2, stop="budget"))
    assert outcome.sequences == (None, None)
    assert [len(curve) for curve in outcome.val_metric] == [4, 4]


# --- Variable-length and streamed training ---------------------------------------------------------


@pytest.mark.parametrize("scheme", ["native", "stepwise", "fused", "vmap"])
def test_a_batch_of_mixed_lengths_trains_each_trial_as_torch_nn_on_its_unpadded_sequences(scheme):
    """Lengths uniform in 1..L: each sequence runs at its own length (torch's packed sequences in the
    reference), its loss at its own last step; the engine pads them and must train the same weights."""
    if scheme == "native" and not native_available():
        pytest.skip("the native kernel is unavailable here")
    spec = spec_for("lstm", length=9, hidden=3, samples=48, epochs=2, lengths="up_to")
    weights = train(spec, scheme=scheme).weights
    index = 1
    cell_module, readout = initial_modules(spec, make_task(spec.task))[index]
    rnn, linear = torch_twin("lstm", cell_module, readout)
    x, targets = trial_data(spec, "train", spec.train.samples)
    x = x[index]
    first, y = targets[index]
    scored = y != -100
    lengths = scored.float().argmax(1) + first + 1  # each sequence's last (scored) step, plus one
    labels = y[torch.arange(len(y)), scored.float().argmax(1)]

    def packed_loss(idx):  # each sequence at its own length: torch's packed sequences
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x[idx], lengths[idx], batch_first=True, enforce_sorted=False
        )
        _, (h, _) = rnn(packed)
        return torch.nn.functional.cross_entropy(linear(h[-1]), labels[idx])

    train_twin(spec, index, rnn, linear, packed_loss)
    assert len(set(lengths.tolist())) > 5  # the lengths really are mixed
    for name in ("weight_ih", "weight_hh"):
        torch.testing.assert_close(
            weights[name][index], getattr(rnn, f"{name}_l0").detach(), rtol=1e-4, atol=1e-5
        )
    torch.testing.assert_close(weights["readout.weight"][index], linear.weight.detach(), rtol=1e-4, atol=1e-5)


def test_lengths_up_to_and_spread_draw_every_length_of_their_range_and_score_each_at_its_own():
    from pytest_rnnmemory.data import sample_at_lengths

    task = make_task("adding")
    spec = spec_for("lstm", task="adding", length=20, lengths="spread", spread=0.5)
    x, y = sample_at_lengths(task, spec, "spread", 400, torch.Generator().manual_seed(0))
    ends = (~torch.isnan(y)).float().argmax(1) + 1
    assert x.shape == (400, 30, 2) and set(ends.tolist()) == set(range(20, 31))
    # Padding is zero input after each sequence's end.
    for row, end in zip(x, ends, strict=True):
        assert not row[end:].any()
    spec = spec_for("lstm", task="parity", length=12, lengths="up_to")
    _, y = sample_at_lengths(make_task("parity"), spec, "up_to", 400, torch.Generator().manual_seed(0))
    assert set(((y != -100).float().argmax(1) + 1).tolist()) == set(range(1, 13))


def test_streamed_training_draws_fresh_sequences_every_piece_up_to_the_budget():
    spec = spec_for("gru", task="parity", length=6, hidden=3, trials=2, data="stream", max_sequences=300)
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, eval_every=100))
    outcome = train_case(spec)
    assert outcome.budget == 300
    # Pieces of 96 (the check's interval in whole minibatches of 16), then the rest: 96, 96, 96, 12.
    assert [len(curve) for curve in outcome.val_metric] == [4, 4]
    single = train_case(alone(spec, 1))
    assert single.metrics[0] == pytest.approx(outcome.metrics[1], abs=1e-6)


def test_a_trial_draws_the_same_streamed_sequences_beside_any_number_of_trials(monkeypatch):
    """Where memory cuts a trial's stream into pieces smaller than the checks' interval, the cut is
    the trial's own: a piece of a balanced task is balanced, so a cut that moved with the number
    of trials would change the sequences."""
    from pytest_rnnmemory import data
    from pytest_rnnmemory.engine import Schedule

    task = make_task("parity")
    spec = spec_for("gru", task="parity", length=6, hidden=3, trials=3, data="stream", max_sequences=300)
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, eval_every=100))
    monkeypatch.setattr(data, "STREAM_FLOATS_PER_TRIAL", 48 * task.steps(6) * task.input_size)
    assert Schedule.of(spec, task).sizes == Schedule.of(alone(spec, 2), task).sizes == (48,) * 6 + (12,)
    outcome, single = train_case(spec), train_case(alone(spec, 2))
    assert single.metrics[0] == pytest.approx(outcome.metrics[2], abs=1e-6)


@pytest.mark.parametrize("data", ["fixed", "stream"])
def test_a_trial_that_stops_at_the_end_of_a_pass_has_that_check_once_in_its_curve(data):
    """At a threshold of 0 every trial stops at the first check, which ends a pass of 96 sequences."""
    spec = learned_spec(trials=2, eval_every=96, samples=96, epochs=3)
    spec = dataclasses.replace(spec, threshold=0.0)
    if data == "stream":
        # train.samples does not apply to streamed data: a pass is a piece of 96
        stream = dataclasses.replace(spec.train, data="stream", max_sequences=300, samples=2000)
        spec = dataclasses.replace(spec, train=stream)
    outcome = train_case(spec)
    assert outcome.sequences == (96, 96)
    assert [len(curve) for curve in outcome.val_metric] == [1, 1]


def test_the_cell_calls_that_choose_a_scheme_count_the_streamed_budget_at_the_longest_length():
    from pytest_rnnmemory.engine import Schedule

    task = make_task("parity")
    streamed = spec_for("gru", task="parity", length=6, data="stream", max_sequences=1600, samples=48)
    assert Schedule.of(streamed, task).calls(streamed, task) == 1600 // 16 * task.steps(6)
    spread = spec_for("gru", task="parity", length=6, lengths="spread", spread=0.5, samples=48, epochs=2)
    assert Schedule.of(spread, task).calls(spread, task) == 2 * 3 * task.steps(9)


def test_a_trial_with_exactly_the_threshold_right_reaches_it():
    """950 right of 1000 is 0.95: counted in float32 it was 0.94999999 and fell short of 0.95."""
    spec = spec_for("rnn", length=3, trials=2)
    model = stacked.StackedModel(spec, make_task(spec.task), torch.device("cpu"), "stepwise")
    x = torch.zeros(model.n, 1000, 3, 1)
    y = torch.full((model.n, 1000, 3), -100)
    y[:, :950, -1], y[:, 950:, -1] = 1, 0
    model.forward = lambda params, arranged, first: arranged
    model.right = lambda logits, part: part == 1  # the first 950 sequences are right
    metrics = model.evaluate("accuracy", x, y, 0)
    assert metrics.tolist() == [0.95, 0.95]
    assert bool((metrics >= 0.95).all())
