"""From k successes in n trials to a verdict, with its p-values and interval."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binom, binomtest

LEARNS, FAILS, INCONCLUSIVE = "learns", "fails", "inconclusive"
VERDICTS = (LEARNS, FAILS, INCONCLUSIVE)

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
    #: Exact (Clopper-Pearson) 95% interval of the success rate.
    ci_low: float
    ci_high: float
    verdict: str

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def decide(k: int, n: int, p0: float = 0.5, alpha: float = 0.05) -> Decision:
    """``learns`` if the rate is significantly above ``p0``, ``fails`` if below, else ``inconclusive``.

    Both are one-sided exact binomial tests (``scipy.stats.binomtest``) at
    level ``alpha``; as long as ``alpha < 0.5`` at most one of them can hold.
    """
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    greater = binomtest(k, n, p0, alternative="greater")
    less = binomtest(k, n, p0, alternative="less")
    # The interval must be two-sided; the one-sided tests' intervals are open at one end.
    ci = binomtest(k, n, p0).proportion_ci(confidence_level=0.95, method="exact")
    if greater.pvalue <= alpha:
        verdict = LEARNS
    elif less.pvalue <= alpha:
        verdict = FAILS
    else:
        verdict = INCONCLUSIVE
    return Decision(
        k=k,
        n=n,
        p0=p0,
        alpha=alpha,
        p_greater=float(greater.pvalue),
        p_less=float(less.pvalue),
        ci_low=float(ci.low),
        ci_high=float(ci.high),
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
    p_greater = binom.sf(successes - 1, m, p0)
    p_less = binom.cdf(successes, m, p0)
    settles = np.flatnonzero((p_greater <= alpha) | (p_less <= alpha))
    return int(m[settles[0]]) if settles.size else None
