"""The binomial verdict, checked against tail probabilities computed by hand with math.comb."""

import itertools
import math
from fractions import Fraction

import pytest

from pytest_rnnmemory.stats import (
    FAILS,
    INCONCLUSIVE,
    LEARNS,
    MAX_SUGGESTED_TRIALS,
    VERDICTS,
    decide,
    interval_label,
    trials_to_settle,
    verdict_of,
)


def pmf(i, n, p):
    if n <= 1000:
        return math.comb(n, i) * p**i * (1 - p) ** (n - i)
    # Large n (trials_to_settle goes up to 10,000): the same product in logs, to avoid overflow.
    log = math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
    return math.exp(log + i * math.log(p) + (n - i) * math.log1p(-p))


def upper_tail(k, n, p):
    """P(X >= k) for X ~ Binomial(n, p)."""
    return sum(pmf(i, n, p) for i in range(k, n + 1))


def lower_tail(k, n, p):
    """P(X <= k) for X ~ Binomial(n, p)."""
    return sum(pmf(i, n, p) for i in range(k + 1))


def verdict_by_hand(k, n, p0, alpha):
    if upper_tail(k, n, p0) <= alpha:
        return LEARNS
    if lower_tail(k, n, p0) <= alpha:
        return FAILS
    return INCONCLUSIVE


# --- decide: p-values and verdicts ---------------------------------------------------------------


def test_hand_computed_tails_match_known_values():
    """Anchor the helpers themselves: exact fractions for fair coins."""
    assert Fraction(sum(math.comb(30, i) for i in range(20, 31)), 2**30) == Fraction(53009102, 2**30)
    assert upper_tail(20, 30, 0.5) == pytest.approx(0.04936857335, rel=1e-9)
    assert upper_tail(9, 10, 0.5) == pytest.approx(11 / 1024, rel=1e-12)
    assert upper_tail(8, 10, 0.5) == pytest.approx(56 / 1024, rel=1e-12)


@pytest.mark.parametrize(
    ("k", "n", "verdict"),
    [
        (20, 30, LEARNS),  # P(X >= 20) = 0.0494
        (19, 30, INCONCLUSIVE),  # P(X >= 19) = 0.1002
        (10, 30, FAILS),  # P(X <= 10) = 0.0494 by symmetry
        (11, 30, INCONCLUSIVE),
        (15, 30, INCONCLUSIVE),
        (30, 30, LEARNS),
        (0, 30, FAILS),
        (9, 10, LEARNS),  # 11/1024
        (8, 10, INCONCLUSIVE),  # 56/1024 = 0.0547
        (1, 10, FAILS),  # P(X <= 1) = 11/1024
        (2, 10, INCONCLUSIVE),
        (1, 1, INCONCLUSIVE),  # P = 0.5
        (5, 5, LEARNS),  # 1/32 = 0.031
        (4, 4, INCONCLUSIVE),  # 1/16 = 0.0625
        (2, 2, INCONCLUSIVE),  # 1/4
        (0, 2, INCONCLUSIVE),
        (59, 100, LEARNS),  # P(X >= 59) = 0.0443
        (58, 100, INCONCLUSIVE),  # P(X >= 58) = 0.0666
        (41, 100, FAILS),  # P(X <= 41) = 0.0443 by symmetry
        (42, 100, INCONCLUSIVE),
    ],
)
def test_fair_coin_verdicts(k, n, verdict):
    d = decide(k, n, p0=0.5, alpha=0.05)
    assert d.verdict == verdict
    assert d.verdict == verdict_by_hand(k, n, 0.5, 0.05)


@pytest.mark.parametrize("n", [1, 2, 5, 10, 30, 57, 100])
def test_p_values_against_hand_computed_tails(n):
    for p0 in (0.5, 0.2, 0.75):
        for k in range(n + 1):
            d = decide(k, n, p0=p0)
            assert d.p_greater == pytest.approx(upper_tail(k, n, p0), rel=1e-9, abs=1e-15)
            assert d.p_less == pytest.approx(lower_tail(k, n, p0), rel=1e-9, abs=1e-15)
            assert d.verdict == verdict_by_hand(k, n, p0, 0.05)


@pytest.mark.parametrize(
    ("k", "verdict", "tail"),
    [
        # n = 20, p0 = 0.2: P(X >= 8) = 0.0321, P(X >= 7) = 0.0867,
        # P(X <= 0) = 0.8^20 = 0.0115, P(X <= 1) = 0.0692.
        (8, LEARNS, 0.03214266308),
        (7, INCONCLUSIVE, 0.08669251356),
        (0, FAILS, 0.01152921504),
        (1, INCONCLUSIVE, 0.06917529027),
    ],
)
def test_non_half_p0(k, verdict, tail):
    d = decide(k, 20, p0=0.2)
    assert d.verdict == verdict
    p = d.p_greater if k >= 4 else d.p_less
    assert p == pytest.approx(tail, rel=1e-9)


