"""The capability gate: its statistics, its calibration (by simulation), the baseline file."""

import json
from math import comb

import numpy as np
import pytest

from pytest_rnnmemory.calibration import flag_rate, second_look_learns, staged_flag_rate, verdict_rate
from pytest_rnnmemory.gate import (
    CHANGED_CONFIG,
    IMPROVED,
    NOT_IN_BASELINE,
    REGRESSED,
    UNCHANGED,
    BaselineError,
    Claim,
    compare,
    drop_pvalue,
    holm,
    load_baseline,
    rise_pvalue,
    save_baseline,
)
from pytest_rnnmemory.stats import INCONCLUSIVE, LEARNS, decide, settled, trials_to_settle, verdict_of
from tests.records import record_of

# -- Holm and the exact tests --------------------------------------------------------------------


def test_holm_by_hand():
    # m = 4: sorted 0.01, 0.02, 0.03, 0.5 -> 4*0.01, max(3*0.02, .04), max(2*0.03, .06), max(0.5, .06)
    assert holm([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    assert holm([0.9, 0.4]) == pytest.approx([0.9, 0.8])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def fisher_less_by_hand(k_now, n_now, k_base, n_base):
    """P(X <= k_now) for X hypergeometric: draws n_now from the n_now + n_base trials."""
    total, successes = n_now + n_base, k_now + k_base
    return sum(
        comb(successes, x) * comb(total - successes, n_now - x) / comb(total, n_now)
        for x in range(max(0, successes - n_base), k_now + 1)
    )


@pytest.mark.parametrize(("k_now", "k_base"), [(15, 27), (20, 25), (5, 9), (0, 3)])
def test_fisher_drop_pvalue_matches_the_hypergeometric_tail(k_now, k_base):
    n = 30 if k_base > 10 else 10
    expected = fisher_less_by_hand(k_now, n, k_base, n)
    assert drop_pvalue(k_now, n, k_base, n, "fisher") == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("test", ["boschloo", "fisher"])
def test_drop_pvalue_looks_one_way(test):
    assert drop_pvalue(15, 30, 27, 30, test) < 0.01  # a real drop
    assert drop_pvalue(27, 30, 15, 30, test) == 1.0  # a rise is no evidence of a drop
    assert drop_pvalue(20, 30, 20, 30, test) == 1.0
    # Boschloo is at least as powerful as Fisher.
    assert drop_pvalue(15, 30, 27, 30, "boschloo") <= drop_pvalue(15, 30, 27, 30, "fisher")


def boschloo_less_by_hand(k_now, n_now, k_base, n_base, grid=4000):
    """Boschloo's one-sided p-value: Fisher's p-value as the statistic, its tail under a common
    success rate maximised over that rate (on a grid, from below)."""
    observed = fisher_less_by_hand(k_now, n_now, k_base, n_base)
    extreme = [
        (x, y)
        for x in range(n_now + 1)
        for y in range(n_base + 1)
        if fisher_less_by_hand(x, n_now, y, n_base) <= observed * (1 + 1e-12)
    ]

    def tail(rate):
        return sum(
            comb(n_now, x)
            * rate**x
            * (1 - rate) ** (n_now - x)
            * comb(n_base, y)
            * rate**y
            * (1 - rate) ** (n_base - y)
            for x, y in extreme
        )

    return max(tail(i / grid) for i in range(grid + 1))


@pytest.mark.parametrize(
    ("k_now", "n_now", "k_base", "n_base"),
    [(3, 10, 8, 10), (0, 4, 4, 4), (5, 12, 11, 12), (12, 30, 20, 20)],
)
def test_boschloo_drop_pvalue_matches_its_definition(k_now, n_now, k_base, n_base):
    """The gate's default test, computed by hand, trial counts equal or not (a run in stages stops
    where its verdict is settled): 3 of 10 against 8 of 10 is 0.0207."""
    expected = boschloo_less_by_hand(k_now, n_now, k_base, n_base)
    assert drop_pvalue(k_now, n_now, k_base, n_base) == pytest.approx(expected, rel=1e-5)
    # A rise is the drop of the failures.
    assert rise_pvalue(k_base, n_base, k_now, n_now) == pytest.approx(expected, rel=1e-5)


record = record_of


def baseline_of(tmp_path, records):
    path = tmp_path / "baseline.json"
    save_baseline(path, records, {"torch": "x"})
    return load_baseline(path)


def test_compare_sorts_cases_into_statuses(tmp_path):
    base = baseline_of(
        tmp_path,
        [
            record("rnn", 5, 27),
            record("rnn", 20, 20),
            record("lstm", 5, 5),
            record("gru", 5, 28, config_hash="old"),
        ],
    )
    now = [
        record("rnn", 5, 12),
        record("rnn", 20, 19),
        record("lstm", 5, 26),
        record("gru", 5, 28),
        record("gru", 50, 3),
    ]
    statuses = {(c.cell, c.length): c.status for c in compare(now, base, 0.05)}
    assert statuses == {
        ("rnn", 5): REGRESSED,
        ("rnn", 20): UNCHANGED,
        ("lstm", 5): IMPROVED,
        ("gru", 5): CHANGED_CONFIG,
        ("gru", 50): NOT_IN_BASELINE,
    }


def test_holm_can_be_turned_off(tmp_path):
    # Four cases with the same borderline drop: significant alone, not after Holm.
    base = baseline_of(tmp_path, [record("rnn", n, 24) for n in (1, 2, 3, 4)])
    now = [record("rnn", n, 17) for n in (1, 2, 3, 4)]
    p = drop_pvalue(17, 30, 24, 30)
    assert 0.0125 < p <= 0.05
    assert {c.status for c in compare(now, base, 0.05)} == {UNCHANGED}
    unadjusted = compare(now, base, 0.05, use_holm=False)
    assert {c.status for c in unadjusted} == {REGRESSED}
    # Without Holm's correction nothing is adjusted, and the message says no adjusted p-value.
    text = unadjusted[0].describe(base)
    assert text.endswith(f"p(drop) = {p:.3g}") and "Holm" not in text


def test_a_p_value_equal_to_alpha_is_significant(tmp_path):
    """The gate flags at p <= alpha, a drop and a rise alike (at alpha equal to the p-value here)."""
    base = baseline_of(tmp_path, [record("rnn", 5, 24), record("rnn", 6, 17)])
    now = [record("rnn", 5, 17), record("rnn", 6, 24)]
    p = drop_pvalue(17, 30, 24, 30)
    assert rise_pvalue(24, 30, 17, 30) == p
    assert [c.status for c in compare(now, base, p, use_holm=False)] == [REGRESSED, IMPROVED]
    assert [c.status for c in compare(now, base, p * 0.999, use_holm=False)] == [UNCHANGED, UNCHANGED]


def test_holm_counts_only_the_cases_compared(tmp_path):
    """A case not in the baseline, or whose configuration changed, has no p-value: Holm's correction
    runs over the comparable cases alone, so one borderline drop beside them is judged at alpha."""
    base = baseline_of(tmp_path, [record("rnn", 5, 24), record("rnn", 20, 24, config_hash="old")])
    now = [record("rnn", 5, 17), record("rnn", 20, 17), record("rnn", 50, 17)]
    assert 0.025 < drop_pvalue(17, 30, 24, 30) <= 0.05
    comparisons = {c.length: c for c in compare(now, base, 0.05)}
    assert {n: c.status for n, c in comparisons.items()} == {
        5: REGRESSED,
        20: CHANGED_CONFIG,
        50: NOT_IN_BASELINE,
    }
    assert comparisons[5].p_adjusted == comparisons[5].p_drop


def test_a_missing_baseline_says_how_to_make_one(tmp_path):
    with pytest.raises(BaselineError, match=r"does not exist; create it .* --rnn-save-baseline="):
        load_baseline(tmp_path / "nope.json")


def test_a_file_that_is_not_a_baseline_is_refused(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"schema_version": 1, "cases": []}))
    with pytest.raises(BaselineError, match="is not a pytest-rnnmemory baseline"):
        load_baseline(path)
    path.write_text("{not json")
    with pytest.raises(BaselineError, match="cannot be read"):
        load_baseline(path)


