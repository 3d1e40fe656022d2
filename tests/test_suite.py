"""Reading suite files: defaults, profiles, overrides, cases, and one line per problem."""

import dataclasses
import json
import re
import textwrap

import pytest

from pytest_rnnmemory import loading
from pytest_rnnmemory.cache import case_key, search_key
from pytest_rnnmemory.errors import StoredDataError, SuiteError
from pytest_rnnmemory.estimate import work
from pytest_rnnmemory.recipes import Recipe
from pytest_rnnmemory.results import same_experiment
from pytest_rnnmemory.schema import SECTIONS, ModelSection, Overrides, SuiteConfig, default_of, keys_of
from pytest_rnnmemory.stacked import initial_modules
from pytest_rnnmemory.suite import load_suite
from pytest_rnnmemory.tasks import make_task

MINIMAL = """
[suite]
task = "latching"
cells = ["rnn"]
lengths = [5]
"""


def write(tmp_path, text, name="suite.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path, overrides=None):
    with pytest.raises(SuiteError) as info:
        load_suite(path, overrides)
    return info.value.problems


def single_problem(tmp_path, text, overrides=None):
    path = write(tmp_path, text)
    problems = problems_of(path, overrides)
    assert len(problems) == 1, problems
    line = problems[0]
    assert line.startswith(f"{path}: "), line
    return line


# --- Defaults --------------------------------------------------------------------------------------


def test_minimal_suite_gets_every_default(tmp_path):
    path = write(tmp_path, MINIMAL, name="my_latching.toml")
    suite = load_suite(path, Overrides())
    assert suite.path == path
    assert suite.name == "my_latching"
    assert suite.meta.task == "latching"
    assert suite.meta.cells == ("rnn",)
    assert suite.meta.lengths == (5,)
    assert suite.meta.description == ""
    assert suite.meta.seed == 0
    assert suite.task.values == {"noise": 0.1}
    assert suite.model.hidden == 1
    t = suite.train
    assert (t.samples, t.val_samples, t.epochs, t.batch_size) == (2000, 1000, 10, 16)
    assert (t.optimizer, t.lr, t.clip, t.engine) == ("adam", 0.05, 0.0, "auto")
    assert suite.success.metric == "accuracy"
    assert suite.success.threshold == 0.95
    assert (suite.verdict.trials, suite.verdict.p0, suite.verdict.alpha) == (30, 0.5, 0.05)
    assert suite.profile is None
    assert suite.profiles == ()


def test_overrides_argument_is_optional(tmp_path):
    path = write(tmp_path, MINIMAL)
    assert load_suite(path).verdict.trials == load_suite(path, Overrides()).verdict.trials


def test_resolved_configuration_has_no_gaps(tmp_path):
    suite = load_suite(write(tmp_path, MINIMAL))
    resolved = suite.config.to_json()
    assert set(resolved) == {*SECTIONS, "task"}
    for section, cls in SECTIONS.items():
        assert set(resolved[section]) == set(keys_of(cls)), section
    assert resolved["suite"]["name"] == "suite"
    assert resolved["success"]["metric"] == "accuracy"


def test_the_resolved_configuration_reads_back_from_its_json(tmp_path):
    config = load_suite(write(tmp_path, MINIMAL + "[train]\nclip = 1.5\n")).config
    assert SuiteConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


def test_explicit_name_wins_over_stem(tmp_path):
    path = write(tmp_path, MINIMAL.replace("[suite]", '[suite]\nname = "other"'))
    assert load_suite(path).name == "other"


@pytest.mark.parametrize(
    ("task", "metric"),
    [("addition", "sequence_accuracy"), ("latching", "accuracy"), ("or", "accuracy")],
)
def test_metric_defaults_to_the_tasks(tmp_path, task, metric):
    path = write(tmp_path, MINIMAL.replace('"latching"', f'"{task}"'))
    assert load_suite(path).success.metric == metric


def test_explicit_metric_wins(tmp_path):
    path = write(tmp_path, MINIMAL.replace('"latching"', '"addition"') + '[success]\nmetric = "accuracy"\n')
    assert load_suite(path).success.metric == "accuracy"


def test_task_parameters_reach_the_task(tmp_path):
    path = write(tmp_path, MINIMAL + "[task]\nnoise = 0.4\n")
    assert load_suite(path).task.values == {"noise": 0.4}


# --- Profiles and command-line overrides ---------------------------------------------------------

PROFILED = """
[suite]
task = "latching"
cells = ["rnn", "lstm"]
lengths = [5, 20]
seed = 3

[train]
samples = 800

[profiles.quick]
verdict.trials = 10
train.samples = 500
suite.cells = ["gru"]
suite.lengths = [7]
suite.seed = 4

[profiles.long]
train.epochs = 50
"""


def test_profile_overrides_keys(tmp_path):
    suite = load_suite(write(tmp_path, PROFILED), Overrides(profile="quick"))
    assert suite.profile == "quick"
    assert suite.profiles == ("quick", "long")
    assert suite.verdict.trials == 10
    assert suite.train.samples == 500
    assert suite.meta.cells == ("gru",)
    assert suite.meta.lengths == (7,)
    assert suite.meta.seed == 4
    # Keys the profile does not name keep the file's values or the defaults.
    assert suite.train.epochs == 10
    assert suite.verdict.alpha == 0.05


def test_profile_not_selected_changes_nothing(tmp_path):
    suite = load_suite(write(tmp_path, PROFILED))
    assert suite.verdict.trials == 30
    assert suite.train.samples == 800
    assert suite.meta.cells == ("rnn", "lstm")


def test_other_profile(tmp_path):
    suite = load_suite(write(tmp_path, PROFILED), Overrides(profile="long"))
    assert suite.train.epochs == 50
    assert suite.train.samples == 800


def test_command_line_wins_over_profile(tmp_path):
    overrides = Overrides(profile="quick", cells=("lstm",), lengths=(9, 3), trials=4, seed=11)
    suite = load_suite(write(tmp_path, PROFILED), overrides)
    assert suite.meta.cells == ("lstm",)
    assert suite.meta.lengths == (9, 3)
    assert suite.verdict.trials == 4
    assert suite.meta.seed == 11
    assert suite.train.samples == 500  # still the profile's


def test_command_line_overrides_without_profile(tmp_path):
    suite = load_suite(write(tmp_path, PROFILED), Overrides(trials=7))
    assert suite.verdict.trials == 7
    assert suite.meta.cells == ("rnn", "lstm")


def test_undefined_profile_lists_the_defined_ones(tmp_path):
    line = single_problem(tmp_path, PROFILED, Overrides(profile="quik"))
    assert "'quik'" in line
    assert "quick, long" in line


def test_undefined_profile_without_any_profiles(tmp_path):
    line = single_problem(tmp_path, MINIMAL, Overrides(profile="quick"))
    assert "'quick'" in line
    assert "none" in line


def test_command_line_lengths_are_checked_against_the_task(tmp_path):
    text = MINIMAL.replace('"latching"', '"relay"')
    line = single_problem(tmp_path, text, Overrides(lengths=(1,)))
    assert line.endswith(
        ": --rnn-length 1: task 'relay' needs an integer length >= 2 (the length is the sequence length)"
    )


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        (MINIMAL, Overrides(lengths=(5, 5)), "--rnn-length=5,5: must not list a length twice"),
        (MINIMAL, Overrides(cells=("rnn", "rnn")), "--cell=rnn,rnn: must not name anything twice"),
        (MINIMAL, Overrides(lengths=(5, 100_000_000)), "--rnn-length 100000000: needs about "),
        (
            MINIMAL + '[train]\nengine = "fused"\n',
            Overrides(cells=("lstm1997",)),
            'train.engine = "fused": runs the built-in cells rnn, lstm, gru only, and --cell lstm1997 is '
            "not one of them",
        ),
    ],
    ids=["duplicate-length", "duplicate-cell", "too-large", "scheme"],
)
def test_a_problem_with_a_value_the_command_line_gave_names_its_option(tmp_path, text, overrides, expected):
    path = write(tmp_path, text)
    line = single_problem(tmp_path, text, overrides)
    assert line.startswith(f"{path}: {expected}"), line


