"""Why a case's trials failed: where their final metrics lie between chance and the threshold."""

from __future__ import annotations

from dataclasses import dataclass

#: Metrics within this distance of the chance level count as "at chance"; within it
#: below the threshold, as "near the threshold". Validation metrics on a few hundred
#: sequences or more vary by about 0.01-0.03 around a trial's true value.
BAND = 0.05

ALL_LEARNED = "all learned"
AT_CHANCE = "stuck at chance"
BIMODAL = "bimodal"
NEAR_THRESHOLD = "near the threshold"
SPREAD = "spread"
DIVERGED = "diverged"


@dataclass(frozen=True)
class Shape:
    """Counts of a case's trials by where their final metric lies, and the word for the pattern."""

    learned: int
    at_chance: int
    near_threshold: int
    between: int
    diverged: int
    shape: str

    def describe(self) -> str:
        """The counts of the failed trials, for a table cell."""
        parts = [
            f"{count} {what}"
            for count, what in (
                (self.at_chance, "at chance"),
                (self.between, "between"),
                (self.near_threshold, "near threshold"),
                (self.diverged, "diverged"),
            )
            if count
        ]
        return ", ".join(parts) if parts else "none failed"


def shape_of(metrics: list[float], diverged: list[bool], threshold: float, chance: float) -> Shape:
    """Sort the trials of a case by their final metric and name the pattern.

    * ``all learned``: every trial reached the threshold;
    * ``stuck at chance``: most failed trials (at least 80%) sit at the chance level,
      and few trials learned: the cell never found the signal;
    * ``bimodal``: trials either learned or sat at chance (each at least 10% of
      the trials): the signal is learnable but found by some initialisations only;
    * ``near the threshold``: most failed trials (at least half) end just below the
      threshold: more training or a lower threshold may pass them;
    * ``spread``: anything else, typically trials still learning when training stopped;
    * ``diverged``: most trials diverged.
    """
    learned = at_chance = near = between = gone = 0
    for metric, lost in zip(metrics, diverged, strict=True):
        if lost:
            gone += 1
        elif metric >= threshold:
            learned += 1
        elif abs(metric - chance) <= BAND:
            at_chance += 1
        elif metric >= threshold - BAND:
            near += 1
        else:
            between += 1
    total = len(metrics)
    failed = total - learned
    if failed == 0:
        shape = ALL_LEARNED
    elif gone * 2 > total:
        shape = DIVERGED
    elif at_chance >= 0.8 * failed and learned >= 0.1 * total:
        shape = BIMODAL
    elif at_chance >= 0.8 * failed:
        shape = AT_CHANCE
    elif near * 2 >= failed:
        shape = NEAR_THRESHOLD
    else:
        shape = SPREAD
    return Shape(learned, at_chance, near, between, gone, shape)
