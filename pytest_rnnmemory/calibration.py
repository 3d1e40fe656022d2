"""How often the verdict and the gate are wrong, and how many trials a question needs.

Exact sums over the binomial distributions (no training, no simulation noise):
the tests check the same quantities by simulation. ``python -m pytest_rnnmemory
calibrate`` prints the tables the README quotes.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import binom

from .gate import drop_pvalue
from .stats import FAILS, LEARNS, decide

#: Pairs of counts less likely than this are left out of the gate's sums (their total is reported).
NEGLIGIBLE = 1e-7


def verdict_rate(n: int, rate: float, verdict: str, p0: float = 0.5, alpha: float = 0.05) -> float:
    """P(the verdict is ``verdict``) for a cell whose true success rate is ``rate``."""
    return float(
        sum(binom.pmf(k, n, rate) for k in range(n + 1) if decide(k, n, p0, alpha).verdict == verdict)
    )


def flag_rate(
    n: int, rate_base: float, rate_now: float, alpha: float = 0.05, test: str = "boschloo"
) -> float:
    """P(one case is flagged as regressed), baseline and new run of ``n`` trials each."""
    pmf_base = binom.pmf(range(n + 1), n, rate_base)
    pmf_now = binom.pmf(range(n + 1), n, rate_now)
    total = 0.0
    for k_base in range(n + 1):
        for k_now in range(k_base):  # only a lower count can be a drop
            weight = pmf_base[k_base] * pmf_now[k_now]
            if weight > NEGLIGIBLE and drop_pvalue(k_now, n, k_base, n, test) <= alpha:
                total += weight
    return float(total)


@dataclass(frozen=True)
class PowerRow:
    trials: int
    false_learns: float
    learns_at_08: float
    fails_at_02: float
    gate_false_alarm: float
    drop_09_to_05: float
    drop_09_to_07: float


def power_table(trials: tuple[int, ...] = (10, 20, 30, 50), test: str = "boschloo") -> list[PowerRow]:
    """Error rates and power of the verdict (p0 0.5) and the gate (alpha 0.05) per trial count."""
    return [
        PowerRow(
            trials=n,
            false_learns=verdict_rate(n, 0.5, LEARNS),
            learns_at_08=verdict_rate(n, 0.8, LEARNS),
            fails_at_02=verdict_rate(n, 0.2, FAILS),
            gate_false_alarm=max(flag_rate(n, p, p, test=test) for p in (0.3, 0.5, 0.7, 0.9)),
            drop_09_to_05=flag_rate(n, 0.9, 0.5, test=test),
            drop_09_to_07=flag_rate(n, 0.9, 0.7, test=test),
        )
        for n in trials
    ]


def format_table(rows: list[PowerRow]) -> str:
    """The table as markdown."""
    from tabulate import tabulate

    return tabulate(
        [
            [
                r.trials,
                f"{r.false_learns:.3f}",
                f"{r.learns_at_08:.2f}",
                f"{r.fails_at_02:.2f}",
                f"{r.gate_false_alarm:.3f}",
                f"{r.drop_09_to_05:.2f}",
                f"{r.drop_09_to_07:.2f}",
            ]
            for r in rows
        ],
        headers=[
            "trials",
            "learns at rate 0.5",
            "learns at 0.8",
            "fails at 0.2",
            "gate alarm, unchanged",
            "gate catches 0.9 -> 0.5",
            "gate catches 0.9 -> 0.7",
        ],
        tablefmt="github",
    )