def test_memory_advice_names_the_option_that_set_the_trials(tmp_path):
    line = single_problem(tmp_path, MINIMAL, Overrides(lengths=(100_000_000,), trials=1000))
    assert "lower train.samples or --rnn-trials, or train the trials in stages" in line, line
    line = single_problem(tmp_path, MINIMAL, Overrides(lengths=(100_000_000,)))
    assert "lower train.samples or verdict.trials, or train the trials in stages" in line, line


def test_a_length_past_the_schemas_bound_gets_no_memory_estimate(tmp_path):
    line = single_problem(tmp_path, MINIMAL.replace("[5]", "[9223372036854775807]"))
    assert "suite.lengths = [9223372036854775807]: must be a non-empty list of integers in" in line


# --- Cases -----------------------------------------------------------------------------------------


def test_cases_order_and_ids(tmp_path):
    text = MINIMAL.replace('["rnn"]', '["lstm", "rnn", "gru"]').replace("[5]", "[20, 5]")
    suite = load_suite(write(tmp_path, text))
    ids = [case.id for case in suite.cases()]
    assert ids == ["lstm-L20", "lstm-L5", "rnn-L20", "rnn-L5", "gru-L20", "gru-L5"]
    assert [(c.cell, c.length) for c in suite.cases()][1] == ("lstm", 5)


def test_config_hash_stable_for_equal_settings(tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    text = MINIMAL.replace("[suite]", '[suite]\nname = "same"')
    first = load_suite(write(a, text)).cases()[0].config_hash()
    again = load_suite(write(a, text)).cases()[0].config_hash()
    elsewhere = load_suite(write(b, text)).cases()[0].config_hash()
    assert first == again == elsewhere
    assert re.fullmatch(r"[0-9a-f]+", first)


@pytest.mark.parametrize(
    "extra",
    [
        "[train]\nlr = 0.01\n",
        "[train]\nepochs = 11\n",
        '[train]\noptimizer = "sgd"\n',
        "[model]\nhidden = 2\n",
        "[verdict]\ntrials = 31\n",
        "[verdict]\np0 = 0.6\n",
        "[success]\nthreshold = 0.9\n",
        "[task]\nnoise = 0.2\n",
    ],
)
def test_config_hash_changes_with_a_setting(tmp_path, extra):
    base = load_suite(write(tmp_path, MINIMAL, "a.toml")).cases()[0]
    changed = load_suite(write(tmp_path, MINIMAL + extra, "a.toml")).cases()[0]
    assert base.config_hash() != changed.config_hash()


def test_config_hash_changes_with_seed_and_case(tmp_path):
    text = MINIMAL.replace('["rnn"]', '["rnn", "gru"]').replace("[5]", "[5, 6]")
    path = write(tmp_path, text)
    suite = load_suite(path)
    hashes = {case.config_hash() for case in suite.cases()}
    assert len(hashes) == 4
    reseeded = load_suite(path, Overrides(seed=1)).cases()[0]
    assert reseeded.config_hash() != suite.cases()[0].config_hash()


def test_trial_seeds_differ_between_cases(tmp_path):
    text = MINIMAL.replace('["rnn"]', '["rnn", "gru"]').replace("[5]", "[5, 6]")
    suite = load_suite(write(tmp_path, text), Overrides(trials=12))
    all_seeds = []
    for case in suite.cases():
        case_seeds = case.trial_seeds()
        assert len(case_seeds) == 12
        all_seeds.extend(case_seeds)
    assert len(set(all_seeds)) == len(all_seeds) == 48


def test_trial_seeds_follow_the_suite_seed(tmp_path):
    path = write(tmp_path, MINIMAL)
    a = load_suite(path).cases()[0].trial_seeds()
    assert a == load_suite(path).cases()[0].trial_seeds()
    assert set(a).isdisjoint(load_suite(path, Overrides(seed=1)).cases()[0].trial_seeds())


def test_case_spec_carries_the_resolved_settings(tmp_path):
    path = write(tmp_path, MINIMAL.replace('"latching"', '"addition"'), "add.toml")
    case = load_suite(path, Overrides(trials=3)).cases()[0]
    spec = case.spec()
    assert spec.cell == "rnn"
    assert spec.length == 5
    assert spec.metric == "sequence_accuracy"
    assert spec.trial_seeds == case.trial_seeds()
    assert spec.task == "addition"


# --- One line per problem --------------------------------------------------------------------------


def test_out_of_range_exact_text(tmp_path):
    path = write(tmp_path, MINIMAL + "[train]\nbatch_size = 0\n")
    assert problems_of(path) == [f"{path}: train.batch_size = 0: must be an integer >= 1"]


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param(
            MINIMAL + "[train]\nepoch = 5\n",
            ["train.epoch", "unknown key", "did you mean 'epochs'?", "allowed:", "batch_size"],
            id="unknown-key",
        ),
        pytest.param(
            MINIMAL + "[trian]\nepochs = 5\n",
            ["[trian]", "unknown section", "did you mean 'train'?", "allowed:", "verdict"],
            id="unknown-section",
        ),
        pytest.param(
            MINIMAL + '[train]\nepochs = "ten"\n',
            ['train.epochs = "ten"', "must be an integer >= 1"],
            id="wrong-type",
        ),
        pytest.param(
            MINIMAL + "[model]\nhidden = 1.5\n",
            ["model.hidden = 1.5", "must be an integer >= 1"],
            id="float-for-int",
        ),
        pytest.param(
            MINIMAL + "[verdict]\np0 = 1.0\n",
            ["verdict.p0 = 1.0", "must be a finite number in (0, 1)"],
            id="p0-out-of-range",
        ),
        pytest.param(
            MINIMAL + '[train]\noptimizer = "adamw"\n',
            ['train.optimizer = "adamw"', "'adam', 'sgd', 'rmsprop'"],
            id="bad-choice",
        ),
        pytest.param(
            MINIMAL.replace("[5]", "[5, -1]"),
            ["suite.lengths = [5, -1]", "integers in [1, "],
            id="negative-length",
        ),
        pytest.param(
            MINIMAL.replace('"latching"', '"relay"').replace("[5]", "[1]"),
            ["suite.lengths[0] = 1", "'relay'", ">= 2"],
            id="below-task-minimum",
        ),
        pytest.param(
            MINIMAL.replace('"latching"', '"latchin"'),
            ['suite.task = "latchin"', "unknown task", "latching, relay, xor_delay, addition, or, recall"],
            id="unknown-task",
        ),
        pytest.param(
            MINIMAL.replace('["rnn"]', '["rnn", "lsmt"]'),
            ['suite.cells[1] = "lsmt"', "unknown cell", "rnn, lstm, gru"],
            id="unknown-cell",
        ),
        pytest.param(
            MINIMAL.replace('["rnn"]', '["no_such_module_xyz:Cell"]'),
            ['suite.cells[0] = "no_such_module_xyz:Cell"', "cannot import"],
            id="unimportable-cell",
        ),
        pytest.param(
            MINIMAL + "[task]\nnosie = 0.1\n",
            ["task.nosie", "unknown parameter", "allowed: noise"],
            id="unknown-task-parameter",
        ),
        pytest.param(
            MINIMAL + "[task]\nnoise = -1\n",
            ["task.noise = -1", ">= 0"],
            id="bad-task-parameter",
        ),
        pytest.param(
            MINIMAL + "[profiles.quick]\nverdict.trails = 10\n",
            ["profiles.quick.verdict.trails", "unknown key", "did you mean 'trials'?", "allowed:"],
            id="bad-profile-key",
        ),
        pytest.param(
            MINIMAL + "[profiles.quick]\nverdict.trials = 0\n",
            ["profiles.quick.verdict.trials = 0", "must be an integer >= 1"],
            id="bad-profile-value",
        ),
        pytest.param(
            MINIMAL + '[profiles.quick]\nsuite.cells = ["lsmt"]\n',
            ['profiles.quick.suite.cells[0] = "lsmt"', "unknown cell 'lsmt' (did you mean 'lstm'?)"],
            id="profile-cell-not-applied",
        ),
        pytest.param(
            MINIMAL + '[profiles.quick]\nsuite.task = "latchign"\n',
            ['profiles.quick.suite.task = "latchign"', "unknown task"],
            id="profile-task-not-applied",
        ),
        pytest.param(
            MINIMAL + "[profiles.quick]\ntrian.epochs = 1\n",
            ["profiles.quick.trian", "unknown section", "did you mean 'train'?"],
            id="bad-profile-section",
        ),
        pytest.param(
            MINIMAL + "model = 3\n",
            ["suite.model", "unknown key", "allowed: task, cells, lengths"],
            id="key-in-wrong-section",
        ),
        pytest.param(
            MINIMAL.replace("[suite]", "model = 3\n[suite]"),
            ["model", "must be a table", "3"],
            id="section-not-a-table",
        ),
        pytest.param(
            MINIMAL.replace('task = "latching"\n', ""),
            ["suite.task", "is required"],
            id="missing-task",
        ),
        pytest.param(
            MINIMAL.replace('cells = ["rnn"]\n', ""),
            ["suite.cells", "is required"],
            id="missing-cells",
        ),
        pytest.param(
            MINIMAL.replace("lengths = [5]\n", ""),
            ["suite.lengths", "is required"],
            id="missing-lengths",
        ),
        pytest.param(
            MINIMAL.replace("[5]", "[5, 5]"),
            ["suite.lengths = [5, 5]", "twice"],
            id="duplicate-length",
        ),
        pytest.param(
            MINIMAL.replace('["rnn"]', "[]"),
            ["suite.cells = []", "non-empty list"],
            id="empty-cells",
        ),
    ],
)
def test_one_line_per_problem(tmp_path, text, fragments):
    line = single_problem(tmp_path, text)
    for fragment in fragments:
        assert fragment in line, (fragment, line)


