"""The plugin as a user runs it: pytest in a fresh folder with suite files in ``suites/``."""

import json
import re
import textwrap
from pathlib import Path

import pytest

from pytest_rnnmemory.__main__ import main
from pytest_rnnmemory.diagnosis import shape_of
from tests import cells_for_tests

TINY_TRAIN = """
[model]
hidden = 3

[train]
samples = 256
val_samples = 64
epochs = 3
batch_size = 16
lr = 0.05
"""


def suite_text(task="or", cells=("rnn",), lengths=(2,), trials=6, extra="", suite_keys=""):
    """A small suite; ``suite_keys``: more lines of its ``[suite]`` table."""
    cells_toml = ", ".join(f'"{c}"' for c in cells)
    return (
        textwrap.dedent(
            f"""
        [suite]
        task = "{task}"
        cells = [{cells_toml}]
        lengths = {list(lengths)}
        seed = 1
        """
        )
        + (suite_keys + "\n" if suite_keys else "")
        + TINY_TRAIN
        + f"\n[verdict]\ntrials = {trials}\n"
        + extra
    )


@pytest.fixture(scope="session")
def torch_loaded():
    """Import what torch loads lazily once, before any in-process run.

    pytester restores ``sys.modules`` after each in-process run; a torch module
    first imported inside a run would be imported again by the next one, and
    torch refuses to register its operators twice.
    """
    from pytest_rnnmemory.engine import train_case
    from tests.specs import spec_for

    for cell in ("rnn", "tests.cells_for_tests:ZeroRecurrence"):
        train_case(spec_for(cell, task="or", length=2, trials=2, samples=4, val_samples=4, epochs=1))
    import matplotlib.pyplot  # noqa: F401  (the report's plot)

    import pytest_rnnmemory.progress  # noqa: F401  (one module object, for every_epoch_logged)


@pytest.fixture
def project(pytester, torch_loaded):
    pytester.makeini("[pytest]\n")
    pytester.mkdir("suites")
    # The user cells of tests/cells_for_tests.py, importable from the run's folder as a user's module.
    pytester.syspathinsert()
    pytester.makepyfile(usercells=Path(cells_for_tests.__file__).read_text(encoding="utf-8"))
    return pytester


def write_suite(project, name, text):
    path = project.path / "suites" / f"{name}.toml"
    path.write_text(text)
    return path


def read_report(project, name):
    return json.loads((project.path / "reports" / f"{name}.json").read_text())


@pytest.mark.slow
def test_a_profiles_run_writes_its_reports_beside_the_full_runs_never_over_them(project):
    write_suite(project, "ortask", suite_text("or", extra="\n[profiles.quick]\nverdict.trials = 2\n"))
    project.runpytest("--rnn-suite=ortask").assert_outcomes(passed=1)
    full = (project.path / "reports" / "ortask.json").read_text()
    project.runpytest("--rnn-suite=ortask", "--rnn-profile=quick").assert_outcomes(failed=1)
    assert (project.path / "reports" / "ortask.json").read_text() == full
    (case,) = json.loads((project.path / "reports" / "quick" / "ortask.json").read_text())["cases"]
    assert (case["k"], case["n"]) == (2, 2)


@pytest.mark.slow
def test_the_shuffled_control_of_a_run_of_one_cell_is_the_files_and_replays_as_reported(project):
    # The adding task's metric is continuous: another cell would not end at the reported value.
    text = suite_text(
        "adding", cells=("rnn", "gru"), lengths=(10,), trials=3, suite_keys='controls = ["shuffled"]'
    )
    write_suite(project, "add", text + "\n[success]\nthreshold = 0.5\n")
    project.runpytest("--rnn-suite=add", "--cell=gru")
    (control,) = [c for c in read_report(project, "add")["cases"] if c["cell"] == "shuffled"]
    assert control["trained_cell"] == "rnn"
    markdown = (project.path / "reports" / "add.md").read_text()
    assert "The `shuffled` control trains rnn, the suite file's first cell, on shuffled targets." in markdown
    from pytest_rnnmemory.__main__ import main

    json_path = str(project.path / "reports" / "add.json")
    assert main(["replay", json_path, "--cell", "shuffled", "--length", "10", "--trial", "1"]) == 0


@pytest.mark.slow
def test_a_cell_that_learns_passes_and_the_report_is_written(project):
    write_suite(project, "ortask", suite_text("or", trials=6))
    result = project.runpytest("--rnn-suite=ortask")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*rnnmemory capability*", "*✓ 6/6*", "*frontier*rnn 2*"])
    report = read_report(project, "ortask")
    assert report["schema_version"] == 2
    (case,) = report["cases"]
    assert (case["cell"], case["length"], case["k"], case["n"], case["verdict"]) == ("rnn", 2, 6, 6, "learns")
    assert len(case["trials"]) == 6
    assert len({t["seed"] for t in case["trials"]}) == 6
    assert all(len(t["val_metric"]) == 3 for t in case["trials"])
    markdown = (project.path / "reports" / "ortask.md").read_text()
    assert re.search(r"\|\s+2 \| ✓ 6/6 \[0\.61, 1\.00\]", markdown)
    assert "## Frontier" in markdown and "torch:" in markdown
    # The JSON alone renders the same markdown again, without training.
    from pytest_rnnmemory.__main__ import main

    assert main(["report", str(project.path / "reports" / "ortask.json"), "--out", "again"]) == 0
    assert (project.path / "again" / "ortask.md").read_text() == markdown
    # One trial trained again, alone, from its reported seed, ends where the report says.
    json_path = str(project.path / "reports" / "ortask.json")
    assert main(["replay", json_path, "--cell", "rnn", "--length", "2", "--trial", "4"]) == 0
    with pytest.raises(SystemExit):
        main(["replay", json_path, "--cell", "lstm", "--length", "2", "--trial", "0"])


@pytest.mark.slow
def test_a_cell_that_cannot_remember_fails_with_the_numbers(project):
    write_suite(project, "latch", suite_text("latching", cells=("usercells:ZeroRecurrence",), lengths=(4,)))
    result = project.runpytest("--rnn-suite=latch")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*usercells:ZeroRecurrence fails latch at length 4: 0/6 trials reached accuracy >= 0.95*",
            "*90% interval [[]0.00, 0.39[]]*",
            "*p(rate > 0.5) = 1, p(rate < 0.5) = 0.0156*",
            "*chance 0.5, threshold 0.95*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


@pytest.mark.slow
def test_inconclusive_fails_by_default_and_skips_on_request(project):
    write_suite(project, "ortask", suite_text("or", trials=1))
    result = project.runpytest("--rnn-suite=ortask")
    result.assert_outcomes(failed=1)
    # The trials that would settle it are new ones (topping these up would decide on a count already
    # looked at), in a report folder of their own (another configuration's report would replace the
    # suite's), and the message says what a second look costs.
    result.stdout.fnmatch_lines(
        [
            "*inconclusive*1/1*",
            "*would settle it if the rate held: train them afresh, --rnn-trials=* --rnn-seed=2 "
            "--rnn-report-dir=reports/second-look, or pass --rnn-inconclusive=skip",
            "*(in a report folder of their own: another seed and trial count are another configuration*",
            "*a second look: with this one, it calls a cell at exactly p0 learns about twice as often*",
        ]
    )
    # A second look's own advice names a folder beside its own, not one inside it.
    result = project.runpytest("--rnn-suite=ortask", "--rnn-report-dir=reports/second-look")
    result.stdout.fnmatch_lines(["*--rnn-report-dir=reports/second-look-2, or pass*"])
    result = project.runpytest("--rnn-suite=ortask", "--rnn-inconclusive=skip")
    result.assert_outcomes(skipped=1)
    # A case the suite claims must learn is not skipped, and its message does not offer the skip.
    claimed = suite_text("or", trials=1, extra="\n[expect]\nrnn = { learns_up_to = 2 }\n")
    write_suite(project, "ortask", claimed)
    result = project.runpytest("--rnn-suite=ortask", "--rnn-inconclusive=skip")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*train them afresh, --rnn-trials=* --rnn-seed=2 --rnn-report-dir=reports/second-look"]
    )
    assert "pass --rnn-inconclusive=skip" not in result.stdout.str()


@pytest.mark.slow
def test_paths_to_paste_are_relative_to_where_pytest_runs(project, monkeypatch):
    write_suite(project, "ortask", suite_text("or", trials=1))
    monkeypatch.chdir(project.mkdir("tests"))
    # The ini's folder is the rootdir's, which from tests/ is no folder below: shown in full.
    result = project.runpytest("--rnn-suite=ortask", "-o", "rnn_report_dir=build/rnnrep")
    folder = (project.path / "build" / "rnnrep").resolve()
    result.stdout.fnmatch_lines(
        [f"*--rnn-report-dir={folder / 'second-look'}, or pass*", f"report written: {folder / 'ortask.md'}"]
    )
    # A folder given on the command line is the current directory's, as the advice is.
    result = project.runpytest("--rnn-suite=ortask", "--rnn-report-dir=here")
    result.stdout.fnmatch_lines(
        ["*--rnn-report-dir=here/second-look, or pass*", "report written: here/ortask.md"]
    )


def test_one_item_per_case_with_ids_usable_with_k(project):
    write_suite(project, "latch", suite_text("latching", cells=("rnn", "lstm", "gru"), lengths=(5, 20)))
    result = project.runpytest("suites/", "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "suites/latch.toml::rnn-L5",
            "suites/latch.toml::rnn-L20",
            "suites/latch.toml::lstm-L5",
            "suites/latch.toml::gru-L20",
            "6 tests collected*",
        ]
    )
    result = project.runpytest("suites/", "--collect-only", "-q", "-k", "lstm and L20")
    result.stdout.fnmatch_lines(["suites/latch.toml::lstm-L20", "1/6 tests collected*"])