def test_a_report_given_as_the_baseline_is_named_as_a_report(tmp_path):
    path = tmp_path / "latching.json"
    path.write_text(json.dumps({"schema_version": 2, "suite": "latching", "cases": []}))
    with pytest.raises(
        BaselineError, match=r"latching.json is a suite's report, not a baseline: .*--rnn-save-baseline"
    ):
        load_baseline(path)


def test_saving_keeps_the_entries_of_cases_not_run(tmp_path):
    path = tmp_path / "b.json"
    save_baseline(path, [record("rnn", 5, 27), record("rnn", 20, 20)], {})
    save_baseline(path, [record("rnn", 5, 25)], {})
    entries = load_baseline(path).entries
    assert entries[("s", "rnn", 5)].k == 25
    assert entries[("s", "rnn", 20)].k == 20


def test_claims_say_what_they_expect():
    claim = Claim(learns_up_to=20, fails_from=100)
    assert [claim.expects(n) for n in (5, 20, 50, 100, 200)] == ["learns", "learns", None, "fails", "fails"]
    assert Claim(fails_from=10).expects(5) is None


# -- calibration, by simulation (no training) ----------------------------------------------------

RUNS = 4000
RNG_SEED = 20261123


def binomial_draws(n, p, size, rng):
    return rng.binomial(n, p, size=size)