def test_toml_syntax_error_keeps_line_and_column(tmp_path):
    path = write(tmp_path, '[suite]\ntask = "latching"\ncells = ["rnn"\nlengths = [5]\n')
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: ")
    assert "invalid TOML" in problems[0]
    match = re.search(r"\(at line (\d+), column (\d+)\)", problems[0])
    assert match, problems[0]
    assert int(match.group(1)) in (3, 4)  # the unterminated list, or where it is noticed


def test_toml_error_line_number_is_the_files(tmp_path):
    path = write(tmp_path, MINIMAL + "\n\n[train]\nepochs = = 3\n")
    (line,) = problems_of(path)
    lineno = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "= =" in text)
    assert f"(at line {lineno}, column " in line


def test_missing_suite_section_reports_every_required_key(tmp_path):
    path = write(tmp_path, "[model]\nhidden = 2\n")
    problems = problems_of(path)
    assert len(problems) == 3
    for key in ("suite.task", "suite.cells", "suite.lengths"):
        assert sum(key in line for line in problems) == 1, key


def test_unreadable_file(tmp_path):
    path = tmp_path / "missing.toml"
    (line,) = problems_of(path)
    assert line.startswith(f"{path}: ")


def test_several_problems_in_one_error(tmp_path):
    text = """
    [suite]
    task = "relay"
    cells = ["rnn", "lsmt"]
    lengths = [1, 4]

    [train]
    batch_size = 0
    epoch = 3

    [trian]
    lr = 1

    [verdict]
    alpha = 0.7

    [profiles.quick]
    verdict.trails = 2
    """
    path = write(tmp_path, text)
    problems = problems_of(path)
    expected = [
        "suite.cells[1]",
        "suite.lengths[0] = 1",
        "train.batch_size = 0",
        "train.epoch",
        "[trian]",
        "verdict.alpha = 0.7",
        "profiles.quick.verdict.trails",
    ]
    assert len(problems) == len(expected), problems
    for fragment in expected:
        assert sum(fragment in line for line in problems) == 1, (fragment, problems)
    assert all(line.startswith(f"{path}: ") for line in problems)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert str(info.value) == "\n".join(problems)


@pytest.mark.parametrize("alpha", ["0.5", "0.0"])
def test_alpha_lies_strictly_between_0_and_half(tmp_path, alpha):
    """At 0.5 the interval's level 1 - 2 alpha is 0, and a report of such a run could not be read
    back: the suite is refused as it loads, not after its cases trained."""
    line = single_problem(tmp_path, MINIMAL + f"[verdict]\nalpha = {alpha}\n")
    assert f"verdict.alpha = {alpha}: must be a finite number in (0, 0.5)" in line


def test_alpha_just_below_half_is_accepted(tmp_path):
    assert load_suite(write(tmp_path, MINIMAL + "[verdict]\nalpha = 0.49\n")).verdict.alpha == 0.49


def test_every_unknown_task_parameter_is_reported(tmp_path):
    path = write(tmp_path, MINIMAL + "[task]\nnosie = 0.1\nfoo = 2\n")
    problems = problems_of(path)
    assert sum("task.nosie" in line for line in problems) == 1
    assert sum("task.foo" in line for line in problems) == 1


def test_selected_profile_problem_reported_once(tmp_path):
    path = write(tmp_path, MINIMAL + "[profiles.quick]\nverdict.trials = 0\n")
    assert len(problems_of(path, Overrides(profile="quick"))) == 1


# --- Schema documentation -----------------------------------------------------------------------


def test_every_key_with_a_default_passes_its_own_check():
    for section, cls in SECTIONS.items():
        for name, f in keys_of(cls).items():
            check = f.metadata.get("check")
            if default_of(f) is dataclasses.MISSING or check is None or default_of(f) == "":
                continue
            assert check(default_of(f)) is None, (section, name, default_of(f))


@pytest.mark.parametrize("selected", [None, "quick"])
def test_a_profiles_unknown_task_parameter_is_reported_once(tmp_path, selected):
    path = write(tmp_path, MINIMAL + "[profiles.quick]\ntask.nosie = 1\n")
    problems = problems_of(path, Overrides(profile=selected))
    assert problems == [
        f"{path}: profiles.quick.task.nosie: unknown parameter of task 'latching'; allowed: noise"
    ]


@pytest.mark.parametrize("selected", [None, "q"])
def test_a_profile_that_switches_the_task_sets_the_new_tasks_parameters(tmp_path, selected):
    text = (
        MINIMAL + '[profiles.q.suite]\ntask = "adding"\nlengths = [10]\n[profiles.q.task]\ntolerance = 0.1\n'
    )
    suite = load_suite(write(tmp_path, text), Overrides(profile=selected))
    expected = {"tolerance": 0.1} if selected else {"noise": 0.1}
    assert dict(suite.task.values) == expected


def test_a_profiles_task_parameters_are_checked_against_the_task_it_runs(tmp_path):
    text = MINIMAL + '[profiles.q.suite]\ntask = "adding"\nlengths = [10]\n[profiles.q.task]\nnoise = 0.1\n'
    path = write(tmp_path, text)
    assert problems_of(path) == [
        f"{path}: profiles.q.task.noise: unknown parameter of task 'adding'; allowed: tolerance"
    ]


def test_the_files_task_parameters_stay_with_its_task_when_a_profile_switches_it(tmp_path):
    text = (
        MINIMAL
        + "[task]\nnoise = 0.2\n"
        + '[profiles.q.suite]\ntask = "adding"\nlengths = [10]\n'
        + '[profiles.same.suite]\ntask = "latching"\n'
    )
    path = write(tmp_path, text)
    assert dict(load_suite(path, Overrides(profile="q")).task.values) == {"tolerance": 0.04}
    assert dict(load_suite(path, Overrides(profile="same")).task.values) == {"noise": 0.2}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (MINIMAL.replace('"latching"', "3") + "[task]\nnoise = nan\n", "task.noise"),
        (MINIMAL + "[profiles.q.suite]\ntask = 3\n[profiles.q.task]\nnoise = nan\n", "profiles.q.task.noise"),
    ],
    ids=["file", "profile"],
)
def test_a_task_parameters_value_is_checked_where_its_task_is_refused(tmp_path, text, where):
    path = write(tmp_path, text)
    assert f"{path}: {where} = nan: must be a finite number >= 0" in problems_of(path)


