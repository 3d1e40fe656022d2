"""Where a case's failed trials ended: the pattern words of the report's "why" section."""

import pytest

from pytest_rnnmemory.diagnosis import (
    ALL_LEARNED,
    AT_CHANCE,
    BIMODAL,
    DIVERGED,
    NEAR_THRESHOLD,
    SPREAD,
    shape_of,
)


def shape(metrics, threshold=0.95, chance=0.5, diverged=None):
    return shape_of(metrics, diverged or [False] * len(metrics), threshold, chance)


def test_every_trial_learned():
    result = shape([0.99] * 10)
    assert (result.learned, result.shape) == (10, ALL_LEARNED)
    assert result.describe() == "none failed"


def test_failed_trials_at_chance_and_none_learned_is_stuck_at_chance():
    result = shape([0.5, 0.52, 0.47, 0.51, 0.5, 0.49, 0.53, 0.5, 0.5, 0.7])
    assert (result.at_chance, result.between, result.shape) == (9, 1, AT_CHANCE)
    assert result.describe() == "9 at chance, 1 between"


def test_learned_or_at_chance_is_bimodal():
    result = shape([1.0] * 4 + [0.5] * 6)
    assert (result.learned, result.at_chance, result.shape) == (4, 6, BIMODAL)


def test_most_trials_learned_and_the_few_failures_at_chance_is_bimodal_not_stuck():
    # 28 of 30 learned: "stuck at chance, the cell never found the signal" would contradict them
    result = shape([1.0] * 28 + [0.5] * 2)
    assert (result.learned, result.at_chance, result.shape) == (28, 2, BIMODAL)


def test_one_success_among_trials_at_chance_is_still_stuck():
    # 1 of 20 learned: below the 10% that makes a second mode.
    assert shape([1.0] + [0.5] * 19).shape == AT_CHANCE


def test_failed_trials_just_below_the_threshold():
    result = shape([0.96, 0.93, 0.92, 0.94, 0.6])
    assert (result.near_threshold, result.between, result.shape) == (3, 1, NEAR_THRESHOLD)


def test_failed_trials_everywhere_between_are_spread():
    assert shape([0.6, 0.7, 0.75, 0.8, 0.5]).shape == SPREAD


def test_diverged_trials_count_apart():
    result = shape([0.0, 0.0, 0.0, 0.99], diverged=[True, True, True, False])
    assert (result.diverged, result.shape) == (3, DIVERGED)
    assert result.describe() == "3 diverged"


@pytest.mark.parametrize(("chance", "metric"), [(0.75, 0.76), (2.0**-9, 0.0)])
def test_chance_is_the_tasks_own_level(chance, metric):
    assert shape([metric] * 5, chance=chance).at_chance == 5


def test_a_trial_exactly_at_the_threshold_learned_as_its_verdict_counts_it():
    # The verdict counts metric >= threshold as a success; the diagnosis must not call it failed.
    result = shape([0.95] * 5, threshold=0.95)
    assert (result.learned, result.shape) == (5, ALL_LEARNED)


def test_the_bands_include_their_edges_and_chance_is_a_distance_on_either_side():
    # 0.05 is exactly 0.1 - 0.05 and 0.95 exactly 1.0 - 0.05 in floating point: on the band's edge.
    assert shape([0.05] * 4, chance=0.1).at_chance == 4
    assert shape([0.95] * 4, threshold=1.0).near_threshold == 4
    # Far below chance is not "at chance": the trials learned something, the wrong way round.
    result = shape([0.3] * 4, chance=0.5)
    assert (result.at_chance, result.between, result.shape) == (0, 4, SPREAD)


def test_the_pattern_rules_hold_at_their_edges():
    # Exactly 80% of the failed trials at chance (4 of 5), none learned: stuck at chance.
    assert shape([0.5] * 4 + [0.7]).shape == AT_CHANCE
    # Exactly 10% learned (1 of 10), the other 9 at chance: bimodal.
    assert shape([1.0] + [0.5] * 9).shape == BIMODAL
    # Exactly half of the failed trials near the threshold (2 of 4): near the threshold.
    assert shape([0.93, 0.93, 0.7, 0.7]).shape == NEAR_THRESHOLD
    # Half of the trials diverged is not "most": the others decide (1 learned, 1 at chance).
    result = shape([0.0, 0.0, 0.5, 0.99], diverged=[True, True, False, False])
    assert (result.diverged, result.shape) == (2, SPREAD)


def test_a_diverged_trial_never_counts_as_learned_whatever_its_last_metric():
    # The verdict never counts a diverged trial as a success, so the case has not "all learned".
    result = shape([0.99, 0.99], diverged=[True, False])
    assert (result.learned, result.diverged) == (1, 1)
    assert result.shape != ALL_LEARNED
    assert result.describe() == "1 diverged"


def test_a_metric_beyond_either_band_is_between():
    # 0.075 past chance, 0.075 below the threshold: both outside the 0.05 bands.
    result = shape([0.575, 0.425, 0.925, 0.925], threshold=1.0, chance=0.5)
    assert (result.at_chance, result.near_threshold, result.between) == (0, 0, 4)