def mc_tolerance(rate, runs):
    """Four standard errors of a simulated rate: a correct bound fails this by chance ~1 in 30,000."""
    return 4 * np.sqrt(rate * (1 - rate) / runs)


@pytest.mark.parametrize("n", [10, 30, 50])
@pytest.mark.parametrize("p0", [0.5, 0.2])
def test_a_cell_at_p0_is_judged_learns_in_at_most_alpha_of_runs(n, p0):
    rng = np.random.default_rng(RNG_SEED)
    ks = binomial_draws(n, p0, RUNS, rng)
    verdicts = {k: decide(int(k), n, p0, 0.05).verdict for k in np.unique(ks)}
    rate = np.mean([verdicts[k] == LEARNS for k in ks])
    assert rate <= 0.05 + mc_tolerance(0.05, RUNS)


@pytest.mark.parametrize("test", ["boschloo", "fisher"])
@pytest.mark.parametrize("p", [0.3, 0.6, 0.9])
def test_an_unchanged_cell_is_flagged_in_at_most_alpha_of_runs(p, test):
    """Per case: baseline and new run drawn from the same success rate."""
    rng = np.random.default_rng(RNG_SEED)
    n = 30
    k_base, k_now = binomial_draws(n, p, RUNS, rng), binomial_draws(n, p, RUNS, rng)
    flagged = np.mean(
        [drop_pvalue(int(a), n, int(b), n, test) <= 0.05 for a, b in zip(k_now, k_base, strict=True)]
    )
    assert flagged <= 0.05 + mc_tolerance(0.05, RUNS)


def test_an_unchanged_suite_fails_the_gate_in_at_most_alpha_of_runs_with_holm():
    """Per suite of six cases at different rates: Holm keeps the family-wise rate at alpha."""
    rng = np.random.default_rng(RNG_SEED)
    n, rates, runs = 30, [0.95, 0.9, 0.7, 0.5, 0.2, 0.05], 2000
    failures_holm = failures_raw = 0
    for _ in range(runs):
        k_base = [int(binomial_draws(n, p, 1, rng)[0]) for p in rates]
        k_now = [int(binomial_draws(n, p, 1, rng)[0]) for p in rates]
        pvalues = [drop_pvalue(a, n, b, n) for a, b in zip(k_now, k_base, strict=True)]
        failures_holm += min(holm(pvalues)) <= 0.05
        failures_raw += min(pvalues) <= 0.05
    assert failures_holm / runs <= 0.05 + mc_tolerance(0.05, runs)
    # Without a correction the suite would fail more often: the reason Holm is on by default.
    assert failures_raw > failures_holm


def simulated_stopped_run(n, stage, rate, rng):
    """One run of ``n`` trials in stages, stopped where the verdict is settled: ``(k, m)``."""
    k = m = 0
    while m < n:
        step = min(stage, n - m)
        k, m = k + int(rng.binomial(step, rate)), m + step
        if settled(k, m, n) is not None:
            break
    return k, m


def test_counts_trained_in_stages_trip_the_gate_more_often_than_full_counts():
    """The gate compares counts, and curtailment stops a run where its verdict is settled: the counts
    of an unchanged cell then differ more, beyond alpha (the exact rate the README quotes)."""
    rng = np.random.default_rng(RNG_SEED)
    n, stage, rate = 30, 5, 0.7
    # The sums against a simulation, with Fisher's test (Boschloo's is slow to compute this often).
    base = [simulated_stopped_run(n, stage, rate, rng) for _ in range(RUNS)]
    now = [simulated_stopped_run(n, stage, rate, rng) for _ in range(RUNS)]
    simulated = np.mean([drop_pvalue(*a, *b, "fisher") <= 0.05 for a, b in zip(now, base, strict=True)])
    exact = staged_flag_rate(n, stage, rate, test="fisher")
    assert abs(simulated - exact) <= mc_tolerance(exact, RUNS)
    # The gate's own test: beyond alpha, where full counts stay within it.
    assert staged_flag_rate(n, stage, rate) == pytest.approx(0.0556, abs=5e-5)
    assert flag_rate(n, rate, rate) <= 0.05
    # Without a stage that stops early, the counts are full and the rate is the gate's own.
    assert staged_flag_rate(n, n, rate) == pytest.approx(flag_rate(n, rate, rate), abs=1e-5)