@pytest.mark.parametrize("selected", [None, "fast"])
def test_a_profiles_engine_names_a_scheme_whether_or_not_it_is_applied(tmp_path, selected):
    path = write(tmp_path, MINIMAL + '[profiles.fast]\ntrain.engine = "natvie"\n')
    (problem,) = problems_of(path, Overrides(profile=selected))
    assert problem.startswith(
        f'{path}: profiles.fast.train.engine = "natvie": '
        "unknown scheme (did you mean 'native'?); allowed: auto,"
    )


def test_a_profiles_task_entry_must_be_a_table(tmp_path):
    path = write(tmp_path, MINIMAL + "[profiles.quick]\ntask = 5\n")
    (problem,) = problems_of(path, Overrides(profile="quick"))
    assert problem.endswith("profiles.quick.task: must be a table of the task's parameters, got 5")


def test_a_builtin_only_engine_with_a_user_cell_is_a_suite_error(tmp_path):
    path = write(
        tmp_path,
        '[suite]\ntask = "latching"\ncells = ["rnn", "tests.cells_for_tests:ZeroRecurrence"]\n'
        'lengths = [5]\n[train]\nengine = "fused"\n',
    )
    (problem,) = problems_of(path)
    assert problem == (
        f'{path}: train.engine = "fused": runs the built-in cells rnn, lstm, gru only, and suite.cells[1] = '
        "\"tests.cells_for_tests:ZeroRecurrence\" is not one of them; use 'auto' or 'vmap' or 'compiled'"
    )


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        (
            "tests.cells_for_tests:WrongShape",
            "forward must return hidden states [batch, steps, hidden] = [2, 3, 1]",
        ),
        ("tests.cells_for_tests:TorchRNN", "have no batching rule (PyTorch issue 105982)"),
        ("tests.cells_for_tests:Nope", "'tests.cells_for_tests' has no attribute 'Nope'"),
    ],
)
def test_a_cell_that_breaks_the_protocol_is_named_with_what_went_wrong(tmp_path, cell, message):
    path = write(tmp_path, f'[suite]\ntask = "latching"\ncells = ["{cell}"]\nlengths = [5]\n')
    (problem,) = problems_of(path)
    assert problem.startswith(f'{path}: suite.cells[0] = "{cell}": cell {cell!r}')
    assert message in problem
    # A cell the command line names is named as the command line's, not as the file's.
    (problem,) = problems_of(write(tmp_path, MINIMAL, "other.toml"), Overrides(cells=(cell,)))
    assert problem.startswith(f"{tmp_path / 'other.toml'}: --cell {cell}: cell {cell!r}")


# --- Length generalisation -------------------------------------------------------------------------

RECALL = """
[suite]
task = "recall"
cells = ["rnn"]
lengths = [2, 5]
"""


def test_eval_lengths_as_multiples_are_rounded_and_never_the_trained_length(tmp_path):
    suite = load_suite(write(tmp_path, RECALL + "eval_lengths = [1, 1.5, 2, 4]\n"))
    by_length = {case.length: case.eval_lengths for case in suite.cases()}
    assert by_length == {2: (3, 4, 8), 5: (8, 10, 20)}  # 1.5 x 5 = 7.5 rounds to 8
    assert suite.cases()[0].spec().eval_lengths == (3, 4, 8)


def test_tuning_trials_are_not_evaluated_at_the_evaluation_lengths(tmp_path, monkeypatch):
    """A recipe is chosen on the trained length's results: measuring tuning trials at the
    evaluation lengths would be work nothing reads, on data the load-time size check never counted."""
    from pytest_rnnmemory import tuning
    from pytest_rnnmemory.outcome import CaseOutcome

    text = RECALL + 'eval_lengths = [2]\n[search]\n"train.lr" = [0.01, 0.05]\n[verdict]\ntrials = 3\n'
    case = load_suite(write(tmp_path, text)).cases()[0]
    assert case.spec().eval_lengths == (4,)
    trained = []

    def fake(spec, **_):
        trained.append(spec)
        n = len(spec.trial_seeds)
        return CaseOutcome(
            metrics=(0.0,) * n,
            diverged=(False,) * n,
            train_loss=((),) * n,
            val_metric=((),) * n,
            scheme="vmap",
            device="cpu",
            wall_s=0.0,
            sequences=(None,) * n,
        )

    monkeypatch.setattr(tuning, "train_case", fake)
    tuning.search_recipe(case)
    assert trained and all(spec.eval_lengths == () for spec in trained)


def test_eval_lengths_as_absolute_lengths(tmp_path):
    suite = load_suite(write(tmp_path, RECALL + 'eval_lengths = [10, 5]\neval_unit = "absolute"\n'))
    assert [case.eval_lengths for case in suite.cases()] == [(5, 10), (10,)]


def test_eval_lengths_enter_the_settings_only_when_set(tmp_path):
    plain = load_suite(write(tmp_path, RECALL)).cases()[0]
    evaluated = load_suite(write(tmp_path, RECALL + "eval_lengths = [2]\n", name="e.toml")).cases()[0]
    assert "eval_lengths" not in plain.configuration()
    assert evaluated.configuration()["eval_lengths"] == [4]


def test_a_task_that_cannot_generalise_says_why_and_which_can(tmp_path):
    line = single_problem(tmp_path, MINIMAL + "eval_lengths = [2]\n")
    assert "suite.eval_lengths = [2]: task 'latching' cannot be evaluated at other lengths" in line
    assert "train at that length instead" in line
    assert "(tasks that can: adding, addition, or, parity, recall, xor_delay)" in line


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ("eval_lengths = [0]", "must be a list of finite numbers in (0, "),
        ('eval_lengths = ["2x"]', "must be a list of finite numbers in (0, "),
        ("eval_lengths = [2, 2]", "must not list a length twice"),
        ('eval_lengths = [2.5]\neval_unit = "absolute"', "must be whole lengths"),
        ('eval_unit = "relative"', "must be one of 'multiple', 'absolute'"),
    ],
)
def test_bad_eval_lengths_are_named_with_what_is_allowed(tmp_path, extra, fragment):
    line = single_problem(tmp_path, RECALL + extra + "\n")
    assert "suite.eval_" in line
    assert fragment in line


def test_an_eval_length_below_the_tasks_minimum_names_the_trained_length(tmp_path):
    text = '[suite]\ntask = "adding"\ncells = ["lstm"]\nlengths = [10, 40]\neval_lengths = [0.5]\n'
    line = single_problem(tmp_path, text)
    assert "gives length 5 for the trained length 10" in line
    assert ">= 10" in line


# --- Numbers that are not numbers, sizes no machine holds, code that is not a cell ----------------


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ("[train]\nlr = nan\n", "train.lr = nan"),
        ("[train]\nclip = nan\n", "train.clip = nan"),
        ("[train]\nclip = inf\n", "train.clip = inf"),
        ("[verdict]\np0 = nan\n", "verdict.p0 = nan"),
        ("[verdict]\nalpha = nan\n", "verdict.alpha = nan"),
        ("[success]\nthreshold = nan\n", "success.threshold = nan"),
        ("[task]\nnoise = nan\n", "task.noise = nan"),
        ("[task]\nnoise = inf\n", "task.noise = inf"),
        ("[task]\nnoise = -inf\n", "task.noise = -inf"),
    ],
)
def test_a_number_that_is_not_finite_is_one_line(tmp_path, extra, where):
    line = single_problem(tmp_path, MINIMAL + extra)
    assert where in line
    assert "finite" in line


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_an_evaluation_length_that_is_not_finite_is_one_line(tmp_path, value):
    line = single_problem(tmp_path, RECALL + f"eval_lengths = [{value}]\n")
    assert f"suite.eval_lengths = [{value}]" in line or "suite.eval_lengths" in line
    assert "finite" in line


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ("[verdict]\ntrials = 1000000000000\n", "verdict.trials = 1000000000000: must be an integer in [1, "),
        ("[train]\nsamples = 1000000000000\n", "train.samples = 1000000000000: must be an integer in [1, "),
        ("[train]\nepochs = 100000000000\n", "train.epochs = 100000000000: must be an integer in [1, "),
        ("[model]\nhidden = 100000000\n", "model.hidden = 100000000: must be an integer in [1, "),
    ],
)
def test_a_size_past_every_bound_names_the_bound(tmp_path, extra, fragment):
    assert fragment in single_problem(tmp_path, MINIMAL + extra)