def test_a_cases_id_selects_it_with_k_and_its_node_id_selects_it_alone(project):
    """-k matches substrings of names: "rnn and L2" selects rnn-L20 too. The case's id, as the README
    gives it, selects that case (and, in a gated run, its suite's gate); its node id, it alone."""
    write_suite(project, "latch", suite_text("latching", cells=("rnn", "lstm"), lengths=(2, 20)))
    result = project.runpytest("suites/", "--collect-only", "-q", "-k", "rnn and L2")
    result.stdout.fnmatch_lines(["suites/latch.toml::rnn-L2", "suites/latch.toml::rnn-L20", "2/4 *"])
    result = project.runpytest("suites/", "--collect-only", "-q", "-k", "rnn-L20")
    result.stdout.fnmatch_lines(["suites/latch.toml::rnn-L20", "1/4 tests collected*"])
    result = project.runpytest("suites/latch.toml::rnn-L2", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["suites/latch.toml::rnn-L2", "1 test collected*"])
    baseline = '{"kind": "pytest-rnnmemory baseline", "schema_version": 1, "cases": []}'
    (project.path / "b.json").write_text(baseline)
    result = project.runpytest("suites/", "--collect-only", "-q", "-k", "lstm-L20", "--rnn-baseline=b.json")
    result.stdout.fnmatch_lines(["suites/latch.toml::lstm-L20", "suites/latch.toml::gate", "2/5 *"])


def test_rnn_suite_selects_by_name_without_a_path(project):
    write_suite(project, "first", suite_text("or"))
    write_suite(project, "second", suite_text("or", extra=""))
    project.makepyfile(test_other="def test_other(): pass")
    result = project.runpytest("--rnn-suite=second", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["suites/second.toml::rnn-L2", "1 test collected*"])
    # Given paths still run, beside the selected suite.
    result = project.runpytest("test_other.py", "--rnn-suite=second", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*2 tests collected*"])


#: A folder no file can be written in, even by root: /proc (Linux).
UNWRITABLE = pytest.mark.skipif(
    not Path("/proc/self").is_dir(), reason="needs /proc, which no one can write in"
)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rnn-suite=nope"], "*unknown suite 'nope'; known suites: first*"),
        (
            ["--rnn-suite=mine/first.toml"],
            "*no suite file 'mine/first.toml' (from *); a suite is a name of the suites folder (first) or "
            "the path of a .toml file*",
        ),
        (
            ["--rnn-suite=first", "--cell=lsmt"],
            "*unknown cell 'lsmt' (did you mean 'lstm'?); built-in cells: rnn, lstm, gru*",
        ),
        (
            ["--rnn-suite=first", "--rnn-profile=fast"],
            "*unknown profile 'fast'; the selected suites define: quick*",
        ),
        (["suites/", "--rnn-profile=fast"], "*unknown profile 'fast'; the selected suites define: quick*"),
        (
            ["suites/first.toml", "--rnn-profile=fast"],
            "*unknown profile 'fast'; the selected suites define: quick*",
        ),
        (["--rnn-profile=fast"], "*unknown profile 'fast'; the selected suites define: quick*"),
        (
            ["--rnn-suite=first", "-o", "rnn_profile=fast"],
            "ERROR: rnn_profile = fast: unknown profile 'fast'; the selected suites define: quick",
        ),
        (["--rnn-suite=first", "--rnn-device=tpu"], "*--rnn-device=tpu: must be auto, cpu, cuda or cuda:N*"),
        (
            ["--rnn-suite=first", "--rnn-device=cuda:01"],
            "*--rnn-device=cuda:01: must be auto, cpu, cuda or cuda:N*",
        ),
        (["--rnn-suite=first", "--rnn-trials=0"], "*--rnn-trials=0: must be an integer in [[]1, 100_000[]]*"),
        (["--rnn-suite=first", "--rnn-trials="], "*--rnn-trials=: must be an integer in [[]1, 100_000[]]*"),
        (
            ["--rnn-suite=first", "--rnn-trials=200000"],
            "*--rnn-trials=200000: must be an integer in [[]1, 100_000*",
        ),
        (
            ["--rnn-suite=first", "--rnn-seed=" + "9" * 20],
            "*--rnn-seed=99999999999999999999: must be an integer in*",
        ),
        (
            ["--rnn-suite=first", "--rnn-length=5,x"],
            "*--rnn-length=5,x: must be integers in [[]1, 100_000_000[]]*",
        ),
        (["--rnn-suite=first", "--rnn-length=3,,5"], "*--rnn-length=3,,5: must be integers in*"),
        (["--rnn-suite=first", "--rnn-length=1000000000"], "*--rnn-length=1000000000: must be integers in*"),
        (
            ["--rnn-suite=first", "--cell="],
            "*--cell=: expected a comma-separated list of names, without empty ones*",
        ),
        (["--rnn-suite=first", "--cell=rnn,,lstm"], "*--cell=rnn,,lstm: expected a comma-separated list*"),
        (["--rnn-suite=first", "-o", "rnn_cells=lsmt"], "*rnn_cells = lsmt: unknown cell 'lsmt'*"),
        (["--rnn-suite="], "*--rnn-suite=: expected a comma-separated list of names, without empty ones*"),
        (
            ["--rnn-suite=first", "--rnn-cache-dir=tox.ini"],
            "*--rnn-cache-dir=tox.ini: *tox.ini is a file, not a folder*",
        ),
        pytest.param(
            ["--rnn-suite=first", "--rnn-report-dir=/proc/nope"],
            "*--rnn-report-dir=/proc/nope: cannot write in /proc (*)*",
            marks=UNWRITABLE,
        ),
        pytest.param(
            ["--rnn-suite=first", "--rnn-save-baseline=/proc/b.json"],
            "*--rnn-save-baseline=/proc/b.json: cannot write in /proc (*)*",
            marks=UNWRITABLE,
        ),
        (
            ["--rnn-suite=first", "-o", "rnn_device=gpu"],
            "*rnn_device = gpu: must be auto, cpu, cuda or cuda:N*",
        ),
        (
            ["--rnn-suite=first", "-o", "rnn_suites_dir=nowhere"],
            "*unknown suite 'first'; known suites: none: *nowhere (rnn_suites_dir) does not exist*",
        ),
        (
            ["--rnn-suite=first", "--rnn-frontier", "--rnn-save-baseline=b.json"],
            "*--rnn-frontier skips the lengths a cell's other verdicts imply, and a baseline saved "
            "from it (--rnn-save-baseline) would hold none of them*",
        ),
        (
            ["--rnn-suite=first", "--rnn-frontier", "--rnn-baseline=b.json"],
            "*--rnn-frontier skips the lengths a cell's other verdicts imply, and the gate "
            "(--rnn-baseline) compares every case it selects: pass one or the other*",
        ),
    ],
)
def test_bad_options_are_usage_errors_that_list_what_is_allowed(project, args, message):
    write_suite(project, "first", suite_text("or", extra="\n[profiles.quick]\nverdict.trials = 2\n"))
    result = project.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_a_shipped_suite_named_from_another_folder_is_named_by_its_path(project):
    """A run in a folder of the user's own looks for suite names in that folder's suites; the usage
    error says where the shipped suites are, and the path that names one, which then runs."""
    shipped = Path(__file__).resolve().parent.parent / "suites" / "latching.toml"
    result = project.runpytest("--rnn-suite=latching")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*unknown suite 'latching'; known suites: none: *suites (rnn_suites_dir) has no *.toml files; "
            f"'latching' is a suite shipped with pytest-rnnmemory, in its suites folder {shipped.parent}: "
            f"name it by path, --rnn-suite={shipped}"
        ]
    )
    result = project.runpytest(f"--rnn-suite={shipped}", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["*latching.toml::lstm-L5*"])


def test_a_profile_that_some_of_the_suites_define_fails_the_others(project):
    write_suite(project, "first", suite_text("or", extra="\n[profiles.quick]\nverdict.trials = 2\n"))
    write_suite(project, "second", suite_text("or"))
    result = project.runpytest("suites/", "--rnn-profile=quick", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["suites/first.toml::rnn-L2", "suites/second.toml::suite"])


def test_a_profile_with_no_suite_to_run_is_no_usage_error(project):
    write_suite(project, "first", suite_text("or"))
    project.makepyfile(test_other="def test_one():\n    pass\n")
    project.runpytest("test_other.py", "--rnn-profile=quick").assert_outcomes(passed=1)


def test_an_empty_profile_option_runs_the_suites_as_written_over_the_ini(project):
    project.makeini("[pytest]\nrnn_profile = quick\n")
    write_suite(project, "first", suite_text("or"))  # it has no quick profile
    assert project.runpytest("--rnn-suite=first", "--co").ret == pytest.ExitCode.USAGE_ERROR
    for named in ("--rnn-suite=first", "suites/first.toml"):
        result = project.runpytest(named, "--rnn-profile=", "--co", "-q")
        assert result.ret == pytest.ExitCode.OK, result.stdout.str()
        assert "first.toml::suite" not in result.stdout.str()  # the item of a suite that did not load
        result.stdout.fnmatch_lines(["*first.toml::*-L*"])


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--rnn-length=1", "--rnn-length 1: task 'relay' needs an integer length >= 2*"),
        ("--rnn-length=2,2", "--rnn-length=2,2: must not list a length twice"),
    ],
)
def test_a_length_the_suite_cannot_run_is_reported_for_the_suite_by_its_option(project, option, message):
    write_suite(project, "relay", suite_text("relay"))
    result = project.runpytest("--rnn-suite=relay", option)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*suites/relay.toml: {message}"])
    assert "suite.lengths" not in result.stdout.str()


