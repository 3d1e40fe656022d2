"""Records read back what they wrote, the committed reports render again byte for byte, and stored
JSON that is not what a run writes gives one line naming the place."""

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest

from pytest_rnnmemory.errors import StoredDataError
from pytest_rnnmemory.outcome import CaseOutcome
from pytest_rnnmemory.records import CaseRecord, case_record
from pytest_rnnmemory.report import FIGURES, markdown, run_from_json, to_json
from pytest_rnnmemory.stats import decide
from tests.records import record_with_metrics

REPORTS = Path(__file__).resolve().parent.parent / "reports"
COMMITTED = sorted(
    p for p in [*REPORTS.glob("*.json"), *REPORTS.glob("long/*.json")] if p.name != "baseline-quick.json"
)


@pytest.mark.parametrize("path", COMMITTED, ids=[str(p.relative_to(REPORTS)) for p in COMMITTED])
def test_a_committed_report_renders_again_byte_for_byte_from_its_json(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    run = run_from_json(data)
    assert json.dumps(to_json(run, data["environment"]), indent=1) + "\n" == path.read_text(encoding="utf-8")
    plots = {
        name: f"{run.name}{suffix}.png"
        for name, (suffix, _, _) in FIGURES.items()
        if (path.parent / f"{run.name}{suffix}.png").exists()
    }
    assert markdown(run, data["environment"], plots) == path.with_suffix(".md").read_text(encoding="utf-8")


def test_a_record_reads_back_what_it_wrote():
    record = record_with_metrics("lstm", 20, [1.0, 0.97, 0.5, 0.5, 0.6], gradient=1e-4)
    again = CaseRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again == record


def test_a_gradient_that_overflowed_is_recorded_as_not_measured():
    """A cell whose states grow past float32's range has a NaN or infinite input gradient: a
    stored NaN made the record unreadable, and the case crashed pytest at every run."""
    outcome = CaseOutcome(
        metrics=(0.5, 0.5, 1.0),
        diverged=(True, False, False),
        train_loss=((None,), (0.7,), (0.1,)),
        val_metric=((0.5,), (0.5,), (1.0,)),
        scheme="vmap",
        device="cpu",
        wall_s=1.0,
        input_gradient=(math.nan, math.inf, 1e-3),
    )
    record = case_record(
        suite="s", cell="c", control=False, length=400, config_hash="h", outcome=outcome, seeds=(1, 2, 3),
        metric="accuracy", threshold=0.95, chance=0.5, p0=0.5, alpha=0.05, trials_planned=3,
    )  # fmt: skip
    assert [t.input_gradient for t in record.trials] == [None, None, 1e-3]
    assert record.input_gradient == 1e-3
    assert CaseRecord.from_json(json.loads(json.dumps(record.to_json(), allow_nan=False))) == record


def broken(change):
    data = record_with_metrics("lstm", 20, [1.0, 0.97, 0.5, 0.5, 0.6]).to_json()
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("k"), "case.k: missing"),
        (lambda d: d.update(k="2"), 'case.k: expected an integer >= 0, got "2"'),
        (lambda d: d.update(k=7), "case.k: 7 successes of n = 5 trials"),
        (lambda d: d.update(n=0), "case.n: expected an integer >= 1, got 0"),
        (
            lambda d: d.update(verdict="learns"),
            "case.verdict: 'learns', but 2/5 at p0 = 0.5, alpha = 0.05 is",
        ),
        (lambda d: d.update(verdict="maybe"), "case.verdict: expected one of learns, fails, inconclusive"),
        (lambda d: d.update(metric_median=None), "case.metric_median: expected a finite number, got None"),
        (lambda d: d["trials"].pop(), "case.trials: 4 trials, but n = 5"),
        (
            lambda d: d["trials"][2].update(success=True, metric=0.99),
            "case.trials: 3 successful trials, but k = 2",
        ),
        (
            lambda d: d["trials"][1].update(metric="x"),
            'case.trials[1].metric: expected a finite number, got "x"',
        ),
        (lambda d: d["trials"][0].update(train_loss=[0.5, "nan"]), "case.trials[0].train_loss[1]"),
        (lambda d: d.update(trials=5), "case.trials: expected a list, got 5"),
        (lambda d: d.update(p0=1.5), "case.p0: expected a number in (0, 1), got 1.5"),
        (lambda d: d.update(alpha=0.5), "case.alpha: expected a number in (0, 0.5), got 0.5"),
    ],
)
def test_a_malformed_record_names_the_place_that_is_wrong(change, message):
    with pytest.raises(StoredDataError) as info:
        CaseRecord.from_json(broken(change))
    assert message in str(info.value)