def test_alpha_moves_the_boundary():
    # P(X >= 19 | 30, 0.5) = 0.1002: learns at alpha 0.11, not at 0.10.
    assert decide(19, 30, alpha=0.11).verdict == LEARNS
    assert decide(19, 30, alpha=0.10).verdict == INCONCLUSIVE
    # P(X >= 20) = 0.0494: not at alpha 0.049.
    assert decide(20, 30, alpha=0.049).verdict == INCONCLUSIVE


@pytest.mark.parametrize("n", [4, 5])
def test_a_p_value_equal_to_alpha_decides(n):
    """The README's rule is p-value <= alpha: at alpha = 1/2^n, exactly the chance of n of n (and of
    0 of n) at p0 = 0.5, both are exact in floating point, and the tests decide at the boundary."""
    alpha = 0.5**n
    assert (decide(n, n, 0.5, alpha).p_greater, decide(0, n, 0.5, alpha).p_less) == (alpha, alpha)
    for verdict in (decide, verdict_of):
        got = [verdict(k, n, 0.5, alpha) for k in (0, 1, n - 1, n)]
        assert [getattr(v, "verdict", v) for v in got] == [FAILS, INCONCLUSIVE, INCONCLUSIVE, LEARNS]


def test_decision_fields():
    d = decide(20, 30, p0=0.5, alpha=0.05)
    assert (d.k, d.n, d.p0, d.alpha) == (20, 30, 0.5, 0.05)
    assert d.rate == pytest.approx(2 / 3)
    assert d.verdict in VERDICTS
    as_dict = d.to_dict()
    assert as_dict["verdict"] == LEARNS
    assert as_dict["k"] == 20
    assert set(as_dict) >= {"p_greater", "p_less", "ci_low", "ci_high"}


# --- Clopper-Pearson interval --------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 10, 30, 100])
def test_interval_at_zero_successes(n):
    d = decide(0, n)
    assert d.ci_low == 0.0
    assert d.ci_high == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-9)
    # The bound is where P(X <= 0) = (1 - p)^n reaches alpha = 0.05.
    assert (1 - d.ci_high) ** n == pytest.approx(0.05, rel=1e-6)


@pytest.mark.parametrize("n", [1, 5, 10, 30, 100])
def test_interval_at_all_successes(n):
    d = decide(n, n)
    assert d.ci_high == 1.0
    assert d.ci_low == pytest.approx(0.05 ** (1 / n), rel=1e-9)


@pytest.mark.parametrize(("k", "n"), [(1, 10), (7, 30), (15, 30), (20, 30), (83, 100)])
def test_interval_mid_values_are_clopper_pearson_at_one_minus_twice_alpha(k, n):
    scipy_stats = pytest.importorskip("scipy.stats")
    d = decide(k, n)
    assert d.ci_low == pytest.approx(scipy_stats.beta.ppf(0.05, k, n - k + 1), rel=1e-7)
    assert d.ci_high == pytest.approx(scipy_stats.beta.ppf(0.95, k + 1, n - k), rel=1e-7)
    # Definition: at the bounds the one-sided tails are alpha.
    assert upper_tail(k, n, d.ci_low) == pytest.approx(0.05, rel=1e-6)
    assert lower_tail(k, n, d.ci_high) == pytest.approx(0.05, rel=1e-6)
    assert d.ci_low < k / n < d.ci_high
    assert interval_label(d.alpha) == "90%"


@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.2])
@pytest.mark.parametrize("p0", [0.5, 0.2, 0.9])
def test_the_interval_lies_above_p0_exactly_when_the_cell_learns_and_below_exactly_when_it_fails(p0, alpha):
    """The interval a report prints beside a mark says what the mark says: 20 of 30 learns at p0 0.5,
    and its 95% interval [0.47, 0.83] would contain 0.5."""
    for n in (1, 10, 30):
        for k in range(n + 1):
            d = decide(k, n, p0, alpha)
            assert (d.verdict == LEARNS) == (d.ci_low >= p0), (k, n)
            assert (d.verdict == FAILS) == (d.ci_high <= p0), (k, n)
    assert decide(20, 30).ci_low > 0.5