@pytest.mark.slow
def test_a_broken_suite_is_one_failure_and_the_others_still_run(project):
    write_suite(project, "good", suite_text("or", trials=6))
    write_suite(
        project,
        "broken",
        '[suite]\ntask = "latchng"\ncells = ["rnn"]\nlengths = [5, -1]\n'
        "[train]\nbatchsize = 4\nbatch_size = 0\n",
    )
    result = project.runpytest("suites/")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "Traceback" not in out
    result.stdout.fnmatch_lines(
        [
            "*suites/broken.toml: suite.lengths = [[]5, -1[]]: must be a non-empty list of integers in*",
            "*suites/broken.toml: train.batchsize: unknown key (did you mean 'batch_size'?)*",
            "*suites/broken.toml: train.batch_size = 0: must be an integer >= 1",
            "*suites/broken.toml: suite.task = \"latchng\": unknown task 'latchng'*",
        ]
    )


def test_a_cell_that_is_also_a_control_is_refused_naming_where_it_was_given(project):
    """memoryless as a cell and as a control gave two items of one node id, memoryless-L2, that
    trained the same seeds; the report kept one of their results, under two columns. The control
    already runs it at every length, so the suite is refused, naming the file, the key and what to do."""
    controls = 'controls = ["memoryless"]'
    write_suite(project, "ctl", suite_text("relay", cells=("rnn",), trials=3, suite_keys=controls))
    write_suite(project, "ctl2", suite_text("relay", cells=("memoryless",), trials=3, suite_keys=controls))
    result = project.runpytest("suites/ctl2.toml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            '*suites/ctl2.toml: suite.cells[[]0[]] = "memoryless": also one of suite.controls, which runs it '
            "at every length; leave it out of suite.cells (the control's cases train it) or out of "
            "suite.controls (to test it as a cell)"
        ]
    )
    result = project.runpytest("suites/ctl.toml", "--cell=memoryless")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*suites/ctl.toml: --cell memoryless: also one of suite.controls, which runs it at every "
            "length; leave it out of --cell (the control's cases train it; -k memoryless selects them)"
        ]
    )
    assert "Traceback" not in result.stdout.str()
    result = project.runpytest("suites/ctl.toml", "--collect-only", "-q", "-k", "memoryless")
    result.stdout.fnmatch_lines(["suites/ctl.toml::memoryless-L2", "1/2 tests collected*"])


def test_a_toml_syntax_error_names_line_and_column(project):
    write_suite(project, "syntax", '[suite]\ntask = "latching\n')
    result = project.runpytest("suites/")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*suites/syntax.toml: invalid TOML: *(at line 2, column *)"])


@pytest.mark.slow
def test_cases_not_run_are_reported_as_missing(project):
    write_suite(project, "latch", suite_text("latching", cells=("usercells:ZeroRecurrence",), lengths=(2, 3)))
    result = project.runpytest("--rnn-suite=latch", "-x")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*missing: usercells:ZeroRecurrence-L3*"])
    report = read_report(project, "latch")
    assert report["missing"] == [{"cell": "usercells:ZeroRecurrence", "length": 3}]
    assert "— missing" in (project.path / "reports" / "latch.md").read_text()


@pytest.mark.slow
def test_a_case_gives_the_same_result_alone_and_in_a_full_run(project):
    write_suite(project, "ortask", suite_text("or", lengths=(2, 3), trials=3))
    project.runpytest("--rnn-suite=ortask", "--rnn-report-dir=full")
    project.runpytest("--rnn-suite=ortask", "-k", "L3", "--rnn-report-dir=alone", "--rnn-rerun")
    full = json.loads((project.path / "full" / "ortask.json").read_text())
    alone = json.loads((project.path / "alone" / "ortask.json").read_text())
    (case_alone,) = alone["cases"]
    (case_full,) = [c for c in full["cases"] if c["length"] == 3]
    assert [t["metric"] for t in case_alone["trials"]] == [t["metric"] for t in case_full["trials"]]
    assert case_alone["config_hash"] == case_full["config_hash"]


@pytest.mark.slow
def test_command_line_overrides_reach_the_report(project):
    write_suite(project, "ortask", suite_text("or", lengths=(2, 3)))
    result = project.runpytest("--rnn-suite=ortask", "--rnn-trials=2", "--rnn-length=4", "--rnn-seed=7")
    result.stdout.fnmatch_lines(["rnnmemory: device=cpu*lengths=4, trials=2, seed=7*"])
    report = read_report(project, "ortask")
    assert report["config"]["verdict"]["trials"] == 2
    assert report["config"]["suite"]["seed"] == 7
    assert [(c["length"], c["n"]) for c in report["cases"]] == [(4, 2)]


def test_the_plugin_stays_out_of_ordinary_test_runs(project):
    """Installed, the plugin loads in every run: it must not import torch or write reports there."""
    project.makepyfile(test_plain="import sys\n\ndef test_plain():\n    assert 'torch' not in sys.modules\n")
    result = project.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "rnnmemory:" not in out and "rnnmemory capability" not in out
    assert not (project.path / "reports").exists()


# -- the capability gate, as CI runs it ----------------------------------------------------------

ELMAN_CELL = """
import os

import torch
from torch import nn


class Elman(nn.Module):
    '''A tanh RNN. FREEZE_RECURRENCE=1 fixes its recurrent weights at zero;
    STOP_AT=L stops the run like Ctrl-C when it meets length L.'''

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)
        recurrent = torch.empty(hidden_size, hidden_size).uniform_(-0.5, 0.5)
        if os.environ.get("FREEZE_RECURRENCE") == "1":
            self.register_buffer("rec", torch.zeros(hidden_size, hidden_size))
        else:
            self.rec = nn.Parameter(recurrent)

    def forward(self, x):
        if os.environ.get("STOP_AT") == str(x.shape[1]):
            raise KeyboardInterrupt
        pre = self.inp(x)
        h = x.new_zeros(x.shape[0], pre.shape[-1])
        states = []
        for t in range(x.shape[1]):
            h = torch.tanh(pre[:, t] + h @ self.rec.T)
            states.append(h)
        return torch.stack(states, 1)
"""

GATED_SUITE = """
[suite]
task = "recall"
cells = ["gatedcell:Elman"]
lengths = [1]
seed = 3

[model]
hidden = 4

[train]
samples = 256
val_samples = 128
epochs = 4
lr = 0.05

[verdict]
trials = 8
"""


@pytest.mark.slow
def test_the_gate_passes_an_unchanged_cell_and_fails_one_that_forgot(project):
    project.makepyfile(gatedcell=ELMAN_CELL)
    write_suite(project, "recall1", GATED_SUITE)
    result = project.runpytest("--rnn-suite=recall1", "--rnn-save-baseline=baseline.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*✓ 8/8*", "baseline written: baseline.json (1 cases from this run)"])

    result = project.runpytest("--rnn-suite=recall1", "--rnn-baseline=baseline.json")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*1 case(s) unchanged*"])

    # The change under test: the recurrent weights are now fixed at zero.
    project.makepyfile(gatedcell=ELMAN_CELL.replace('os.environ.get("FREEZE_RECURRENCE") == "1"', "True"))
    result = project.runpytest("--rnn-suite=recall1", "--rnn-baseline=baseline.json", "--junitxml=gate.xml")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*recall1: the capability gate failed against *baseline.json",
            "*FRONTIER DOWN: gatedcell:Elman learned up to 1 in the baseline, now no length",
            "*REGRESSED: gatedcell:Elman-L1: 0/8 now vs 8/8 in the baseline of * UTC; p(drop) = *",
            "FAILED suites/recall1.toml::gate*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    markdown = (project.path / "reports" / "recall1.md").read_text()
    assert "**Frontier moved down: gatedcell:Elman**" in markdown and "## Against the baseline" in markdown
    # rendered again from its JSON, the report keeps what the gate found
    assert main(["report", str(project.path / "reports" / "recall1.json"), "--out", "again"]) == 0
    assert (project.path / "again" / "recall1.md").read_text() == markdown
    junit = (project.path / "gate.xml").read_text()
    assert 'name="rnnmemory_k" value="0"' in junit
    assert 'name="rnnmemory_gate_gatedcell:Elman-L1" value="regressed"' in junit


def test_a_missing_baseline_is_a_usage_error_that_says_how_to_make_one(project):
    write_suite(project, "ortask", suite_text("or"))
    result = project.runpytest("--rnn-suite=ortask", "--rnn-baseline=nowhere.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*baseline *nowhere.json does not exist; create it * --rnn-save-baseline=*"])


