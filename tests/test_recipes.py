"""Recipes, the grid, and choosing among recipes by successive halving on tuning trials."""

import dataclasses
import json
import math
from fractions import Fraction

import pytest

from pytest_rnnmemory.calibration import search_error_rates
from pytest_rnnmemory.errors import StoredDataError
from pytest_rnnmemory.recipes import (
    Recipe,
    Search,
    SearchRecord,
    TuningTrial,
    recipes_of,
    repeats,
    rungs,
    searches,
    successive_halving,
    tuning_verdict,
)
from pytest_rnnmemory.schema import ModelSection, TrainSection
from pytest_rnnmemory.suite import load_suite

GRID = (("train.lr", (0.01, 0.05)), ("model.init", ("torch", "chrono")))


def test_the_grid_is_the_product_of_its_lists_the_first_key_slowest():
    recipes = recipes_of(GRID)
    assert [r.values for r in recipes] == [
        (("train.lr", 0.01), ("model.init", "torch")),
        (("train.lr", 0.01), ("model.init", "chrono")),
        (("train.lr", 0.05), ("model.init", "torch")),
        (("train.lr", 0.05), ("model.init", "chrono")),
    ]
    assert [r.index for r in recipes] == [0, 1, 2, 3]
    assert recipes[1].label == "lr=0.01, init=chrono"


def test_a_recipe_changes_only_its_keys():
    model, train = recipes_of(GRID)[3].apply(ModelSection(hidden=4), TrainSection(epochs=7))
    assert (model.hidden, model.init, train.lr, train.epochs) == (4, "chrono", 0.05, 7)
    assert Recipe().apply(ModelSection(), TrainSection()) == (ModelSection(), TrainSection())


@pytest.mark.parametrize(
    ("recipes", "trials", "expected"),
    [
        (1, 10, []),
        (2, 10, [10]),
        (4, 10, [5, 10]),
        (8, 10, [3, 5, 10]),
        (16, 10, [2, 3, 5, 10]),
        (16, 4, [2, 2, 2, 4]),
        (4, 1, [1, 1]),
    ],
)
def test_successive_halving_halves_the_recipes_and_ends_with_two_at_the_full_count(recipes, trials, expected):
    assert rungs(recipes, trials) == expected


def scripted(rates, metrics=None):
    """Tuning trials whose i-th trial of recipe r succeeds where i < rates[r] * 10, and the calls made."""
    calls = []

    def run(recipe, start, stop):
        calls.append((recipe.index, start, stop))
        rate = rates[recipe.index]
        metric = (metrics or {}).get(recipe.index, rate)
        return {5: [TuningTrial(i < rate * 10, metric) for i in range(start, stop)]}

    return run, calls


def test_the_recipe_with_most_successes_is_chosen_and_each_trial_is_trained_once():
    recipes = recipes_of((("train.lr", (1, 2, 3, 4)),))
    run, calls = scripted({0: 0.2, 1: 0.9, 2: 0.5, 3: 0.7})
    search = successive_halving(recipes, 10, run)
    assert search.recipe.index == 1
    # Rung 1: all four get trials 0-4; rung 2: the two best get trials 5-9 (the same seeds for each).
    assert calls == [(0, 0, 5), (1, 0, 5), (2, 0, 5), (3, 0, 5), (1, 5, 10), (3, 5, 10)]
    assert search.trained == 30
    assert [t.ran for t in search.tunings] == [5, 10, 5, 10]


def test_the_tuning_verdict_is_the_chosen_recipes_trials_on_the_last_rung():
    """The chosen recipe learned its first 8 of 10 tuning trials: 5 of 5 on the first rung would
    say learns (p = 1/32), but its own trials are the 10 of the last rung, and P(X >= 8) =
    (45 + 10 + 1) / 1024 = 0.055 is not below 0.05."""
    recipes = recipes_of((("train.lr", (1, 2, 3, 4)),))
    run, _ = scripted({0: 0.2, 1: 0.8, 2: 0.5, 3: 0.7})
    search = successive_halving(recipes, 10, run)
    assert (search.recipe.index, search.rungs) == (1, (5, 10))
    assert Fraction(math.comb(10, 8) + math.comb(10, 9) + 1, 2**10) > Fraction(1, 20)
    assert tuning_verdict(search) == "inconclusive"


