"""From k successes in n trials to a verdict, with its p-values and interval."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum
from functools import lru_cache

import numpy as np
from scipy.special import bdtr, bdtrc, betaincinv, binom, ndtr, stdtrit

# The binomial tails and interval from scipy.special, the functions scipy.stats' binomtest and binom
# evaluate: importing scipy.stats takes most of a second, which every run would pay.


def upper_tail(k: int | np.ndarray, n: int | np.ndarray, p: float) -> float | np.ndarray:
    """P(X >= k) for X ~ Binomial(n, p): ``binomtest``'s one-sided p-value of "greater"."""
    k = np.asarray(k)
    return np.where(k <= 0, 1.0, bdtrc(np.maximum(k - 1, 0), n, p))[()]


def lower_tail(k: int | np.ndarray, n: int | np.ndarray, p: float) -> float | np.ndarray:
    """P(X <= k) for X ~ Binomial(n, p): ``binomtest``'s one-sided p-value of "less"."""
    k = np.asarray(k)
    return np.where(k < 0, 0.0, bdtr(np.maximum(k, 0), n, p))[()]


def pmf(k: int, n: int, p: float) -> float:
    """P(X = k) for X ~ Binomial(n, p)."""
    return float(binom(n, k) * p**k * (1 - p) ** (n - k))


def expanded_tail(n: int, confidence: float = 0.95) -> float:
    """The tail at which to read a percentile bootstrap of a mean of ``n`` values for an interval
    that covers at ``confidence``: Hesterberg's expanded percentile interval (2015).

    Resampled means spread as the values' spread over n, not n - 1, and the percentile interval
    reads them at the normal's quantile, not Student's t: at 10 values its 95% interval covers the
    mean 88 to 90% of the time. Reading it at Phi(-sqrt(n / (n - 1)) t_(n-1)) instead corrects both
    (tests/test_literature.py measures the coverage). One value gives the plain tail."""
    tail = (1 - confidence) / 2
    if n < 2:
        return tail
    return float(ndtr(-math.sqrt(n / (n - 1)) * stdtrit(n - 1, 1 - tail)))


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) two-sided interval of a binomial rate from k successes of n."""
    tail = (1 - confidence) / 2
    low = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, tail))
    high = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1 - tail))
    return low, high


class Verdict(str, Enum):
    """What the binomial tests say of a case: the cell ``learns`` the length, ``fails`` it, or can't tell."""

    LEARNS = "learns"
    FAILS = "fails"
    INCONCLUSIVE = "inconclusive"

    def __str__(self) -> str:
        return self.value


LEARNS, FAILS, INCONCLUSIVE = Verdict.LEARNS, Verdict.FAILS, Verdict.INCONCLUSIVE
#: How tables show a verdict.
MARKS = {LEARNS: "✓", FAILS: "✗", INCONCLUSIVE: "?"}
VERDICTS = tuple(Verdict)

#: The most trials :func:`trials_to_settle` will suggest.
MAX_SUGGESTED_TRIALS = 10_000


@dataclass(frozen=True)
class Decision:
    """The binomial verdict on one case."""

    k: int
    n: int
    p0: float
    alpha: float
    #: P(X >= k) under rate p0: small when the cell learns.
    p_greater: float
    #: P(X <= k) under rate p0: small when the cell fails.
    p_less: float
    #: Exact (Clopper-Pearson) interval of the success rate at level 1 - 2 alpha (:func:`interval`).
    ci_low: float
    ci_high: float
    verdict: Verdict

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else 0.0

    @property
    def interval_text(self) -> str:
        """The interval as ``[low, high]``, to two decimals, or to as many more as keep an end that
        lies off p0 from printing as p0: 20/30 is ``[0.501, 0.807]``, not ``[0.50, 0.81]`` beside a
        verdict that says the rate lies above 0.5, and 915/1760 ``[0.50000003, 0.53972356]``."""
        places = 2
        # No cap: an end within 10^-6 of p0 is rare but not absurd (915 of 1760 learns, its lower
        # end 0.5 + 2.6e-8), and two different floats differ in some decimal place.
        while any(
            end != self.p0 and round(end, places) == round(self.p0, places)
            for end in (self.ci_low, self.ci_high)
        ):
            places += 1
        return f"[{self.ci_low:.{places}f}, {self.ci_high:.{places}f}]"

    def to_dict(self) -> dict:
        """The decision's fields in their order, the verdict as its word."""
        return {**asdict(self), "verdict": self.verdict.value}