def test_a_report_of_another_schema_version_says_which_it_reads():
    data = json.loads(COMMITTED[0].read_text(encoding="utf-8"))
    for version in (3, None, "1", True):
        changed = copy.deepcopy(data)
        changed["schema_version"] = version
        with pytest.raises(StoredDataError, match="reads reports of version 1 and 2"):
            run_from_json(changed)


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        (
            {"train.foo": 1},
            "case.recipe.train.foo = 1 (lstm at length 20): not a searchable key; searchable: train.lr, "
            "train.optimizer",
        ),
        (
            {"train.samples": 100},
            "case.recipe.train.samples = 100 (lstm at length 20): the budget is not searched",
        ),
        (
            {"train.lr": "x"},
            "case.recipe.train.lr = 'x' (lstm at length 20): must be a finite number in (0, 1000]",
        ),
        ({"model.init": "best"}, "case.recipe.model.init = 'best' (lstm at length 20): must be one of"),
        ([["train.lr", 0.1]], "case.recipe: expected an object"),
    ],
)
def test_a_recipe_of_keys_or_values_no_search_allows_is_refused_naming_the_case(recipe, message):
    """Replay applies a case's recipe to the suite's sections: an edited one crashed it with a TypeError."""
    with pytest.raises(StoredDataError) as info:
        CaseRecord.from_json(broken(lambda d: d.update(recipe=recipe)))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["trials"][0].update(metric=0.1),
            "case.trials[0].success: true, but its metric 0.1 is below the threshold 0.95",
        ),
        (
            lambda d: d["trials"][1].update(diverged=True),
            "case.trials[1].success: true, but the trial diverged",
        ),
        (
            lambda d: d["trials"][2].update(metric=0.99),
            "case.trials[2].success: false, but its metric 0.99 reaches the threshold 0.95",
        ),
        (
            lambda d: d.update(threshold=0.98),
            "case.trials[1].success: true, but its metric 0.97 is below the threshold 0.98",
        ),
    ],
)
def test_a_trial_whose_success_its_metric_does_not_give_is_refused(change, message):
    """A trial succeeds when its final metric reaches the threshold without diverging; the counts
    and the verdict follow from these, so a success that its metric contradicts is not a run's."""
    with pytest.raises(StoredDataError) as info:
        CaseRecord.from_json(broken(change))
    assert message in str(info.value)


def test_the_counts_at_an_evaluation_length_must_be_those_its_metrics_give():
    record = record_with_metrics("lstm", 20, [1.0, 0.97, 0.5, 0.5, 0.6])
    trials = tuple(dataclasses.replace(t, eval_metrics=(t.metric,)) for t in record.trials)
    data = dataclasses.replace(record, trials=trials).to_json()
    data["generalisation"] = [
        {"length": 40, **decide(4, 5).to_dict(), "metric_median": 0.6, "metric_mean": 0.7}
    ]
    with pytest.raises(StoredDataError) as info:
        CaseRecord.from_json(data)
    assert "case.generalisation[0].k: 4 trials succeed at length 40, but their eval_metrics[0] give 2" in str(
        info.value
    )


def test_p_values_are_computed_again_from_the_counts_when_a_record_is_read():
    """As the interval is: an edited p_greater is never printed beside a verdict that contradicts it."""
    data = broken(lambda d: d.update(p_greater=0.001, p_less=0.9, ci_low=0.9, ci_high=1.0))
    decision = CaseRecord.from_json(data).decision
    assert decision == decide(2, 5)
    assert (decision.p_greater, decision.p_less) != (0.001, 0.9)