@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.2])
@pytest.mark.parametrize("p0", [0.5, 0.2, 0.9])
def test_the_printed_interval_says_what_the_mark_says(p0, alpha):
    """Rounded to two decimals, 20 of 30's interval printed as [0.50, 0.81] beside a learns: an end
    off p0 is printed off it."""
    for n in (1, 10, 30, 100):
        for k in range(n + 1):
            d = decide(k, n, p0, alpha)
            low, high = (float(end) for end in d.interval_text.strip("[]").split(", "))
            assert (d.verdict == LEARNS) == (low >= p0), (k, n, d.interval_text)
            assert (d.verdict == FAILS) == (high <= p0), (k, n, d.interval_text)
    assert (decide(20, 30).interval_text, decide(25, 30).interval_text) == ("[0.501, 0.807]", "[0.68, 0.93]")


@pytest.mark.parametrize(
    ("k", "n", "p0", "verdict"),
    [(915, 1760, 0.5, LEARNS), (845, 1760, 0.5, FAILS), (1003, 1096, 0.9, LEARNS), (356, 1926, 0.2, FAILS)],
)
def test_an_end_within_a_millionth_of_p0_is_printed_off_p0(k, n, p0, verdict):
    """Counts just past the boundary of a large run: 915 of 1760 learns, its interval's lower end
    0.5 + 2.6e-8, which six decimals printed as 0.500000."""
    d = decide(k, n, p0)
    end = d.ci_low if verdict == LEARNS else d.ci_high
    assert d.verdict == verdict and 0 < abs(end - p0) < 5e-7
    low, high = (float(e) for e in d.interval_text.strip("[]").split(", "))
    assert low > p0 if verdict == LEARNS else high < p0, d.interval_text
    assert decide(915, 1760).interval_text == "[0.50000003, 0.53972356]"


def test_the_interval_depends_on_alpha_not_on_p0():
    assert decide(12, 30, p0=0.5).ci_low == decide(12, 30, p0=0.2).ci_low
    assert decide(12, 30, alpha=0.01).ci_low < decide(12, 30, alpha=0.05).ci_low


# --- Invalid input -------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "n"), [(-1, 10), (11, 10), (0, 0), (1, 0), (0, -1)])
def test_invalid_counts_raise(k, n):
    with pytest.raises(ValueError, match="0 <= k <= n"):
        decide(k, n)


# --- trials_to_settle ----------------------------------------------------------------------------


def settles_by_hand(m, k, n, p0, alpha=0.05):
    return verdict_by_hand(round(m * k / n), m, p0, alpha) != INCONCLUSIVE


ALL_CASES = [
    (17, 30, 0.5),
    (19, 30, 0.5),
    (12, 30, 0.5),
    (7, 10, 0.5),
    (3, 10, 0.5),
    (8, 10, 0.5),
    (2, 10, 0.5),
    (5, 20, 0.2),
    (1, 20, 0.2),
    (9, 20, 0.2),
    (9, 13, 0.5),
    (24, 30, 0.5),
    (0, 10, 0.5),
    (10, 10, 0.5),
]


@pytest.mark.parametrize(("k", "n", "p0"), ALL_CASES)
def test_trials_to_settle_settles_and_one_less_does_not(k, n, p0):
    m = trials_to_settle(k, n, p0)
    assert m is not None
    assert m >= n
    assert settles_by_hand(m, k, n, p0)
    assert decide(round(m * k / n), m, p0).verdict != INCONCLUSIVE
    assert m == n or not settles_by_hand(m - 1, k, n, p0)


@pytest.mark.parametrize(
    ("k", "n", "p0"),
    [(19, 30, 0.5), (8, 10, 0.5), (2, 10, 0.5), (1, 20, 0.2), (9, 20, 0.2), (0, 10, 0.5), (10, 10, 0.5)],
)
def test_trials_to_settle_is_the_smallest_settling_count(k, n, p0):
    m = trials_to_settle(k, n, p0)
    # Minimal: no count from n up to m - 1 settles (same rounding rule).
    assert [mm for mm in range(n, m) if settles_by_hand(mm, k, n, p0)] == []
    assert settles_by_hand(m, k, n, p0)


@pytest.mark.parametrize(("k", "n"), [(24, 30), (25, 30), (6, 30)])
def test_trials_to_settle_already_settled_returns_n(k, n):
    assert decide(k, n).verdict != INCONCLUSIVE
    assert trials_to_settle(k, n) == n


