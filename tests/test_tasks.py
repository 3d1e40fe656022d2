"""The six memory tasks against their definitions in docs/TASKS.md, and the trial seeds.

The classic problems (parity, adding) and length generalisation: test_classic_tasks.py.
"""

import inspect
import math
import sys
import textwrap

import pytest
import torch

from pytest_rnnmemory import seeds
from pytest_rnnmemory.errors import TaskError
from pytest_rnnmemory.tasks import IGNORE, TASKS, Task, make_task, task_class
from pytest_rnnmemory.tasks.latching import Latching

NAMES = ["latching", "relay", "xor_delay", "addition", "or", "recall"]
LENGTHS = [2, 3, 8, 21]
N = 64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def sample(name, length, n=N, seed=0, params=None):
    return make_task(name, params).sample(length, n, gen(seed))


# --- What docs/TASKS.md says, written out independently of the generators -----------------------------

SPEC = {
    # name: (input size, T as a function of L, scored steps as a function of L)
    "latching": (1, lambda L: L, lambda L: [L - 1]),
    "relay": (1, lambda L: L, lambda L: [L - 1]),
    "xor_delay": (1, lambda L: 2 * L, lambda L: list(range(L, 2 * L))),
    "addition": (2, lambda L: L + 1, lambda L: list(range(L + 1))),
    "or": (2, lambda L: L, lambda L: list(range(L))),
    "recall": (1, lambda L: 2 * L, lambda L: list(range(L, 2 * L))),
}


def sign_bits(x):
    """Bits ``b`` from inputs fed as ``2b - 1``."""
    return (x[..., 0] > 0).long()


