"""A source's figures beside ours: the statistic, its interval and the agreement, by hand."""

import dataclasses
import json
import math

import numpy as np
import pytest

from pytest_rnnmemory.literature import (
    AGREES,
    NOT_COMPARED,
    OURS_BETTER,
    OURS_WORSE,
    agreement,
    best_of,
    bootstrap_mean,
    compare,
    percentile_interval,
)
from pytest_rnnmemory.records import GeneralisationRecord
from pytest_rnnmemory.report import markdown, run_from_json, to_json
from pytest_rnnmemory.schema import ReferenceFigure, ReferenceSection
from pytest_rnnmemory.stats import decide, expanded_tail
from tests.records import record_with_metrics
from tests.test_report import report_data


def figure(statistic, value, trials=10, **more):
    return ReferenceFigure(cell="lstm", length=10, statistic=statistic, value=value, trials=trials, **more)


def with_sequences(record, sequences):
    trials = tuple(dataclasses.replace(t, sequences=s) for t, s in zip(record.trials, sequences, strict=True))
    return dataclasses.replace(record, trials=trials)


def test_agreement_is_the_figure_inside_our_interval_and_else_the_better_side():
    assert agreement(5, 4, 6, lower_is_better=False) == AGREES
    assert agreement(4, 4, 6, lower_is_better=False) == AGREES  # the interval is closed
    assert agreement(7, 4, 6, lower_is_better=False) == OURS_WORSE  # the source's accuracy is higher
    assert agreement(3, 4, 6, lower_is_better=False) == OURS_BETTER
    assert agreement(7, 4, 6, lower_is_better=True) == OURS_BETTER  # the source needed more sequences
    assert agreement(3, 4, 6, lower_is_better=True) == OURS_WORSE


def test_a_success_rate_gets_the_clopper_pearson_interval():
    # 7 of 10: the exact 95% interval is [0.3475, 0.9333] (Beta(7, 4) and Beta(8, 3) quantiles).
    record = record_with_metrics("lstm", 10, [1.0] * 7 + [0.5] * 3)
    c = compare(figure("success_rate", 0.9), record)
    assert c.ours == pytest.approx(0.7)
    assert (c.low, c.high) == pytest.approx((0.3475, 0.9333), abs=1e-4)
    assert c.agreement == AGREES
    assert compare(figure("success_rate", 0.95), record).agreement == OURS_WORSE
    assert compare(figure("success_rate", 0.3), record).agreement == OURS_BETTER
    assert (c.k, c.n, str(c.verdict)) == (7, 10, "inconclusive")


def test_a_success_rate_counts_the_successes_its_verdict_counts():
    # A trial exactly at the threshold succeeded; a diverged trial did not, whatever its last metric.
    record = record_with_metrics("lstm", 10, [0.95] * 4 + [1.0] * 2 + [0.5] * 4)
    trials = list(record.trials)
    trials[4] = dataclasses.replace(trials[4], success=False, diverged=True)
    record = dataclasses.replace(record, trials=tuple(trials), diverged=1)
    c = compare(figure("success_rate", 0.5), record)
    assert c.ours == pytest.approx(0.5)  # 4 at the threshold and 1 above, of 10
    assert c.note == "5 of 10 trials"


def test_sequences_to_learn_is_the_mean_over_the_trials_that_learned_with_a_bootstrap_interval():
    record = with_sequences(record_with_metrics("lstm", 10, [1.0] * 3 + [0.5]), [1000, 2000, 6000, None])
    c = compare(figure("mean_sequences", 74_000), record)
    assert c.ours == 3000  # the mean, not the median (2000)
    # Resamples of three values: their mean lies between the least and the greatest.
    assert 1000 <= c.low < 3000 < c.high <= 6000
    assert c.agreement == OURS_BETTER  # the source needed more sequences than any of ours
    assert c.note == "3 of 4 trials learned; the mean is over them"
    assert compare(figure("mean_sequences", 500), record).agreement == OURS_WORSE
    assert compare(figure("mean_sequences", 3000), record).agreement == AGREES
    # The bootstrap of a mean: the spread of resampled means is the data's over sqrt(n).
    means = bootstrap_mean([1000.0, 2000.0, 6000.0])
    assert means.mean() == pytest.approx(3000, rel=0.02)
    assert means.std() == pytest.approx(np.std([1000, 2000, 6000]) / np.sqrt(3), rel=0.05)


