"""The classic long-time-lag problems (parity, adding) and sampling at other lengths."""

import math

import pytest
import torch

from pytest_rnnmemory.errors import TaskError
from pytest_rnnmemory.tasks import IGNORE, TASKS, make_task, scored_steps


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- Parity ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 7, 30])
def test_parity_target_is_the_xor_of_every_bit_at_the_last_step_only(length):
    x, y = make_task("parity").sample(length, 500, gen())
    assert x.shape == (500, length, 1)
    assert set(x.unique().tolist()) <= {-1.0, 1.0}
    bits = (x[..., 0] > 0).long()
    assert torch.equal(y[:, -1], bits.sum(1) % 2)
    assert (y[:, :-1] == IGNORE).all()


def test_parity_every_bit_changes_the_answer():
    x, y = make_task("parity").sample(9, 64, gen())
    for t in range(9):
        flipped = x.clone()
        flipped[:, t] = -flipped[:, t]
        bits = (flipped[..., 0] > 0).long()
        assert torch.equal(bits.sum(1) % 2, 1 - y[:, -1])


def test_parity_classes_near_balanced_and_chance_one_half():
    _, y = make_task("parity").sample(12, 4000, gen())
    assert abs(y[:, -1].float().mean().item() - 0.5) < 4 * math.sqrt(0.25 / 4000)
    assert make_task("parity").chance(12) == 0.5


# --- Adding problem (Hochreiter & Schmidhuber 1997, experiment 4) -----------------------------------


def adding(length, n=2000, seed=0, **params):
    return make_task("adding", params).sample(length, n, gen(seed))


@pytest.mark.parametrize("length", [10, 11, 40, 100])
def test_adding_shapes_values_and_markers(length):
    x, y = adding(length)
    assert x.shape == (2000, length, 2)
    assert y.dtype == torch.float32
    values, markers = x[..., 0], x[..., 1]
    assert values.min() >= -1 and values.max() <= 1
    assert set(markers.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert ((markers == 1).sum(1) == 2).all()
    marked = (markers == 1).nonzero()[:, 1].view(-1, 2)
    a, b = marked[:, 0], marked[:, 1]
    # One marked pair among the first ten (X1), the other among the first L // 2 - 1 (X2).
    span = length // 2 - 1
    assert (((a < 10) & (b < span)) | ((b < 10) & (a < span))).all()
    # The end pairs carry -1 unless they are marked; the middle carries 0 or 1.
    for end in (0, length - 1):
        assert ((markers[:, end] == -1) | (markers[:, end] == 1)).all()
    assert set(markers[:, 1:-1].unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("length", [10, 25, 60])
def test_adding_target_is_half_plus_a_quarter_of_the_marked_sum_at_the_end_only(length):
    x, y = adding(length)
    values, markers = x[..., 0], x[..., 1]
    expected = 0.5 + (values * (markers == 1)).sum(1) / 4.0
    torch.testing.assert_close(y[:, -1], expected)
    assert torch.isnan(y[:, :-1]).all()
    assert scored_steps(y).sum(1).eq(1).all()


# Worked out by hand from docs/TASKS.md: X1 is uniform over pairs 0-9, X2 uniform over the first
# L // 2 - 1 pairs less X1's. L = 10 (4 pairs for X2): a pair j < 4 is X1 with 0.1, X2 with
# 0.3 / 3 (X1 among the other three of 0-3) + 0.6 / 4 (X1 at 4-9); pairs 4-9 only hold X1.
# L = 40 (19 pairs for X2, X1 always among them): a pair j < 10 is marked with 0.1 + 0.9 / 18,
# a pair 10-18 with 1 / 18, a later pair never.
MARKED_RATE = {
    10: [0.35] * 4 + [0.1] * 6,
    40: [0.1 + 0.9 / 18] * 10 + [1 / 18] * 9 + [0.0] * 21,
}


@pytest.mark.parametrize("length", sorted(MARKED_RATE))
def test_adding_marks_each_pair_at_the_rate_its_rule_gives(length):
    n = 40000
    x, _ = adding(length, n=n)
    rates = (x[..., 1] == 1).float().mean(0).tolist()
    for j, (rate, expected) in enumerate(zip(rates, MARKED_RATE[length], strict=True)):
        se = math.sqrt(expected * (1 - expected) / n)
        assert rate == pytest.approx(expected, abs=5 * se), j


@pytest.mark.parametrize("name", ["parity", "adding"])
@pytest.mark.parametrize("length", [10, 11, 40])
def test_parity_and_adding_sequences_have_length_steps(name, length):
    task = make_task(name)
    x, y = task.sample(length, 4, gen())
    assert task.steps(length) == length
    assert x.shape[1] == y.shape[1] == length


def test_adding_first_pair_value_is_zero_when_it_holds_x1():
    n = 40000
    x, _ = adding(20, n=n)
    first_marked = x[:, 0, 1] == 1
    zero = (x[first_marked, 0, 0] == 0).float().mean().item()
    # L = 20: X1 is the first pair with probability 1/10; X2 with 0.8 / 8 + 0.1 / 9
    # (X2 is uniform over the first 9 pairs less X1's). Only X1 is set to 0.
    x1, x2 = 0.1, 0.8 / 8 + 0.1 / 9
    expected = x1 / (x1 + x2)
    count = int(first_marked.sum())
    assert zero == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / count))


