"""Recipes and choosing one: a grid of recipes, tuning trials that compare them, and the choice.

A recipe is a point of a suite's ``[search]`` grid: values for some keys of
``[model]`` and ``[train]`` over the suite's base recipe. Recipes are compared
on **tuning trials**, whose seeds are never a verdict trial's and are the same
for every recipe (common random numbers). The search is successive halving:
every recipe gets a few tuning trials, the better half gets more, and so on,
until two recipes compare on ``search.trials`` each and the better is chosen.
Ranking uses only the tuning trials every remaining recipe ran: most
successes, then the lower median sequences to learn (when trials stop on
learning) or else the higher median metric, then the earlier recipe.

Everything here is plain Python: the training layer supplies the trials
(:func:`successive_halving`'s ``run``), and the tests supply simulated ones.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import StoredDataError
from .schema import Grid, ModelSection, TrainSection
from .stats import Verdict, decide
from .stored import Fields

_SHORT = {"train.lr": "lr", "train.optimizer": "optimizer", "train.clip": "clip", "train.batch_size": "batch"}


@dataclass(frozen=True)
class Recipe:
    """Values of searched keys over the base recipe (none: the base recipe), and its place in the grid."""

    values: tuple[tuple[str, Any], ...] = ()
    index: int = 0

    @property
    def label(self) -> str:
        """``lr=0.01, init=chrono``: each value by the key's last part."""
        if not self.values:
            return "the suite's recipe"
        return ", ".join(f"{_SHORT.get(k, k.split('.')[-1])}={v}" for k, v in self.values)

    def apply(self, model: ModelSection, train: TrainSection) -> tuple[ModelSection, TrainSection]:
        """The suite's ``[model]`` and ``[train]`` with this recipe's values."""
        changes: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
        for key, value in self.values:
            section, name = key.split(".")
            changes[section][name] = value
        return dataclasses.replace(model, **changes["model"]), dataclasses.replace(train, **changes["train"])

    def without(self, keys: frozenset[str]) -> tuple[tuple[str, Any], ...]:
        """The values that matter where ``keys`` have no effect."""
        return tuple((k, v) for k, v in self.values if k not in keys)

    def to_json(self) -> dict[str, Any]:
        return dict(self.values)


def recipes_of(grid: Grid) -> list[Recipe]:
    """Every recipe of the grid, the first key varying slowest (the base recipe alone for no grid)."""
    keys = [key for key, _ in grid]
    return [
        Recipe(tuple(zip(keys, combination, strict=True)), index)
        for index, combination in enumerate(itertools.product(*(values for _, values in grid)))
    ]


def searches(grid: Grid) -> bool:
    """Whether a suite with this grid searches: its grid holds more than one recipe (a grid of one
    leaves nothing to choose: its cases train that recipe, without tuning trials)."""
    return len(recipes_of(grid)) > 1


def only_recipe(grid: Grid) -> Recipe | None:
    """The recipe a suite with this grid trains without a search: the grid's only one, or the base
    recipe for no grid; ``None`` where the grid holds more, among which a search chooses."""
    recipes = recipes_of(grid)
    return recipes[0] if len(recipes) == 1 else None


def repeats(recipes: list[Recipe], ignored: frozenset[str]) -> dict[int, int]:
    """Each recipe that is another, earlier one for a cell on which the ``ignored`` keys have no effect."""
    first: dict[tuple, int] = {}
    same: dict[int, int] = {}
    for recipe in recipes:
        effective = recipe.without(ignored)
        if effective in first:
            same[recipe.index] = first[effective]
        else:
            first[effective] = recipe.index
    return same


@dataclass(frozen=True)
class TuningTrial:
    """One tuning trial's result: success, final metric, and the sequences it needed (``None``: never)."""

    success: bool
    metric: float
    sequences: int | None = None


#: ``run(recipe, start, stop)``: train tuning trials ``start .. stop - 1`` of ``recipe`` at every length
#: the search covers; their results by length.
Run = Callable[[Recipe, int, int], Mapping[int, list[TuningTrial]]]


def rungs(recipes: int, trials: int) -> list[int]:
    """Tuning trials per recipe at each rung of successive halving, ending at ``trials``.

    Each rung halves the recipes still in the search, and the last compares two;
    a rung gives each recipe at least 2 trials (or ``trials`` if fewer).
    """
    if recipes <= 1:
        return []
    count = math.ceil(math.log2(recipes))
    return [min(trials, max(2, math.ceil(trials / 2 ** (count - 1 - k)))) for k in range(count)]


def schedule(distinct: int, recipes: int, trials: int) -> list[int]:
    """The rungs a search of ``recipes`` recipes, ``distinct`` of them different for the cell, trains:
    successive halving's over the distinct ones; where they are all one for the cell, the last rung
    of that one (so that its case reports the tuning counts of the recipe it took); none for a grid
    of one recipe, which is the case's recipe."""
    return rungs(distinct, trials) if distinct > 1 or recipes == 1 else [trials]