@pytest.mark.parametrize(
    ("fresh", "overall", "second"),
    [(True, 0.0855, 0.0477), (False, 0.0890, 0.0524)],
    ids=["fresh", "topped-up"],
)
def test_a_second_look_at_an_inconclusive_case_is_a_second_chance_to_say_learns(fresh, overall, second):
    """A cell at p0 = 0.5: a second look at the count the failure message suggests, when the first
    was inconclusive. Over every run the two looks say learns far beyond alpha, either way; the
    second looks alone stay within alpha with fresh trials (an exact test on new data), and not
    when the same trials are topped up (the count already looked at is in the new one)."""
    rng = np.random.default_rng(RNG_SEED)
    n, runs = 30, 20000
    suggested = {k: trials_to_settle(k, n) for k in range(n + 1) if verdict_of(k, n) == INCONCLUSIVE}
    learned = looked = learned_again = 0
    for _ in range(runs):
        k = int(rng.binomial(n, 0.5))
        verdict, more = verdict_of(k, n), suggested.get(k)
        if more is not None:
            count = int(rng.binomial(more, 0.5)) if fresh else k + int(rng.binomial(more - n, 0.5))
            verdict = verdict_of(count, more)
            looked, learned_again = looked + 1, learned_again + (verdict == LEARNS)
        learned += verdict == LEARNS
    exact = second_look_learns(n, 0.5, fresh=fresh)
    assert abs(learned / runs - exact[0]) <= mc_tolerance(exact[0], runs)
    assert abs(learned_again / looked - exact[1]) <= mc_tolerance(exact[1], looked)
    assert exact == (pytest.approx(overall, abs=5e-5), pytest.approx(second, abs=5e-5))
    assert exact[0] > 0.08 > 0.05 > verdict_rate(n, 0.5, LEARNS)


def test_a_real_drop_is_caught_in_most_runs():
    """0.9 -> 0.5 with 30 trials each: the power of the one-sided Boschloo test at alpha 0.05."""
    rng = np.random.default_rng(RNG_SEED)
    n = 30
    k_base, k_now = binomial_draws(n, 0.9, RUNS, rng), binomial_draws(n, 0.5, RUNS, rng)
    power = np.mean([drop_pvalue(int(a), n, int(b), n) <= 0.05 for a, b in zip(k_now, k_base, strict=True)])
    assert power >= 0.9


def test_the_calibration_tables_exact_sums_match_hand_values():
    from pytest_rnnmemory.calibration import flag_rate, verdict_rate

    # P(X >= 20 | n=30, p=0.5): learns needs k >= 20.
    by_hand = sum(comb(30, k) for k in range(20, 31)) / 2**30
    assert verdict_rate(30, 0.5, LEARNS) == pytest.approx(by_hand, rel=1e-9)
    # An unchanged cell is flagged in at most alpha of runs; a big drop in most.
    assert flag_rate(30, 0.5, 0.5, test="fisher") <= 0.05
    assert flag_rate(30, 0.9, 0.5, test="fisher") > 0.9


@pytest.mark.parametrize(
    ("cases", "message"),
    [
        ([{}], "cases[0].suite: missing"),
        (5, "cases: expected a list, got 5"),
        (
            [{"suite": "s", "cell": "rnn", "length": "5", "config_hash": "h", "k": 3, "n": 4}],
            "cases[0].length",
        ),
        (
            [{"suite": "s", "cell": "rnn", "length": 5, "config_hash": "h", "k": 9, "n": 4}],
            "cases[0].k: 9 successes of n = 4 trials",
        ),
        ("twice", "cases[1]: a second entry for rnn at length 5 of s"),
    ],
)
def test_a_baseline_that_is_not_what_a_run_writes_is_one_line(tmp_path, cases, message):
    path = tmp_path / "b.json"
    save_baseline(path, [record("rnn", 5, 27)], {})
    data = json.loads(path.read_text())
    data["cases"] = data["cases"] * 2 if cases == "twice" else cases
    path.write_text(json.dumps(data))
    with pytest.raises(BaselineError) as info:
        load_baseline(path)
    text = str(info.value)
    assert "\n" not in text
    assert message in text and "save it again with --rnn-save-baseline" in text


def test_a_folder_given_as_the_baseline_is_named_as_a_folder(tmp_path):
    with pytest.raises(BaselineError, match="is a folder; give the baseline's JSON file"):
        load_baseline(tmp_path)


def test_a_recipe_changed_is_one_two_searches_chose_not_one_a_grid_of_one_names_alone(tmp_path):
    """Equal settings' hashes with a recipe on one side alone are a grid of one against its values
    written in [train]: the same training, no other recipe."""
    import dataclasses

    base = baseline_of(
        tmp_path, [dataclasses.replace(record("rnn", 5, 20), recipe={"train.lr": 0.1}), record("rnn", 6, 20)]
    )
    now = [record("rnn", 5, 20), dataclasses.replace(record("rnn", 6, 20), recipe={"train.lr": 0.1})]
    assert [c.recipes for c in compare(now, base, 0.05)] == [None, None]
    now = [dataclasses.replace(record("rnn", 5, 20), recipe={"train.lr": 0.05})]
    assert [c.recipes for c in compare(now, base, 0.05)] == [("train.lr=0.1", "train.lr=0.05")]