def test_adding_unmarked_inputs_never_change_the_target():
    x, y = adding(30, n=300)
    other = x.clone()
    unmarked = x[..., 1] != 1
    other[..., 0] = torch.where(unmarked, torch.rand(x.shape[:2], generator=gen(9)) * 2 - 1, x[..., 0])
    values, markers = other[..., 0], other[..., 1]
    torch.testing.assert_close(0.5 + (values * (markers == 1)).sum(1) / 4.0, y[:, -1])


def test_adding_chance_is_what_a_constant_half_scores():
    task = make_task("adding")
    _, y = task.sample(40, 200_000, gen(3))
    measured = ((y[:, -1] - 0.5).abs() < 0.04).float().mean().item()
    # By hand: 0.9 * (0.16 - 0.16**2 / 4) + 0.1 * 0.16 = 0.15424.
    assert task.chance(40) == pytest.approx(0.15424, abs=1e-12)
    assert measured == pytest.approx(0.15424, abs=4 * math.sqrt(0.155 * 0.845 / 200_000))


@pytest.mark.parametrize(
    ("tolerance", "chance"),
    [
        # c = 4 tol; 0.9 (c - c^2 / 4) + 0.1 min(c, 1), with c - c^2 / 4 = 1 from c = 2 on.
        (0.125, 0.9 * (0.5 - 0.0625) + 0.1 * 0.5),
        (0.25, 0.9 * 0.75 + 0.1),
        (0.375, 0.9 * (1.5 - 0.5625) + 0.1),
        (0.5, 1.0),
        (1.0, 1.0),
    ],
)
def test_adding_chance_at_wider_tolerances(tolerance, chance):
    assert make_task("adding", {"tolerance": tolerance}).chance(40) == pytest.approx(chance, abs=1e-12)


def test_adding_is_a_regression_task_with_one_output_and_its_tolerance():
    task = make_task("adding", {"tolerance": 0.1})
    assert task.regression
    assert task.outputs == 1
    assert task.tolerance == 0.1
    assert task.min_length == 10
    with pytest.raises(TaskError, match=">= 10"):
        task.check_length(9)
    with pytest.raises(TaskError, match="> 0") as info:
        make_task("adding", {"tolerance": 0.0})
    assert info.value.where.startswith("task.tolerance")


def test_adding_same_seed_same_data_other_seed_other_data():
    x1, y1 = adding(20, seed=4)
    x2, y2 = adding(20, seed=4)
    x3, _ = adding(20, seed=5)
    assert torch.equal(x1, x2)
    torch.testing.assert_close(y1, y2, rtol=0, atol=0, equal_nan=True)
    assert not torch.equal(x1, x3)


# --- Sampling at other lengths (length generalisation) ---------------------------------------------


@pytest.mark.parametrize("name", ["addition", "or", "parity", "adding"])
def test_tasks_with_one_rule_at_every_length_sample_the_longer_length(name):
    task = make_task(name)
    x, y = task.sample_longer(10, 30, 8, gen(1))
    x2, y2 = task.sample(30, 8, gen(1))
    assert torch.equal(x, x2)
    assert torch.equal(y.nan_to_num(), y2.nan_to_num())


@pytest.mark.parametrize("name", ["xor_delay", "recall"])
def test_delay_tasks_keep_the_delay_over_a_longer_stream(name):
    delay, longer = 3, 8
    x, y = make_task(name).sample_longer(delay, longer, 200, gen(2))
    assert x.shape == (200, 2 * longer, 1)
    bits = (x[..., 0] > 0).long()
    expected = torch.full_like(y, IGNORE)
    if name == "recall":
        expected[:, delay:] = bits[:, :-delay]
    else:
        expected[:, delay:] = bits[:, delay:] ^ bits[:, :-delay]
    assert torch.equal(y, expected)


@pytest.mark.parametrize("name", ["latching", "relay"])
def test_single_gap_tasks_refuse_other_lengths_and_say_why(name):
    assert not TASKS[name].generalises
    with pytest.raises(TaskError, match="cannot be evaluated at other lengths: its length is"):
        make_task(name).sample_longer(10, 20, 4, gen())