def test_the_bootstrap_of_a_mean_is_read_at_the_expanded_tail():
    # By hand: t(0.975, 9) = 2.262157, sqrt(10 / 9) = 1.054093, Phi(-2.384521) = 0.008550.
    assert expanded_tail(10) == pytest.approx(0.008550, abs=2e-6)
    # t(0.975, 1) = 12.706205 times sqrt(2): Phi(-17.969) is below 1e-70, the resamples' extremes.
    assert expanded_tail(2) < 1e-70
    # Many values: the plain percentile interval's tail; one value: the plain tail, no t to take.
    assert expanded_tail(10_000) == pytest.approx(0.025, abs=2e-5)
    assert expanded_tail(1) == pytest.approx(0.025)
    # The modern LSTM's ten trials of the committed adding_1997 report: the plain percentile interval
    # [75,600, 114,800] left out the paper's 74,000; read at the expanded tail it holds it.
    needed = [98000, 68000, 132000, 80000, 112000, 66000, 102000, 62000, 62000, 160000]
    record = with_sequences(record_with_metrics("lstm", 10, [1.0] * 10), needed)
    c = compare(figure("mean_sequences", 74_000), record)
    assert (c.ours, c.agreement) == (94_200, AGREES) and c.low < 74_000 < 75_600 < 114_800 < c.high


@pytest.mark.parametrize(("draw", "mean"), [("normal", 1.0), ("lognormal", math.exp(0.35**2 / 2))])
def test_the_expanded_bootstrap_interval_of_a_mean_of_ten_covers_it_95_percent_of_the_time(draw, mean):
    """The plain percentile interval covers the mean of ten values 88 to 90% of the time (normal and
    skewed values, as sequences to learn are); the expanded one 93 to 95%. 1500 samples: a standard
    error of 0.6 to 0.8 points on each rate; the expanded interval holds the plain one, so their
    difference, the samples it alone covers, varies less."""
    rng = np.random.default_rng(7)
    shape = (1500, 10)
    samples = rng.normal(1.0, 0.3, shape) if draw == "normal" else rng.lognormal(0, 0.35, shape)
    covered = {"plain": 0, "expanded": 0}
    for values in samples:
        means = bootstrap_mean(values)
        for name, tail in (("plain", 0.025), ("expanded", expanded_tail(10))):
            low, high = percentile_interval(means, tail)
            covered[name] += low <= mean <= high
    plain, expanded = covered["plain"] / len(samples), covered["expanded"] / len(samples)
    assert plain < 0.925 and 0.92 <= expanded <= 0.97 and expanded - plain >= 0.03


def test_a_mean_needs_two_trials_that_learned():
    record = with_sequences(record_with_metrics("lstm", 10, [1.0] + [0.5] * 3), [1000, None, None, None])
    c = compare(figure("mean_sequences", 1000), record)
    assert (c.agreement, c.ours, c.low) == (NOT_COMPARED, None, None)
    assert "1 of 4 trials learned" in c.note