@pytest.mark.parametrize(
    ("k", "n", "p0"),
    [(17, 30, 0.5), (7, 10, 0.5), (12, 30, 0.5), (5, 20, 0.2), (9, 13, 0.5), (20, 30, 0.5), (10, 30, 0.5)],
)
def test_trials_to_settle_minimal_across_rounding_dips(k, n, p0):
    """Settling is not monotone in m under rounding: 7/10 settles at 18 trials (round(12.6) = 13,
    P(X >= 13) = 0.048) but not at 19 to 22; a bisection answers 23."""
    m = trials_to_settle(k, n, p0)
    first = next(mm for mm in range(n, MAX_SUGGESTED_TRIALS + 1) if settles_by_hand(mm, k, n, p0))
    assert m == first


@pytest.mark.parametrize(("k", "n", "p0"), [(15, 30, 0.5), (5, 10, 0.5), (2, 10, 0.2), (6, 20, 0.3)])
def test_trials_to_settle_none_at_p0(k, n, p0):
    assert k / n == p0
    assert trials_to_settle(k, n, p0) is None


def test_trials_to_settle_none_when_too_close_for_the_cap():
    # A rate 0.001 above p0 needs about (1.645 / 0.001)^2 / 4 = 676,000 trials.
    assert trials_to_settle(501, 1000) is None
    assert not settles_by_hand(MAX_SUGGESTED_TRIALS, 501, 1000, 0.5)


def test_trials_to_settle_suggests_up_to_the_cap_itself():
    """'Any count up to MAX_SUGGESTED_TRIALS' includes it: a case of that many trials already settled
    is told so, and one of more trials gets no suggestion."""
    n, k = MAX_SUGGESTED_TRIALS, 6 * MAX_SUGGESTED_TRIALS // 10
    p_greater = Fraction(sum(math.comb(n, x) for x in range(k, n + 1)), 2**n)
    assert p_greater <= Fraction(1, 20)
    assert trials_to_settle(k, n) == n
    assert trials_to_settle(k + 1, n + 1) is None


@pytest.mark.parametrize(("k", "n", "settles_at"), [(3, 3, 4), (0, 3, 4)])
def test_trials_to_settle_counts_a_p_value_equal_to_alpha_as_settled(k, n, settles_at):
    """The suggestion is the count at which decide gives a verdict, and decide's rule is p <= alpha:
    at alpha = 1/16, 4 of 4 (and 0 of 4) has p = 1/16 exactly, 3 of 3 only 1/8."""
    alpha = 0.5**4
    assert Fraction(math.comb(4, 4), 2**4) == Fraction(1, 16) == Fraction(alpha)
    assert Fraction(math.comb(3, 3), 2**3) > Fraction(alpha)
    assert trials_to_settle(k, n, 0.5, alpha) == settles_at


def test_trials_to_settle_grows_as_the_rate_nears_p0():
    far = trials_to_settle(24, 30)
    near = trials_to_settle(18, 30)
    nearer = trials_to_settle(17, 30)
    assert far is not None
    assert near is not None
    assert nearer is not None
    assert far < near < nearer


def _settles(m, rate, p0=0.5, alpha=0.05):
    """The chance that m trials at this true rate reach a verdict: exact binomial sums."""
    null = [pmf(i, m, p0) for i in range(m + 1)]
    at_least = list(itertools.accumulate(reversed(null)))[::-1]
    at_most = list(itertools.accumulate(null))
    return sum(pmf(x, m, rate) for x in range(m + 1) if at_least[x] <= alpha or at_most[x] <= alpha)


def test_the_suggested_count_settles_a_case_at_its_observed_rate_about_half_the_time():
    """What the README says of the failure message's count: it makes the observed rate just
    significant, so at that true rate it settles 50 to 52% of the time; four in five take twice as many."""
    chances = {k: _settles(trials_to_settle(k, 30), k / 30) for k in range(11, 20) if k != 15}
    assert all(0.50 <= c <= 0.52 for c in chances.values()), chances
    assert trials_to_settle(19, 30) == 42
    assert _settles(88, 19 / 30) < 0.8 <= _settles(89, 19 / 30)


# -- curtailment ----------------------------------------------------------------------------------


def test_settled_only_when_no_remaining_outcome_changes_the_verdict():
    from pytest_rnnmemory.stats import settled

    assert settled(20, 20, 30) == "learns"  # 20 of 30 already: learns whatever follows
    assert settled(19, 20, 30) is None  # 19 + 0 more is inconclusive, 19 + 10 learns
    assert settled(0, 20, 30) == "fails"  # at most 10 of 30
    assert settled(1, 20, 30) is None
    assert settled(15, 30, 30) == "inconclusive"  # all trials run: whatever the verdict is