def test_a_case_too_large_for_this_machine_gives_the_estimate(tmp_path):
    text = MINIMAL.replace("[5]", "[5, 10000000]") + "[train]\nsamples = 100000\n"
    line = single_problem(tmp_path, text)
    assert "suite.lengths[1] = 10000000" in line
    assert "30 trials x 101000 sequences x 10000000 steps" in line
    assert "GiB" in line and "this machine has" in line


def test_an_evaluation_length_past_the_longest_length_names_the_bound(tmp_path):
    # A multiple within the bound of lengths gives a length past it.
    line = single_problem(tmp_path, RECALL + "eval_lengths = [1e8]\n")
    assert "suite.eval_lengths = [100000000.0]: gives length 200000000 for the trained length 2" in line
    assert "lengths must be at most 100_000_000" in line


@pytest.mark.parametrize(
    "given", ["eval_lengths = [10000000]", 'eval_lengths = [30000000]\neval_unit = "absolute"']
)
def test_evaluation_data_too_large_for_this_machine_gives_the_estimate(tmp_path, monkeypatch, given):
    monkeypatch.setattr(loading, "physical_memory", lambda: 24 * 2**30)
    text = '[suite]\ntask = "parity"\ncells = ["rnn"]\nlengths = [3]\n{}\n[train]\nval_samples = 1000\n'
    text += "[verdict]\ntrials = 2\n"
    line = single_problem(tmp_path, text.format(given))
    assert "suite.eval_lengths = [" in line
    assert "gives length 30000000 for the trained length 3, which needs about 447 GiB" in line
    assert "2 trials x 1000 sequences x 30000000 steps" in line and "this machine has 24 GiB" in line
    assert "lower suite.eval_lengths, train.val_samples or verdict.trials" in line
    # Evaluation data that fits loads.
    assert load_suite(write(tmp_path, text.format("eval_lengths = [1000]"))).cases()[0].eval_lengths == (
        3000,
    )


def test_an_empty_name_means_the_files_stem(tmp_path):
    path = write(tmp_path, MINIMAL.replace("[suite]", '[suite]\nname = ""'), name="stem.toml")
    assert load_suite(path).name == "stem"


@pytest.mark.parametrize("bad", ["..", ".", ".hidden", "a/b"])
def test_a_name_that_is_no_file_name_is_refused(tmp_path, bad):
    line = single_problem(tmp_path, MINIMAL.replace("[suite]", f'[suite]\nname = "{bad}"'))
    assert f'suite.name = "{bad}"' in line


@pytest.mark.parametrize("path", ["builtins:print", "os:system", "builtins:eval", "math:pi"])
def test_code_that_is_not_a_cell_class_is_refused_before_it_is_called(tmp_path, monkeypatch, path):
    import builtins
    import os

    called = []
    monkeypatch.setattr(builtins, "print", lambda *a, **k: called.append(("print", a)))
    monkeypatch.setattr(os, "system", lambda *a, **k: called.append(("system", a)))
    monkeypatch.setattr(builtins, "eval", lambda *a, **k: called.append(("eval", a)))
    line = single_problem(tmp_path, MINIMAL.replace('["rnn"]', f'["{path}"]'))
    assert called == []
    assert f'suite.cells[0] = "{path}"' in line
    assert "must be a class, a subclass of torch.nn.Module" in line
    assert "it is a class" not in line  # a function, or a number


def test_a_class_that_is_not_a_module_is_called_a_class(tmp_path):
    line = single_problem(tmp_path, MINIMAL.replace('["rnn"]', '["collections:OrderedDict"]'))
    assert line.endswith(
        "must be a class, a subclass of torch.nn.Module; it is a class that does not subclass it"
    )


def test_a_task_that_is_not_a_task_class_is_refused(tmp_path):
    line = single_problem(tmp_path, MINIMAL.replace('"latching"', '"builtins:print"'))
    assert "is not a subclass of pytest_rnnmemory.tasks.Task" in line


def test_a_built_in_only_scheme_with_a_user_cell_is_refused_for_every_such_scheme(tmp_path):
    for scheme in ("native", "stepwise", "fused"):
        path = write(
            tmp_path,
            '[suite]\ntask = "latching"\ncells = ["tests.cells_for_tests:ZeroRecurrence"]\n'
            f'lengths = [5]\n[train]\nengine = "{scheme}"\n',
        )
        (problem,) = problems_of(path)
        assert f'train.engine = "{scheme}": runs the built-in cells rnn, lstm, gru' in problem


# --- [search]: a grid of recipes ----------------------------------------------------------------------

SEARCHED = MINIMAL + '[search]\n"train.lr" = [0.01, 0.05]\n"model.init" = ["torch", "chrono"]\n'


def test_a_search_is_the_grid_of_its_lists(tmp_path):
    suite = load_suite(write(tmp_path, SEARCHED))
    assert suite.config.grid == (("train.lr", (0.01, 0.05)), ("model.init", ("torch", "chrono")))
    assert (suite.config.search.trials, suite.config.search.scope) == (10, "case")
    assert suite.cases()[0].searched


def test_the_search_may_be_written_with_unquoted_dotted_keys(tmp_path):
    text = MINIMAL + '[search]\ntrain.lr = [0.01, 0.05]\nmodel.init = ["torch", "chrono"]\n'
    assert (
        load_suite(write(tmp_path, text)).config.grid
        == load_suite(write(tmp_path, SEARCHED, "b.toml")).config.grid
    )


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ('"train.epochs" = [5, 10]', 'search."train.epochs" = [5, 10]: the budget is not searched'),
        ('"train.samples" = [500]', "the budget is not searched: the largest budget would always win"),
        ('"success.threshold" = [0.9]', "[success] is not searched: it changes the question"),
        ('"task.noise" = [0.1]', "[task] is not searched: it changes the question"),
        ('"train.engine" = ["native"]', "not a searchable key; searchable: train.lr, train.optimizer"),
        ('"train.lr" = []', "must be a non-empty list of values to try"),
        ('"train.lr" = [0.01, nan]', "[1] = nan: must be a finite number"),
        ('"model.init" = ["torch", "xavier"]', "[1] = 'xavier': must be one of 'torch', 'chrono'"),
        ('"train.lr" = [0.01, 0.01]', "must not list a value twice"),
        (
            '"train.lr" = [1, 0.5, 1.0]',
            'search."train.lr" = [1, 0.5, 1.0]: [2] = 1.0 equals [0] = 1: must not',
        ),
        ('"train.lr" = 0.01', "must be a non-empty list of values to try"),
        ("trials = 0", "search.trials = 0: must be an integer >= 1"),
        ('scope = "run"', "search.scope = \"run\": must be one of 'case', 'cell'"),
    ],
)
def test_a_bad_search_entry_is_one_line(tmp_path, entry, fragment):
    assert fragment in single_problem(tmp_path, MINIMAL + f"[search]\n{entry}\n")


def test_a_grid_past_the_limit_names_its_size(tmp_path):
    lrs = ", ".join(str(0.001 * (i + 1)) for i in range(9))
    text = (
        MINIMAL
        + f'[search]\n"train.lr" = [{lrs}]\n"train.batch_size" = [8, 16, 32, 64, 128, 256, 512, 1024]\n'
    )
    assert "a grid of 9 x 8 = 72 recipes; at most 64 are searched" in single_problem(tmp_path, text)


def test_profiles_change_the_search_and_the_command_line_turns_it_off(tmp_path):
    text = SEARCHED + '[profiles.quick]\nsearch."model.init" = ["chrono"]\nsearch.trials = 4\n'
    quick = load_suite(write(tmp_path, text), Overrides(profile="quick")).config
    assert quick.grid == (("train.lr", (0.01, 0.05)), ("model.init", ("chrono",)))
    assert quick.search.trials == 4
    off = load_suite(write(tmp_path, text), Overrides(search=False))
    assert off.config.grid == () and not off.cases()[0].searched