@pytest.mark.slow
def test_a_gated_run_of_some_cases_selects_their_gate_and_says_what_it_left_out(project):
    """In a gated run the gate fails, not the cases: -k that selects cases must select the gate."""
    write_suite(project, "ortask", suite_text("or", lengths=(2, 3), trials=6))
    project.runpytest("--rnn-suite=ortask", "--rnn-save-baseline=b.json")
    result = project.runpytest("--rnn-suite=ortask", "--rnn-baseline=b.json", "-k", "rnn and L2")
    result.assert_outcomes(passed=2)  # the case and its gate
    result.stdout.fnmatch_lines(
        ["*1 case(s) unchanged*", "*1 case(s) of the baseline not selected in this run, not compared*"]
    )
    assert "FRONTIER DOWN" not in result.stdout.str()  # length 3 was not selected, not lost
    result = project.runpytest(
        "--rnn-suite=ortask", "--rnn-baseline=b.json", "--rnn-seed=9", "-k", "rnn and L2"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED suites/ortask.toml::gate*"])


@pytest.mark.slow
def test_a_changed_configuration_is_not_comparable(project):
    write_suite(project, "ortask", suite_text("or", trials=4))
    project.runpytest("--rnn-suite=ortask", "--rnn-save-baseline=b.json")
    result = project.runpytest("--rnn-suite=ortask", "--rnn-baseline=b.json", "--rnn-seed=9")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*CONFIGURATION CHANGED: rnn-L2:*not comparable*", "*refresh the baseline*"])


@pytest.mark.slow
@pytest.mark.parametrize("strict", [True, False])
def test_claims_pass_xfail_and_report_a_surprise(project, strict):
    # rnn learns latching at lengths 2 and 3 with this recipe (6/6 each): at 3 it beats its claim.
    extra = (
        f'\n[expect]\nstrict = {str(strict).lower()}\n"usercells:ZeroRecurrence" = {{ fails_from = 2 }}\n'
        "rnn = { learns_up_to = 2, fails_from = 3 }\n"
    )
    write_suite(
        project,
        "claims",
        suite_text(
            "latching", cells=("rnn", "usercells:ZeroRecurrence"), lengths=(2, 3), trials=6, extra=extra
        ),
    )
    result = project.runpytest("--rnn-suite=claims", "-rxXf")
    # The memoryless cell fails where the suite says it will: expected failures, not failures.
    # rnn learns length 3, where the suite claims it fails: the surprise fails a strict suite.
    if strict:
        result.assert_outcomes(passed=1, xfailed=2, failed=1)
        result.stdout.fnmatch_lines(["FAILED suites/claims.toml::rnn-L3*"])
        assert "[XPASS(strict)] the suite claims rnn learns up to length 2 and fails from length 3" in (
            result.stdout.str()
        )
    else:
        result.assert_outcomes(passed=1, xfailed=2, xpassed=1)
        result.stdout.fnmatch_lines(
            ["XPASS suites/claims.toml::rnn-L3 - the suite claims rnn *fails from length 3"]
        )
    assert "the suite claims usercells:ZeroRecurrence fails from length 2" in result.stdout.str()


def test_a_claim_no_case_tests_is_a_suite_error(project):
    extra = "\n[expect]\nrnn = { learns_up_to = 1 }\ngru = { fails_from = 2 }\n"
    write_suite(project, "claims", suite_text("or", lengths=(2, 3), extra=extra))
    result = project.runpytest("--rnn-suite=claims")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "suites/claims.toml: expect.rnn.learns_up_to = 1: no case tests this claim: "
            "the smallest length is 2",
            "suites/claims.toml: expect.gru: no case tests this claim: 'gru' is not in suite.cells (rnn)",
        ]
    )


@pytest.mark.slow
def test_the_same_report_serially_and_with_xdist(project):
    write_suite(project, "ortask", suite_text("or", cells=("rnn", "gru"), lengths=(2, 3), trials=5))
    # --rnn-suite alone must not run the project's testpaths, on the workers either.
    project.makeini("[pytest]\ntestpaths = other\n")
    project.mkdir("other")
    (project.path / "other" / "test_other.py").write_text("def test_other(): pass\n")
    serial = project.runpytest_subprocess("--rnn-suite=ortask", "--rnn-report-dir=serial")
    serial.assert_outcomes(passed=4)
    parallel = project.runpytest_subprocess(
        "--rnn-suite=ortask", "--rnn-report-dir=parallel", "-n", "2", "--rnn-rerun"
    )
    parallel.assert_outcomes(passed=4)
    parallel.stdout.fnmatch_lines(["*rnnmemory capability*", "*frontier*rnn 3, gru 3*"])

    def cases(folder):
        report = json.loads((project.path / folder / "ortask.json").read_text())
        return sorted(
            (c["cell"], c["length"], c["k"], c["verdict"], tuple(t["metric"] for t in c["trials"]))
            for c in report["cases"]
        )

    assert cases("serial") == cases("parallel")
    # Gated, with --dist loadfile as the README says: the gate runs where its suite's cases ran.
    serial = project.runpytest_subprocess("--rnn-suite=ortask", "--rnn-save-baseline=b.json")
    gated = project.runpytest_subprocess(
        "--rnn-suite=ortask", "--rnn-baseline=b.json", "-n", "2", "--dist", "loadfile", "--rnn-rerun"
    )
    gated.assert_outcomes(passed=5)
    gated.stdout.fnmatch_lines(["*4 case(s) unchanged*"])
    # xdist's default --dist load spreads a suite's cases over workers: refused before training
    spread = project.runpytest_subprocess("--rnn-suite=ortask", "--rnn-baseline=b.json", "-n", "2")
    assert spread.ret == pytest.ExitCode.USAGE_ERROR
    spread.stderr.fnmatch_lines(
        ["*--rnn-baseline=b.json under pytest-xdist with --dist load: *run with --dist loadfile*"]
    )


@UNWRITABLE
def test_a_bare_pytest_that_collects_suites_checks_the_report_folder_first(project):
    write_suite(project, "ortask", suite_text("or"))
    result = project.runpytest("--rnn-report-dir=/proc/reports")  # the rootdir: suites/ within
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--rnn-report-dir=/proc/reports: cannot write in /proc*"])


def test_a_projects_other_tests_run_as_ever_beside_a_gate_set_in_the_ini(project):
    """The gate's baseline and its xdist rule concern suite runs: a project that sets rnn_baseline
    (here to a file not made yet) still runs its other tests, under -n 2 too."""
    project.makeini("[pytest]\nrnn_baseline = baselines/not-yet.json\n")
    project.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = project.runpytest_subprocess("test_plain.py", "-n", "2")
    result.assert_outcomes(passed=1)


# -- stored results: nothing finished is lost ----------------------------------------------------


@pytest.mark.slow
def test_an_interrupted_run_keeps_what_finished_and_trains_only_the_rest(project, monkeypatch):
    project.makepyfile(stopcell=ELMAN_CELL)
    write_suite(project, "ortask", suite_text("or", cells=("stopcell:Elman",), lengths=(2, 4), trials=5))
    monkeypatch.setenv("STOP_AT", "4")
    # In a process of its own, as a real Ctrl-C ends one.
    result = project.runpytest_subprocess("--rnn-suite=ortask", "--rnn-save-baseline=base.json")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    report = read_report(project, "ortask")
    assert [c["length"] for c in report["cases"]] == [2]
    assert report["missing"] == [{"cell": "stopcell:Elman", "length": 4}]
    result.stdout.fnmatch_lines(
        ["missing: stopcell:Elman-L4", "baseline not written to base.json: the run stopped before 1 of its *"]
    )
    assert not (project.path / "base.json").exists()  # a baseline holds a whole run

    monkeypatch.delenv("STOP_AT")
    result = project.runpytest("--rnn-suite=ortask")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["from earlier runs (stored results; --rnn-rerun trains again): stopcell:Elman-L2"]
    )
    report = read_report(project, "ortask")
    assert [(c["length"], c["cached"]) for c in report["cases"]] == [(2, True), (4, False)]

    result = project.runpytest("--rnn-suite=ortask", "--rnn-rerun")
    result.assert_outcomes(passed=2)
    assert "from earlier runs" not in result.stdout.str()

    # stopped again: the report keeps the verdict of the run that finished the case, and says so
    monkeypatch.setenv("STOP_AT", "4")
    result = project.runpytest_subprocess("--rnn-suite=ortask", "--rnn-rerun")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["not finished in this run, the report keeps an earlier run's verdict: stopcell:Elman-L4"]
    )
    assert "missing:" not in result.stdout.str()
    assert [c["length"] for c in read_report(project, "ortask")["cases"]] == [2, 4]


STOP_IN_CURVES = """
import pytest_rnnmemory.report as report


def stop(run, path):
    raise KeyboardInterrupt  # Ctrl-C while the training curves are drawn


suffix, _, caption = report.FIGURES["curves"]
report.FIGURES["curves"] = (suffix, stop, caption)
"""


@pytest.mark.slow
def test_ctrl_c_while_the_figures_are_drawn_still_writes_every_report_and_the_baseline(project):
    """Ctrl-C while the first report's figures were drawn, after every case had finished, wrote no
    markdown, JSON or baseline: with pytest's cache off, the whole run was lost."""
    project.makeconftest(STOP_IN_CURVES)
    write_suite(project, "first", suite_text("or", lengths=(2,), trials=4))
    write_suite(project, "second", suite_text("or", lengths=(3,), trials=4))
    reports = project.path / "reports"
    (reports).mkdir()
    (reports / "second-curves.png").write_bytes(b"an earlier run's figure")
    result = project.runpytest_subprocess(
        "suites/", "-p", "no:cacheprovider", "--rnn-save-baseline=base.json"
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "first: interrupted while drawing the figures; the markdown and JSON reports are written, "
            "without figures from there on (python -m pytest_rnnmemory report reports/first.json draws *",
            "baseline written: base.json (2 cases from this run)",
        ]
    )
    for name, length in (("first", 2), ("second", 3)):
        assert [c["length"] for c in read_report(project, name)["cases"]] == [length]
        assert "the run was interrupted while drawing them" in (reports / f"{name}.md").read_text()
    # the figure cut short and an earlier run's, which would contradict the report, are gone
    assert sorted(p.name for p in reports.glob("*.png")) == ["first.png"]


@pytest.mark.slow
def test_a_cell_a_stopped_run_never_reached_is_not_run_and_its_kept_frontier_says_so(project, monkeypatch):
    """The terminal said "none" for a cell that never ran, beside a report that kept its earlier
    verdict under "the largest length each cell learns in this run"."""
    project.makepyfile(stopcell=ELMAN_CELL)
    write_suite(project, "ortask", suite_text("or", cells=("rnn", "stopcell:Elman"), lengths=(2,), trials=4))
    project.runpytest("--rnn-suite=ortask")
    monkeypatch.setenv("STOP_AT", "2")
    result = project.runpytest_subprocess("--rnn-suite=ortask", "--rnn-rerun")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    kept = read_report(project, "ortask")["frontier"]["stopcell:Elman"]
    result.stdout.fnmatch_lines(
        [
            "frontier (largest length learned): rnn *, stopcell:Elman not run "
            f"(the report keeps {'none' if kept is None else kept} from an earlier run)"
        ]
    )
    frontier = (project.path / "reports" / "ortask.md").read_text().split("## Frontier")[1].split("\n## ")[0]
    assert "in this run" not in frontier and "did not run again: stopcell:Elman-L2;" in frontier


STOP_IN_WORKER_SHUTDOWN = """
from xdist.workermanage import NodeManager


def stop(self):
    raise KeyboardInterrupt  # Ctrl-C while pytest-xdist waits for its workers to shut down


NodeManager.teardown_nodes = stop
"""