def test_curtailment_stops_only_where_the_verdict_is_settled_and_runs_the_last_stage_otherwise():
    """5 trials in stages of 4 at alpha 0.05: only 5 of 5 learns (1/32) and 0 of 5 fails, so after
    4 trials 1 to 3 successes are settled inconclusive and stop, while 0 and 4 must train the fifth
    trial; at a true rate of 1/2 that is 4 trials with chance 14/16 and 5 with 2/16."""
    from pytest_rnnmemory.stats import expected_trials, stopped_counts

    by_hand = {
        (1, 4): Fraction(4, 16),
        (2, 4): Fraction(6, 16),
        (3, 4): Fraction(4, 16),
        (0, 5): Fraction(1, 32),
        (1, 5): Fraction(1, 32),
        (4, 5): Fraction(1, 32),
        (5, 5): Fraction(1, 32),
    }
    got = stopped_counts(5, 4, 0.5)
    assert got == pytest.approx({key: float(p) for key, p in by_hand.items()})
    assert expected_trials(5, 4, 0.5) == pytest.approx(float(Fraction(66, 16)))


@pytest.mark.parametrize("rate", [0.05, 0.5, 0.95])
def test_curtailment_keeps_every_verdict_and_saves_trials_as_computed(rate):
    """Simulated trial sequences: the curtailed verdict is the full one, and the mean use matches."""
    import numpy as np

    from pytest_rnnmemory.stats import expected_trials, settled, verdict_of

    rng = np.random.default_rng(7)
    n, stage, runs = 30, 5, 2000
    used = []
    for _ in range(runs):
        outcomes = rng.random(n) < rate
        full = verdict_of(int(outcomes.sum()), n)
        m = stage
        while settled(int(outcomes[:m].sum()), m, n) is None:
            m += stage
        k = int(outcomes[:m].sum())
        assert settled(k, m, n) == full
        assert verdict_of(k, m) == full  # the record's own counts give the same verdict
        used.append(m)
    expected = expected_trials(n, stage, rate)
    assert np.mean(used) == pytest.approx(expected, abs=4 * np.std(used) / np.sqrt(runs) + 1e-9)
    if rate != 0.5:
        assert expected < 25  # about a quarter of the trials saved at clear-cut rates


@pytest.mark.parametrize("n", [10, 30])
def test_the_fast_verdict_agrees_with_decide(n):
    from pytest_rnnmemory.stats import verdict_of

    for p0 in (0.2, 0.5):
        assert [verdict_of(k, n, p0) for k in range(n + 1)] == [
            decide(k, n, p0).verdict for k in range(n + 1)
        ]


# --- Sequences to learn: the median of censored trials and its interval ------------------------------

from pytest_rnnmemory.stats import sequences_to_learn  # noqa: E402


def test_the_median_is_the_middle_order_statistic_and_the_interval_ranks_cover_95_percent():
    values = [100 * (i + 1) for i in range(30)]
    got = sequences_to_learn(values, 10_000)
    # 30 trials: the median is the 15th value; ranks 10 and 21 cover it with
    # P(10 <= B <= 20) = 0.957 for B ~ Binomial(30, 1/2), ranks 11 and 20 with only 0.901.
    coverage = sum(math.comb(30, b) for b in range(10, 21)) / 2**30
    narrower = sum(math.comb(30, b) for b in range(11, 20)) / 2**30
    assert coverage >= 0.95 > narrower
    assert (got.median, got.low, got.high) == (1500, 1000, 2100)
    assert (got.learned, got.trials, got.budget) == (30, 30, 10_000)


def test_trials_that_never_learned_lie_beyond_the_budget():
    got = sequences_to_learn([300, 100, None, 200, None, None, None], 5000)
    assert got.median is None  # 3 of 7 learned: the median is more than the budget
    assert got.text().startswith("> 5,000 [")
    half = sequences_to_learn([300, 100, None, 200, None], 5000)
    assert half.median == 300 and half.high is None


def test_too_few_trials_cannot_bound_the_median():
    got = sequences_to_learn([10, 20, 30, 40, 50], 100)
    # P(1 <= B <= 4) = 30/32 < 0.95 for 5 trials: no order statistic bounds it.
    assert (got.low, got.high, got.bounded) == (0, None, False)
    # Not "[0, > 100]", which reads as fewer than half learned: all five did.
    assert got.text() == "30 (no 95% interval from 5 trials: 6 at least)"
    # Six: P(1 <= B <= 5) = 62/64 >= 0.95, the smallest and the largest bound it.
    six = sequences_to_learn([10, 20, 30, 40, 50, 60], 100)
    assert (six.low, six.high, six.bounded, six.text()) == (10, 60, True, "30 [10, 60]")
