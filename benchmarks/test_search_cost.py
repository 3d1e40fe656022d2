"""What a recipe search costs: the trial-training time of a searched case against the plain case.

    pytest benchmarks/test_search_cost.py --benchmark-only

The latching suite as shipped (hidden size 1, 30 verdict trials, 2000
sequences, 10 epochs), once with its base recipe alone and once with a
16-recipe grid (learning rate x initialisation x clipping) searched by
successive halving on at most 10 tuning trials per recipe. Both sides run in
this process, one after the other, and the table prints their ratio: the
target is at most 3x (a full grid of 16 x 10 tuning trials would cost about
6x). Tuning trials are counted too, as trial-equivalents.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
import torch

from pytest_rnnmemory.engine import CPU_THREADS, train_case
from pytest_rnnmemory.schema import Overrides
from pytest_rnnmemory.suite import load_suite
from pytest_rnnmemory.tuning import search_recipe

SUITE = Path(__file__).resolve().parent.parent / "suites" / "latching.toml"
GRID = textwrap.dedent(
    """
    [search]
    "train.lr" = [0.01, 0.03, 0.05, 0.1]
    "model.init" = ["torch", "chrono"]
    "train.clip" = [0.0, 1.0]
    """
)
CASES = [("lstm", 20), ("gru", 50), ("rnn", 20)]

RESULTS: dict[str, dict] = {}


def suites(tmp_path: Path):
    """The shipped latching suite without its own search, and with the 16-recipe grid."""
    text = SUITE.read_text(encoding="utf-8")
    text = text.split("[search]")[0] if "[search]" in text else text
    text = text.split("[profiles.")[0]
    plain, searched = tmp_path / "plain.toml", tmp_path / "searched.toml"
    plain.write_text(text.replace("[suite]", '[suite]\nname = "latching"'), encoding="utf-8")
    searched.write_text(text.replace("[suite]", '[suite]\nname = "latching"') + GRID, encoding="utf-8")
    return load_suite(plain, Overrides()), load_suite(searched, Overrides())


@pytest.mark.parametrize(("cell", "length"), CASES, ids=[f"{c}-L{n}" for c, n in CASES])
def test_a_16_recipe_search_against_the_plain_case(benchmark, tmp_path, cell, length):
    torch.set_num_threads(CPU_THREADS)
    plain_suite, searched_suite = suites(tmp_path)
    plain = next(c for c in plain_suite.cases() if (c.cell, c.length) == (cell, length))
    searched = next(c for c in searched_suite.cases() if (c.cell, c.length) == (cell, length))
    started = time.perf_counter()
    train_case(plain.spec())
    plain_s = time.perf_counter() - started

    def search_and_verdict():
        search = search_recipe(searched)
        train_case(searched.spec(search.recipe))
        return search

    search = benchmark.pedantic(search_and_verdict, rounds=1, iterations=1)
    searched_s = benchmark.stats.stats.median
    tuning = search.trained
    RESULTS[f"{cell}-L{length}"] = row = {
        "plain_s": plain_s,
        "searched_s": searched_s,
        "ratio": searched_s / plain_s,
        "tuning_trials": tuning,
        "trial_ratio": (tuning + 30) / 30,
        "chosen": search.recipe.label,
    }
    benchmark.extra_info.update(row)
    assert tuning <= 16 * 10