@pytest.mark.slow
def test_ctrl_c_while_xdist_shuts_its_workers_down_still_writes_the_report_and_the_baseline(project):
    """xdist's sessionfinish, which waits for the workers to exit, ran before the plugin's: a Ctrl-C
    there, after every case had finished, wrote no report and no baseline."""
    project.makeconftest(STOP_IN_WORKER_SHUTDOWN)
    write_suite(project, "ortask", suite_text("or", lengths=(2, 3), trials=4))
    result = project.runpytest_subprocess(
        "--rnn-suite=ortask",
        "-n",
        "1",
        "-p",
        "no:cacheprovider",
        "--rnn-figures=off",
        "--rnn-save-baseline=b.json",
    )
    assert result.ret != pytest.ExitCode.OK
    assert [c["length"] for c in read_report(project, "ortask")["cases"]] == [2, 3]
    assert len(json.loads((project.path / "b.json").read_text())["cases"]) == 2


STOP_IMPORTING_TORCH_AT_THE_END = """
import sys

import pytest


class StopAtTheEnd:
    armed = False

    def find_spec(self, name, path=None, target=None):
        if self.armed and name == "pytest_rnnmemory.runtime":
            raise KeyboardInterrupt  # Ctrl-C while the plugin's torch module is imported at the end
        return None


finder = StopAtTheEnd()
sys.meta_path.insert(0, finder)


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session):
    try:
        return (yield)
    finally:
        finder.armed = not hasattr(session.config, "workerinput")
"""


@pytest.mark.slow
def test_the_xdist_controller_imports_torch_before_the_run_ends_not_as_it_writes_the_report(project):
    """The controller, which trains nothing, imported torch under -q (no header) only in its
    sessionfinish: a Ctrl-C in those seconds, with every case finished, wrote no report."""
    project.makeconftest(STOP_IMPORTING_TORCH_AT_THE_END)
    write_suite(project, "ortask", suite_text("or", lengths=(2,), trials=4))
    result = project.runpytest_subprocess("suites/", "-n", "1", "-q", "--rnn-figures=off")
    assert [c["length"] for c in read_report(project, "ortask")["cases"]] == [2], result.stderr.str()


@pytest.mark.slow
def test_a_stopped_run_under_xdist_names_the_cases_it_never_ran(project, monkeypatch):
    """The xdist controller collects nothing: a worker sends the selected cases with its first
    result, so that a run stopped by -x reports the rest as missing and stores no baseline."""
    project.makepyfile(gatedcell=ELMAN_CELL)
    write_suite(project, "recall1", GATED_SUITE.replace("lengths = [1]", "lengths = [1, 2, 3]"))
    monkeypatch.setenv("FREEZE_RECURRENCE", "1")  # fails length 1: -x stops there
    result = project.runpytest_subprocess(
        "--rnn-suite=recall1", "-n", "1", "-x", "--rnn-save-baseline=b.json"
    )
    result.stdout.fnmatch_lines(
        ["missing: gatedcell:Elman-L2, gatedcell:Elman-L3", "baseline not written to b.json: *"]
    )
    report = read_report(project, "recall1")
    assert [c["length"] for c in report["cases"]] == [1]
    assert [m["length"] for m in report["missing"]] == [2, 3]
    assert not (project.path / "b.json").exists()


def test_a_cell_that_did_not_compile_is_named_in_the_summary_though_its_case_passed(project):
    # Dropout's random draws cannot run compiled: the cell falls back to vmap, found by tracing
    suite = suite_text("or", cells=("usercells:DroppedStep",), trials=3).replace(
        "[train]\n", '[train]\nengine = "compiled"\n'
    )
    write_suite(project, "dropped", suite)
    result = project.runpytest("--rnn-suite=dropped", "-q")
    result.stdout.fnmatch_lines(
        ["ran under torch.func.vmap, not compiled (the case's log says why): usercells:DroppedStep-L2"]
    )


def test_a_run_that_stores_nothing_says_so(project):
    write_suite(project, "ortask", suite_text("or", trials=3))
    result = project.runpytest("--rnn-suite=ortask", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        ["finished cases were not stored: pytest's cache is off (-p no:cacheprovider); *"]
    )
    result = project.runpytest("--rnn-suite=ortask", "-p", "no:cacheprovider", "--rnn-cache-dir=store")
    assert "were not stored" not in result.stdout.str() and list((project.path / "store").glob("*.json"))


@pytest.mark.slow
def test_a_corrupt_stored_result_is_ignored_with_a_warning(project):
    write_suite(project, "ortask", suite_text("or", trials=5))
    project.runpytest("--rnn-suite=ortask", "--rnn-cache-dir=store")
    (entry,) = (project.path / "store").glob("*.json")
    entry.write_text("{half a file")
    result = project.runpytest("--rnn-suite=ortask", "--rnn-cache-dir=store")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*CacheWarning: ignored the stored result *: * the case is trained again"])
    assert "from earlier runs" not in result.stdout.str()


@pytest.mark.slow
def test_editing_a_cell_invalidates_its_stored_results(project):
    project.makepyfile(usercells2=ELMAN_CELL)
    write_suite(project, "ortask", suite_text("or", cells=("usercells2:Elman",), trials=5))
    project.runpytest("--rnn-suite=ortask")
    project.makepyfile(usercells2=ELMAN_CELL + "\n# an edit\n")
    result = project.runpytest("--rnn-suite=ortask")
    result.assert_outcomes(passed=1)
    assert "from earlier runs" not in result.stdout.str()


# -- controls ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_controls_run_beside_the_cells_and_a_leaky_task_is_flagged(project):
    text = suite_text("or", trials=6, suite_keys='controls = ["memoryless", "shuffled"]')
    write_suite(project, "leaky", text)
    result = project.runpytest("--rnn-suite=leaky")
    # OR needs no memory: the memoryless control learns it, and the suite says so.
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*memoryless is a control that remembers nothing: the success criterion is reachable*",
            "  length  rnn    memoryless    shuffled",
            "*WARNING: the memoryless control learns at length 2: the success criterion is reachable*",
        ]
    )
    report = read_report(project, "leaky")
    assert report["leaky_controls"] == {"memoryless": [2]}
    assert report["frontier"] == {"rnn": 2}
    shuffled = next(c for c in report["cases"] if c["cell"] == "shuffled")
    # Trained on shuffled targets, the first cell can only learn the majority class (rate 0.75).
    assert shuffled["control"] is True and shuffled["k"] == 0
    assert (
        '<span style="color:red">**WARNING: the memoryless control learns'
        in (project.path / "reports" / "leaky.md").read_text()
    )


@pytest.mark.slow
def test_controls_that_do_not_learn_pass_quietly(project):
    text = suite_text("latching", lengths=(3,), trials=6).replace(
        "seed = 1", 'seed = 1\ncontrols = ["memoryless", "shuffled"]'
    )
    write_suite(project, "sound", text)
    result = project.runpytest("--rnn-suite=sound", "--cell=usercells:ZeroRecurrence")
    result.assert_outcomes(failed=1, passed=2)
    assert "WARNING" not in result.stdout.str()


@pytest.mark.slow
def test_curtailment_stops_when_the_verdict_is_settled(project):
    write_suite(project, "ortask", suite_text("or", trials=30, extra="stage = 10\n"))
    result = project.runpytest("--rnn-suite=ortask")
    result.assert_outcomes(passed=1)
    (case,) = read_report(project, "ortask")["cases"]
    # 20 successes in the first 20 trials learn whatever the last 10 would do.
    assert (case["k"], case["n"], case["trials_planned"], case["verdict"]) == (20, 20, 30, "learns")
    assert len(case["trials"]) == 20
    assert "learns (settled after 20 of 30 trials)" in (project.path / "reports" / "ortask.md").read_text()


@pytest.mark.slow
def test_frontier_search_skips_lengths_the_others_imply(project):
    cell = "usercells:ZeroRecurrence"
    write_suite(project, "latch", suite_text("latching", cells=(cell,), lengths=(2, 3, 4), trials=6))
    result = project.runpytest("--rnn-suite=latch", "--rnn-frontier", "-rs")
    # Bisection trains length 3 first; it fails, so length 4 is taken to fail too.
    result.assert_outcomes(failed=2, skipped=1)
    result.stdout.fnmatch_lines(
        ["*--rnn-frontier: fails implied, not trained: it fails length 3, which is shorter*"]
    )
    report = read_report(project, "latch")
    assert sorted(c["length"] for c in report["cases"]) == [2, 3]
    assert report["missing"] == []
    assert [(r["length"], r["verdict"]) for r in report["implied"]] == [(4, "fails")]
    markdown = (project.path / "reports" / "latch.md").read_text()
    assert f"- {cell}-L4: fails, because it fails length 3, which is shorter" in markdown
    # A length measured before keeps its counts in the report when a later bisection implies it.
    project.runpytest("--rnn-suite=latch", "-k", "L4")
    project.runpytest("--rnn-suite=latch", "--rnn-frontier")
    report = read_report(project, "latch")
    assert sorted(c["length"] for c in report["cases"]) == [2, 3, 4]
    assert report["implied"] == []