def test_the_best_of_k_is_bootstrapped_from_our_trials():
    # One trial in ten reaches 1.0. The best of 60 draws misses it with probability 0.9^60 = 0.0018,
    # below 2.5%: the interval is [1.0, 1.0]. The best of 10 misses it with probability 0.349:
    # the interval is [0.5, 1.0].
    record = record_with_metrics("lstm", 10, [1.0] + [0.5] * 9)
    sixty = compare(figure("best_accuracy", 1.0, trials=60), record)
    assert (sixty.low, sixty.high, sixty.agreement) == (1.0, 1.0, AGREES)
    assert compare(figure("best_accuracy", 0.99, trials=60), record).agreement == OURS_BETTER
    ten = compare(figure("best_accuracy", 0.8, trials=10), record)
    assert (ten.low, ten.high, ten.agreement) == (0.5, 1.0, AGREES)
    # The median of the best of 10: 0.9^10 = 0.349 < 0.5, so it is 1.0; of the best of 5,
    # 0.9^5 = 0.59 >= 0.5, so it is 0.5.
    assert best_of([0.5] * 9 + [1.0], 10)[0] == 1.0
    assert best_of([0.5] * 9 + [1.0], 5)[0] == 0.5
    # Exact, so no memory grows with k: the best of 100,000 draws.
    assert best_of([0.5] * 9 + [1.0], 100_000) == (1.0, 1.0, 1.0)
    # Against resampling by brute force.
    rng = np.random.default_rng(1)
    values = rng.random(7)
    drawn = values[rng.integers(0, 7, size=(200_000, 3))].max(axis=1)
    assert best_of(values, 3) == pytest.approx(tuple(np.quantile(drawn, [0.5, 0.025, 0.975])), abs=0.05)


def test_the_best_of_k_quantiles_are_the_smallest_values_whose_probability_reaches_them():
    # Four values, k = 1: P(best <= 1, 2, 3, 4) = 0.25, 0.5, 0.75, 1; the median is 2.
    assert best_of([4.0, 1.0, 3.0, 2.0], 1) == (2.0, 1.0, 4.0)
    # 1 .. 100, k = 2: P(best <= j) = (j / 100)^2 reaches 0.025 at j = 16, 0.5 at 71, 0.975 at 99.
    assert best_of([float(j) for j in range(1, 101)], 2) == (71.0, 16.0, 99.0)
    # k = 1: j / 100 reaches 0.5 at j = 50, 0.025 at 3 and 0.975 at 98.
    assert best_of([float(j) for j in range(1, 101)], 1) == (50.0, 3.0, 98.0)


def test_a_figure_at_an_evaluation_length_reads_the_trials_there():
    record = record_with_metrics("lstm", 10, [1.0] * 4)
    trials = tuple(dataclasses.replace(t, eval_metrics=(0.6,)) for t in record.trials)
    record = dataclasses.replace(
        record,
        trials=trials,
        generalisation=(GeneralisationRecord(100, decide(0, 4), 0.6, 0.6),),
    )
    at_100 = compare(figure("best_accuracy", 1.0, eval_length=100), record)
    assert (at_100.ours, at_100.agreement) == (0.6, OURS_WORSE)
    at_500 = compare(figure("best_accuracy", 1.0, eval_length=500), record)
    assert at_500.agreement == NOT_COMPARED and "not evaluated at length 500" in at_500.note
    # A success rate at an evaluation length counts the trials that succeed there, not at 10.
    rate = compare(figure("success_rate", 0.9, eval_length=100), record)
    assert (rate.ours, rate.note) == (0.0, "0 of 4 trials")


def test_a_figure_reads_the_evaluation_length_it_names_among_several():
    record = record_with_metrics("lstm", 10, [1.0] * 4)
    trials = tuple(dataclasses.replace(t, eval_metrics=(0.9, 0.6)) for t in record.trials)
    lengths = (
        GeneralisationRecord(20, decide(0, 4), 0.9, 0.9),
        GeneralisationRecord(100, decide(0, 4), 0.6, 0.6),
    )
    record = dataclasses.replace(record, trials=trials, generalisation=lengths)
    assert compare(figure("best_accuracy", 1.0, eval_length=20), record).ours == 0.9
    assert compare(figure("best_accuracy", 1.0, eval_length=100), record).ours == 0.6


