"""Training a case in stages and stopping as soon as its verdict is settled (curtailment).

Trials are independent and each depends only on its own seed, so the first
``m`` trials trained as a stage end as they would among all ``n``. After each
stage the successes so far either fix the verdict of all ``n`` trials, whatever
the rest would do (:func:`.stats.settled`), or the next stage runs. The verdict
is therefore the one the full run gives, and so are its error rates; what
changes is the number of trials trained. (A cell that draws random numbers as
it trains, dropout say, draws its trials' numbers together: its stages are
trials of the same distribution, not the same trials.)
"""

from __future__ import annotations

import dataclasses
import time

from .engine import Progress, ProgressPoint, train_case
from .outcome import CaseOutcome
from .schemes import compiling_seconds
from .spec import CaseSpec
from .stats import settled


def train_in_stages(
    spec: CaseSpec,
    stage: int,
    p0: float,
    alpha: float,
    device: str = "cpu",
    progress: Progress | None = None,
) -> CaseOutcome:
    """Train ``spec``'s trials ``stage`` at a time until the verdict of all of them is settled."""
    n = spec.trials
    if stage <= 0 or stage >= n:
        return train_case(spec, device=device, progress=progress)
    started, compiled_before = time.perf_counter(), compiling_seconds()
    parts: list[CaseOutcome] = []
    trained = successes = 0
    while trained < n:
        seeds = spec.trial_seeds[trained : trained + stage]
        part = train_case(
            dataclasses.replace(spec, trial_seeds=seeds),
            device=device,
            progress=None if progress is None else _in_stage(progress, trained, n, started, compiled_before),
        )
        parts.append(part)
        trained += len(seeds)
        successes += sum(part.successes(spec.threshold))
        if settled(successes, trained, n, p0, alpha) is not None:
            break
    return CaseOutcome.concatenate(parts)


def _in_stage(
    progress: Progress, before: int, planned: int, started: float, compiled_before: float
) -> Progress:
    """``progress`` told where this stage lies among all the case's trials, and the case's time so
    far (and, of it, the time spent compiling)."""

    def report(point: ProgressPoint) -> None:
        progress(
            dataclasses.replace(
                point,
                before=before,
                planned=planned,
                elapsed_s=time.perf_counter() - started,
                compiling_s=compiling_seconds() - compiled_before,
            )
        )

    return report