@pytest.mark.slow
def test_a_regression_task_with_length_generalisation_reports_both(project):
    extra = "\n[success]\nthreshold = 0.5\n"
    text = suite_text(
        "adding", cells=("gru",), lengths=(10,), trials=4, extra=extra, suite_keys="eval_lengths = [1.5]"
    )
    write_suite(project, "add", text)
    result = project.runpytest("--rnn-suite=add", "-p", "no:cacheprovider")
    assert "Traceback" not in result.stdout.str()
    (case,) = read_report(project, "add")["cases"]
    assert case["chance"] == pytest.approx(0.15424)
    assert [g["length"] for g in case["generalisation"]] == [15]
    assert all(len(t["eval_metrics"]) == 1 for t in case["trials"])
    assert case["input_gradient"] > 0
    trials = case["trials"]
    expected = shape_of([t["metric"] for t in trials], [t["diverged"] for t in trials], 0.5, case["chance"])
    assert case["failures"]["shape"] == expected.shape
    assert case["failures"]["learned"] == case["k"]
    markdown = (project.path / "reports" / "add.md").read_text()
    assert "## Length generalisation" in markdown
    why = markdown.split("## Why a case fails", 1)[1].split("##", 1)[0]
    if case["k"] == case["n"]:
        assert "Every trial of every case learned." in why
    else:
        assert f"| gru    |       10 | {case['k']}/{case['n']}" in why and expected.shape in why
    for png in ("add.png", "add-curves.png", "add-gradients.png"):
        assert (project.path / "reports" / png).exists()


def test_eval_lengths_on_a_task_without_a_rule_at_every_length_is_a_suite_error(project):
    write_suite(project, "latch", suite_text("latching", suite_keys="eval_lengths = [2]"))
    result = project.runpytest("--rnn-suite=latch")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*latch.toml: suite.eval_lengths = [[]2[]]: task 'latching' cannot be evaluated at other lengths*"]
    )


@pytest.fixture
def every_epoch_logged(monkeypatch):
    """Progress lines from the first epoch on, however short the case."""
    from pytest_rnnmemory import progress

    monkeypatch.setattr(progress, "INTERVAL_S", 0.0)


@pytest.mark.slow
def test_progress_is_shown_live_on_lines_of_its_own(project, every_epoch_logged):
    write_suite(project, "ortask", suite_text("or", trials=6))
    result = project.runpytest("--rnn-suite=ortask")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*live log call*",
            "ortask rnn-L2: epoch 1/3, 6 trials, * s elapsed, about * s left",
            "ortask rnn-L2: epoch 3/3, 6 trials, * s elapsed, about 0 s left",
            "PASSED*",
        ]
    )


@pytest.mark.slow
def test_progress_in_stages_counts_the_cases_trials_and_time(project, every_epoch_logged):
    write_suite(project, "ortask", suite_text("or", trials=6, extra="stage = 2\n"))
    result = project.runpytest("--rnn-suite=ortask")
    result.assert_outcomes(passed=1)  # 6/6: only the last stage settles "learns" (p = 1/64)
    result.stdout.fnmatch_lines(
        [
            "ortask rnn-L2: epoch 1/3, trials 1-2 of 6, * s elapsed, about * s left",
            "ortask rnn-L2: epoch 3/3, trials 1-2 of 6, *",
            "ortask rnn-L2: epoch 1/3, trials 3-4 of 6, *",
            "ortask rnn-L2: epoch 3/3, trials 5-6 of 6, * s elapsed, about 0 s left",
        ]
    )


@pytest.mark.slow
@pytest.mark.parametrize("args", [["-q"], ["--rnn-progress=off"]])
def test_progress_stays_quiet_under_q_or_when_switched_off(project, every_epoch_logged, args):
    write_suite(project, "ortask", suite_text("or", trials=6))
    result = project.runpytest("--rnn-suite=ortask", *args)
    result.assert_outcomes(passed=1)
    assert "epoch 1/3" not in result.stdout.str()
    assert "live log" not in result.stdout.str()


def test_a_bad_progress_setting_is_a_usage_error(project):
    project.makeini("[pytest]\nrnn_progress = sometimes\n")
    write_suite(project, "ortask", suite_text("or"))
    result = project.runpytest("--rnn-suite=ortask")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*rnn_progress = sometimes: must be auto, on or off*"])


# -- nothing a user types or a file holds loses a report ------------------------------------------


def test_k_with_a_cell_name_selects_that_cells_cases_only(project):
    write_suite(project, "latch", suite_text("latching", cells=("rnn", "lstm", "gru"), lengths=(5, 20)))
    result = project.runpytest("suites/", "--collect-only", "-q", "-k", "rnn and L20")
    result.stdout.fnmatch_lines(["suites/latch.toml::rnn-L20", "1/6 tests collected*"])
    result = project.runpytest("suites/", "--collect-only", "-q", "-k", "rnn")
    result.stdout.fnmatch_lines(
        ["suites/latch.toml::rnn-L5", "suites/latch.toml::rnn-L20", "2/6 tests collected*"]
    )


@pytest.mark.slow
def test_a_partial_run_merges_its_cases_into_the_report(project):
    write_suite(project, "ortask", suite_text("or", cells=("rnn", "gru"), lengths=(2, 3), trials=5))
    project.runpytest("--rnn-suite=ortask")
    full = read_report(project, "ortask")
    assert len(full["cases"]) == 4
    result = project.runpytest("--rnn-suite=ortask", "-k", "gru and L3", "--rnn-rerun")
    result.assert_outcomes(passed=1)
    merged = read_report(project, "ortask")
    assert [(c["cell"], c["length"]) for c in merged["cases"]] == [
        ("rnn", 2),
        ("rnn", 3),
        ("gru", 2),
        ("gru", 3),
    ]
    assert merged["missing"] == []
    assert merged["cases"][:3] == full["cases"][:3]  # the cases not run this time, as they were
    assert merged["frontier"] == {"rnn": 3, "gru": 3}
    # --cell and --rnn-length select too, and merge the same way.
    project.runpytest("--rnn-suite=ortask", "--cell=rnn", "--rnn-length=2", "--rnn-rerun")
    again = read_report(project, "ortask")
    assert len(again["cases"]) == 4 and again["config"]["suite"]["cells"] == ["rnn", "gru"]


@pytest.mark.slow
def test_a_run_under_another_configuration_replaces_the_report_and_lists_what_it_did_not_run(project):
    write_suite(project, "ortask", suite_text("or", cells=("rnn", "gru"), lengths=(2, 3), trials=3))
    project.runpytest("--rnn-suite=ortask")
    project.runpytest("--rnn-suite=ortask", "-k", "gru and L3", "--rnn-seed=5")
    report = read_report(project, "ortask")
    assert report["config"]["suite"]["seed"] == 5
    assert [(c["cell"], c["length"]) for c in report["cases"]] == [("gru", 3)]
    assert report["missing"] == [
        {"cell": "rnn", "length": 2},
        {"cell": "rnn", "length": 3},
        {"cell": "gru", "length": 2},
    ]


@pytest.mark.slow
def test_a_run_of_other_cells_under_another_configuration_lists_the_files_cells_as_missing(project):
    write_suite(project, "ortask", suite_text("or", cells=("rnn", "gru"), lengths=(2,), trials=2))
    project.runpytest("--rnn-suite=ortask")
    result = project.runpytest("--rnn-suite=ortask", "--cell=lstm", "--rnn-trials=3")
    result.stdout.fnmatch_lines(["not selected, so missing from the report, * rnn-L2, gru-L2"])
    report = read_report(project, "ortask")
    assert [(c["cell"], c["length"]) for c in report["cases"]] == [("lstm", 2)]
    assert report["missing"] == [{"cell": "rnn", "length": 2}, {"cell": "gru", "length": 2}]
    assert report["config"]["suite"]["cells"] == ["rnn", "gru", "lstm"]
    assert "Missing" in (project.path / "reports" / "ortask.md").read_text()
    # --rnn-length selects the same way: the file's lengths it left out are missing.
    project.runpytest("--rnn-suite=ortask", "--rnn-length=3", "--rnn-seed=5")
    report = read_report(project, "ortask")
    assert [(c["cell"], c["length"]) for c in report["cases"]] == [("rnn", 3), ("gru", 3)]
    assert report["missing"] == [{"cell": "rnn", "length": 2}, {"cell": "gru", "length": 2}]


@pytest.mark.slow
def test_suites_that_did_not_run_keep_their_reports(project):
    write_suite(project, "ortask", suite_text("or", trials=3))
    project.runpytest("--rnn-suite=ortask")
    before = (project.path / "reports" / "ortask.json").read_text()
    write_suite(project, "broken", suite_text("recall", suite_keys="eval_lengths = [nan]"))
    result = project.runpytest("suites/", "-k", "broken")
    result.assert_outcomes(failed=1)
    assert (project.path / "reports" / "ortask.json").read_text() == before
    assert not (project.path / "reports" / "broken.json").exists()
    result = project.runpytest("suites/", "-x", "-k", "nothing-matches")
    assert (project.path / "reports" / "ortask.json").read_text() == before


@pytest.mark.parametrize(
    ("option", "make", "message"),
    [
        ("--rnn-report-dir=taken", "file", "--rnn-report-dir=taken: * is a file, not a folder"),
        ("--rnn-save-baseline=taken", "folder", "--rnn-save-baseline=taken: * is a folder; give a JSON file"),
        (
            "--rnn-save-baseline=taken",
            "garbage",
            "--rnn-save-baseline=taken: * exists and is not a baseline*",
        ),
    ],
)
def test_paths_are_checked_before_anything_trains(project, option, make, message):
    write_suite(project, "ortask", suite_text("or"))
    target = project.path / "taken"
    if make == "folder":
        target.mkdir()
    else:
        target.write_text("not json" if make == "garbage" else "a file")
    result = project.runpytest("--rnn-suite=ortask", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}"])
    assert "Traceback" not in result.stderr.str()


def test_two_suite_files_of_one_name_are_an_error_that_names_both(project):
    write_suite(project, "first", suite_text("or", suite_keys='name = "same"'))
    write_suite(project, "second", suite_text("or", suite_keys='name = "same"'))
    result = project.runpytest("suites/", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["suites/first.toml::rnn-L2", "suites/second.toml::suite"])
    result = project.runpytest("suites/", "-k", "second")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ['*suites/second.toml: suite.name = "same": also the name of suites/first.toml;*']
    )
    result = project.runpytest("--rnn-suite=same")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--rnn-suite: 'same' names two suite files: *first.toml, *second.toml*"])


