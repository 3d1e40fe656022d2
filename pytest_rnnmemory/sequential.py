"""Training a case in stages and stopping as soon as its verdict is settled (curtailment).

Trials are independent and each depends only on its own seed, so the first
``m`` trials trained as a stage end as they would among all ``n``. After each
stage the successes so far either fix the verdict of all ``n`` trials, whatever
the rest would do (:func:`.stats.settled`), or the next stage runs. The verdict
is therefore the one the full run gives, and so are its error rates; what
changes is the number of trials trained.
"""

from __future__ import annotations

import dataclasses

import torch

from .engine import CaseOutcome, CaseSpec, Progress, train_case
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
    n = len(spec.trial_seeds)
    if stage <= 0 or stage >= n:
        return train_case(spec, device=device, progress=progress)
    parts: list[CaseOutcome] = []
    trained = successes = 0
    while trained < n:
        seeds = spec.trial_seeds[trained : trained + stage]
        part = train_case(dataclasses.replace(spec, trial_seeds=seeds), device=device, progress=progress)
        parts.append(part)
        trained += len(seeds)
        successes += sum(part.successes(spec.threshold))
        if settled(successes, trained, n, p0, alpha) is not None:
            break
    return _joined(parts)


def _joined(parts: list[CaseOutcome]) -> CaseOutcome:
    first = parts[0]
    return CaseOutcome(
        metrics=[m for p in parts for m in p.metrics],
        diverged=[d for p in parts for d in p.diverged],
        train_loss=[row for p in parts for row in p.train_loss],
        val_metric=[row for p in parts for row in p.val_metric],
        scheme=first.scheme,
        device=first.device,
        wall_s=sum(p.wall_s for p in parts),
        params={k: torch.cat([p.params[k] for p in parts]) for k in first.params},
        eval_metrics={n: [m for p in parts for m in p.eval_metrics[n]] for n in first.eval_metrics},
        input_gradient=[g for p in parts for g in p.input_gradient],
    )