def test_a_grid_of_one_recipe_is_what_its_cases_train_without_tuning_trials(tmp_path):
    """Narrowing a key to one value is how a profile fixes it (``search."train.lr" = [0.05]``): the
    grid's only recipe trains, over the suite's ``[train] lr``, and with nothing to choose no tuning
    trial is spent. It trains as the same value written in ``[train]`` does (one configuration), but
    its record names the grid's recipe, so the two do not share a stored result."""
    text = MINIMAL + "[train]\nlr = 0.05\n"
    one = load_suite(write(tmp_path, text + '[search]\n"train.lr" = [0.000001]\n')).cases()[0]
    assert (one.searched, one.recipe) == (False, Recipe((("train.lr", 0.000001),)))
    assert one.spec().train.lr == 0.000001
    (tmp_path / "base").mkdir()
    (tmp_path / "plain").mkdir()
    base = load_suite(write(tmp_path / "base", text.replace("0.05", "0.000001"))).cases()[0]
    plain = load_suite(write(tmp_path / "plain", text)).cases()[0]
    assert base.recipe == Recipe() and base.spec().train.lr == 0.000001
    assert one.configuration() == base.configuration() != plain.configuration()
    assert work(one) == work(base)  # the verdict's trials alone
    assert case_key(one, "cpu") != case_key(base, "cpu")


def test_a_suite_without_search_keeps_its_hashes_and_a_changed_grid_changes_them(tmp_path):
    plain = load_suite(write(tmp_path, MINIMAL)).cases()[0]
    assert "search" not in plain.configuration()
    one = load_suite(write(tmp_path, SEARCHED, "a.toml")).cases()[0]
    other = load_suite(write(tmp_path, SEARCHED.replace("0.05]", "0.1]"), "b.toml")).cases()[0]
    assert len({plain.config_hash(), one.config_hash(), other.config_hash()}) == 3


def test_the_shuffled_control_trains_the_files_first_cell_whichever_cells_the_command_line_selects(
    tmp_path,
):
    """A control is the suite's: ``--cell=lstm`` must not turn the file's rnn control into an lstm
    one, whose counts would then stand in the report's column for the other."""
    text = MINIMAL.replace('cells = ["rnn"]', 'cells = ["rnn", "lstm"]\ncontrols = ["shuffled"]')
    full = [c for c in load_suite(write(tmp_path, text)).cases() if c.control]
    selected = [c for c in load_suite(write(tmp_path, text), Overrides(cells=("lstm",))).cases() if c.control]
    assert [c.trained_cell for c in selected] == ["rnn"]
    assert selected[0].config_hash() == full[0].config_hash()


def test_a_cell_that_is_also_a_control_is_refused_in_a_profile_whether_or_not_it_is_applied(tmp_path):
    """Its cases would be the control's under the same ids: the key named is the profile's where the
    profile gives it."""
    text = MINIMAL.replace('cells = ["rnn"]', 'cells = ["memoryless"]')
    line = single_problem(tmp_path, text + '[profiles.ctl]\nsuite.controls = ["memoryless"]\n')
    assert line.endswith(
        'suite.cells[0] = "memoryless": also one of profiles.ctl.suite.controls, which runs it at every '
        "length; leave it out of suite.cells (the control's cases train it) or out of "
        "profiles.ctl.suite.controls (to test it as a cell)"
    )
    applied = text + 'controls = ["memoryless"]\n[profiles.quick]\nsuite.cells = ["rnn"]\n'
    assert load_suite(write(tmp_path, applied), Overrides(profile="quick")).meta.controls == ("memoryless",)
    (problem,) = problems_of(write(tmp_path, applied), Overrides(cells=("memoryless",), profile="quick"))
    assert ": --cell memoryless: also one of suite.controls, " in problem


def test_the_shuffled_controls_cell_is_checked_when_the_command_line_leaves_it_out(tmp_path):
    text = MINIMAL.replace(
        'cells = ["rnn"]', 'cells = ["no_such_module_xyz:Cell", "lstm"]\ncontrols = ["shuffled"]'
    )
    (problem,) = problems_of(write(tmp_path, text), Overrides(cells=("lstm",)))
    assert 'suite.cells[0] = "no_such_module_xyz:Cell" (the shuffled control\'s cell): ' in problem
    fused = (
        text.replace('"no_such_module_xyz:Cell"', '"tests.cells_for_tests:IndRNN"')
        + '[train]\nengine = "fused"\n'
    )
    (problem,) = problems_of(write(tmp_path, fused, "fused.toml"), Overrides(cells=("lstm",)))
    assert (
        'runs the built-in cells rnn, lstm, gru only, and suite.cells[0] = "tests.cells_for_tests:IndRNN"'
        in problem
    )


def test_a_search_over_a_cells_lengths_is_keyed_by_the_lengths_it_searched(tmp_path):
    """With ``search.scope = "cell"`` a case's recipe comes from tuning at every length of the run:
    a run of fewer lengths (``--rnn-length``) chooses from other evidence, so neither its stored
    search nor its cases' results may stand for the full run's."""
    text = SEARCHED.replace("lengths = [5]", "lengths = [5, 10]") + 'scope = "cell"\n'
    full = load_suite(write(tmp_path, text)).cases()[0]
    alone = load_suite(write(tmp_path, text), Overrides(lengths=(5,))).cases()[0]
    assert (full.length, alone.length) == (5, 5)
    assert full.configuration()["search"]["lengths"] == [5, 10]
    assert full.config_hash() != alone.config_hash()
    assert search_key(full, "cpu") != search_key(alone, "cpu")
    per_case = load_suite(write(tmp_path, SEARCHED, "c.toml")).cases()[0]
    assert "lengths" not in per_case.configuration()["search"]
    # Nor does a report merge the two runs' cases as one experiment's.
    assert not same_experiment(full.suite.config, alone.suite.config)
    per_case_alone = load_suite(write(tmp_path, SEARCHED, "c.toml"), Overrides(lengths=(5,))).cases()[0]
    assert same_experiment(per_case.suite.config, per_case_alone.suite.config)


def test_tuning_seeds_are_the_same_for_every_recipe_and_never_a_verdict_seed(tmp_path):
    case = load_suite(write(tmp_path, SEARCHED), Overrides(trials=50)).cases()[0]
    tuning = case.tuning_seeds(0, 50)
    assert set(tuning).isdisjoint(case.trial_seeds())
    assert case.tuning_seeds(10, 20) == tuning[10:20]
    recipe = case.spec(recipe=None, trial_seeds=tuning[:3])
    assert recipe.trial_seeds == tuning[:3]


def test_tuning_seeds_differ_between_cases(tmp_path):
    text = SEARCHED.replace('["rnn"]', '["rnn", "gru"]').replace("[5]", "[5, 6]")
    cases = load_suite(write(tmp_path, text)).cases()
    assert len(cases) == 4
    all_seeds = [seed for case in cases for seed in case.tuning_seeds(0, 10)]
    assert len(set(all_seeds)) == len(all_seeds) == 40


# --- Variable lengths and streamed data ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ('[train]\ndata = "stream"\n', 'train.data = "stream": needs train.max_sequences'),
        ("[train]\nmax_sequences = 5000\n", "train.max_sequences = 5000: is the budget of streamed data"),
        (
            '[train]\nlengths = "some"\n',
            "train.lengths = \"some\": must be one of 'fixed', 'up_to', 'spread'",
        ),
        ("[train]\nspread = -0.1\n", "train.spread = -0.1: must be a finite number in [0, 10]"),
    ],
)
def test_training_data_keys_are_checked_in_one_line_each(tmp_path, extra, fragment):
    assert fragment in single_problem(tmp_path, MINIMAL + extra)


def test_a_spread_past_the_tasks_lengths_names_the_length_it_gives(tmp_path):
    text = '[suite]\ntask = "adding"\ncells = ["lstm"]\nlengths = [10]\n[train]\nlengths = "spread"\n'
    assert load_suite(write(tmp_path, text)).train.spread == 0.1
    streamed = text + 'data = "stream"\nmax_sequences = 20000\n'
    assert load_suite(write(tmp_path, streamed, "s.toml")).train.max_sequences == 20000


# --- The literature a suite reproduces ----------------------------------------------------------------

