"""From k successes in n trials to a verdict, with its p-values and interval."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from scipy.stats import binomtest

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
    close to ``p0`` for any count up to :data:`MAX_SUGGESTED_TRIALS`.
    """
    rate = k / n
    if rate == p0:
        return None
    low, high = n, MAX_SUGGESTED_TRIALS
    if _settles(high, rate, p0, alpha) is False:
        return None
    # Settling is monotone in m up to rounding; bisect, then step back over rounding dips.
    while low < high:
        mid = (low + high) // 2
        if _settles(mid, rate, p0, alpha):
            high = mid
        else:
            low = mid + 1
    while low > n and _settles(low - 1, rate, p0, alpha):
        low -= 1
    return low


def _settles(m: int, rate: float, p0: float, alpha: float) -> bool:
    return decide(round(m * rate), m, p0, alpha).verdict != INCONCLUSIVE
