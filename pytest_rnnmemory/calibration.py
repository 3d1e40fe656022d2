"""How often the verdict and the gate are wrong, and how many trials a question needs.

Exact sums over the binomial distributions (no training, no simulation noise):
the tests check the same quantities by simulation. ``python -m pytest_rnnmemory
calibrate`` prints the tables the README quotes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from scipy.stats import binom

from .gate import drop_pvalue
from .recipes import Recipe, TuningTrial, recipes_of, successive_halving
from .stats import FAILS, INCONCLUSIVE, LEARNS, decide, stopped_counts, trials_to_settle, verdict_of

#: Pairs of counts less likely than this are left out of the gate's sums, to spare their Boschloo
#: tests: together they weigh at most 1.5e-5 (every pair of rates 0.05, 0.10, ..., 0.95, trial
#: counts 10 to 100), below the tables' printed decimals.
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


def staged_flag_rate(n: int, stage: int, rate: float, alpha: float = 0.05, test: str = "boschloo") -> float:
    """P(an unchanged case is flagged as regressed) when the baseline and the new run each trained
    in stages of ``stage`` and stopped where the verdict was settled (``verdict.stage``): the gate
    compares counts, and counts that stopped early are not samples of a fixed size."""
    runs = [(k, m, p) for (k, m), p in stopped_counts(n, stage, rate).items() if p > NEGLIGIBLE]
    total = 0.0
    for k_base, n_base, p_base in runs:
        for k_now, n_now, p_now in runs:
            if drop_pvalue(k_now, n_now, k_base, n_base, test) <= alpha:
                total += p_base * p_now
    return float(total)


def second_look_learns(
    n: int, rate: float, *, fresh: bool, p0: float = 0.5, alpha: float = 0.05
) -> tuple[float, float]:
    """P(``learns``) when an inconclusive case of ``n`` trials is looked at again with the trial
    count its failure message suggests: ``fresh`` trials under another root seed, or the same first
    ``n`` topped up. Two numbers: over every run (the first look's ``learns`` included), and over
    the second looks alone (given that the first was inconclusive)."""
    first = binom.pmf(range(n + 1), n, rate)
    learned = looked = again = 0.0
    for k in range(n + 1):
        verdict = verdict_of(k, n, p0, alpha)
        more = trials_to_settle(k, n, p0, alpha) if verdict == INCONCLUSIVE else None
        if verdict == LEARNS:
            learned += first[k]
        elif more is not None:
            drawn = more if fresh else more - n
            counts = [j if fresh else k + j for j in range(drawn + 1)]
            learns = [verdict_of(c, more, p0, alpha) == LEARNS for c in counts]
            second = float(binom.pmf(range(drawn + 1), drawn, rate)[learns].sum())
            looked += first[k]
            again += first[k] * second
    return float(learned + again), float(again / looked) if looked else 0.0


@dataclass(frozen=True)
class SecondLook:
    """How often a cell at p0, or an unchanged cell, is misjudged when its counts are looked at
    twice, beside the same rate looked at once. Second looks: (over every run, over the second
    looks alone)."""

    once_learns: float
    fresh_learns: tuple[float, float]
    topped_up_learns: tuple[float, float]
    once_gate: float
    staged_gate: dict[int, float]


#: True success rates the gate's false-alarm rate is maximised over.
GATE_RATES = tuple(round(0.05 * i, 2) for i in range(1, 20))


def second_looks(n: int = 30, stages: tuple[int, ...] = (1, 5, 10), test: str = "boschloo") -> SecondLook:
    """The false ``learns`` at p0 = 0.5, once and after a second look at an inconclusive case; the
    gate's false alarm for an unchanged cell (the largest over :data:`GATE_RATES`), on full counts
    and on counts trained in stages."""
    return SecondLook(
        once_learns=verdict_rate(n, 0.5, LEARNS),
        fresh_learns=second_look_learns(n, 0.5, fresh=True),
        topped_up_learns=second_look_learns(n, 0.5, fresh=False),
        once_gate=max(flag_rate(n, p, p, test=test) for p in GATE_RATES),
        staged_gate={s: max(staged_flag_rate(n, s, p, test=test) for p in GATE_RATES) for s in stages},
    )


def format_second_looks(looks: SecondLook, n: int = 30) -> str:
    """The second looks as markdown."""
    from tabulate import tabulate

    rows = [
        [f"a cell at rate 0.5 called learns, {n} trials", f"{looks.once_learns:.3f}", ""],
        [
            "... or, where inconclusive, on the suggested count of fresh trials (another seed)",
            f"{looks.fresh_learns[0]:.3f}",
            f"{looks.fresh_learns[1]:.3f}",
        ],
        [
            "... or, where inconclusive, on the same trials topped up to the suggested count",
            f"{looks.topped_up_learns[0]:.3f}",
            f"{looks.topped_up_learns[1]:.3f}",
        ],
        [f"an unchanged cell trips the gate, {n} trials each run", f"{looks.once_gate:.3f}", ""],
        *(
            [f"... both runs trained in stages of {stage} (verdict.stage)", f"{rate:.3f}", ""]
            for stage, rate in looks.staged_gate.items()
        ),
    ]
    headers = ["looked at twice", "rate over every run (exact)", "rate of the second looks alone"]
    return tabulate(rows, headers=headers, tablefmt="github")


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


@dataclass(frozen=True)
class SearchRow:
    """How often a search's verdict says ``learns`` for a cell at p0 under every recipe of the grid."""

    recipes: int
    #: The verdict on fresh trials of the chosen recipe (what this plugin reports).
    fresh: float
    #: The chosen recipe's own tuning count taken as the verdict (successive halving's choice).
    best_of_tuning: float
    #: Every recipe trained on all its tuning trials and the best count taken (a full sweep's maximum).
    best_of_grid: float


class CaseSeeds(Protocol):
    """The seeds of one case's trials, as a suite's case derives them."""

    def tuning_seeds(self, start: int, stop: int) -> tuple[int, ...]: ...

    def trial_seeds(self) -> tuple[int, ...]: ...


def search_error_rates(
    seeds: CaseSeeds,
    grids: tuple[int, ...] = (1, 4, 16),
    rate: float = 0.5,
    tuning: int = 10,
    runs: int = 4000,
    seed: int = 20261201,
) -> list[SearchRow]:
    """False-``learns`` rates of the two verdicts, by simulation through :func:`.recipes.successive_halving`,
    the case's ``seeds`` and :func:`.stats.decide`: in each simulated world a trial succeeds at ``rate``
    (p0) as a function of its recipe and its seed alone, as training is, so a verdict trial whose seed
    were a tuning trial's would repeat what chose its recipe."""
    verdict_seeds = seeds.trial_seeds()
    rows = []
    for size in grids:
        grid = (("train.lr", tuple(0.001 * (i + 1) for i in range(size))),)
        recipes = recipes_of(grid) if size > 1 else [Recipe()]
        fresh = biased = 0
        for world in range(runs):

            def trained(recipe: Recipe, trial_seed: int, world: int = world) -> TuningTrial:
                draw = random.Random(f"{seed}/{world}/{recipe.index}/{trial_seed}")
                return TuningTrial(draw.random() < rate, draw.random())

            def run(recipe: Recipe, start: int, stop: int) -> dict[int, list[TuningTrial]]:
                return {1: [trained(recipe, s) for s in seeds.tuning_seeds(start, stop)]}

            if size > 1:
                search = successive_halving(recipes, tuning, run)
                recipe, chosen = search.recipe, search.tunings[search.chosen].first(tuning)
            else:
                recipe, chosen = recipes[0], run(recipes[0], 0, tuning)[1]
            best = sum(t.success for t in chosen)
            biased += verdict_of(best, len(chosen)) == LEARNS
            k = sum(trained(recipe, s).success for s in verdict_seeds)
            fresh += verdict_of(k, len(verdict_seeds)) == LEARNS
        # Every recipe on all its tuning trials and the best count taken: exact, for comparison.
        one = float(binom.sf(_learns_from(tuning) - 1, tuning, rate))
        rows.append(SearchRow(size, fresh / runs, biased / runs, 1 - (1 - one) ** size))
    return rows


def _learns_from(n: int, p0: float = 0.5, alpha: float = 0.05) -> int:
    """The fewest successes of ``n`` that ``learns``."""
    return next(k for k in range(n + 1) if verdict_of(k, n, p0, alpha) == LEARNS)


def format_search_table(rows: list[SearchRow], tuning: int = 10, trials: int = 30) -> str:
    """The search table as markdown."""
    from tabulate import tabulate

    return tabulate(
        [[r.recipes, f"{r.fresh:.3f}", f"{r.best_of_tuning:.3f}", f"{r.best_of_grid:.3f}"] for r in rows],
        headers=[
            "recipes in the grid",
            f"learns on {trials} fresh trials (this plugin)",
            f"learns on the chosen recipe's {tuning} tuning trials",
            f"learns on the best count of a full sweep of {tuning} trials each (exact)",
        ],
        tablefmt="github",
    )