REFERENCE = """
[reference]
source = "Hochreiter & Schmidhuber (1997)"
[[reference.figures]]
cell = "lstm"
length = 5
statistic = "mean_sequences"
value = 74000
trials = 10
"""
TWO_CELLS = MINIMAL.replace('["rnn"]', '["rnn", "lstm"]')


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ("spread = 0.2", 'train.spread = 0.2: applies with train.lengths = "spread" only'),
        ("eval_every = 100", 'train.eval_every = 100: applies with train.stop = "learned" only'),
        ("test_samples = 500", 'train.test_samples = 500: applies with train.stop = "learned" only'),
    ],
)
def test_a_key_that_does_not_apply_to_the_suites_training_is_refused(tmp_path, train, message):
    assert single_problem(tmp_path, MINIMAL + f"[train]\n{train}\n").endswith(message)


def test_a_profile_may_change_the_training_that_the_files_keys_apply_to(tmp_path):
    text = (
        MINIMAL
        + '[train]\nstop = "learned"\neval_every = 100\ntest_samples = 200\n'
        + '[profiles.budget]\ntrain.stop = "budget"\n'
    )
    assert load_suite(write(tmp_path, text), Overrides(profile="budget")).config.train.stop == "budget"


def test_a_file_whose_name_cannot_name_the_reports_needs_a_suite_name(tmp_path):
    path = tmp_path / "my suite.toml"
    path.write_text(MINIMAL)
    assert problems_of(path) == [
        f"{path}: suite.name: is not set, and the file's name 'my suite' cannot name the suite's reports: "
        "set suite.name to a name of letters, digits, '_', '.' or '-' (or rename the file)"
    ]
    path.write_text(MINIMAL.replace("[suite]", '[suite]\nname = "my_suite"'))
    assert load_suite(path).config.suite.name == "my_suite"


def test_a_suite_file_saved_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes("\ufeff".encode() + MINIMAL.encode())
    assert load_suite(path).config.suite.cells == ("rnn",)


def test_a_misspelt_choice_is_answered_with_the_closest_allowed_value(tmp_path):
    line = single_problem(tmp_path, MINIMAL + '[train]\noptimizer = "Adam"\n')
    assert line.endswith(
        "train.optimizer = \"Adam\": must be one of 'adam', 'sgd', 'rmsprop' (did you mean 'adam'?)"
    )


def test_a_reference_travels_into_the_config_the_report_carries(tmp_path):
    suite = load_suite(write(tmp_path, TWO_CELLS + REFERENCE))
    reference = suite.config.reference
    assert reference.source == "Hochreiter & Schmidhuber (1997)"
    assert [(f.cell, f.length, f.statistic, f.value, f.trials) for f in reference.figures] == [
        ("lstm", 5, "mean_sequences", 74000, 10)
    ]
    assert SuiteConfig.from_json(suite.config.to_json()) == suite.config


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (("74000", '"many"'), 'reference.figures[0].value = "many": must be a finite number'),
        (('"mean_sequences"', '"median"'), 'reference.figures[0].statistic = "median": must be one of'),
        (('cell = "lstm"', 'cell = "gru"'), 'reference.figures[0].cell = "gru": not a cell of this suite'),
        (
            ("length = 5", "length = 7"),
            "reference.figures[0].length = 7: not a length this suite, its profiles or the command line "
            "run: 5",
        ),
        (("trials = 10", "trials = 10\nseeds = 10"), "reference.figures[0].seeds: unknown key"),
        (("trials = 10", ""), "reference.figures[0].trials: is required"),
        (
            ("[[reference.figures]]", 'setup = "x"\ncitation = "y"\n[[reference.figures]]'),
            "reference.citation: unknown key",
        ),
        (("[[reference.figures]]", "[reference.figures]"), 'reference.figures = {"cell": "lstm"'),
        (
            ('"mean_sequences"', '"success_rate"'),
            "reference.figures[0].value = 74000: a success_rate lies in [0, 1]",
        ),
        (
            ("trials = 10", "trials = 10\neval_length = 20"),
            "reference.figures[0].eval_length = 20: applies to",
        ),
    ],
)
def test_reference_keys_are_checked_in_one_line_each(tmp_path, change, fragment):
    assert fragment in single_problem(tmp_path, TWO_CELLS + REFERENCE.replace(*change))


def test_a_profile_that_runs_fewer_cells_keeps_the_references_of_the_others(tmp_path):
    text = TWO_CELLS + REFERENCE + '[profiles.rnn_only]\nsuite.cells = ["rnn"]\n'
    suite = load_suite(write(tmp_path, text), Overrides(profile="rnn_only"))
    assert suite.config.suite.cells == ("rnn",) and suite.config.reference.figures[0].cell == "lstm"


def test_a_reference_at_a_length_a_profile_runs_is_one_of_the_suites(tmp_path):
    text = (
        TWO_CELLS + REFERENCE.replace("length = 5", "length = 50") + "[profiles.long]\nsuite.lengths = [50]\n"
    )
    assert load_suite(write(tmp_path, text)).config.reference.figures[0].length == 50
    at_seven = TWO_CELLS + REFERENCE.replace("length = 5", "length = 7")
    assert load_suite(write(tmp_path, at_seven), Overrides(lengths=(7,))).config.suite.lengths == (7,)


def test_a_stored_reference_whose_figures_are_not_a_list_names_the_key():
    config = load_suite_config_json()
    config["reference"] = {"source": "x", "figures": None}
    with pytest.raises(StoredDataError, match=r"config.reference.figures: expected a list, got None"):
        SuiteConfig.from_json(config)


def load_suite_config_json():
    return json.loads(json.dumps(load_suite("suites/adding_1997.toml").config.to_json()))


def test_streamed_data_is_sized_by_the_piece_drawn_at_a_time_not_by_the_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "physical_memory", lambda: 24 * 2**30)
    # Held in memory at once, 2,000,000 sequences of length 1100 would need about 90 GiB.
    text = (
        '[suite]\ntask = "adding"\ncells = ["lstm"]\nlengths = [1000]\n[verdict]\ntrials = 10\n'
        '[train]\ndata = "stream"\nmax_sequences = 2000000\nlengths = "spread"\n'
    )
    assert load_suite(write(tmp_path, text)).train.max_sequences == 2_000_000
    fixed = text.replace('data = "stream"\nmax_sequences = 2000000\n', "samples = 1000000\n")
    assert "needs about 90" in single_problem(tmp_path, fixed)


def test_a_reference_without_figures_names_the_keys_a_figure_takes(tmp_path):
    text = TWO_CELLS + REFERENCE.split("[[reference.figures]]")[0]
    assert "reference: has no figures: add [[reference.figures]] tables with keys cell, length" in (
        single_problem(tmp_path, text)
    )


def test_cell_args_for_every_cell_beside_a_built_in_cell_says_to_name_the_cell(tmp_path):
    path = write(
        tmp_path,
        '[suite]\ntask = "latching"\ncells = ["tests.cells_for_tests:IndRNN", "lstm", "gru"]\n'
        "lengths = [5]\n[model]\ncell_args = { recurrent_max = 0.5 }\n",
    )
    (problem,) = problems_of(path)
    assert problem == (
        f"{path}: model.cell_args = {{'recurrent_max': 0.5}}: is for your own cells' constructors, and "
        "lstm and gru are built in: name the cell they are for "
        '(cell_args = { "tests.cells_for_tests:IndRNN" = { ... } })'
    )


CELL_ARGS = """
[suite]
task = "latching"
cells = ["tests.cells_for_tests:IndRNN", "tests.cells_for_tests:DroppedStep", "lstm"]
lengths = [5]
[model]
hidden = 2
cell_args = { "tests.cells_for_tests:IndRNN" = { recurrent_max = 0.001 }, CELL_OWN }
"""


