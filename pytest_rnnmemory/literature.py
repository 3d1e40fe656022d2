"""A source's published figures set beside the same statistic computed over our trials.

Each figure of a suite's ``[reference]`` names its statistic; ours is computed
over the verdict's trials (never the tuning trials that chose their recipe),
with a 95% interval: Clopper-Pearson for a success rate, an expanded
percentile bootstrap with a fixed seed for a mean, and for the best of k trials the
bootstrap distribution of a maximum, which is known exactly. The figure
*agrees* when it lies inside our interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .records import CaseKey, CaseRecord
from .schema import ReferenceFigure, ReferenceSection
from .stats import Verdict, clopper_pearson, expanded_tail

AGREES = "agrees"
OURS_BETTER = "ours better"
OURS_WORSE = "ours worse"
#: No comparison: the case did not run, or too few of its trials give the statistic.
NOT_COMPARED = "not compared"

#: Bootstrap resamples; the seed is fixed so that a report renders the same from its JSON.
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Comparison:
    """One published figure beside ours: our value, its 95% interval, and whether they agree."""

    figure: ReferenceFigure
    ours: float | None
    low: float | None
    high: float | None
    agreement: str
    #: Why there is no comparison, or what our figure is over (``9 of 10 trials learned``).
    note: str
    #: The case's binomial verdict and its counts (``None``: the case did not run).
    verdict: Verdict | None
    k: int = 0
    n: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "cell": self.figure.cell,
            "length": self.figure.length,
            "eval_length": self.figure.eval_length,
            "statistic": self.figure.statistic,
            "source": self.figure.value,
            "source_trials": self.figure.trials,
            "ours": self.ours,
            "low": self.low,
            "high": self.high,
            "agreement": self.agreement,
            "note": self.note,
            "verdict": None if self.verdict is None else str(self.verdict),
            "k": self.k,
            "n": self.n,
            "differs": self.figure.differs,
        }


def bootstrap_mean(values: Sequence[float]) -> np.ndarray:
    """The mean of each of :data:`RESAMPLES` resamples of ``values`` (drawn in chunks of bounded memory)."""
    data = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    chunk = max(1, 10_000_000 // len(data))
    means = [
        data[rng.integers(0, len(data), size=(min(chunk, RESAMPLES - start), len(data)))].mean(axis=1)
        for start in range(0, RESAMPLES, chunk)
    ]
    return np.concatenate(means)


def percentile_interval(estimates: np.ndarray, tail: float = 0.025) -> tuple[float, float]:
    """The bootstrap estimates' quantiles ``tail`` and ``1 - tail``."""
    low, high = np.quantile(estimates, [tail, 1 - tail])
    return float(low), float(high)


def best_of(values: Sequence[float], k: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """The median and central interval of the best of ``k`` draws from ``values`` (with replacement).

    The bootstrap distribution of a maximum, computed exactly: the best of k draws is at
    most the j-th smallest value with probability (j / n)^k.
    """
    ranked = np.sort(np.asarray(values, dtype=np.float64))
    n = len(ranked)
    at_most = (np.searchsorted(ranked, ranked, side="right") / n) ** k  # P(best <= each value)

    def quantile(q: float) -> float:
        return float(ranked[np.argmax(at_most >= q)])

    tail = (1 - confidence) / 2
    return quantile(0.5), quantile(tail), quantile(1 - tail)


def agreement(value: float, low: float, high: float, *, lower_is_better: bool) -> str:
    """``agrees`` when ``value`` lies in ``[low, high]``; otherwise which side is better."""
    if low <= value <= high:
        return AGREES
    ours_above = value < low
    return OURS_WORSE if ours_above == lower_is_better else OURS_BETTER


def _metrics(record: CaseRecord, eval_length: int) -> list[float] | None:
    """Every trial's final metric at the trained length or at ``eval_length`` (``None``: not evaluated)."""
    if eval_length in (0, record.length):
        return [t.metric for t in record.trials]
    lengths = [g.length for g in record.generalisation]
    if eval_length not in lengths or any(len(t.eval_metrics) != len(lengths) for t in record.trials):
        return None
    i = lengths.index(eval_length)
    return [t.eval_metrics[i] for t in record.trials]


def compare(figure: ReferenceFigure, record: CaseRecord | None) -> Comparison:
    """``figure`` beside the same statistic over ``record``'s trials."""
    if record is None:
        return Comparison(
            figure,
            None,
            None,
            None,
            NOT_COMPARED,
            "the case did not run (another profile or selection)",
            None,
        )

    def ours(
        value: float | None, interval: tuple[float, float] | None, note: str, lower_is_better: bool
    ) -> Comparison:
        low, high = interval or (None, None)
        said = (
            NOT_COMPARED
            if interval is None
            else agreement(figure.value, *interval, lower_is_better=lower_is_better)
        )
        return Comparison(figure, value, low, high, said, note, record.verdict, record.k, record.n)

    n = len(record.trials)
    if figure.statistic == "mean_sequences":
        learned = [t.sequences for t in record.trials if t.sequences is not None]
        if len(learned) < 2:
            note = f"{len(learned)} of {n} trials learned within the budget; a mean needs two"
            return ours(None, None, note, lower_is_better=True)
        note = f"{len(learned)} of {n} trials learned; the mean is over them"
        interval = percentile_interval(bootstrap_mean(learned), expanded_tail(len(learned)))
        return ours(float(np.mean(learned)), interval, note, lower_is_better=True)
    metrics = _metrics(record, figure.eval_length)
    if metrics is None:
        return ours(None, None, f"the case was not evaluated at length {figure.eval_length}", False)
    finite = [m for m in metrics if math.isfinite(m)]
    if len(finite) < len(metrics) or not finite:
        return ours(None, None, f"{len(metrics) - len(finite)} of {n} trials have no finite metric", False)
    if figure.statistic == "success_rate":
        k = sum(m >= record.threshold and not t.diverged for m, t in zip(metrics, record.trials, strict=True))
        return ours(k / n, clopper_pearson(k, n), f"{k} of {n} trials", lower_is_better=False)
    median, low, high = best_of(metrics, figure.trials)
    note = f"the best of {figure.trials} drawn from our {len(metrics)} trials (exact bootstrap)"
    return ours(median, (low, high), note, lower_is_better=False)


def literature(reference: ReferenceSection, records: Mapping[CaseKey, CaseRecord]) -> list[Comparison]:
    """Every figure of ``reference`` beside ours, in the file's order."""
    return [compare(f, records.get((f.cell, f.length))) for f in reference.figures]