def test_a_figure_at_the_trained_length_given_as_its_eval_length_reads_the_trained_metrics():
    # The suite loader accepts eval_length = the figure's own length: the trained length, as 0 is.
    record = record_with_metrics("lstm", 10, [1.0] * 7 + [0.5] * 3)
    c = compare(figure("success_rate", 0.9, eval_length=10), record)
    assert (c.ours, c.note, c.agreement) == (pytest.approx(0.7), "7 of 10 trials", AGREES)


def test_trials_without_their_metrics_at_an_evaluation_length_leave_the_figure_not_compared():
    # The case was evaluated at 100, but its trials do not carry their metric there.
    record = record_with_metrics("lstm", 10, [1.0] * 4)
    record = dataclasses.replace(record, generalisation=(GeneralisationRecord(100, decide(0, 4), 0.6, 0.6),))
    c = compare(figure("best_accuracy", 1.0, eval_length=100), record)
    assert (c.ours, c.agreement) == (None, NOT_COMPARED)
    assert "not evaluated at length 100" in c.note


def test_a_trial_without_a_finite_metric_leaves_the_figure_not_compared():
    record = record_with_metrics("lstm", 10, [1.0, 1.0, 0.5])
    record = dataclasses.replace(
        record, trials=(*record.trials[:2], dataclasses.replace(record.trials[2], metric=math.nan))
    )
    c = compare(figure("best_accuracy", 1.0), record)
    assert (c.agreement, c.ours) == (NOT_COMPARED, None)


def test_a_figure_whose_case_did_not_run_is_not_compared():
    c = compare(figure("success_rate", 1.0), None)
    assert (c.agreement, c.verdict) == (NOT_COMPARED, None)


def reference_report():
    data = report_data()
    data["config"]["reference"] = ReferenceSection(
        source="Somebody et al. (2000)",
        setup="a single unit",
        figures=(
            ReferenceFigure("lstm", 10, "success_rate", 0.2, 20, differs="they trained for longer"),
            ReferenceFigure("rnn", 5, "success_rate", 0.9, 20),
            ReferenceFigure("rnn", 7, "success_rate", 0.9, 20),
        ),
    ).to_json()
    return data


def test_the_report_sets_each_figure_beside_ours_with_the_verdict_and_what_differs():
    run = run_from_json(reference_report())
    text = markdown(run, {})
    section = text.split("## Literature")[1].split("\n## ")[0]
    assert "**Somebody et al. (2000)**: a single unit" in section
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in section.splitlines()]
    lstm, rnn, missing = [row for row in rows if row and row[0] in ("rnn", "lstm")]
    # lstm at 10: 9 of 10, interval [0.555, 0.997]; the source's 0.2 lies below it.
    assert lstm[3:6] == ["0.200 (over 20)", "0.900 [0.555, 0.997]", "ours better"]
    assert lstm[7:] == ["✓ learns (9/10)", "they trained for longer"]
    assert rnn[5] == "agrees"
    assert missing[5] == "not compared" and "did not run" in missing[6]
    data = to_json(run, {})
    assert [c["agreement"] for c in data["literature"]] == ["ours better", "agrees", "not compared"]
    # The reference travels in the report's config: the report renders again from its JSON.
    assert markdown(run_from_json(json.loads(json.dumps(data))), {}) == text
    assert "[[reference.figures]]" in text


def test_what_differs_is_shown_beside_a_figure_whatever_the_agreement():
    """A figure that agrees may agree despite a known difference (a weaker criterion), and a figure
    not compared is what another row's "see T = 100" points at."""
    data = reference_report()
    figures = data["config"]["reference"]["figures"]
    figures[1]["differs"] = "a weaker criterion"
    figures[2]["differs"] = "see length 5"
    section = markdown(run_from_json(data), {}).split("## Literature")[1].split("\n## ")[0]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in section.splitlines()]
    shown = {(row[0], row[1]): (row[5], row[8]) for row in rows if row and row[0] in ("rnn", "lstm")}
    assert shown == {
        ("lstm", "10"): ("ours better", "they trained for longer"),
        ("rnn", "5"): ("agrees", "a weaker criterion"),
        ("rnn", "7"): ("not compared", "see length 5"),
    }