def test_a_cell_named_in_cell_args_is_built_with_its_own_beside_built_in_cells(tmp_path):
    path = write(
        tmp_path, CELL_ARGS.replace("CELL_OWN", '"tests.cells_for_tests:DroppedStep" = { dropout = 0.25 }')
    )
    suite = load_suite(path)
    model = suite.config.model
    assert model.args_for("tests.cells_for_tests:IndRNN") == {"recurrent_max": 0.001}
    assert model.args_for("tests.cells_for_tests:DroppedStep") == {"dropout": 0.25}
    assert model.args_for("lstm") == {}
    (ind,) = [c for c in suite.cases() if c.cell.endswith("IndRNN")]
    cell, _ = initial_modules(ind.spec(), make_task("latching"))[0]
    assert float(cell.cell.u.detach().max()) <= 0.001


def test_a_cells_own_arguments_wait_for_it_while_the_command_line_runs_other_cells(tmp_path):
    path = write(
        tmp_path, CELL_ARGS.replace("CELL_OWN", '"tests.cells_for_tests:DroppedStep" = { dropout = 0.25 }')
    )
    suite = load_suite(path, Overrides(cells=("lstm",)))
    assert [c.cell for c in suite.cases()] == ["lstm"]


def test_arguments_for_every_cell_and_a_cells_own_are_added_its_own_last():
    model = ModelSection(cell_args={"scale": 1.0, "depth": 2, "pkg.mod:A": {"depth": 3}})
    assert model.args_for("pkg.mod:A") == {"scale": 1.0, "depth": 3}
    assert model.args_for("pkg.mod:B") == {"scale": 1.0, "depth": 2}


@pytest.mark.parametrize(
    ("own", "message"),
    [
        (
            '"tests.cells_for_tests:IndRN" = { recurrent_max = 1.0 }',
            'model.cell_args."tests.cells_for_tests:IndRN": names no cell of this suite; suite.cells: '
            "tests.cells_for_tests:IndRNN, tests.cells_for_tests:DroppedStep, lstm",
        ),
        (
            '"torch.nn:GRUCell" = { bias = false }',
            'model.cell_args."torch.nn:GRUCell": names a built-in cell, which takes no arguments',
        ),
        ('"tests.cells_for_tests:DroppedStep" = 0.25', "model.cell_args = "),
        (
            "lstm = { scale = 2.0 }",
            "model.cell_args = {'tests.cells_for_tests:IndRNN': {'recurrent_max': 0.001}, 'lstm': "
            "{'scale': 2.0}}: holds a table under 'lstm', which names no cell of yours: a cell's own "
            'arguments go under its name ("package.module:Class"), and built-in cells take none',
        ),
    ],
)
def test_a_cells_own_arguments_must_name_a_users_cell_of_the_suite_and_be_a_table(tmp_path, own, message):
    path = write(tmp_path, CELL_ARGS.replace("CELL_OWN", own))
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: {message}")


def test_a_cells_own_arguments_are_part_of_its_cases_configuration_alone(tmp_path):
    def configurations(recurrent_max):
        text = CELL_ARGS.replace("CELL_OWN", '"tests.cells_for_tests:DroppedStep" = { dropout = 0.25 }')
        path = write(tmp_path, text.replace("recurrent_max = 0.001", f"recurrent_max = {recurrent_max}"))
        return {c.cell: c.configuration() for c in load_suite(path).cases()}

    first, second = configurations(0.001), configurations(0.002)
    assert first["tests.cells_for_tests:IndRNN"] != second["tests.cells_for_tests:IndRNN"]
    assert first["tests.cells_for_tests:IndRNN"]["model"]["cell_args"] == {"recurrent_max": 0.001}
    # another cell's arguments leave these cases as they were: stored results and the gate hold
    assert first["lstm"] == second["lstm"] and "cell_args" not in first["lstm"]["model"]
    assert first["tests.cells_for_tests:DroppedStep"] == second["tests.cells_for_tests:DroppedStep"]


RECALL_REFERENCE = """
[reference]
source = "a paper"
[[reference.figures]]
cell = "rnn"
length = 5
eval_length = 40
statistic = "best_accuracy"
value = 1.0
trials = 10
"""


@pytest.mark.parametrize(
    ("eval_keys", "fragment"),
    [
        (
            "eval_lengths = [2, 4]\n",
            "reference.figures[0].eval_length = 40: not a length the case at length 5 is evaluated at "
            "(suite.eval_lengths and its profiles' give 10, 20); 0 for the trained length",
        ),
        (
            "",
            "reference.figures[0].eval_length = 40: not a length the case at length 5 is evaluated at "
            "(neither suite.eval_lengths nor a profile's gives any); 0 for the trained length",
        ),
    ],
)
def test_a_reference_at_a_length_the_case_is_not_evaluated_at_is_refused_when_the_suite_loads(
    tmp_path, eval_keys, fragment
):
    text = RECALL.replace("[suite]\n", "[suite]\n" + eval_keys) + RECALL_REFERENCE
    assert single_problem(tmp_path, text).endswith(fragment)


def test_a_reference_at_an_evaluation_length_of_a_profile_or_the_trained_length_loads(tmp_path):
    profile = '[profiles.long]\nsuite.eval_lengths = [40]\nsuite.eval_unit = "absolute"\n'
    suite = load_suite(write(tmp_path, RECALL + RECALL_REFERENCE + profile))
    assert suite.config.reference.figures[0].eval_length == 40
    trained = RECALL + RECALL_REFERENCE.replace("eval_length = 40", "eval_length = 5")
    assert load_suite(write(tmp_path, trained, "t.toml")).config.reference.figures[0].eval_length == 5


@pytest.mark.parametrize("selected", [None, "short"])
def test_a_profiles_lengths_are_lengths_of_its_task_whether_or_not_it_is_applied(tmp_path, selected):
    text = '[suite]\ntask = "adding"\ncells = ["lstm"]\nlengths = [10]\n'
    text += "[profiles.short]\nsuite.lengths = [12, 3]\n"
    path = write(tmp_path, text)
    assert problems_of(path, Overrides(profile=selected)) == [
        f"{path}: profiles.short.suite.lengths[1] = 3: task 'adding' needs an integer length >= 10 "
        "(the length is the sequence length (the paper's minimal length T))"
    ]


def test_a_profile_that_switches_the_task_alone_runs_the_files_lengths_which_its_task_must_have(tmp_path):
    text = MINIMAL.replace("lengths = [", "lengths = [12, ") + '[profiles.sum.suite]\ntask = "adding"\n'
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert problems and all(
        "(under profiles.sum, which runs task 'adding'): task 'adding' needs an integer length >= 10" in p
        and p.endswith("; set profiles.sum.suite.lengths to the lengths it runs")
        for p in problems
    )
    fixed = text.replace('task = "adding"\n', 'task = "adding"\nlengths = [12]\n')
    assert load_suite(
        write(tmp_path, fixed, "fixed.toml"), Overrides(profile="sum")
    ).config.suite.lengths == (12,)


@pytest.mark.parametrize("value", ['"x"', "-1.0"])
def test_a_profiles_task_parameters_are_checked_whether_or_not_it_is_applied(tmp_path, value):
    """A profile's task.tolerance = "x" loaded until the profile was chosen, and was then blamed on
    the file's task.tolerance."""
    text = (
        MINIMAL
        + f'[profiles.sum.suite]\ntask = "adding"\nlengths = [20]\n[profiles.sum.task]\ntolerance = {value}\n'
    )
    path = write(tmp_path, text)
    for selected in (None, "sum"):
        problems = problems_of(path, Overrides(profile=selected))
        assert any(p.startswith(f"{path}: profiles.sum.task.tolerance = ") for p in problems), problems


def test_a_suites_description_and_reference_text_are_the_same_experiment_its_seed_is_not(tmp_path):
    """Correcting what a reference says differs from the paper, or the description, changes no trial:
    a partial run afterwards merges into the report, instead of replacing it as another configuration."""
    text = TWO_CELLS + REFERENCE
    first = load_suite(write(tmp_path, text)).config
    corrected = text.replace("[[reference.figures]]", "[[reference.figures]]\ndiffers = 'clipping at 1'")
    described = corrected.replace("[suite]\n", '[suite]\ndescription = "the 1997 setup"\n')
    assert same_experiment(first, load_suite(write(tmp_path, described)).config)
    reseeded = text.replace("[suite]\n", "[suite]\nseed = 7\n")
    assert not same_experiment(first, load_suite(write(tmp_path, reseeded)).config)
