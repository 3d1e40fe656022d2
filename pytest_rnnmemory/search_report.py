"""The report's sections on how a verdict's recipe was chosen and how long learning took.

Markdown from records alone: the recipe each case's verdict trained with and
the search that chose it, every recipe's tuning counts per cell and length,
the figure a best-of-sweep table would report (labelled as such, beside the
unbiased verdict), and the training sequences the trials needed to learn.
"""

from __future__ import annotations

from tabulate import tabulate

from .recipes import Recipe
from .records import CaseRecord
from .results import SuiteRun
from .stats import MARKS


def recipe_text(record: CaseRecord) -> str:
    """``init=chrono, lr=0.01``: the recipe the verdict trained with (``the suite's recipe`` where the
    suite has no grid)."""
    if record.search is not None:
        return record.search.chosen_recipe.label
    return Recipe(tuple(record.recipe.items())).label


def searched(run: SuiteRun) -> list[CaseRecord]:
    return [r for r in run.records_in_order() if r.search is not None]


def search_section(run: SuiteRun, plots: dict[str, str], caption: str) -> list[str]:
    """How each case's recipe was chosen, and every recipe's tuning counts."""
    records = searched(run)
    if not records:
        return []
    config = run.config
    grid = len(records[0].search.recipes)
    scope = "per cell and length" if config.search.scope == "case" else "per cell, over all its lengths"
    second = "the fewest sequences to learn" if config.train.stop == "learned" else "the higher median metric"
    lines = [
        "## Recipe search",
        "",
        f"Each verdict comes from fresh trials of one recipe, chosen {scope} from a grid of {grid} recipes "
        f"on **tuning trials** whose seeds no verdict uses: successive halving, at most "
        f"{config.search.trials} tuning trials per recipe (most successes first, then "
        f"{second}, "
        "then the earlier recipe). A `fails` is about the best recipe found, not proof that no recipe of "
        "the grid works: every recipe's tuning counts are below, for readers to judge.",
        "",
        "The *best tuning trial* is the figure a table of the best run of a sweep reports (the best "
        "trial of the best recipe, among the very trials that chose it): it is biased upwards, and given "
        "only beside the verdict, never as one.",
        "",
    ]
    rows = []
    for r in records:
        chosen = r.search.chosen_recipe
        best = "" if chosen.metric_max is None else f"{chosen.metric_max:.3f}"
        rows.append(
            [
                r.cell,
                r.length,
                f"{r.verdict} with {chosen.label}, the best of {r.search.distinct} on tuning trials",
                f"{MARKS[r.verdict]} {r.k}/{r.n}",
                f"{chosen.k}/{chosen.n}",
                best,
            ]
        )
    lines += [
        tabulate(
            rows,
            headers=["cell", "length", "verdict", "verdict trials", "tuning trials", "best tuning trial"],
            tablefmt="github",
            disable_numparse=True,
        ),
        "",
    ]
    for cell in [c for c in run.cells if any(r.cell == c for r in records)]:
        lines += [
            f"**{cell}**: successes of each recipe's tuning trials (★ chosen; — eliminated earlier)",
            "",
        ]
        lines += [sensitivity_table(run, cell), ""]
    if "search" in plots:
        lines += [f"![{caption}]({plots['search']})", ""]
    return lines


def sensitivity_table(run: SuiteRun, cell: str) -> str:
    """Recipes by length for one cell: each recipe's tuning k/n, the chosen one starred."""
    records = {r.length: r for r in searched(run) if r.cell == cell}
    lengths = sorted(records)
    first = records[lengths[0]].search
    rows = []
    for recipe in first.recipes:
        row = [recipe.label]
        for length in lengths:
            search = records[length].search
            entry = next(e for e in search.recipes if e.index == recipe.index)
            star = " ★" if entry.index == search.chosen else ""
            if entry.same_as is not None:
                row.append(f"= recipe {entry.same_as + 1}{star}")
            elif entry.n == 0:
                row.append("—")
            else:
                row.append(f"{entry.k}/{entry.n}{star}")
        rows.append(row)
    return tabulate(
        rows, headers=["recipe", *[f"L={n}" for n in lengths]], tablefmt="github", disable_numparse=True
    )


def sequences_section(run: SuiteRun, plots: dict[str, str], caption: str) -> list[str]:
    """Training sequences to learn per case: the median with its 95% interval, censored at the budget."""
    records = [r for r in run.records_in_order() if r.sequences is not None]
    if not records:
        return []
    train = run.config.train
    lines = [
        "## Sequences to learn",
        "",
        "Training sequences each trial saw before its validation metric reached the threshold (checked "
        f"every {train.check_interval:,} sequences); its success was then "
        "decided on a fresh test set. Trials that never reached it are censored at the budget, so the "
        "median is the Kaplan-Meier median, and `> budget` means fewer than half learned; the interval is "
        "the distribution-free 95% interval of the median.",
        "",
    ]
    rows = [
        [
            r.cell,
            r.length,
            f"{r.sequences.learned}/{r.sequences.trials}",
            r.sequences.text(),
            f"{r.budget:,}",
        ]
        for r in records
    ]
    lines += [
        tabulate(
            rows,
            headers=["cell", "length", "learned", "median sequences [95% interval]", "budget"],
            tablefmt="github",
            disable_numparse=True,
        ),
        "",
    ]
    if "sequences" in plots:
        lines += [f"![{caption}]({plots['sequences']})", ""]
    return lines