@pytest.mark.slow
def test_a_report_folder_outside_the_rootdir_is_shown_in_full(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    write_suite(project, "ortask", suite_text("or", trials=3))
    result = project.runpytest("--rnn-suite=ortask", f"--rnn-report-dir={elsewhere}")
    result.stdout.fnmatch_lines([f"report written: {elsewhere / 'ortask.md'}"])


@pytest.mark.slow
def test_suites_broken_every_way_leave_the_good_suite_and_its_report_alone(project):
    write_suite(project, "good", suite_text("or", trials=5))
    broken = {
        "nan_lr": suite_text("or", extra="").replace("lr = 0.05", "lr = nan"),
        "inf_noise": suite_text("latching") + "\n[task]\nnoise = inf\n",
        "huge": suite_text("or", trials=10**12),
        "wrong_type": suite_text("or").replace("epochs = 3", 'epochs = "three"'),
        "nan_eval": suite_text("recall", suite_keys="eval_lengths = [nan]"),
        "not_a_cell": suite_text("or", cells=("builtins:print",)),
    }
    for name, text in broken.items():
        write_suite(project, name, text)
    result = project.runpytest("suites/")
    result.assert_outcomes(passed=1, failed=len(broken))
    out = result.stdout.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out
    assert read_report(project, "good")["cases"][0]["k"] == 5
    assert sorted(p.stem for p in (project.path / "reports").glob("*.json")) == ["good"]


# -- the recipe search -----------------------------------------------------------------------------

SEARCH = '\n[search]\n"model.init" = ["torch", "chrono"]\n"train.lr" = [0.01, 0.05]\ntrials = 4\n'


@pytest.mark.slow
def test_a_searched_suite_names_the_recipe_of_each_verdict_and_every_recipes_tuning(project):
    text = suite_text("latching", cells=("lstm",), lengths=(8,), trials=6, extra=SEARCH)
    write_suite(project, "latch", text)
    result = project.runpytest("--rnn-suite=latch", "--junitxml=out.xml")
    (case,) = read_report(project, "latch")["cases"]
    search = case["search"]
    assert [r["label"] for r in search["recipes"]] == [
        "init=torch, lr=0.01",
        "init=torch, lr=0.05",
        "init=chrono, lr=0.01",
        "init=chrono, lr=0.05",
    ]
    chosen = next(r for r in search["recipes"] if r["index"] == search["chosen"])
    assert case["recipe"] == chosen["recipe"]
    assert chosen["n"] == 4 and sorted(r["n"] for r in search["recipes"]) == [2, 2, 4, 4]
    # The verdict's trials are fresh: none of their seeds is a tuning trial's.
    markdown = (project.path / "reports" / "latch.md").read_text()
    assert "## Recipe search" in markdown
    assert f"with {chosen['label']}, the best of 4 on tuning trials" in markdown
    assert "latch-search.png" in markdown
    assert (
        f'name="rnnmemory_recipe" value="{", ".join(f"{k}={v}" for k, v in chosen["recipe"].items())}"'
        in ((project.path / "out.xml").read_text())
    )
    if case["verdict"] != "learns":
        result.stdout.fnmatch_lines([f"*with recipe {chosen['label']}, the best of 4 on tuning trials*"])
    # --rnn-search=off runs the suite's own recipe, under another configuration.
    project.runpytest("--rnn-suite=latch", "--rnn-search=off")
    (plain,) = read_report(project, "latch")["cases"]
    assert plain["recipe"] == {} and plain["search"] is None
    assert plain["config_hash"] != case["config_hash"]


@pytest.mark.slow
def test_a_grid_of_one_recipe_trains_that_recipe_and_its_report_names_it(project):
    """Narrowing a key to one value is how a profile fixes it: the grid's only recipe trains, not the
    suite's [train] lr (the grid was ignored, its cases trained at lr 0.05 and recorded {}), with no
    tuning trial, and the report names it and reads back on the next run."""
    write_suite(project, "onegrid", suite_text(trials=3).replace("lr = 0.05", "lr = 0.0001"))
    project.runpytest("--rnn-suite=onegrid")
    (base,) = read_report(project, "onegrid")["cases"]
    assert base["recipe"] == {}
    write_suite(project, "onegrid", suite_text(trials=3, extra='\n[search]\n"train.lr" = [0.0001]\n'))
    project.runpytest("--rnn-suite=onegrid")  # not the stored result of lr = 0.0001 in [train]
    (case,) = read_report(project, "onegrid")["cases"]
    assert (case["recipe"], case["search"]) == ({"train.lr": 0.0001}, None)
    assert [t["metric"] for t in case["trials"]] == [t["metric"] for t in base["trials"]]
    assert case["config_hash"] == base["config_hash"]  # it trains as lr = 0.0001 in [train] does
    assert re.search(r"\| recipe +\|", (project.path / "reports" / "onegrid.md").read_text())
    result = project.runpytest("--rnn-suite=onegrid", "-v")
    result.stdout.fnmatch_lines(["*onegrid.toml::rnn-L2 *"])
    assert "rejected" not in result.stdout.str()
    assert read_report(project, "onegrid")["cases"][0]["recipe"] == {"train.lr": 0.0001}
    assert not list((project.path / "reports").glob("*.rejected*"))


@pytest.mark.slow
def test_a_cell_scoped_search_tunes_once_for_all_the_cells_lengths(project):
    text = suite_text("or", cells=("rnn",), lengths=(2, 3), trials=3, extra=SEARCH + 'scope = "cell"\n')
    write_suite(project, "ortask", text)
    project.runpytest("--rnn-suite=ortask", "-k", "L3")
    report = read_report(project, "ortask")
    (case,) = report["cases"]
    # Tuned at both lengths though only L3 ran: its counts at L3 are of tuning trials at L3.
    assert case["search"]["scope"] == "cell"
    result = project.runpytest("--rnn-suite=ortask", "-k", "L2")
    merged = read_report(project, "ortask")
    assert [c["recipe"] for c in merged["cases"]] == [case["recipe"]] * 2
    assert "from earlier runs" not in result.stdout.str()
    # The tuning's time is its own, per length, beside the verdict trials' wall_s.
    tuned = [c["search"]["wall_s"] for c in merged["cases"]]
    assert all(s > 0 for s in tuned) and merged["tuning_s"] == pytest.approx(sum(tuned), abs=0.002)
    markdown = (project.path / "reports" / "ortask.md").read_text()
    assert f"and {merged['tuning_s']:.1f} s of tuning trials choosing their recipes" in markdown


@pytest.mark.slow
def test_stopping_when_learned_reports_the_sequences_each_case_needed(project):
    extra = "\n[success]\nthreshold = 0.9\n"
    text = suite_text("or", cells=("rnn",), lengths=(2,), trials=5, extra=extra).replace(
        "lr = 0.05", 'lr = 0.05\nstop = "learned"\neval_every = 64\ntest_samples = 64'
    )
    write_suite(project, "ortask", text)
    project.runpytest("--rnn-suite=ortask")
    (case,) = read_report(project, "ortask")["cases"]
    assert case["budget"] == 3 * 256
    learned = [t["sequences"] for t in case["trials"] if t["sequences"] is not None]
    assert case["sequences"]["learned"] == len(learned) and all(s % 64 == 0 for s in learned)
    markdown = (project.path / "reports" / "ortask.md").read_text()
    assert "## Sequences to learn" in markdown and "ortask-sequences.png" in markdown


@pytest.mark.slow
def test_a_long_run_says_how_long_before_it_trains(project):
    write_suite(project, "ortask", suite_text("or", trials=4))
    project.runpytest("--rnn-suite=ortask")  # measures this machine's rate
    result = project.runpytest("--rnn-suite=ortask", "--rnn-rerun")
    assert "of training for" not in result.stdout.str()  # a few seconds: nothing to announce
    write_suite(project, "big", suite_text("or", trials=4).replace("epochs = 3", "epochs = 100000"))
    result = project.runpytest("--rnn-suite=big", "--collect-only")
    result.stdout.fnmatch_lines(
        ["rnnmemory: about * min of training for 1 case(s) (from the rates earlier cases*"]
    )


# -- your own cell ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_outside_cells_and_torchs_cells_run_a_suite_through_the_plugin(project):
    cells = ("usercells:StepGRU", "usercells:IndRNN", "usercells:MinGRU", "usercells:OrthogonalRNN")
    cells += ("usercells:PeepholeLSTM", "torch.nn:GRUCell", "torch.nn:LSTMCell")
    write_suite(project, "ortask", suite_text("or", cells=cells, trials=3))
    result = project.runpytest("--rnn-suite=ortask")
    assert "Traceback" not in result.stdout.str()
    report = read_report(project, "ortask")
    schemes = {c["cell"]: c["scheme"] for c in report["cases"]}
    assert len(schemes) == len(cells)
    assert schemes["torch.nn:LSTMCell"] in ("native", "stepwise", "fused")
    assert schemes["usercells:StepGRU"] == "vmap"


@pytest.mark.slow
def test_torchs_cell_from_the_command_line_and_constructor_arguments_from_the_suite(project):
    write_suite(project, "ortask", suite_text("or", trials=3))
    result = project.runpytest("--rnn-suite=ortask", "--cell=torch.nn:GRUCell")
    (case,) = read_report(project, "ortask")["cases"]
    assert case["cell"] == "torch.nn:GRUCell" and "Traceback" not in result.stdout.str()
    text = suite_text("or", cells=("usercells:IndRNN",), trials=3, extra="").replace(
        "hidden = 3", "hidden = 3\ncell_args = { recurrent_max = 0.5 }"
    )
    write_suite(project, "ind", text)
    result = project.runpytest("--rnn-suite=ind")
    assert read_report(project, "ind")["config"]["model"]["cell_args"] == {"recurrent_max": 0.5}
    bad = text.replace("recurrent_max = 0.5", "recurrnt_max = 0.5")
    write_suite(project, "ind", bad)
    result = project.runpytest("--rnn-suite=ind")
    result.stdout.fnmatch_lines(
        ["*suite.cells[[]0[]] = \"usercells:IndRNN\": cell 'usercells:IndRNN': *recurrnt_max*"]
    )


def test_a_shared_constructor_argument_one_of_the_cells_does_not_take_says_where_a_cells_own_go(project):
    """Two cells that take different arguments: the key the other cell takes is no misspelling, and
    the error says how to give it to that cell alone."""
    text = suite_text("or", cells=("usercells:IndRNN", "usercells:StepGRU"), trials=3).replace(
        "hidden = 3", "hidden = 3\ncell_args = { recurrent_max = 0.5 }"
    )
    write_suite(project, "two", text)
    result = project.runpytest("--rnn-suite=two")
    result.stdout.fnmatch_lines(
        [
            "*cells[[]1[]] = \"usercells:StepGRU\"*got an unexpected keyword argument 'recurrent_max'; "
            "model.cell_args.recurrent_max is none of its parameters: a key of model.cell_args is passed "
            "to every one of your cells, a cell's own go under its name "
            '(cell_args = { "package.module:Class" = { recurrent_max = ... } })'
        ]
    )


def test_a_key_of_a_cells_own_constructor_arguments_it_does_not_take_is_named_under_the_cells_name(project):
    """The key is where the file has it, under the cell's own table, and is no key for every cell."""
    text = suite_text("or", cells=("usercells:IndRNN",), trials=3)
    own = text.replace(
        "hidden = 3", 'hidden = 3\ncell_args = { "usercells:IndRNN" = { recurent_max = 0.5 } }'
    )
    write_suite(project, "own", own)
    result = project.runpytest("--rnn-suite=own")
    result.stdout.fnmatch_lines(
        [
            "*got an unexpected keyword argument 'recurent_max'; "
            "model.cell_args.\"usercells:IndRNN\".recurent_max (did you mean 'recurrent_max'?)"
        ]
    )
    write_suite(project, "own", own.replace("recurent_max", "depth"))
    result = project.runpytest("--rnn-suite=own")
    result.stdout.fnmatch_lines(
        [
            "*got an unexpected keyword argument 'depth'; "
            'model.cell_args."usercells:IndRNN".depth is none of its parameters'
        ]
    )
    assert "passed to every one of your cells" not in result.stdout.str()


@pytest.mark.slow
def test_a_cell_that_fails_in_training_shows_its_own_frames_under_a_line_naming_cell_case_and_phase(project):
    write_suite(project, "latch", suite_text("latching", cells=("usercells:BackwardFails",), lengths=(3,)))
    result = project.runpytest("--rnn-suite=latch")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    after = out.split("latch: usercells:BackwardFails at length 3", 1)[1]
    failure = after.split("\n", 1)[1].split("=====", 1)[0]
    lines = failure.strip().splitlines()
    first = (
        "cell 'usercells:BackwardFails' failed in the backward pass in case latch usercells:BackwardFails-L3"
    )
    assert lines[0] == first
    assert any("usercells.py" in line and "in backward" in line for line in lines)
    assert lines[-1].strip() == "ValueError: this cell's backward pass is broken on purpose"
    assert len(lines) < 15
    assert "_pytest" not in failure and "torch/autograd" not in failure and "pytest_rnnmemory" not in failure


@pytest.mark.slow
def test_a_case_that_raised_is_reported_missing_with_what_it_raised(project):
    write_suite(
        project, "latch", suite_text("latching", cells=("rnn", "usercells:BackwardFails"), lengths=(2,))
    )
    result = project.runpytest("--rnn-suite=latch", "--rnn-save-baseline=b.json")
    result.stdout.fnmatch_lines(
        [
            "missing: usercells:BackwardFails-L2 (raised an error)",
            "baseline not written to b.json: 1 of its selected cases raised an error: "
            "latch usercells:BackwardFails-L2; store a baseline from a run that finishes what it selects",
        ]
    )
    assert not (project.path / "b.json").exists()  # its entry would hold the code before the error
    error = (
        "UserCodeError: cell 'usercells:BackwardFails' failed in the backward pass: "
        "ValueError: this cell's backward pass is broken on purpose"
    )
    report = read_report(project, "latch")
    assert report["missing"] == [{"cell": "usercells:BackwardFails", "length": 2, "error": error}]
    markdown = (project.path / "reports" / "latch.md").read_text()
    assert f"- usercells:BackwardFails-L2: raised {error}" in markdown
    # A later run of the other cell alone keeps the error beside the case it did not run again.
    project.runpytest("--rnn-suite=latch", "--cell=rnn", "--rnn-rerun")
    assert read_report(project, "latch")["missing"][0]["error"] == error


BREAKABLE_CELL = """
import os

import torch
from torch import nn


class Breakable(nn.Module):
    # A tanh recurrence over a linear map; BREAK=1 makes its forward raise in training, as an
    # edit could (the load-time check's batch of 2 passes).

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)

    def forward(self, x):
        if os.environ.get("BREAK") == "1" and x.shape[0] > 2:
            raise RuntimeError("broken by an edit")
        return torch.tanh(self.inp(x)).cumsum(1)
"""


@pytest.mark.slow
def test_a_case_that_raises_replaces_its_stored_verdict_in_the_report(project, monkeypatch):
    project.makepyfile(breakable=BREAKABLE_CELL)
    write_suite(project, "latch", suite_text("latching", cells=("breakable:Breakable",), lengths=(2,)))
    project.runpytest("--rnn-suite=latch")
    assert [c["cell"] for c in read_report(project, "latch")["cases"]] == ["breakable:Breakable"]
    monkeypatch.setenv("BREAK", "1")
    # Every case of the suite raises: the report is written all the same, the error in the old
    # verdict's place.
    result = project.runpytest("--rnn-suite=latch", "--rnn-rerun")
    result.assert_outcomes(failed=1)
    report = read_report(project, "latch")
    assert report["cases"] == []
    # the first call of a case's cell is the gradient diagnostic's, in eval mode
    error = (
        "UserCodeError: cell 'breakable:Breakable' failed in its forward pass in eval mode (validation, "
        "the metrics or the gradient diagnostic): RuntimeError: broken by an edit"
    )
    assert report["missing"] == [{"cell": "breakable:Breakable", "length": 2, "error": error}]


@pytest.mark.slow
def test_a_step_summary_that_cannot_be_appended_to_is_a_warning_and_loses_nothing(project, monkeypatch):
    write_suite(project, "ortask", suite_text("or", trials=5))
    summary = project.path / "no-such-folder" / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    # a warning, even where the project makes warnings errors
    errors = "error::pytest_rnnmemory.report.StepSummaryWarning"
    result = project.runpytest("--rnn-suite=ortask", "--rnn-save-baseline=b.json", "-W", errors)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            f"*StepSummaryWarning: GITHUB_STEP_SUMMARY={summary}: the ortask report could not be "
            "appended there (No such file or directory)"
        ]
    )
    assert "INTERNALERROR" not in result.stdout.str()
    assert read_report(project, "ortask")["cases"][0]["n"] == 5
    assert (project.path / "b.json").is_file()