def survivors(recipes: int) -> int:
    """The recipes a rung of ``recipes`` passes to the next: the better half, at least one."""
    return max(1, math.ceil(recipes / 2))


def tuning_trials(distinct: int, recipes: int, trials: int) -> int:
    """The tuning trials a search trains at each length (:func:`successive_halving`'s count)."""
    trained = done = 0
    for m in schedule(distinct, recipes, trials):
        trained += distinct * (m - done)
        distinct, done = survivors(distinct), m
    return trained


@dataclass(frozen=True)
class RecipeTuning:
    """What one recipe did on its tuning trials, per length."""

    recipe: Recipe
    trials: Mapping[int, tuple[TuningTrial, ...]]
    #: The recipe this one is the same as for the cell (it was not trained again), if any.
    same_as: int | None = None

    def first(self, m: int) -> list[TuningTrial]:
        """Its first ``m`` tuning trials at every length."""
        return [t for results in self.trials.values() for t in results[:m]]

    @property
    def ran(self) -> int:
        """Tuning trials per length."""
        return min((len(v) for v in self.trials.values()), default=0)

    def rank_key(self, m: int, stops: bool) -> tuple:
        trials = self.first(m)
        successes = sum(t.success for t in trials)
        if stops:
            needed = [math.inf if t.sequences is None else t.sequences for t in trials]
            second = statistics.median(needed) if needed else math.inf
        else:
            second = -statistics.median([t.metric for t in trials]) if trials else 0.0
        return (-successes, second, self.recipe.index)