def reference(name, x, length):
    """The targets docs/TASKS.md defines, computed from the inputs alone (IGNORE where unscored)."""
    n, steps = x.shape[:2]
    y = torch.full((n, steps), IGNORE, dtype=torch.long)
    L = length
    if name == "latching":
        y[:, L - 1] = (x[:, 0, 0] > 0).long()
    elif name == "relay":
        y[:, L - 1] = (torch.sign(x[:, 0, 0]) == torch.sign(x[:, L // 2, 0])).long()
    elif name == "xor_delay":
        b = sign_bits(x)
        y[:, L:] = b[:, L:] ^ b[:, :L]
    elif name == "recall":
        y[:, L:] = sign_bits(x)[:, :L]
    elif name == "or":
        y[:] = ((x[..., 0] > 0.5) | (x[..., 1] > 0.5)).long()
    elif name == "addition":
        a, b = decode_operands(x, L)
        total = a + b
        for t in range(L + 1):
            y[:, t] = (total >> t) & 1
    else:
        raise AssertionError(name)
    return y


def decode_operands(x, length):
    """``a`` and ``b`` of the addition task: 0/1 inputs of the first ``length`` steps, LSB first."""
    weights = 2 ** torch.arange(length, dtype=torch.long)
    bits = (x[:, :length] > 0.5).long()
    return (bits[..., 0] * weights).sum(1), (bits[..., 1] * weights).sum(1)


def named_inputs(name, length, t):
    """The steps whose inputs the target at scored step ``t`` depends on (docs/TASKS.md)."""
    L = length
    return {
        "latching": {0},
        "relay": {0, L // 2},
        "xor_delay": {t, t - L},
        "recall": {t - L},
        "or": {t},
        "addition": set(range(t + 1)) & set(range(L)),
    }[name]


def perturb(name, x, keep, generator):
    """``x`` with every step outside ``keep`` redrawn as the task would draw it."""
    x = x.clone()
    other = [t for t in range(x.shape[1]) if t not in keep]
    if not other:
        return x
    shape = (x.shape[0], len(other), x.shape[2])
    if name in ("latching", "relay"):
        fresh = torch.randn(shape, generator=generator) * 0.1
    elif name in ("xor_delay", "recall"):
        fresh = 2.0 * torch.randint(0, 2, shape, generator=generator) - 1.0
    else:
        fresh = torch.randint(0, 2, shape, generator=generator).float()
    x[:, other] = fresh
    return x


# --- Registry --------------------------------------------------------------------------------------


def test_registry_holds_the_six_tasks_and_the_classic_problems():
    assert sorted(TASKS) == sorted([*NAMES, "parity", "adding"])
    for name, cls in TASKS.items():
        assert issubclass(cls, Task)
        assert cls.name == name
        assert task_class(name) is cls


@pytest.mark.parametrize("name", NAMES)
def test_class_attributes(name):
    task = make_task(name)
    assert task.input_size == SPEC[name][0]
    assert task.num_classes == 2
    assert task.metric == ("sequence_accuracy" if name == "addition" else "accuracy")
    assert task.min_length == (2 if name == "relay" else 1)


# --- Shapes, dtypes, scored steps ------------------------------------------------------------------


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_dtypes(name, length):
    inputs, steps_of, _ = SPEC[name]
    task = make_task(name)
    x, y = task.sample(length, N, gen())
    T = steps_of(length)
    assert task.steps(length) == T
    assert x.dtype == torch.float32
    assert y.dtype == torch.int64
    assert x.shape == (N, T, inputs)
    assert y.shape == (N, T)
    assert x.device.type == "cpu"
    assert y.device.type == "cpu"
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("name", NAMES)
def test_scored_steps_exactly_as_specified(name, length):
    _, _, scored_of = SPEC[name]
    _, y = sample(name, length)
    scored = sorted(set(torch.nonzero(y != IGNORE)[:, 1].tolist()))
    assert scored == scored_of(length)
    # Every sequence is scored at every scored step, with a class label.
    assert (y[:, scored] != IGNORE).all()
    assert set(y[:, scored].unique().tolist()) <= {0, 1}
    unscored = [t for t in range(y.shape[1]) if t not in scored]
    assert (y[:, unscored] == IGNORE).all()


def test_ignore_is_cross_entropys_default():
    """Unscored steps carry the target that torch's cross-entropy skips when given no ignore_index."""
    default = inspect.signature(torch.nn.functional.cross_entropy).parameters["ignore_index"].default
    assert default == IGNORE


@pytest.mark.parametrize("length", [1, 4, 9])
@pytest.mark.parametrize("name", ["xor_delay", "recall"])
def test_bit_streams_are_fed_as_plus_minus_one(name, length):
    x, _ = sample(name, length)
    assert set(x.unique().tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize("length", [1, 4, 9])
@pytest.mark.parametrize("name", ["addition", "or"])
def test_zero_one_inputs(name, length):
    x, _ = sample(name, length)
    assert set(x.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("length", [1, 5, 16])
def test_addition_last_step_feeds_zeros(length):
    x, _ = sample("addition", length)
    assert (x[:, length] == 0).all()


@pytest.mark.parametrize("length", [2, 3, 10])
@pytest.mark.parametrize("name", ["latching", "relay"])
def test_noise_free_inputs_are_signs_at_the_named_steps_only(name, length):
    x, _ = sample(name, length, params={"noise": 0.0})
    marked = [0] if name == "latching" else [0, length // 2]
    assert set(x[:, marked, 0].unique().tolist()) == {-1.0, 1.0}
    rest = [t for t in range(length) if t not in marked]
    assert (x[:, rest] == 0).all()


@pytest.mark.parametrize("noise", [0.1, 0.3])
@pytest.mark.parametrize("name", ["latching", "relay"])
def test_noise_has_the_given_std(name, noise):
    n, length = 2000, 10
    x, _ = sample(name, length, n=n, params={"noise": noise})
    marked = [0] if name == "latching" else [0, length // 2]
    rest = x[:, [t for t in range(length) if t not in marked]].flatten()
    count = rest.numel()
    # Standard errors of a Gaussian sample's mean and standard deviation.
    assert abs(rest.mean().item()) < 5 * noise / math.sqrt(count)
    assert abs(rest.std().item() - noise) < 5 * noise / math.sqrt(2 * count)


# --- Targets as functions of the inputs --------------------------------------------------------


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("name", NAMES)
def test_target_equals_reference_from_inputs(name, length):
    x, y = sample(name, length, n=256)
    assert torch.equal(y, reference(name, x, length))


@pytest.mark.parametrize("length", [2, 3, 8, 13])
@pytest.mark.parametrize("name", NAMES)
def test_other_steps_never_change_a_target(name, length):
    """Redraw every input outside a target's named steps: the reference target stays the generator's."""
    x, y = sample(name, length, n=128)
    g = gen(12345)
    for t in SPEC[name][2](length):
        keep = named_inputs(name, length, t)
        for _ in range(2):
            x2 = perturb(name, x, keep, g)
            assert not torch.equal(x2, x) or len(keep) == x.shape[1]
            assert torch.equal(reference(name, x2, length)[:, t], y[:, t])


@pytest.mark.parametrize("length", [3, 8])
@pytest.mark.parametrize("name", NAMES)
def test_named_steps_do_change_targets(name, length):
    """The converse: redrawing a named step changes some targets (the reference reads it)."""
    x, y = sample(name, length, n=256)
    g = gen(54321)
    for t in SPEC[name][2](length):
        named = named_inputs(name, length, t)
        if name == "addition":  # a low bit reaches bit t only through a chain of carries
            named = {min(t, length - 1)}
        for s in named:
            others = set(range(x.shape[1])) - {s}
            x2 = perturb(name, x, others, g)
            assert (reference(name, x2, length)[:, t] != y[:, t]).any(), (t, s)


@pytest.mark.parametrize("length", [1, 2, 7, 20, 40])
def test_addition_targets_decode_to_the_sum(length):
    x, y = sample("addition", length, n=500)
    a, b = decode_operands(x, length)
    weights = 2 ** torch.arange(length + 1, dtype=torch.long)
    assert torch.equal((y * weights).sum(1), a + b)
    # Operands are uniform L-bit integers: every value in range, both halves hit.
    assert a.min() >= 0
    assert a.max() < 2**length
    assert b.max() < 2**length


def test_addition_carry_into_last_bit_occurs():
    _, y = sample("addition", 4, n=500)
    assert (y[:, 4] == 1).any()
    assert (y[:, 4] == 0).any()


# --- Balance and rates ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 10, 64, 1000])
@pytest.mark.parametrize("length", [1, 5])
def test_latching_classes_exactly_balanced(n, length):
    _, y = sample("latching", length, n=n)
    assert int(y[:, -1].sum()) == n // 2


@pytest.mark.parametrize("n", [1, 11, 999])
def test_latching_odd_n_as_balanced_as_possible(n):
    _, y = sample("latching", 3, n=n)
    ones = int(y[:, -1].sum())
    assert abs(2 * ones - n) == 1


def test_latching_labels_in_random_order():
    _, y1 = sample("latching", 3, n=100, seed=1)
    _, y2 = sample("latching", 3, n=100, seed=2)
    assert not torch.equal(y1[:, -1], y2[:, -1])
    assert not torch.equal(y1[:, -1], torch.arange(100) % 2)


@pytest.mark.parametrize("n", [4, 40, 400])
@pytest.mark.parametrize("length", [2, 3, 9])
def test_relay_sign_pairs_balanced(n, length):
    x, y = sample("relay", length, n=n)
    s1 = torch.sign(x[:, 0, 0])
    s2 = torch.sign(x[:, length // 2, 0])
    for a in (-1.0, 1.0):
        for b in (-1.0, 1.0):
            assert int(((s1 == a) & (s2 == b)).sum()) == n // 4
    assert int(y[:, -1].sum()) == n // 2


@pytest.mark.parametrize("length", [1, 5])
def test_or_majority_rate_is_three_quarters(length):
    n = 4000
    _, y = sample("or", length, n=n)
    count = y.numel()
    rate = y.float().mean().item()
    se = math.sqrt(0.75 * 0.25 / count)
    assert abs(rate - 0.75) < 4 * se


@pytest.mark.parametrize("name", ["xor_delay", "recall"])
def test_bit_stream_targets_roughly_balanced(name):
    _, y = sample(name, 5, n=4000)
    scored = y[:, 5:]
    se = math.sqrt(0.25 / scored.numel())
    assert abs(scored.float().mean().item() - 0.5) < 4 * se


@pytest.mark.parametrize("length", [1, 2, 5, 30])
@pytest.mark.parametrize("name", NAMES)
def test_chance_levels(name, length):
    expected = {"or": 0.75, "addition": 2.0 ** -(length + 1)}.get(name, 0.5)
    assert make_task(name).chance(length) == pytest.approx(expected, rel=1e-12)


# --- Seeds and determinism -----------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_tensors(name):
    x1, y1 = sample(name, 6, seed=7)
    x2, y2 = sample(name, 6, seed=7)
    assert torch.equal(x1, x2)
    assert torch.equal(y1, y2)


@pytest.mark.parametrize("name", NAMES)
def test_different_seeds_different_data(name):
    x1, _ = sample(name, 6, seed=7)
    x2, _ = sample(name, 6, seed=8)
    assert not torch.equal(x1, x2)


@pytest.mark.parametrize("name", NAMES)
def test_trial_streams_give_different_data(name):
    task = make_task(name)
    t1 = seeds.trial_seed(0, "suite", "rnn", 6, 0)
    t2 = seeds.trial_seed(0, "suite", "rnn", 6, 1)
    x1, _ = task.sample(6, N, seeds.stream(t1, "train"))
    x2, _ = task.sample(6, N, seeds.stream(t2, "train"))
    xv, _ = task.sample(6, N, seeds.stream(t1, "val"))
    assert not torch.equal(x1, x2)
    assert not torch.equal(x1, xv)


def test_trial_seed_is_deterministic_and_63_bit():
    a = seeds.trial_seed(3, "latching", "lstm", 20, 4)
    assert a == seeds.trial_seed(3, "latching", "lstm", 20, 4)
    assert 0 <= a < 2**63


def test_trial_seed_depends_on_every_part():
    base = dict(seed=0, suite="latching", cell="rnn", length=5, trial=0)
    changes = [
        {"seed": 1},
        {"suite": "relay"},
        {"cell": "lstm"},
        {"length": 6},
        {"trial": 1},
    ]
    values = {seeds.trial_seed(**base)}
    for change in changes:
        values.add(seeds.trial_seed(**{**base, **change}))
    assert len(values) == len(changes) + 1


def test_trial_seeds_of_parts_that_read_alike_run_together_differ():
    """Length 1 trial 10 and length 11 trial 0 would be one stream if the parts were simply joined;
    so would suite "ab" with cell "c" and suite "a" with cell "bc"."""
    assert seeds.trial_seed(0, "s", "rnn", 1, 10) != seeds.trial_seed(0, "s", "rnn", 11, 0)
    assert seeds.trial_seed(0, "ab", "c", 5, 0) != seeds.trial_seed(0, "a", "bc", 5, 0)


def test_tuning_seed_depends_on_every_part_and_is_never_the_trial_seed():
    base = dict(seed=0, suite="latching", cell="rnn", length=5, trial=0)
    changes = [{"seed": 1}, {"suite": "relay"}, {"cell": "lstm"}, {"length": 6}, {"trial": 1}]
    values = {seeds.tuning_seed(**base)}
    for change in changes:
        values.add(seeds.tuning_seed(**{**base, **change}))
    assert len(values) == len(changes) + 1
    assert seeds.trial_seed(**base) not in values


def test_trial_seeds_distinct_over_many_trials():
    values = [seeds.trial_seed(0, "s", "gru", 10, i) for i in range(1000)]
    assert len(set(values)) == len(values)


def test_streams_differ_and_repeat():
    t = seeds.trial_seed(0, "s", "rnn", 5, 0)
    draws = {name: torch.rand(8, generator=seeds.stream(t, name)) for name in seeds.STREAMS}
    for i, a in enumerate(seeds.STREAMS):
        assert torch.equal(draws[a], torch.rand(8, generator=seeds.stream(t, a)))
        for b in seeds.STREAMS[i + 1 :]:
            assert not torch.equal(draws[a], draws[b]), (a, b)
    assert set(seeds.STREAMS) >= {"init", "train", "val", "order"}


def test_stream_is_a_cpu_generator_and_rejects_unknown_names():
    g = seeds.stream(1, "train")
    assert isinstance(g, torch.Generator)
    assert g.device.type == "cpu"
    with pytest.raises(ValueError, match="val"):
        seeds.stream(1, "validation")


def test_evaluation_streams_are_named_by_a_length():
    t = seeds.trial_seed(0, "s", "rnn", 5, 0)
    draws = [torch.rand(8, generator=seeds.stream(t, n)) for n in ("eval-12", "shuffle-eval-12", "eval-13")]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    for bad in ("eval-", "eval-L", "shuffle-eval-", "eval-1.5"):
        with pytest.raises(ValueError, match="eval-<length>"):
            seeds.stream(t, bad)


# --- Lengths and parameters ----------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_check_length_accepts_from_min_length(name):
    task = make_task(name)
    minimum = 2 if name == "relay" else 1
    for length in (minimum, minimum + 1, 100):
        task.check_length(length)


@pytest.mark.parametrize("name", NAMES)
def test_check_length_rejects_below_min_length(name):
    task = make_task(name)
    minimum = 2 if name == "relay" else 1
    for length in (minimum - 1, 0, -3):
        with pytest.raises(TaskError, match=f">= {minimum}"):
            task.check_length(length)


@pytest.mark.parametrize("bad", [2.0, "3", True, None])
def test_check_length_rejects_non_integers(bad):
    with pytest.raises(TaskError):
        make_task("latching").check_length(bad)


def test_unknown_task_name_lists_the_builtins():
    with pytest.raises(TaskError) as info:
        make_task("latchin")
    message = str(info.value)
    assert "'latchin'" in message
    for name in NAMES:
        assert name in message
    assert "package.module:Class" in message


@pytest.mark.parametrize(
    ("name", "allowed"),
    [("latching", "noise"), ("relay", "noise"), ("xor_delay", "none"), ("or", "none")],
)
def test_unknown_task_parameter_lists_the_allowed(name, allowed):
    with pytest.raises(TaskError) as info:
        make_task(name, {"nosie": 0.1})
    assert f"allowed: {allowed}" in str(info.value)
    assert info.value.where == "task.nosie"


@pytest.mark.parametrize("value", [-0.1, "0.1", True, None])
def test_bad_task_parameter_value(value):
    with pytest.raises(TaskError, match=">= 0") as info:
        make_task("latching", {"noise": value})
    assert info.value.where.startswith("task.noise = ")


def test_task_parameter_default_and_override():
    assert make_task("latching").values == {"noise": 0.1}
    assert make_task("relay", {"noise": 0.5}).values == {"noise": 0.5}
    assert make_task("recall").values == {}


def test_user_task_by_import_path():
    task = make_task("pytest_rnnmemory.tasks.latching:Latching", {"noise": 0.2})
    assert type(task) is Latching
    assert task.values["noise"] == 0.2
    x, y = task.sample(4, 10, gen())
    assert torch.equal(y, reference("latching", x, 4))


def test_user_task_from_its_own_module(tmp_path, monkeypatch):
    (tmp_path / "my_tasks.py").write_text(
        textwrap.dedent(
            """
            import torch
            from pytest_rnnmemory.tasks import Task

            class Constant(Task):
                name = "constant"
                input_size = 3
                params = {"value": 1.0}

                def steps(self, length):
                    return length

                def sample(self, length, n, generator):
                    x = torch.full((n, length, 3), float(self.values["value"]))
                    return x, torch.ones(n, length, dtype=torch.long)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        task = make_task("my_tasks:Constant", {"value": 2.0})
        x, _ = task.sample(3, 2, gen())
        assert x.shape == (2, 3, 3)
        assert (x == 2.0).all()
        with pytest.raises(TaskError, match="allowed: value"):
            make_task("my_tasks:Constant", {"noise": 1.0})
    finally:
        sys.modules.pop("my_tasks", None)


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("pytest_rnnmemory.nonexistent:Task", "cannot import"),
        ("pytest_rnnmemory.tasks.latching:Nope", "no attribute"),
        ("pytest_rnnmemory.errors:TaskError", "not a subclass"),
        ("pytest_rnnmemory.tasks.latching:", "package.module:Class"),
    ],
)
def test_bad_import_paths_raise_task_error(path, fragment):
    with pytest.raises(TaskError, match=fragment):
        task_class(path)