def test_ties_go_to_the_higher_median_metric_then_to_the_earlier_recipe():
    recipes = recipes_of((("train.lr", (1, 2, 3)),))
    run, _ = scripted({0: 0.5, 1: 0.5, 2: 0.5}, metrics={0: 0.6, 1: 0.8, 2: 0.8})
    assert successive_halving(recipes, 4, run).recipe.index == 1


def test_with_stopping_on_learning_fewer_sequences_to_learn_break_a_tie():
    recipes = recipes_of((("train.lr", (1, 2)),))

    def run(recipe, start, stop):
        needed = 800 if recipe.index == 0 else 300
        return {5: [TuningTrial(True, 1.0, needed) for _ in range(start, stop)]}

    assert successive_halving(recipes, 4, run, stops=True).recipe.index == 1
    assert successive_halving(recipes, 4, run, stops=False).recipe.index == 0


def test_with_stopping_on_learning_a_trial_that_never_learned_needed_more_sequences_than_any():
    """Three of four learned on both recipes: recipe 0 in 100, 200 and 300 sequences, recipe 1 in
    200 each. Counting the fourth, unlearned, trial as needing more than any, the medians are 250
    and 200 and recipe 1 is faster; counted as needing none, recipe 0 would look faster (150)."""
    recipes = recipes_of((("train.lr", (1, 2)),))
    needed = {0: [100, 200, 300, None], 1: [200, 200, 200, None]}

    def run(recipe, start, stop):
        return {5: [TuningTrial(s is not None, 1.0, s) for s in needed[recipe.index][start:stop]]}

    assert successive_halving(recipes, 4, run, stops=True).recipe.index == 1


def test_a_recipe_that_is_another_for_the_cell_is_not_trained_and_never_wins_over_it():
    recipes = recipes_of(GRID)
    run, calls = scripted({0: 0.9, 1: 0.9, 2: 0.3, 3: 0.3})
    search = successive_halving(recipes, 10, run, same_as={1: 0, 3: 2})
    assert {index for index, _, _ in calls} == {0, 2}
    assert search.recipe.index == 0
    assert search.tunings[1].same_as == 0 and search.tunings[1].trials == search.tunings[0].trials
    # A verdict is the best of the recipes that were tried: two of the grid's four, here.
    scripted_length = next(iter(search.tunings[0].trials))
    record = SearchRecord.of(search, scripted_length, "case", 10)
    assert (len(record.recipes), record.distinct) == (4, 2)


def test_a_recipe_that_repeats_another_is_mapped_to_the_earliest_one():
    """Two learning rates by two initialisations the cell ignores: recipes 1 and 3 are recipes 0
    and 2 again, and a search takes their results from those."""
    recipes = recipes_of((("train.lr", (0.01, 0.05)), ("model.init", ("torch", "chrono"))))
    assert repeats(recipes, frozenset({"model.init"})) == {1: 0, 3: 2}
    assert repeats(recipes, frozenset()) == {}


def test_recipes_that_repeat_others_take_no_place_in_the_halving():
    """Three learning rates by two initialisations the cell ignores: three recipes race, and the
    last rung compares two of them on the full count, never a recipe with its own copy."""
    recipes = recipes_of((("train.lr", (0.01, 0.05, 0.1)), ("model.init", ("torch", "chrono"))))
    run, calls = scripted({0: 0.2, 2: 0.9, 4: 0.8})
    search = successive_halving(recipes, 10, run, same_as={1: 0, 3: 2, 5: 4})
    assert search.rungs == (5, 10)
    assert calls == [(0, 0, 5), (2, 0, 5), (4, 0, 5), (2, 5, 10), (4, 5, 10)]
    assert search.recipe.index == 2
    assert [t.same_as for t in search.tunings] == [None, 0, None, 2, None, 4]


def test_a_grid_whose_recipes_are_all_one_for_the_cell_trains_the_last_rung_of_it():
    """No choice to make, but its case reports the tuning counts of the recipe it took, as every
    searched case does: the RNN in a grid of initialisations and one learning rate."""
    recipes = recipes_of((("train.lr", (0.05,)), ("model.init", ("torch", "chrono"))))
    run, calls = scripted({0: 0.4})
    search = successive_halving(recipes, 4, run, same_as={1: 0})
    assert (search.rungs, calls, search.recipe.index) == ((4,), [(0, 0, 4)], 0)
    assert [len(t.first(4)) for t in search.tunings] == [4, 4]