@dataclass(frozen=True)
class Search:
    """A finished search: every recipe's tuning, and the one chosen."""

    tunings: tuple[RecipeTuning, ...]
    chosen: int
    rungs: tuple[int, ...]
    #: Seconds the tuning trials took to train at each length (none: not measured).
    seconds: Mapping[int, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "rungs": list(self.rungs),
            "seconds": {str(n): round(s, 3) for n, s in self.seconds.items()},
            "tunings": [
                {
                    "index": t.recipe.index,
                    "recipe": [[k, v] for k, v in t.recipe.values],
                    "same_as": t.same_as,
                    "trials": {
                        str(n): [[r.success, r.metric, r.sequences] for r in results]
                        for n, results in t.trials.items()
                    },
                }
                for t in self.tunings
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> Search:
        """Read what :meth:`to_json` wrote (a search stored for the cells of a suite)."""
        f = Fields(data, "search")
        try:
            tunings = tuple(
                RecipeTuning(
                    Recipe(tuple((k, v) for k, v in t["recipe"]), int(t["index"])),
                    {
                        int(n): tuple(
                            TuningTrial(bool(a), float(b), None if c is None else int(c)) for a, b, c in rows
                        )
                        for n, rows in t["trials"].items()
                    },
                    t["same_as"],
                )
                for t in f.raw("tunings")
            )
        except (TypeError, ValueError, KeyError) as exc:
            raise StoredDataError(f"search.tunings: not a stored search ({exc!r})") from None
        seconds: dict[int, float] = {}
        if f.has("seconds"):  # absent from a search stored before they were measured
            by_length = f.fields("seconds")
            for n in by_length.data:
                if not n.isdigit():
                    raise StoredDataError(f"{by_length.at(n)}: expected a length")
                seconds[int(n)] = by_length.number(n)
        return cls(tunings, f.integer("chosen", minimum=0), tuple(f.raw("rungs")), seconds)

    @property
    def recipe(self) -> Recipe:
        return self.tunings[self.chosen].recipe

    @property
    def trained(self) -> int:
        """Tuning trials trained in all (recipes that repeat another are not trained again)."""
        return sum(t.ran * len(t.trials) for t in self.tunings if t.same_as is None)


def successive_halving(
    recipes: list[Recipe],
    trials: int,
    run: Run,
    *,
    stops: bool = False,
    same_as: Mapping[int, int] | None = None,
) -> Search:
    """Choose among ``recipes`` by successive halving on at most ``trials`` tuning trials each.

    ``same_as`` maps a recipe to an earlier one that is the same for the cell in
    question: it is not trained and takes no place in the halving (a place it took
    would leave the last rung comparing a recipe with itself); it takes the other's
    results.
    """
    same_as = dict(same_as or {})
    results: dict[int, dict[int, list[TuningTrial]]] = {r.index: {} for r in recipes}
    alive = [r.index for r in recipes if r.index not in same_as]
    by_index = {r.index: r for r in recipes}
    # A grid whose recipes are all one for the cell still trains the last rung's tuning trials of
    # it, so that its case reports the tuning counts of the recipe it took, as every searched case does.
    planned = schedule(len(alive), len(recipes), trials)

    def tuning(index: int) -> RecipeTuning:
        source = same_as.get(index, index)
        return RecipeTuning(
            by_index[index],
            {n: tuple(v) for n, v in results[source].items()},
            same_as.get(index),
        )

    for m in planned:
        for index in alive:
            done = min((len(v) for v in results[index].values()), default=0)
            if done < m:
                for length, new in run(by_index[index], done, m).items():
                    results[index].setdefault(length, []).extend(new)
        ranked = sorted(alive, key=lambda i: tuning(i).rank_key(m, stops))
        alive = ranked[: survivors(len(ranked))]
    chosen = alive[0]
    return Search(tuple(tuning(r.index) for r in recipes), chosen, tuple(planned))


def tuning_verdict(search: Search, p0: float = 0.5, alpha: float = 0.05) -> Verdict:
    """The verdict the chosen recipe's own tuning trials would give: what reporting the best of a sweep
    amounts to, biased upwards; the simulation in the tests measures how much."""
    trials = search.tunings[search.chosen].first(search.rungs[-1] if search.rungs else 0)
    return (
        decide(sum(t.success for t in trials), len(trials), p0, alpha).verdict
        if trials
        else Verdict.INCONCLUSIVE
    )


@dataclass(frozen=True)
class RecipeRecord:
    """One recipe of a case's search, as the report shows it."""

    index: int
    recipe: dict[str, Any]
    label: str
    #: Tuning trials it ran at this case's length, and how many succeeded.
    k: int
    n: int
    metric_median: float | None
    #: The best tuning trial's final metric: the figure a best-of-sweep table reports.
    metric_max: float | None
    sequences_median: float | None
    same_as: int | None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str) -> RecipeRecord:
        f = Fields(data, where)
        return cls(
            index=f.integer("index", minimum=0),
            recipe=f.mapping("recipe"),
            label=f.text("label"),
            k=f.integer("k", minimum=0),
            n=f.integer("n", minimum=0),
            metric_median=f.optional_number("metric_median"),
            metric_max=f.optional_number("metric_max"),
            sequences_median=f.optional_number("sequences_median"),
            same_as=f.raw("same_as") if f.has("same_as") and f.raw("same_as") is not None else None,
        )


@dataclass(frozen=True)
class SearchRecord:
    """A case's recipe search: the grid's recipes with their tuning counts at its length, and the choice."""

    scope: str
    trials: int
    chosen: int
    recipes: tuple[RecipeRecord, ...]
    #: Seconds the tuning trials at this case's length took to train (``None``: not measured, in a
    #: report written before they were).
    wall_s: float | None = None

    @property
    def chosen_recipe(self) -> RecipeRecord:
        return next(r for r in self.recipes if r.index == self.chosen)

    @property
    def distinct(self) -> int:
        """How many of the grid's recipes differ for the cell: a recipe that repeats another (a key
        the cell ignores) was not tried again, and a verdict is not the best of it."""
        return sum(r.same_as is None for r in self.recipes)

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "trials": self.trials,
            "chosen": self.chosen,
            "recipes": [r.to_json() for r in self.recipes],
            **({} if self.wall_s is None else {"wall_s": round(self.wall_s, 3)}),
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> SearchRecord:
        f = Fields(data, where)
        record = cls(
            scope=f.choice("scope", ("case", "cell")),
            trials=f.integer("trials", minimum=1),
            chosen=f.integer("chosen", minimum=0),
            recipes=f.objects("recipes", RecipeRecord.from_json),
            wall_s=f.number("wall_s") if f.has("wall_s") else None,
        )
        if record.chosen not in {r.index for r in record.recipes}:
            raise StoredDataError(f"{f.at('chosen')}: no recipe {record.chosen} in the search")
        return record

    @classmethod
    def of(cls, search: Search, length: int, scope: str, trials: int) -> SearchRecord:
        """The search as seen from the case at ``length``."""
        records = []
        for tuning in search.tunings:
            at = list(tuning.trials.get(length, ()))
            needed = [t.sequences for t in at]
            records.append(
                RecipeRecord(
                    index=tuning.recipe.index,
                    recipe=tuning.recipe.to_json(),
                    label=tuning.recipe.label,
                    k=sum(t.success for t in at),
                    n=len(at),
                    metric_median=statistics.median([t.metric for t in at]) if at else None,
                    metric_max=max(t.metric for t in at) if at else None,
                    sequences_median=statistics.median([math.inf if s is None else s for s in needed])
                    if at and sum(s is not None for s in needed) * 2 > len(needed)
                    else None,
                    same_as=tuning.same_as,
                )
            )
        return cls(
            scope=scope,
            trials=trials,
            chosen=search.chosen,
            recipes=tuple(records),
            wall_s=search.seconds.get(length),
        )
