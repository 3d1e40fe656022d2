"""Choosing a case's recipe from its suite's grid: tuning trials trained by the engine, compared by
successive halving (:mod:`.recipes`)."""

from __future__ import annotations

import dataclasses

from .cells import ignored_keys
from .engine import Progress, train_case
from .recipes import Recipe, Search, TuningTrial, recipes_of, repeats, successive_halving
from .suite import Case


def search_recipe(case: Case, device: str = "cpu", progress: Progress | None = None) -> Search:
    """The search for ``case``'s recipe: at its own length (``search.scope = "case"``) or at every
    length of the suite (``"cell"``), on tuning trials that never count in a verdict."""
    suite = case.suite
    config = suite.config
    recipes = recipes_of(config.grid)
    lengths = [case.length] if config.search.scope == "case" else list(suite.meta.lengths)
    threshold = suite.success.threshold
    seconds = dict.fromkeys(lengths, 0.0)

    def run(recipe: Recipe, start: int, stop: int) -> dict[int, list[TuningTrial]]:
        results = {}
        for length in lengths:
            at = case.at(length)
            # no evaluation lengths: a recipe is chosen on the trained length's results alone
            spec = dataclasses.replace(at.spec(recipe, at.tuning_seeds(start, stop)), eval_lengths=())
            outcome = train_case(spec, device=device, progress=progress, curves=False)
            seconds[length] += outcome.wall_s
            successes = outcome.successes(threshold)
            sequences = outcome.sequences or (None,) * outcome.trials
            results[length] = [
                TuningTrial(success, metric, needed)
                for success, metric, needed in zip(successes, outcome.metrics, sequences, strict=True)
            ]
        return results

    search = successive_halving(
        recipes,
        config.search.trials,
        run,
        stops=config.train.stop == "learned",
        same_as=repeats(recipes, ignored_keys(case.trained_cell)),
    )
    return dataclasses.replace(search, seconds=seconds)