def test_a_grid_of_one_recipe_trains_no_tuning_trial():
    run, calls = scripted({0: 0.5})
    search = successive_halving([Recipe()], 10, run)
    assert calls == [] and search.recipe == Recipe()
    # No tuning trial, no evidence either way.
    assert tuning_verdict(search) == "inconclusive"
    # Nor does a suite search over a grid of one recipe: its cases train that recipe.
    assert not searches((("train.lr", (0.05,)),)) and not searches(())
    assert searches((("train.lr", (0.01, 0.05)),))


def test_a_recipes_record_shows_its_best_tuning_trials_metric_and_a_median_only_where_most_learned():
    """metric_max is the best of 0.2, 0.9 and 0.5; with 2 of 4 learned the median sequences to
    learn lies beyond the budget (None, not infinity), with 3 of 4 it is (200 + 300) / 2."""
    trials = {
        0: [
            TuningTrial(True, 0.2, 100),
            TuningTrial(True, 0.9, 200),
            TuningTrial(False, 0.5),
            TuningTrial(False, 0.1),
        ],
        1: [
            TuningTrial(True, 0.4, 100),
            TuningTrial(True, 0.3, 200),
            TuningTrial(True, 0.3, 300),
            TuningTrial(False, 0.1),
        ],
    }
    recipes = recipes_of((("train.lr", (1, 2)),))
    search = successive_halving(recipes, 4, lambda recipe, start, stop: {5: trials[recipe.index][start:stop]})
    first, second = SearchRecord.of(search, 5, "case", 4).recipes
    assert (first.metric_max, first.sequences_median) == (0.9, None)
    assert (second.metric_max, second.sequences_median) == (0.4, 250)


def test_a_searchs_tuning_seconds_travel_with_it_and_a_search_stored_before_them_reads_as_unmeasured():
    run, _ = scripted({0: 0.4, 1: 0.6})
    search = dataclasses.replace(successive_halving(recipes_of(GRID[:1]), 4, run), seconds={5: 1.25})
    again = Search.from_json(json.loads(json.dumps(search.to_json())))
    assert again == search and again.seconds == {5: 1.25}
    older = search.to_json()
    del older["seconds"]
    assert Search.from_json(older).seconds == {}
    record = SearchRecord.of(search, 5, "case", 4)
    assert record.wall_s == 1.25 and SearchRecord.from_json(record.to_json(), "search") == record
    unmeasured = SearchRecord.of(Search.from_json(older), 5, "case", 4)
    assert unmeasured.wall_s is None and "wall_s" not in unmeasured.to_json()
    with pytest.raises(StoredDataError, match=r"search\.seconds\.x: expected a length"):
        Search.from_json({**search.to_json(), "seconds": {"x": 1.0}})


# --- The statistics of a search, by simulation through the plugin's own selection and verdict ---------

RUNS = 3000


def mc_tolerance(rate, runs):
    return 4 * math.sqrt(rate * (1 - rate) / runs)


def test_fresh_verdict_trials_keep_false_learns_at_alpha_whatever_the_grid_and_the_tuning_count_does_not(
    tmp_path,
):
    """Every recipe at a true rate of p0 = 0.5: the verdict on 30 trials of the chosen recipe, seeded
    as a suite's case seeds them, says learns in at most alpha of runs; the chosen recipe's own tuning
    count, with 16 recipes, far more often. A trial succeeds as a function of its recipe and seed, so
    verdict seeds that were tuning seeds would bring the tuning's luck into the verdict."""
    path = tmp_path / "searched.toml"
    path.write_text(
        '[suite]\ntask = "latching"\ncells = ["lstm"]\nlengths = [20]\n[search]\n"train.lr" = [0.01, 0.1]\n'
    )
    case = load_suite(path).cases()[0]
    rows = {row.recipes: row for row in search_error_rates(case, (1, 4, 16), runs=RUNS)}
    for row in rows.values():
        assert row.fresh <= 0.05 + mc_tolerance(0.05, RUNS)
    assert rows[16].best_of_tuning > 0.05 + mc_tolerance(0.05, RUNS)
    assert rows[16].best_of_grid > 0.05 + mc_tolerance(0.05, RUNS)
    assert rows[1].best_of_tuning < rows[4].best_of_tuning < rows[16].best_of_tuning