def interval(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """The exact interval that goes with :func:`decide`'s two one-sided tests at ``alpha``: the
    Clopper-Pearson interval at level ``1 - 2 alpha`` (90% at 0.05), whose ends are those tests
    inverted, so it lies above p0 exactly when the cell learns and below exactly when it fails. (The
    95% interval would contain p0 beside some ``learns``: 20 of 30 gives [0.47, 0.83].)"""
    return clopper_pearson(k, n, 1 - 2 * alpha)


def interval_label(alpha: float = 0.05) -> str:
    """The level of :func:`interval` as a report writes it: ``90%`` at alpha 0.05."""
    return f"{1 - 2 * alpha:.0%}"


def decide(k: int, n: int, p0: float = 0.5, alpha: float = 0.05) -> Decision:
    """``learns`` if the rate is significantly above ``p0``, ``fails`` if below, else ``inconclusive``.

    Both are one-sided exact binomial tests (those of ``scipy.stats.binomtest``) at
    level ``alpha``; as long as ``alpha < 0.5`` at most one of them can hold.
    """
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    p_greater, p_less = float(upper_tail(k, n, p0)), float(lower_tail(k, n, p0))
    low, high = interval(k, n, alpha)
    if p_greater <= alpha:
        verdict = LEARNS
    elif p_less <= alpha:
        verdict = FAILS
    else:
        verdict = INCONCLUSIVE
    return Decision(
        k=k,
        n=n,
        p0=p0,
        alpha=alpha,
        p_greater=p_greater,
        p_less=p_less,
        ci_low=low,
        ci_high=high,
        verdict=verdict,
    )


def trials_to_settle(k: int, n: int, p0: float = 0.5, alpha: float = 0.05) -> int | None:
    """How many trials would settle an inconclusive case if its rate ``k/n`` held.

    The smallest ``m >= n`` at which ``round(m * k / n)`` successes give a
    ``learns`` or ``fails`` verdict; ``None`` when the observed rate is too
    close to ``p0`` for any count up to :data:`MAX_SUGGESTED_TRIALS`. Every
    ``m`` is checked: rounding makes settling non-monotone in ``m``.
    """
    rate = k / n
    if rate == p0 or n > MAX_SUGGESTED_TRIALS:
        return None
    m = np.arange(n, MAX_SUGGESTED_TRIALS + 1)
    successes = np.round(m * rate)  # half to even, as Python's round
    # The same tails as binomtest's one-sided p-values: P(X >= k) and P(X <= k).
    p_greater = upper_tail(successes, m, p0)
    p_less = lower_tail(successes, m, p0)
    settles = np.flatnonzero((p_greater <= alpha) | (p_less <= alpha))
    return int(m[settles[0]]) if settles.size else None


def settled(k: int, m: int, n: int, p0: float = 0.5, alpha: float = 0.05) -> Verdict | None:
    """The verdict of ``n`` trials if ``k`` successes in the first ``m`` already fix it, else ``None``.

    The verdict is monotone in the final count, which lies in ``[k, k + n - m]``:
    when both ends give the same verdict, every outcome of the remaining trials does.
    A settled verdict is also the verdict of ``decide(k, m)``: fewer trials with the
    same count can only be more extreme.
    """
    low, high = verdict_of(k, n, p0, alpha), verdict_of(k + n - m, n, p0, alpha)
    return low if low == high else None


@lru_cache(maxsize=65536)
def verdict_of(k: int, n: int, p0: float = 0.5, alpha: float = 0.05) -> Verdict:
    """:func:`decide`'s verdict alone, from the same binomial tails, without the interval."""
    if upper_tail(k, n, p0) <= alpha:
        return LEARNS
    if lower_tail(k, n, p0) <= alpha:
        return FAILS
    return INCONCLUSIVE


def stopped_counts(
    n: int, stage: int, rate: float, p0: float = 0.5, alpha: float = 0.05
) -> dict[tuple[int, int], float]:
    """The distribution of ``(k, m)``, successes and trials trained, where curtailment in stages of
    ``stage`` stops at a true success ``rate`` (``m == n``: it never stopped early)."""
    # Distribution of the successes so far among the runs that have not stopped.
    alive = {0: 1.0}
    stopped: dict[tuple[int, int], float] = {}
    m = 0
    while m < n:
        step = min(stage, n - m)
        grown: dict[int, float] = {}
        for k, p in alive.items():
            for extra in range(step + 1):
                grown[k + extra] = grown.get(k + extra, 0.0) + p * pmf(extra, step, rate)
        m += step
        alive = {}
        for k, p in grown.items():
            if m < n and settled(k, m, n, p0, alpha) is None:
                alive[k] = p
            else:
                stopped[k, m] = p
    return stopped


def expected_trials(n: int, stage: int, rate: float, p0: float = 0.5, alpha: float = 0.05) -> float:
    """Mean number of trials that curtailment in stages of ``stage`` uses at a true success ``rate``."""
    return float(sum(p * m for (_, m), p in stopped_counts(n, stage, rate, p0, alpha).items()))


@dataclass(frozen=True)
class SequencesToLearn:
    """How many training sequences a case's trials needed to learn: the median and its 95% interval.

    Trials that never learned are censored at the budget, all at the same point,
    so the Kaplan-Meier estimate is the empirical distribution and its median
    the ``ceil(n / 2)``-th smallest value; the interval is the distribution-free
    one between two order statistics (Conover), at least 95%. ``None`` in
    ``median`` or ``high`` means more than the budget. Under six trials no two order
    statistics cover the median with 95% (five give 30/32): ``low`` and ``high`` are then 0
    and ``None``, the whole range, and the interval is not :attr:`bounded`.
    """

    median: int | None
    low: int | None
    high: int | None
    learned: int
    trials: int
    budget: int

    @property
    def bounded(self) -> bool:
        """Whether its trials are enough for the interval to bound the median at all."""
        return _median_ranks(self.trials, SEQUENCES_CONFIDENCE)[0] >= 1

    def text(self) -> str:
        """``median [low, high]``, with ``> budget`` where fewer than half learned; where the
        trials are too few for an interval, the median alone and why."""

        def show(value: int | None) -> str:
            return f"> {self.budget:,}" if value is None else f"{value:,}"

        if not self.bounded:
            return f"{show(self.median)} (no 95% interval from {self.trials} trials: 6 at least)"
        return f"{show(self.median)} [{show(self.low)}, {show(self.high)}]"


#: The level of the interval of sequences to learn.
SEQUENCES_CONFIDENCE = 0.95


def _median_ranks(n: int, confidence: float) -> tuple[int, int]:
    """Ranks l and u (1-based) of the order statistics that cover the median of ``n`` values with
    ``confidence`` at least, the narrowest such; l = 0 (and u = n + 1) where none do."""
    # P(X_(l) <= median <= X_(u)) = P(l <= B <= u - 1) for B ~ Bin(n, 1/2).
    low_rank = n // 2 + 1
    while low_rank > 0 and lower_tail(n - low_rank, n, 0.5) - lower_tail(low_rank - 1, n, 0.5) < confidence:
        low_rank -= 1
    return low_rank, n - low_rank + 1


def sequences_to_learn(values: list[int | None], budget: int) -> SequencesToLearn:
    """The median training sequences to learn over trials (``None``: never learned) and its interval."""
    n = len(values)
    ranked = sorted(values, key=lambda v: (v is None, v or 0))

    def at(rank: int) -> int | None:  # 1-based rank; past the learned trials lies the budget
        return ranked[rank - 1] if 1 <= rank <= n else None

    low_rank, high_rank = _median_ranks(n, SEQUENCES_CONFIDENCE)
    return SequencesToLearn(
        median=at(math.ceil(n / 2)),
        low=at(low_rank) if low_rank >= 1 else 0,
        high=at(high_rank),
        learned=sum(v is not None for v in values),
        trials=n,
        budget=budget,
    )