@pytest.mark.slow
def test_a_report_file_that_cannot_be_written_is_named_after_everything_else_is_written(project):
    write_suite(project, "first", suite_text("or", trials=5))
    write_suite(project, "second", suite_text("or", trials=5))
    (project.path / "reports" / "first.md").mkdir(parents=True)
    result = project.runpytest("suites/", "--rnn-save-baseline=b.json")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["report written: reports/first.json", "report file not written: reports/first.md (Is a directory)"]
    )
    assert "INTERNALERROR" not in result.stdout.str()
    assert read_report(project, "first")["suite"] == "first"
    assert (project.path / "reports" / "second.md").is_file() and (project.path / "b.json").is_file()


@pytest.mark.slow
def test_an_earlier_report_this_version_cannot_read_is_moved_aside_never_replaced(project):
    write_suite(project, "ortask", suite_text("or", trials=3))
    reports = project.path / "reports"
    reports.mkdir()
    newer = json.dumps({"schema_version": 99, "suite": "ortask", "cases": ["from a newer version"]})
    (reports / "ortask.json").write_text(newer)
    result = project.runpytest("--rnn-suite=ortask")
    result.stdout.fnmatch_lines(
        [
            "ortask: the earlier report could not be read (schema_version 99: *); it is kept as "
            "reports/ortask.json.rejected, and this run's report is written in its place"
        ]
    )
    assert (reports / "ortask.json.rejected").read_text() == newer
    assert read_report(project, "ortask")["schema_version"] == 2
    # one set aside before stays: the next goes beside it
    edited = json.loads((reports / "ortask.json").read_text())
    edited["cases"][0]["k"] = "three"
    (reports / "ortask.json").write_text(json.dumps(edited))
    result = project.runpytest("--rnn-suite=ortask")
    result.stdout.fnmatch_lines(["*; it is kept as reports/ortask.json.rejected.2, *"])
    assert (reports / "ortask.json.rejected").read_text() == newer
    assert json.loads((reports / "ortask.json.rejected.2").read_text()) == edited


@pytest.mark.slow
def test_a_suite_file_named_on_the_command_line_runs_wherever_it_lies(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("mine") / "my_suite.toml"
    elsewhere.write_text(suite_text("or", trials=3))
    (elsewhere.parent / "test_beside.py").write_text("def test_beside(): pass\n")
    beside = str(elsewhere.parent / "test_beside.py")
    result = project.runpytest(str(elsewhere), beside, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*my_suite.toml::rnn-L2", "*test_beside.py::test_beside", "2 tests*"])
    result = project.runpytest(f"--rnn-suite={elsewhere}", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*my_suite.toml::rnn-L2", "1 test collected*"])
    other = elsewhere.with_name("settings.toml")
    other.write_text("[tool.thing]\nx = 1\n")
    result = project.runpytest(str(other))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*settings.toml: not a suite file: it has no [[]suite[]] table*"])
