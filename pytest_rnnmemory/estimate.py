"""How long a run's training will take, from rates measured by earlier cases on this machine.

A case's work is the sequence-steps its trials train on (trials x epochs x
sequences x steps), tuning trials included; a rate is the sequence-steps per
second an earlier case of the same cell, hidden size and device trained at.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .cells import ignored_keys, is_user_cell
from .recipes import recipes_of, repeats, tuning_trials
from .suite import Case

#: Runs estimated to train for longer than this say so, and how long, before they start.
ANNOUNCE_S = 60.0


def rate_key(cell: str, hidden: int, device: str) -> str:
    """Where a measured rate is kept: cell, hidden size and device type."""
    return f"{cell}|{hidden}|{device.split(':')[0]}"


def work(case: Case) -> int:
    """Sequence-steps the case trains on: its verdict's trials and, where it searches, its tuning trials."""
    suite = case.suite
    steps = suite.task.steps(case.length)
    per_trial = suite.train.epochs * suite.train.samples * steps
    trials = suite.verdict.trials
    if case.searched:
        # the halving runs over the recipes that differ for the cell, as the search does
        recipes = recipes_of(suite.config.grid)
        distinct = len(recipes) - len(repeats(recipes, ignored_keys(case.trained_cell)))
        trials += tuning_trials(distinct, len(recipes), suite.config.search.trials)
    return trials * per_trial


def seconds(cases: Iterable[Case], rates: Mapping[str, float], device: str) -> float | None:
    """The estimated training time of ``cases``; ``None`` where no rate of a similar case is known."""
    if not rates:
        return None
    total = 0.0
    for case in cases:
        key = rate_key(case.trained_cell, case.suite.model.hidden, device)
        total += work(case) / rates.get(key, _fallback(rates, key))
    return total


def _fallback(rates: Mapping[str, float], key: str) -> float:
    """The slowest rate measured of cells like the unknown one: built-in or a user's (whose rates
    differ by tens of times), on the same device type where any was measured there."""
    cell, _, device = key.split("|")

    def like(other: str, same_device: bool) -> bool:
        name, _, where = other.split("|")
        return is_user_cell(name) == is_user_cell(cell) and (where == device or not same_device)

    for same_device in (True, False):
        alike = [rate for other, rate in rates.items() if like(other, same_device)]
        if alike:
            return min(alike)
    return min(rates.values())


def announce(total: float, cases: int, stored: int) -> str:
    """The line a long run prints before it trains."""
    minutes = total / 60
    text = f"{minutes:.0f} min" if minutes >= 2 else f"{total:.0f} s"
    note = f"; {stored} more from stored results" if stored else ""
    return (
        f"rnnmemory: about {text} of training for {cases} case(s){note} "
        "(from the rates earlier cases trained at on this machine)"
    )
